#!/usr/bin/env python3
"""kill -9 torture: `holdfast serve` under LMTP load, SIGKILLed again and again.

Set-up: a temp data directory with users alice and bob and a holdfast.toml
with [spool] segment_bytes = 1 MiB (the smallest allowed), so segments are
rotated and retired segments removed many times during the run, and
max_backlog_messages = 1000 with congestion_wait_ms = 1000, so the server's
back-pressure (451 4.3.1, docs/spool.md) is part of what gets killed: a
restart replays at most about that backlog before it is ready. One
`holdfast serve` on 127.0.0.1:<port>; every restart uses the same data
directory and port.

Load: C client threads (4; 2 under HOLDFAST_SANITIZED=1), each looping over
smtplib.LMTP connections: messages of random size (log-uniform, 200 B to
200 KB; 50 KB max under ASan), every one unique (an X-Token header, a body
generated from the token, lines starting with '.', and "END <token>" as the
last line), to one or two recipients among alice@localhost, alice+tag@localhost,
bob@localhost, Bob@LOCALHOST (one address per user per message). Every
(token, recipient address) whose own per-recipient reply after the final dot
was 250 is recorded as ACKNOWLEDGED (all per-recipient replies are read:
hflmtp.lmtp_send; smtplib.LMTP alone reads only the first). Any error: the
client drops the connection, reconnects and goes on; what was not
acknowledged may or may not be delivered.

Killer: K times (HOLDFAST_KILLS, default 20): start the server, wait for its
220 greeting, sleep uniform(0.05, 0.6) s, SIGKILL it. Every 4th round it also
kills a starting server 0-30 ms after spawn (mostly during recovery, before it
is ready), so recovery itself is interrupted; those are counted separately
and not part of K. The server must come up every time and must never die on
its own.

End: the server runs once more without a kill until every client has had at
least one message acknowledged (proves no hang after all that), the clients
stop, SIGTERM -> exit 0. Then it is started once more and left to replay the
spool: it is considered drained when neither mailbox changes and no
`event=spool` line appears for 1.5 s; a SIGTERM then must give exit 0 and
`event=stopped ... unretired=0`, and `holdfast queue list` must say the spool
is empty.

Checks:
  * every acknowledged (token, recipient) is in that recipient's mailbox
    exactly once, byte-identical to Return-Path + Delivered-To + the message;
  * every file in a mailbox is a whole message that was sent in full (it
    equals the expected bytes for its token and Delivered-To address) and
    matches the size and sha256 of its listing entry: nothing partial;
  * no token appears twice in one mailbox (exactly once through replay);
  * UIDs are distinct; `holdfast fsck` exits 0.
Printed: kills, early kills, acknowledged, unacknowledged-but-delivered
(allowed), spool replays and "already delivered" skips seen in the log.

Run:  /usr/bin/python3 tests/system/test_kill9_torture.py --holdfast build/holdfast
Long: HOLDFAST_KILLS=1000 /usr/bin/python3 tests/system/test_kill9_torture.py --holdfast build/holdfast
      (bench/kill9_torture.sh)
Other knobs: HOLDFAST_TORTURE_CLIENTS, HOLDFAST_TORTURE_SEED, HOLDFAST_TORTURE_MAX_SIZE.
"""

import collections
import math
import os
import random
import re
import smtplib
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
import hflmtp  # noqa: E402
from hfsys import check, fail, log  # noqa: E402
from hflmtp import CRLF, expected_stored  # noqa: E402

SAN = hflmtp.sanitized()
KILLS = int(os.environ.get("HOLDFAST_KILLS", "20"))
CLIENTS = int(os.environ.get("HOLDFAST_TORTURE_CLIENTS", "2" if SAN else "4"))
SEED = int(os.environ.get("HOLDFAST_TORTURE_SEED", str(int(time.time()))))
MIN_SIZE = 200
MAX_SIZE = int(os.environ.get("HOLDFAST_TORTURE_MAX_SIZE", "50000" if SAN else "200000"))
EARLY_KILL_EVERY = 4
STOP_BOUND = 15.0  # seconds from SIGTERM (no session open) to exit

