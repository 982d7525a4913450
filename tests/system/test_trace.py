#!/usr/bin/env python3
"""`holdfast trace`: the life of a message from the durable event
log, as real clients drive it, and consistent with what happened across
kill -9.

Set-up: user alice; a filter chain of the built-in trace step and a real
command (/bin/sh) that adds a header, or quarantines a message holding
QUARANTINE-ME.

Part 1, one life: M1 sent over LMTP (Python smtplib.LMTP, its own
Message-ID), filtered, delivered, retrieved (RETR, poplib) and deleted
(DELE + QUIT, a second poplib session). `holdfast trace <Message-ID>` and
`--json` list exactly received, filtered, delivered, retrieved, deleted, in
that order, each time inside the window the test saw it happen; received
names the LMTP client's own address:port, the sender, the recipient, the
size; filtered names both steps; delivered the user and UID; retrieved and
deleted the POP3 client's own address:port and their two different
sessions. The same message is found by its MessageId, by --from, --to, the
positional address, and within --since 10m; not with --until before it
arrived. M2 (QUARANTINE-ME): received, filtered (verdict quarantine),
quarantined; `queue quarantine release` adds release_requested, then the
server's released and delivered. Bad queries exit 64, no match exits 1.

Part 2, kill -9: 2 LMTP clients send without pause; a POP3 client
repeatedly logs in, deletes its first 3 messages and QUITs; the server is
SIGKILLed KILLS times (HOLDFAST_TRACE_KILLS, default 6) at random moments
and restarted. Afterwards (server settled, SIGTERM), against alice's
mailbox: every message that got a 250 has received or replayed; every
message in the mailbox has delivered or already_delivered and no deleted;
every 250'd message no longer in the mailbox has a deleted event (by pop3,
or by recovery when the kill came inside QUIT) or, if the kills caught it in
a filter worker K times, a quarantined event and an entry in the
quarantine; every deleted event is for a message that is gone; no event log
file is damaged.

Run:  /usr/bin/python3 tests/system/test_trace.py --holdfast build/holdfast
Exit: 0 pass, 1 fail.
"""

import json
import os
import poplib
import random
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
import hflmtp  # noqa: E402
from hfsys import check, fail, log  # noqa: E402
from hflmtp import CRLF  # noqa: E402

SENDER = "sender@example.org"
FILTER = """msg=$(cat)
case "$msg" in *QUARANTINE-ME*) echo "quarantine held for review"; exit 0 ;; esac
echo "header X-Scanned: yes"
exit 0
"""
ID_IN_REPLY = re.compile(rb"\s([0-9A-HJKMNP-TV-Z]{26}) accepted")


def send(port, body, rcpt="alice@localhost"):
    """One message over LMTP; returns (MessageId, client 'ip:port')."""
    conn = hflmtp.connect(port)
    client = "%s:%d" % conn.sock.getsockname()[:2]
    _, final = hflmtp.lmtp_send(conn, SENDER, [rcpt], body)
    conn.quit()
    code, text = final.get(rcpt, (0, b""))
    check(code == 250, f"LMTP 250 for {rcpt}", f"{code} {text!r}")
    return ID_IN_REPLY.search(b" " + text).group(1).decode(), client


def trace(hf, *args, expect=0):
    return hf.run("trace", *args, expect=expect)


def trace_json(hf, *args):
    r = trace(hf, *args, "--json")
    out = []
    for line in r.stdout.decode().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError as e:
            fail(f"trace --json printed a line that is not JSON ({e}): {line[:200]}")
    return out


def pop3(port, pw="pw-alice"):
    p = poplib.POP3("127.0.0.1", port, timeout=30)
    p.user("alice")
    p.pass_(pw)
    return p, "%s:%d" % p.sock.getsockname()[:2]


