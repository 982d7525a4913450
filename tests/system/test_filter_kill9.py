#!/usr/bin/env python3
"""kill -9 of the daemon while filter batches are in flight (MISSION.md
invariants 2, 4 and 7).

Set-up: user alice; a filter chain of one real command (/bin/sh) that takes
about 20 ms per message, so batches (batch_size 8, 2 workers) are in a
worker most of the time, and that on the marker DAEMON-KILLER kills the
daemon itself (its worker's parent: `kill -KILL` on the ppid read from
/proc) -- a message that brings the whole server down. max_attempts K = 3.

Part 1, random kills: 2 LMTP client threads send unique messages (X-Token)
without pause (at most 200 each); the server is SIGKILLed KILLS times (HOLDFAST_FILTER_KILLS,
default 8) at a random moment 0.2-1.0 s after it is ready, and restarted on
the same data. Then the clients stop, the server runs until /metrics says
the backlog is empty, SIGTERM. Check: every (token) that got 250 is in
exactly one place -- alice's INBOX (once, byte-exact after the trace
headers) or the quarantine -- never both, never twice, never lost.

Part 2, the daemon killer: one DAEMON-KILLER message among 7 innocent ones.
The test restarts the server each time it dies (as systemd's Restart=
would), at most K + ceil(log2 8) + 2 times. Check: the server ends up
running and stays up; the killer is in the quarantine with K failures in its
history, each "the daemon died while it was being filtered"; the 7 innocent
ones are in the INBOX exactly once; the killer took at most
1 + ceil(log2 8) + K daemon deaths.

Run:  /usr/bin/python3 tests/system/test_filter_kill9.py --holdfast build/holdfast
Exit: 0 pass, 1 fail.
"""

import math
import os
import random
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
import hflmtp  # noqa: E402
from hfsys import check, log  # noqa: E402
from hflmtp import CRLF, expected_stored  # noqa: E402

SENDER = "sender@example.org"
K = 3
BATCH = 8
PER_CLIENT = 200  # messages per client thread at most: bounds the filtering left after the kills
FILTER = """msg=$(cat)
case "$msg" in *DAEMON-KILLER*)
  read -r _ _ _ daemon _ < /proc/$PPID/stat
  kill -KILL "$daemon"; sleep 5 ;;
esac
sleep 0.02
exit 0
"""


def message(tok: bytes, marker=b"innocent"):
    return (b"Subject: kill9 filter " + tok + CRLF + b"X-Token: " + tok + CRLF + CRLF +
            b"marker " + marker + CRLF + b"END " + tok + CRLF)


def settle(srv, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hflmtp.spool_backlog(srv) == 0:
            return True
        time.sleep(0.2)
    return False


def places(hf):
    """{token: [where...]} over alice's INBOX and the quarantine."""
    out = {}
    for _, content in hflmtp.read_mailbox(hf, "alice"):
        m = re.search(rb"X-Token: (\S+)", content)
        check(m is not None, "every stored message has its token")
        out.setdefault(m.group(1), []).append(("inbox", content))
    for line in hf.run("queue", "quarantine", "list").stdout.decode().splitlines()[1:]:
        qid = line.split("\t")[0]
        show = hf.run("queue", "quarantine", "show", qid).stdout.decode(errors="replace")
        m = re.search(r"X-Token: (\S+)", show)
        check(m is not None, f"quarantine entry {qid} shows its token")
        out.setdefault(m.group(1).encode(), []).append(("quarantine", show))
    return out


def part1(hf, binary, tmp):
    kills = int(os.environ.get("HOLDFAST_FILTER_KILLS", "8"))
    srv = hflmtp.Server(binary, hf.data, tmp.sub("serve1.log"))
    acked, stop = {}, threading.Event()
    lock = threading.Lock()

    def client(c):
        n = 0
        while not stop.is_set() and n < PER_CLIENT:
            try:
                conn = hflmtp.connect(srv.port, timeout=10)
            except OSError:
                time.sleep(0.05)
                continue
            try:
                while not stop.is_set() and n < PER_CLIENT:
                    n += 1
                    tok = f"K9F-{os.getpid()}-{c}-{n}".encode()
                    final = {}
                    body = message(tok)
                    try:
                        hflmtp.lmtp_send(conn, SENDER, ["alice@localhost"], body, final=final)
                    finally:
                        if final.get("alice@localhost", (None,))[0] == 250:
                            with lock:
                                acked[tok] = body
            except Exception:  # noqa: BLE001 - the server was killed: reconnect
                pass
            finally:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass

    try:
        srv.start()
        threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(2)]
        for t in threads:
            t.start()
        for k in range(kills):
            time.sleep(random.uniform(0.2, 1.0))
            check(srv.alive(), f"kill {k + 1}: the server was still running")
            srv.kill9()
            srv.start()
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        check(settle(srv), "after the kills the backlog drains (/metrics)")
        check(srv.stop()[0] == 0, "SIGTERM: exit 0")
    except BaseException:
        log(f"\n--- server log (last 40 lines) ---\n{srv.log_tail(40)}")
        raise
    finally:
        srv.kill9()
    log(f"part 1: {kills} kills, {len(acked)} messages acknowledged")
    check(len(acked) >= 20, f"enough mail went through ({len(acked)})")
    where = places(hf)
    quarantined = 0
    for tok, body in acked.items():
        got = where.get(tok, [])
        check(len(got) == 1, f"{tok.decode()}: in exactly one place ({[w for w, _ in got]})")
        if got[0][0] == "inbox":
            check(got[0][1] == expected_stored(body, SENDER, "alice@localhost"), f"{tok.decode()}: byte-exact")
        else:
            quarantined += 1
    log(f"part 1: {len(acked) - quarantined} in the INBOX, {quarantined} quarantined by the kills")
    return len(acked)