# One address per user per message (holdfast files one copy per mailbox).
RCPT_SETS = [
    ("alice@localhost",),
    ("bob@localhost",),
    ("alice+tag@localhost",),
    ("alice@localhost", "bob@localhost"),
    ("Bob@LOCALHOST", "alice@localhost"),
    ("bob@localhost", "alice+tag@localhost"),
]


def user_of(addr):
    return addr.split("@")[0].split("+")[0].lower()


def make_body(tok: str, size: int) -> bytes:
    """The message for token tok, exactly `size` bytes (at least its header
    and last line), CRLF line ends, some lines starting with '.'."""
    head = (f"From: Torture <torture@example.org>\r\nTo: alice@localhost, bob@localhost\r\n"
            f"Subject: torture {tok}\r\nX-Token: {tok}\r\n\r\n").encode()
    tail = f"END {tok}\r\n".encode()
    need = size - len(head) - len(tail)
    if need <= 0:
        return head + tail
    rnd = random.Random(tok)
    hexed = rnd.randbytes(need // 2 + 1).hex().encode()[:need]
    lines = []
    pos = 0
    i = 0
    while pos < need:
        n = min(76, need - pos)
        chunk = hexed[pos:pos + n]
        if n >= 3:
            chunk = chunk[:n - 2] + CRLF
            if i % 13 == 5:
                chunk = b"." + chunk[1:]
        lines.append(chunk)
        pos += n
        i += 1
    body = head + b"".join(lines) + tail
    assert len(body) == size, (len(body), size)
    return body


TOKEN_RE = re.compile(rb"^X-Token: (T[0-9a-z]+)\r$", re.M)
DELIVERED_RE = re.compile(rb"\AReturn-Path: <[^>\r\n]*>\r\nDelivered-To: ([^\r\n]*)\r\n")


class Shared:
    def __init__(self):
        self.lock = threading.Lock()
        self.attempted = {}   # token -> (size, sender, rcpts): DATA was (to be) sent in full
        self.acked = set()    # (token, address)
        self.ack_ids = {}     # (token, address) -> holdfast's MessageId from the 250
        self.acked_at = []    # (time, token, address)
        self.replies = collections.Counter()
        self.bad_replies = []  # unexpected 5xx
        self.errors = collections.Counter()
        self.conns = 0
        self.stop = threading.Event()


def client(idx, port, sh: Shared):
    rnd = random.Random(SEED * 1000 + idx)
    conn = None
    seq = 0
    lo, hi = math.log(MIN_SIZE), math.log(MAX_SIZE)
    while not sh.stop.is_set():
        if conn is None:
            try:
                conn = smtplib.LMTP("127.0.0.1", port, timeout=20)
                code, _ = conn.ehlo("torture.test")
                if code != 250:
                    raise smtplib.SMTPException(f"LHLO {code}")
                with sh.lock:
                    sh.conns += 1
            except (OSError, smtplib.SMTPException) as e:
                with sh.lock:
                    sh.errors["connect: " + type(e).__name__] += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.01 + rnd.random() * 0.03)
                continue
        seq += 1
        tok = f"T{idx}x{seq}x{rnd.getrandbits(40):x}"
        size = int(math.exp(rnd.uniform(lo, hi)))
        rcpts = rnd.choice(RCPT_SETS)
        sender = f"client{idx}@example.org"
        body = make_body(tok, size)
        with sh.lock:
            sh.attempted[tok] = (size, sender, rcpts)
        final = {}
        try:
            rr, _ = hflmtp.lmtp_send(conn, sender, rcpts, body, final=final)
            ok = True
        except (OSError, smtplib.SMTPException) as e:
            ok = False
            err = type(e).__name__
        with sh.lock:
            for addr, (code, text) in final.items():
                sh.replies[code] += 1
                if code == 250:
                    sh.acked.add((tok, addr))
                    m = re.search(rb"> (\w+) accepted", text)
                    sh.ack_ids[(tok, addr)] = m.group(1).decode() if m else "?"
                    sh.acked_at.append((time.monotonic(), tok, addr))
                elif code is not None and code >= 500:
                    sh.bad_replies.append((tok, addr, code, text))
            if ok:
                for addr, (code, text) in rr.items():
                    if code not in (250, 251):
                        sh.replies[f"RCPT {code}"] += 1
                        if code >= 500:
                            sh.bad_replies.append((tok, addr, code, text))
            else:
                sh.errors["send: " + err] += 1
        if not ok:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
            conn = None
    if conn is not None:
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            conn.close()