def wait_kinds(hf, mid, kinds, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = trace_json(hf, mid) if trace(hf, mid, expect=None).returncode == 0 else []
        if got and [e["event"] for e in got[0]["events"]][:len(kinds)] == kinds:
            return got[0]
        time.sleep(0.2)
    got = trace(hf, mid, expect=None)
    fail(f"trace of {mid} never showed {kinds}:\n{got.stdout.decode()}{got.stderr.decode()}")


def part1(hf, srv):
    t0 = time.time() * 1000 - 5  # event times are milliseconds, this clock's
    body = (b"Subject: trace one" + CRLF + b"Message-ID: <trace-one@test.example>" + CRLF + CRLF +
            b"hello" + CRLF)
    m1, lmtp_client = send(srv.port, body)
    hflmtp.wait_count(hf, "alice", 1)
    p, retr_client = pop3(srv.pop3_port)
    check(p.stat()[0] == 1, "alice has M1")
    hfsys.pop3_retr_raw(p, 1)
    p.quit()
    p, dele_client = pop3(srv.pop3_port)
    p.dele(1)
    p.quit()
    t1 = time.time() * 1000 + 5

    got = trace_json(hf, "<trace-one@test.example>")
    check(len(got) == 1 and got[0]["id"] == m1, "trace <Message-ID> finds M1 alone", str(got)[:400])
    ev = got[0]["events"]
    kinds = [e["event"] for e in ev]
    check(kinds == ["received", "filtered", "delivered", "retrieved", "deleted"],
          "M1's life: received, filtered, delivered, retrieved, deleted", str(kinds))
    times = [e["time_ms"] for e in ev]
    check(times == sorted(times) and t0 <= times[0] and times[-1] <= t1,
          "event times in order and inside the window the test saw", f"{times} vs [{t0}, {t1}]")
    rec, flt, dlv, ret, dele = ev
    check(rec["client"] == lmtp_client and rec["from"] == SENDER and rec["to"] == "alice@localhost",
          "received: the LMTP client's address:port, sender, recipient", str(rec))
    check(int(rec["size"]) == len(hflmtp.smtplib_wire_body(body)), "received: the size as received", str(rec))
    check(rec["message_id"] == "<trace-one@test.example>", "received: the Message-ID")
    check(flt["verdict"] == "deliver" and "trace:" in flt["steps"] and "scan:" in flt["steps"],
          "filtered: verdict and both steps", str(flt))
    check(dlv["user"] == "alice" and dlv["uid"] == "1" and ",U=1" in dlv["file"],
          "delivered: user alice, UID 1", str(dlv))
    check(ret["client"] == retr_client and ret["command"] == "RETR" and ret["user"] == "alice",
          "retrieved: the POP3 client's address:port, RETR", str(ret))
    check(dele["client"] == dele_client and dele["by"] == "pop3" and dele["session"] != ret["session"],
          "deleted: by the second POP3 session, from its address:port", str(dele))

    text = trace(hf, m1).stdout.decode()
    check(text.startswith(f"message {m1}  message-id <trace-one@test.example>  from <{SENDER}>"),
          "text form: the heading", text[:200])
    check(len(re.findall(r"^  \d{4}-\d\d-\d\dT[\d:.]+Z  \w+", text, re.M)) == 5, "text form: one line per event", text)
    for args in ([m1.lower()], ["--from", SENDER], ["--to", "alice@localhost"], [SENDER],
                 ["alice@localhost", "--since", "10m"], ["--to", "alice"]):
        ids = [t["id"] for t in trace_json(hf, *args)]
        check(m1 in ids, f"trace {' '.join(args)} finds M1")
    r = trace(hf, "--from", SENDER, "--until", "2000-01-01", expect=1)
    check(b"no message matches" in r.stderr, "--until before it arrived: nothing, exit 1")
    trace(hf, "what is this", expect=64)
    trace(hf, expect=64)
    trace(hf, "--from", SENDER, "--since", "yesterday-ish", expect=64)
    trace(hf, "nobody@nowhere.example", expect=1)

    body2 = b"Subject: trace two" + CRLF + CRLF + b"QUARANTINE-ME" + CRLF
    m2, _ = send(srv.port, body2)
    wait_kinds(hf, m2, ["received", "filtered", "quarantined"])
    hf.run("queue", "quarantine", "release", m2)
    got = wait_kinds(hf, m2, ["received", "filtered", "quarantined", "release_requested", "released", "delivered"])
    kinds = [e["event"] for e in got["events"]]
    check(got["events"][1]["verdict"] == "quarantine" and "held for review" in got["events"][2]["reason"],
          "M2: filtered with verdict quarantine, the filter's reason", str(got["events"][:3]))
    check(kinds == ["received", "filtered", "quarantined", "release_requested", "released", "delivered"],
          "M2's life: quarantined, released by the CLI, delivered", str(kinds))
    p, _ = pop3(srv.pop3_port)
    n = p.stat()[0]
    for i in range(1, n + 1):
        p.dele(i)
    p.quit()


def part2(hf, srv, kills):
    acked = set()
    lock = threading.Lock()
    stop = threading.Event()

    def sender(k):
        i = 0
        while not stop.is_set():
            i += 1
            body = b"Subject: k" + str(k).encode() + b"." + str(i).encode() + CRLF + CRLF + b"x" * 200 + CRLF
            try:
                conn = hflmtp.connect(srv.port, timeout=5)
                final = {}
                hflmtp.lmtp_send(conn, SENDER, ["alice@localhost"], body, final=final)
                code, text = final.get("alice@localhost", (0, b""))
                if code == 250:
                    with lock:
                        acked.add(ID_IN_REPLY.search(b" " + text).group(1).decode())
                conn.close()
            except (OSError, Exception):  # the server dies under us: expected
                time.sleep(0.05)
            time.sleep(0.01)  # the filter (a shell per message) must keep up

    def popper():
        while not stop.is_set():
            try:
                p, _ = pop3(srv.pop3_port)
                n = p.stat()[0]
                for i in range(1, min(n, 3) + 1):
                    p.dele(i)
                p.quit()
            except (OSError, poplib.error_proto, Exception):
                pass
            time.sleep(0.05)

    threads = [threading.Thread(target=sender, args=(k,), daemon=True) for k in range(2)]
    threads.append(threading.Thread(target=popper, daemon=True))
    for t in threads:
        t.start()
    rng = random.Random(int(os.environ.get("HOLDFAST_TRACE_SEED", "7")))
    for k in range(kills):
        time.sleep(rng.uniform(0.3, 1.2))
        srv.kill9()
        srv.start()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    deadline = time.monotonic() + 180
    while hflmtp.spool_backlog(srv) != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    check(hflmtp.spool_backlog(srv) == 0, "the backlog drains after the kills")
    rc, _ = srv.stop()
    check(rc == 0, "the server stops cleanly after the kills")
    log(f"{len(acked)} messages acknowledged across {kills} kills")
    check(len(acked) > 20, "load went through between the kills", str(len(acked)))

    present = {e["message_id"] for e in hf.mailbox_list("alice")}
    quarantined = {line.split("\t")[0] for line in
                   hf.run("queue", "quarantine", "list").stdout.decode().splitlines()[1:]}
    r = hf.run("trace", "--to", "alice@localhost", "--json", expect=None)
    traces = {t["id"]: [e["event"] for e in t["events"]] for t in
              (json.loads(line) for line in r.stdout.decode().splitlines())}
    check(b"warning" not in r.stderr, "no damaged event log file", r.stderr.decode()[:500])
    bad = []
    for mid in acked:
        kinds = traces.get(mid, [])
        if "received" not in kinds and "replayed" not in kinds:
            bad.append(f"{mid}: acknowledged, neither received nor replayed: {kinds}")
        if mid in present:
            if "delivered" not in kinds and "already_delivered" not in kinds:
                bad.append(f"{mid}: in the mailbox without a delivery event: {kinds}")
            if "deleted" in kinds:
                bad.append(f"{mid}: in the mailbox but traced as deleted: {kinds}")
        elif "quarantined" in kinds:
            # Killed K times while in a filter worker: poison by the rules (docs/filters.md).
            if mid not in quarantined:
                bad.append(f"{mid}: traced as quarantined, not in the quarantine: {kinds}")
        elif "deleted" not in kinds:
            bad.append(f"{mid}: gone from the mailbox without a deleted event: {kinds}")
    for mid, kinds in traces.items():
        if "deleted" in kinds and mid in present:
            bad.append(f"{mid}: deleted event for a message still there")
    by_recovery = sum(1 for k in traces.values() if "replayed" in k or "already_delivered" in k)
    log(f"{len(present)} in the mailbox, {sum(1 for k in traces.values() if 'deleted' in k)} deleted, "
        f"{len(quarantined)} quarantined, "
        f"{by_recovery} touched by the spool's replay")
    check(not bad, "the trace agrees with the mailbox for every acknowledged message", "\n".join(bad[:20]))


def main(args):
    kills = int(os.environ.get("HOLDFAST_TRACE_KILLS", "6"))
    with hfsys.TempDir(prefix="hftrace-", keep=args.keep) as tmp:
        binary = hflmtp.private_binary(args.holdfast, tmp.sub("bin"))
        data = tmp.sub("data")
        hf = hfsys.Holdfast(binary, data)
        hf.user_add("alice", "pw-alice")
        script = tmp.sub("filter.sh")
        with open(script, "w") as f:
            f.write(FILTER)
        hflmtp.write_config(data, '[filters]\nbatch_size = 8\n'
                                  '[[filters.chain]]\ntype = "trace"\n'
                                  f'[[filters.chain]]\ntype = "command"\nname = "scan"\n'
                                  f'command = ["/bin/sh", "{script}"]\ntimeout_ms = 10000\n')
        srv = hflmtp.Server(binary, data, tmp.sub("serve.log"))
        with srv:
            srv.start()
            part1(hf, srv)
            part2(hf, srv, kills)
        check(not srv.sanitizer_reports(), "no sanitizer reports", "\n".join(srv.sanitizer_reports()[:10]))
        hf.fsck("alice")


if __name__ == "__main__":
    hfsys.run_test(main, __doc__)