def part2(hf, binary, tmp, before):
    srv = hflmtp.Server(binary, hf.data, tmp.sub("serve2.log"))
    bound = 1 + math.ceil(math.log2(BATCH)) + K
    try:
        srv.start()
        conn = hflmtp.connect(srv.port)
        toks = [f"DK-{os.getpid()}-{i}".encode() for i in range(8)]
        killer = toks[3]
        for tok in toks:
            _, final = hflmtp.lmtp_send(conn, SENDER, ["alice@localhost"], message(tok, b"DAEMON-KILLER" if tok == killer else b"innocent"))
            check(final.get("alice@localhost", (None,))[0] == 250, f"{tok.decode()}: 250")
        conn.close()
        deaths = 0
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if not srv.alive():
                deaths += 1
                check(deaths <= bound + 2, f"the daemon killer brought the server down at most {bound} (+2) times")
                srv.start()
                continue
            if hflmtp.spool_backlog(srv) == 0:
                time.sleep(1.0)  # stays up with nothing left to do
                if srv.alive() and hflmtp.spool_backlog(srv) == 0:
                    break
            time.sleep(0.1)
        log(f"part 2: the server died {deaths} times (bound 1 + log2({BATCH}) + K = {bound})")
        check(1 <= deaths <= bound, f"daemon deaths {deaths} within 1..{bound}")
        check(srv.alive(), "the server is up in the end")
        check(srv.stop()[0] == 0, "SIGTERM: exit 0")
    except BaseException:
        log(f"\n--- server log (last 40 lines) ---\n{srv.log_tail(40)}")
        raise
    finally:
        srv.kill9()
    where = places(hf)
    got = where.get(killer, [])
    check(len(got) == 1 and got[0][0] == "quarantine", "the daemon killer is in the quarantine, only there")
    show = got[0][1]
    died = re.findall(r"^attempt \d+:\s+the daemon died while it was being filtered$", show, re.M)
    check(len(died) == K, f"its history: K={K} daemon deaths while filtered alone ({len(died)})", show)
    for tok in toks:
        if tok == killer:
            continue
        g = where.get(tok, [])
        check(len(g) == 1 and g[0][0] == "inbox", f"innocent {tok.decode()}: in the INBOX exactly once")


def main(args):
    with hfsys.TempDir(prefix="hffk9-", keep=args.keep) as tmp:
        binary = hflmtp.private_binary(args.holdfast, tmp.sub("bin"))
        data = tmp.sub("data")
        hf = hfsys.Holdfast(binary, data)
        hf.user_add("alice", "pw-alice")
        script = tmp.sub("filter.sh")
        with open(script, "w") as f:
            f.write(FILTER)
        hflmtp.write_config(data, f"[filters]\nbatch_size = {BATCH}\nworkers = 2\nmax_attempts = {K}\n"
                                  f'[[filters.chain]]\ntype = "command"\nname = "slow"\n'
                                  f'command = ["/bin/sh", "{script}"]\ntimeout_ms = 10000\n')
        n = part1(hf, binary, tmp)
        part2(hf, binary, tmp, n)
        hf.fsck("alice")


if __name__ == "__main__":
    hfsys.run_test(main, __doc__)