def spool_segments(data):
    d = os.path.join(data, "spool")
    try:
        return sorted(n for n in os.listdir(d) if n.endswith(".seg"))
    except FileNotFoundError:
        return []


def main(args):
    t_start = time.monotonic()
    log(f"kills={KILLS} clients={CLIENTS} sizes={MIN_SIZE}..{MAX_SIZE} seed={SEED} sanitized={SAN}")
    with hfsys.TempDir(prefix="hfkill9-", keep=args.keep) as tmp:
        binary = hflmtp.private_binary(args.holdfast, tmp.sub("bin"))
        data = tmp.sub("data")
        hf = hfsys.Holdfast(binary, data)
        hf.user_add("alice", "pw-alice")
        hf.user_add("bob", "pw-bob")
        hflmtp.write_config(data, "[spool]\nsegment_bytes = 1048576\nmax_backlog_messages = 1000\n"
                                  "congestion_wait_ms = 1000\n")
        srv = hflmtp.Server(binary, data, tmp.sub("serve.log"))
        sh = Shared()
        threads = []
        rnd = random.Random(SEED)
        kills = early = 0
        problems = []  # failures reported at the end, so the mail checks still run
        try:
            srv.start()
            threads = [threading.Thread(target=client, args=(i, srv.port, sh), daemon=True) for i in range(CLIENTS)]
            for t in threads:
                t.start()
            t_kill = time.monotonic()
            last_report = t_kill
            for k in range(KILLS):
                if k > 0:
                    if k % EARLY_KILL_EVERY == 0:
                        srv.spawn()
                        time.sleep(rnd.uniform(0.0, 0.03))
                        srv.kill9()
                        early += 1
                    srv.start()
                time.sleep(rnd.uniform(0.05, 0.6))
                if not srv.alive():
                    fail(f"the server exited on its own (status {srv.proc.returncode}) in round {k}\n"
                         f"log of this run:\n{srv.log_text(since_start=True)[-6000:]}")
                srv.kill9()
                kills += 1
                if time.monotonic() - last_report > 30:
                    last_report = time.monotonic()
                    with sh.lock:
                        log(f"  ... {kills} kills, {len(sh.acked)} acknowledged, {len(sh.attempted)} attempted, "
                            f"{time.monotonic() - t_kill:.0f}s")
            kill_time = time.monotonic() - t_kill
            log(f"  {kills} kills after ready + {early} early kills in {kill_time:.1f}s")

            # A last run without a kill: every client must get a 250 again.
            srv.start()
            t_final = time.monotonic()
            deadline = t_final + 60
            while time.monotonic() < deadline:
                with sh.lock:
                    fresh = {tok.split("x")[0] for (t, tok, a) in sh.acked_at if t > t_final}
                if len(fresh) == CLIENTS and time.monotonic() - t_final > 1.0:
                    break
                if not srv.alive():
                    fail(f"the server exited on its own in the final run\n{srv.log_text(since_start=True)[-6000:]}")
                time.sleep(0.1)
            check(len(fresh) == CLIENTS,
                  f"after the kills, all {CLIENTS} clients got messages acknowledged again "
                  f"({time.monotonic() - t_final:.1f}s)", f"only {sorted(fresh)}")
            sh.stop.set()
            for t in threads:
                t.join(60)
            check(not any(t.is_alive() for t in threads), "all client threads finished")
            rec = srv.events("recovery_done", since_start=True)
            backlog = hflmtp.kv(rec[-1], "spool_unretired") if rec else "?"
            rc, took = srv.stop(timeout=300)
            check(rc == 0, f"SIGTERM with the load stopped: exit 0 ({took:.2f}s)", srv.log_tail())
            stopped = srv.events("stopped", since_start=True)
            log(f"  final run: started with spool_unretired={backlog}; "
                f"{stopped[-1].split(' info ')[-1] if stopped else '(no event=stopped)'}")
            # Spool::Stop(10 s) promises to wait at most 10 s for deliveries
            # (what is left stays durable in the spool for the next start).
            if took < STOP_BOUND:
                log(f"  ok   SIGTERM exit within {STOP_BOUND:.0f}s (the spool's 10 s delivery deadline + slack)")
            else:
                draining = srv.events("draining", since_start=True)
                late = [ln for ln in srv.grep(r"event=spool delivered", since_start=True)
                        if draining and ln[:23] > draining[-1][:23]]
                problems.append(
                    f"SIGTERM took {took:.1f}s, more than {STOP_BOUND:.0f}s: the server went on filing its whole "
                    f"delivery backlog instead of stopping after the spool's 10 s deadline "
                    f"({len(late)} deliveries after the SIGTERM; first {late[0][:23] if late else '-'}, "
                    f"last {late[-1][:23] if late else '-'}; {draining[-1] if draining else ''})")
                log(f"  FAIL {problems[-1]}")

            # Restart once and let the spool drain.
            srv.start()
            rec = srv.events("recovery_done", since_start=True)
            log(f"  restart: {rec[-1].split(' info ')[-1] if rec else '(no recovery_done)'}")
            t_drain = time.monotonic()
            last_sig, last_change = None, time.monotonic()
            # Stable = drained. The cap only guards against a hang; it allows
            # 20 deliveries a second at least (ASan builds file ~100/s).
            unretired = int(hflmtp.kv(rec[-1], "spool_unretired") or 0) if rec else 0
            drain_cap = 120 + unretired / 20
            while time.monotonic() - t_drain < drain_cap:
                sig = (len(hf.mailbox_list("alice")), len(hf.mailbox_list("bob")),
                       len(srv.grep(r"event=spool ", since_start=True)))
                if sig != last_sig:
                    last_sig, last_change = sig, time.monotonic()
                elif time.monotonic() - last_change > 1.5:
                    break
                time.sleep(0.2)
            rc, took = srv.stop()
            check(rc == 0, f"drained ({time.monotonic() - t_drain:.1f}s); SIGTERM: exit 0", srv.log_tail())
            stopped = srv.events("stopped", since_start=True)
            check(stopped and hflmtp.kv(stopped[-1], "unretired") == "0",
                  "event=stopped ... unretired=0: nothing left in the spool", "\n".join(stopped))
            q = hf.run("queue", "list", expect=None)
            qout = q.stdout.decode(errors="replace").strip()
            pending = [ln for ln in qout.splitlines() if ln.strip() and not ln.startswith("#")]
            check(q.returncode == 0 and not pending and ("spool empty" in qout or "# 0 message" in qout),
                  f"holdfast queue list: {qout.splitlines()[0] if qout else ''!r}",
                  f"exit {q.returncode}\n{qout[:2000]}\n{q.stderr.decode(errors='replace')}")
            log(f"  spool segments left: {len(spool_segments(data))}")

            # ---- verification
            log("\n== verification ==")
            with sh.lock:
                attempted = dict(sh.attempted)
                acked = set(sh.acked)
            check(not sh.bad_replies, "no 5xx reply to any valid message or recipient",
                  "\n".join(repr(x) for x in sh.bad_replies[:20]))
            present = {}  # (token, addr) -> count
            for user in ("alice", "bob"):
                listing = hf.mailbox_list(user)
                uids = [e["uid"] for e in listing]
                check(len(set(uids)) == len(uids), f"{user}: {len(listing)} messages, UIDs distinct")
                per_token = collections.Counter()
                names_by_token = collections.defaultdict(list)
                # iter_mailbox also checks each file's size and sha256 against the listing
                for e, content in hflmtp.iter_mailbox(hf, user, listing):
                    m = TOKEN_RE.search(content, 0, 2000)
                    d = DELIVERED_RE.match(content)
                    if not m or not d:
                        fail(f"{user}: {e['name']} is not a message of this test (or is damaged): {content[:300]!r}")
                    tok, addr = m.group(1).decode(), d.group(1).decode()
                    if tok not in attempted:
                        fail(f"{user}: {e['name']} carries unknown token {tok}")
                    size, sender, rcpts = attempted[tok]
                    if addr not in rcpts or user_of(addr) != user:
                        fail(f"{user}: {e['name']} (token {tok}) has Delivered-To {addr}, but was sent to {rcpts}")
                    want = expected_stored(make_body(tok, size), sender, addr)
                    if content != want:
                        fail(f"{user}: {e['name']} (token {tok}, {'acknowledged' if (tok, addr) in acked else 'not acknowledged'}) "
                             f"is not the whole message: {hflmtp.describe_diff(want, content)}")
                    per_token[tok] += 1
                    names_by_token[tok].append(f"uid {e['uid']} {e['message_id']} {e['name']}")
                    present[(tok, addr)] = present.get((tok, addr), 0) + 1
                dups = {t: n for t, n in per_token.items() if n > 1}
                check(not dups, f"{user}: no token twice (exactly once through {kills + early} crashes and replays)",
                      f"{len(dups)} duplicated tokens, e.g. {list(dups.items())[:10]}\n" +
                      "\n".join(f"  {t}: {names_by_token[t]}" for t in list(dups)[:5]))
                check(True, f"{user}: every file is a whole message that was sent in full, byte-exact")
            missing = sorted(a for a in acked if present.get(a, 0) != 1)
            if missing:
                detail = [f"{len(missing)} of {len(acked)} missing:"]
                log_lines = srv.log_lines()
                for tok, addr in missing[:10]:
                    mid = sh.ack_ids.get((tok, addr), "?")
                    detail.append(f"  token {tok} -> {addr}: 250 with MessageId {mid}; "
                                  f"{present.get((tok, addr), 0)} copies; server log lines naming it:")
                    detail += ["    " + ln for ln in log_lines if mid in ln][:12]
                detail.append(f"(server log: {srv.log_path}; keep it with --keep)")
            if missing:
                problems.insert(0, f"ACKNOWLEDGED MAIL LOST: " + "\n".join(detail))
                log(f"  FAIL all {len(acked)} acknowledged (token, recipient) pairs are in their mailboxes exactly once "
                    f"({len(missing)} missing)")
            else:
                log(f"  ok   all {len(acked)} acknowledged (token, recipient) pairs are in their mailboxes exactly once")
            unacked_delivered = sum(1 for a in present if a not in acked)
            r = hf.fsck()
            check(r.returncode == 0, "holdfast fsck: exit 0")

            log_text = srv.log_text()
            replays = [int(x) for x in re.findall(r"spool replay: (\d+) message", log_text)]
            already = len(re.findall(r"already delivered before the restart", log_text))
            failed = srv.grep(r"event=(recovery_failed|startup_failed)|failed, will retry|cannot ")
            check(not failed, "no recovery, startup or delivery failures in the server log", "\n".join(failed[:20]))
            san = srv.sanitizer_reports()
            check(not san, "no sanitizer reports in the server log", "\n".join(san[:20]))
            log("\n== summary ==")
            log(f"  kills (SIGKILL after ready): {kills}; early kills (during start-up): {early}; "
                f"server starts: {srv.starts}")
            rt = sorted(srv.ready_times)
            log(f"  start-up to 220 greeting: median {rt[len(rt) // 2]:.2f}s, max {rt[-1]:.2f}s "
                f"(recovery and spool replay run first)")
            log(f"  messages attempted: {len(attempted)}; connections: {sh.conns}")
            log(f"  acknowledged (token, recipient): {len(acked)}")
            log(f"  delivered without acknowledgement (allowed): {unacked_delivered}")
            log(f"  spool replays at start-up: {len(replays)} (messages replayed in total: {sum(replays)}); "
                f"'already delivered' skips: {already}")
            log(f"  client errors: {dict(sh.errors)}")
            log(f"  replies after DATA: {dict(sh.replies)}")
            if problems:
                fail("\n".join(problems))
        except BaseException:
            log(f"\n--- server log (last 60 lines) ---\n{srv.log_tail(60)}")
            raise
        finally:
            sh.stop.set()
            srv.kill9()
            for t in threads:
                t.join(30)
    log(f"\ntotal {time.monotonic() - t_start:.1f}s")


if __name__ == "__main__":
    hfsys.run_test(main, __doc__)
