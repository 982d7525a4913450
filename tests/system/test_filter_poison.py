#!/usr/bin/env python3
"""Poison isolation (MISSION.md invariant 7): real misbehaving filters, a
stream of mail with poison messages mixed in.

Set-up: user alice; DATA/holdfast.toml with a filter chain of four real
/bin/sh commands, each harmless unless the message holds its marker:
  segv   - `kill -SEGV $$`: dies by SIGSEGV            (marker POISON-SEGV)
  loop   - `while :; do :; done`: never ends           (marker POISON-LOOP)
  oom    - python3 allocating without bound            (marker POISON-OOM)
  killer - `kill -KILL $PPID`: takes its worker down   (marker POISON-WORKER)
[filters] batch_size = 32, workers = 2, max_attempts (K) = 3,
memory_bytes = 256 MiB, step timeouts 10 s (loop: 1 s).

Load: N messages (HOLDFAST_FILTER_MESSAGES, default 1000) over LMTP from 4
smtplib.LMTP connections at once, P of them poison (HOLDFAST_FILTER_POISON,
default 20), the four
kinds in turn, spread evenly through the stream. Every message is unique
(X-Token).

Checks, once alice has N - P messages and the quarantine P:
- every innocent message is in alice's INBOX exactly once, byte-exact
  (trace headers + the body as sent); none is in the quarantine;
- every poison message is in the quarantine (`holdfast queue quarantine
  list`/`show`), not in the mailbox, with the right reason: "signal 11" for
  segv, "timeout" for loop, "memory" for oom, "worker signal 9" for killer;
- the retries of a message that failed run in the retry slot at a lower
  CPU priority: of a segv message's K attempts the first runs at the
  daemon's nice value, the K - 1 retries at [filters] retry_nice (default
  10; never below the daemon's own);
- each poison message cost at most K + ceil(log2(batch_size)) failures: its
  quarantine history has K entries, and the log's worker failures number at
  most (#killer poison) * (K + ceil(log2 32));
- the daemon never went down (same pid, still answering LMTP), its log has
  no sanitizer report; SIGTERM -> exit 0; `holdfast fsck alice` is clean.

Long run, full size: HOLDFAST_FILTER_MESSAGES=10000 HOLDFAST_FILTER_POISON=100.
Run:  /usr/bin/python3 tests/system/test_filter_poison.py --holdfast build/holdfast
Exit: 0 pass, 1 fail.
"""

import math
import os
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
BATCH = 32
KINDS = ["SEGV", "LOOP", "OOM", "WORKER"]
REASON = {"SEGV": "signal 11", "LOOP": "timeout", "OOM": "memory", "WORKER": "worker signal 9"}

FILTERS = {
    # Before it dies it notes its nice value (field 19 of /proc/PID/stat).
    "segv": 'if grep -q POISON-SEGV; then cut -d" " -f19 /proc/$$/stat >> NICE_LOG; kill -SEGV $$; fi\nexit 0\n',
    "loop": 'if grep -q POISON-LOOP; then while :; do :; done; fi\nexit 0\n',
    "oom": ('if grep -q POISON-OOM; then exec python3 -c "x = []\n'
            'while True: x.append(bytearray(1 << 20))"; fi\nexit 0\n'),
    "killer": 'if grep -q POISON-WORKER; then kill -KILL $PPID; sleep 5; fi\nexit 0\n',
}


def make_message(i, kind):
    tok = f"FP-{os.getpid()}-{i}".encode()
    marker = f"POISON-{kind}".encode() if kind else b"innocent"
    body = (b"Subject: filter test " + tok + CRLF + b"X-Token: " + tok + CRLF + CRLF +
            b"line one" + CRLF + b"marker " + marker + CRLF + b"END " + tok + CRLF)
    return tok, body


