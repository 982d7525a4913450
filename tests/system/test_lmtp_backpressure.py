#!/usr/bin/env python3
"""Back-pressure: when filing into mailboxes lags, LMTP turns mail away with
451 4.3.1 instead of letting the in-memory backlog grow without bound, and
nothing acknowledged is lost on the way.

Set-up: users alice and bob; DATA/holdfast.toml with
    [spool] max_backlog_messages = 2, congestion_wait_ms = 400
and DATA/mail/alice created as a regular FILE, so holdfast cannot file
alice's mail (each attempt fails and waits for its retry): alice's messages
stay in the backlog.

1. Three messages to alice, one per transaction (smtplib.LMTP): each gets
   250 (the backlog goes 0 -> 1 -> 2 -> 3; a message waits only while the
   backlog is ABOVE the bound when it arrives: 3 > 2).
2. A fourth message, to alice and bob: after about congestion_wait_ms each
   recipient gets `451 4.3.1`; the log has `event=congested` and
   `event=congestion_refused`; bob's mailbox stays empty (nothing of the
   refused message is stored).
3. The file is removed; SIGTERM (exit 0, the three stay in the spool); a new
   start replays them into alice's mailbox (`event=uncongested` once the
   backlog is below the bound), then the fourth message is sent again and
   gets 250 for both recipients.
4. Checks: alice has exactly the four messages, each once and byte-exact;
   bob has the fourth once; `holdfast queue list` shows nothing pending after
   a clean stop; `holdfast fsck` passes.

Run:  /usr/bin/python3 tests/system/test_lmtp_backpressure.py --holdfast build/holdfast
Exit: 0 pass, 1 fail.
"""

import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
import hflmtp  # noqa: E402
from hfsys import check, log  # noqa: E402
from hflmtp import CRLF, expected_stored, read_mailbox  # noqa: E402

SENDER = "sender@example.org"
WAIT_MS = 400


def body(n):
    tok = f"BP-{os.getpid()}-{n}".encode()
    return tok, (b"Subject: back-pressure " + tok + CRLF + b"X-Token: " + tok + CRLF + CRLF +
                 b"message " + tok + CRLF)


def send(srv, rcpts, msg):
    conn = hflmtp.connect(srv.port)
    try:
        t0 = time.monotonic()
        rcpt_replies, final = hflmtp.lmtp_send(conn, SENDER, rcpts, msg)
        took = time.monotonic() - t0
        conn.quit()
    finally:
        conn.close()
    return rcpt_replies, final, took


def main(args):
    with hfsys.TempDir(prefix="hfbp-", keep=args.keep) as tmp:
        binary = hflmtp.private_binary(args.holdfast, tmp.sub("bin"))
        data = tmp.sub("data")
        hf = hfsys.Holdfast(binary, data)
        for u in ("alice", "bob"):
            hf.user_add(u, f"pw-{u}")
        hflmtp.write_config(data, f"[spool]\nmax_backlog_messages = 2\ncongestion_wait_ms = {WAIT_MS}\n")
        blocker = os.path.join(data, "mail", "alice")
        shutil.rmtree(blocker)  # `user add` made it a Maildir
        with open(blocker, "w") as f:
            f.write("not a Maildir: holdfast cannot file alice's mail\n")
        srv = hflmtp.Server(binary, data, tmp.sub("serve.log"))
        try:
            srv.start()
            sent = {}
            for n in (1, 2, 3):
                tok, msg = body(n)
                _, final, _ = send(srv, ["alice@localhost"], msg)
                code = final.get("alice@localhost", (None, b""))[0]
                check(code == 250, f"message {n} to alice while her mailbox is blocked: 250 (got {final})")
                sent[tok] = msg
            tok4, msg4 = body(4)
            _, final, took = send(srv, ["alice@localhost", "bob@localhost"], msg4)
            for r in ("alice@localhost", "bob@localhost"):
                code, text = final.get(r, (None, b""))
                check(code == 451 and text.startswith(b"4.3.1"),
                      f"backlog 3 > 2: {r} gets 451 4.3.1 ({code} {text.decode(errors='replace')})")
            check(took >= WAIT_MS / 1000 * 0.9,
                  f"the refused message waited congestion_wait_ms first ({took:.2f}s >= {WAIT_MS} ms)")
            check(srv.events("congested"), "the log has event=congested")
            check(srv.events("congestion_refused"), "the log has event=congestion_refused")
            time.sleep(0.5)
            check(hf.mailbox_list("bob") == [], "nothing of the refused message reached bob")

            os.unlink(blocker)
            check(srv.stop()[0] == 0, "SIGTERM with a blocked backlog: exit 0")
            srv.start()
            msgs = hflmtp.wait_for(hf, "alice", lambda m: len(m) >= 3)
            check(len(msgs) == 3, f"after a restart the 3 acknowledged messages are replayed to alice ({len(msgs)})")
            deadline = time.monotonic() + 10
            while not srv.events("uncongested", since_start=True) and time.monotonic() < deadline:
                time.sleep(0.05)
            _, final, _ = send(srv, ["alice@localhost", "bob@localhost"], msg4)
            check(all(final.get(r, (0,))[0] == 250 for r in ("alice@localhost", "bob@localhost")),
                  f"the refused message sent again: 250 for both ({final})")
            sent[tok4] = msg4
            alice = hflmtp.wait_for(hf, "alice", lambda m: len(m) >= 4)
            bob = hflmtp.wait_for(hf, "bob", lambda m: len(m) >= 1)
            check(srv.stop()[0] == 0, "SIGTERM: exit 0")

            for tok, msg in sent.items():
                copies = [c for (_, c) in alice if tok in c]
                check(len(copies) == 1 and copies[0] == expected_stored(msg, SENDER, "alice@localhost"),
                      f"alice has {tok.decode()} exactly once, byte-exact")
            check(len(alice) == 4, f"alice has exactly 4 messages ({len(alice)})")
            check(len(bob) == 1 and bob[0][1] == expected_stored(msg4, SENDER, "bob@localhost"),
                  "bob has the fourth message once, byte-exact")
            q = hf.run("queue", "list").stdout.decode()
            check(q.startswith("# 0 message(s)"), f"queue list shows nothing pending: {q.strip()!r}")
            hf.fsck("alice", "bob")
            log("fsck: clean")
            bad = [ln for ln in srv.log_lines() if " error " in ln] + srv.sanitizer_reports()
            check(not bad, "no error lines or sanitizer reports in the server log", "\n".join(bad[:20]))
        except BaseException:
            log(f"\n--- server log (last 40 lines) ---\n{srv.log_tail(40)}")
            raise
        finally:
            srv.kill9()


if __name__ == "__main__":
    hfsys.run_test(main, __doc__)