def main(args):
    n = int(os.environ.get("HOLDFAST_FILTER_MESSAGES", "1000"))
    p = int(os.environ.get("HOLDFAST_FILTER_POISON", "20"))
    settle_timeout = float(os.environ.get("HOLDFAST_FILTER_TIMEOUT", "300"))
    with hfsys.TempDir(prefix="hffp-", keep=args.keep) as tmp:
        binary = hflmtp.private_binary(args.holdfast, tmp.sub("bin"))
        data = tmp.sub("data")
        hf = hfsys.Holdfast(binary, data)
        hf.user_add("alice", "pw-alice")
        chain = ""
        for name, script in FILTERS.items():
            path = tmp.sub(f"{name}.sh")
            with open(path, "w") as f:
                f.write(script.replace("NICE_LOG", tmp.sub("segv-nice.log")))
            timeout = 1000 if name == "loop" else 10000
            chain += (f'[[filters.chain]]\ntype = "command"\nname = "{name}"\n'
                      f'command = ["/bin/sh", "{path}"]\ntimeout_ms = {timeout}\n')
        hflmtp.write_config(data, f"[filters]\nbatch_size = {BATCH}\nworkers = 2\nmax_attempts = {K}\n"
                                  f"memory_bytes = {256 << 20}\n" + chain)

        # Which messages are poison: P of N, evenly spread, kinds in turn.
        poison_at = {round((j + 0.5) * n / p): KINDS[j % len(KINDS)] for j in range(p)}
        messages = [make_message(i, poison_at.get(i)) for i in range(n)]
        srv = hflmtp.Server(binary, data, tmp.sub("serve.log"))
        try:
            srv.start()
            pid = srv.proc.pid
            t0 = time.monotonic()
            errors = []

            def sender(part):
                conn = hflmtp.connect(srv.port)
                try:
                    for i in part:
                        _, final = hflmtp.lmtp_send(conn, SENDER, ["alice@localhost"], messages[i][1])
                        code = final.get("alice@localhost", (None,))[0]
                        if code != 250:
                            errors.append(f"message {i}: {final}")
                    conn.quit()
                finally:
                    conn.close()

            threads = [threading.Thread(target=sender, args=(range(c, n, 4),)) for c in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            check(not errors, f"all {n} messages acknowledged with 250", "\n".join(errors[:5]))
            log(f"sent {n} messages ({p} poison) in {time.monotonic() - t0:.1f}s")

            deadline = time.monotonic() + settle_timeout
            while time.monotonic() < deadline:
                inbox = len(hf.mailbox_list("alice"))
                quarantined = hf.run("queue", "quarantine", "list").stdout.decode().count("\n") - 1
                if inbox >= n - p and quarantined >= p:
                    break
                check(srv.alive(), "the daemon is still running")
                time.sleep(0.5)
            took = time.monotonic() - t0
            log(f"settled after {took:.1f}s: inbox {inbox}, quarantine {quarantined}")
            check(srv.alive() and srv.proc.pid == pid, "the daemon never went down")

            # Innocent mail: in the inbox, exactly once, byte-exact.
            stored = {}
            for _, content in hflmtp.read_mailbox(hf, "alice"):
                m = re.search(rb"X-Token: (FP-\d+-\d+)", content)
                check(m is not None, "every stored message has its token")
                stored.setdefault(m.group(1), []).append(content)
            innocent = [messages[i] for i in range(n) if i not in poison_at]
            for tok, body in innocent:
                copies = stored.get(tok, [])
                check(len(copies) == 1, f"innocent {tok.decode()} delivered exactly once ({len(copies)})")
                check(copies[0] == expected_stored(body, SENDER, "alice@localhost"),
                      f"innocent {tok.decode()} byte-exact")
            check(len(stored) == n - p, f"nothing but the {n - p} innocent messages in the inbox ({len(stored)})")

            # Poison: in the quarantine, with the right reason, at most K + log2(batch) failures.
            listing = hf.run("queue", "quarantine", "list").stdout.decode().splitlines()[1:]
            by_token = {}
            for line in listing:
                qid = line.split("\t")[0]
                show = hf.run("queue", "quarantine", "show", qid).stdout.decode()
                m = re.search(r"X-Token: (FP-\d+-\d+)", show)
                check(m is not None, f"quarantine entry {qid} shows its headers")
                by_token[m.group(1).encode()] = show
            check(len(by_token) == p, f"exactly the {p} poison messages are in the quarantine ({len(by_token)})")
            for i, kind in poison_at.items():
                tok = messages[i][0]
                show = by_token.get(tok)
                check(show is not None, f"poison {kind} {tok.decode()} is in the quarantine")
                check(tok not in stored, f"poison {tok.decode()} is not in the mailbox")
                reason = re.search(r"^reason:\s+(.*)$", show, re.M).group(1)
                check(REASON[kind] in reason, f"poison {kind}: reason says {REASON[kind]!r} ({reason!r})")
                attempts = len(re.findall(r"^attempt \d+:", show, re.M))
                check(attempts == K, f"poison {kind}: quarantined after exactly K={K} failures ({attempts})")
            base = os.nice(0)  # the server's, inherited from this process
            with open(tmp.sub("segv-nice.log")) as f:
                nices = [int(x) for x in f.read().split()]
            segv = sum(1 for k in poison_at.values() if k == "SEGV")
            retry = max(base, 10)
            check(len(nices) == K * segv, f"segv filter ran K times per segv message ({len(nices)})")
            check(nices.count(retry) >= (K - 1) * segv and (retry == base or nices.count(base) == segv),
                  f"first attempts at nice {base}, retries at nice {retry} ({sorted(nices)})")
            worker_failures = len(srv.grep(r"event=spool filter: worker "))
            bound = sum(1 for k in poison_at.values() if k == "WORKER") * (K + math.ceil(math.log2(BATCH)))
            log(f"worker failures: {worker_failures} (bound {bound})")
            check(worker_failures <= bound, f"worker failures {worker_failures} <= {bound}")

            check(srv.stop()[0] == 0, "SIGTERM: exit 0")
            hf.fsck("alice")
            check(not srv.sanitizer_reports(), "no sanitizer reports in the server log")
            log(f"filtered {n} messages with {p} poison in {took:.1f}s")
        except BaseException:
            log(f"\n--- server log (last 40 lines) ---\n{srv.log_tail(40)}")
            raise
        finally:
            srv.kill9()


if __name__ == "__main__":
    hfsys.run_test(main, __doc__)
