#!/usr/bin/env python3
"""kill -9 during POP3 QUIT (the UPDATE state) on the real server.

Set-up: user alice with M messages (HOLDFAST_POP3_KILL_MESSAGES, default 3000;
1000 under ASan) delivered over LMTP, each unique (an X-Token header) and
remembered byte for byte.

Rounds (HOLDFAST_POP3_KILLS, default 20): start `holdfast serve`; log in with
poplib; DELE a random 1-150 of the messages present (at most a 1/(rounds
left + 1) share, so the mailbox never runs dry); send QUIT without
waiting; SIGKILL the server 0-40 ms later (uniform; a round in five kills
before QUIT's reply could possibly arrive, one in five lets the reply come
first). Then restart and check, over a fresh login and the Maildir itself:

  * every message never marked for deletion is present exactly once and
    byte-exact (RETR equals what was delivered, in CRLF form);
  * a message marked in a round whose QUIT got +OK is gone;
  * a message marked in a killed round is either present and whole or gone;
    once gone (in any check) it never comes back;
  * nothing else changed: no foreign, partial or duplicated message, and
    each survivor keeps its UIDL (UIDL -> message is read once at the start;
    every round checks presence by UIDL for all messages and the bytes by
    RETR for the marked survivors and 200 others; the last round RETRs all);
  * `holdfast fsck` exits 0 at the end, and the log has no recovery failure.

Run:  /usr/bin/python3 tests/system/test_pop3_kill9.py --holdfast build/holdfast
Exit: 0 pass, 1 fail.
"""

import os
import poplib
import random
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
import hflmtp  # noqa: E402
from hfsys import check, fail, log, pop3_retr_raw, pop3_uidl, pop3_wire_form  # noqa: E402

SAN = hflmtp.sanitized()
MESSAGES = int(os.environ.get("HOLDFAST_POP3_KILL_MESSAGES", "1000" if SAN else "3000"))
KILLS = int(os.environ.get("HOLDFAST_POP3_KILLS", "20"))
SEED = int(os.environ.get("HOLDFAST_TORTURE_SEED", str(int(time.time()))))
PW = "alice-pw"
SENDER = "s@example.org"


def body(i):
    tok = f"K{i:06d}x{random.getrandbits(32):08x}"
    return tok, (f"Subject: {tok}\r\nX-Token: {tok}\r\n\r\n" + f"line {tok}\r\n" * (1 + i % 40) +
                 ".dot line\r\n").encode()


def fill(srv, n):
    """n messages over 4 LMTP connections; returns {token: stored bytes}."""
    out = {}
    lock = threading.Lock()
    errors = []

    def worker(k):
        try:
            conn = hflmtp.connect(srv.port)
            for i in range(k, n, 4):
                tok, msg = body(i)
                _, final = hflmtp.lmtp_send(conn, SENDER, ["alice@localhost"], msg)
                if final.get("alice@localhost", (0,))[0] != 250:
                    errors.append(f"{tok}: {final}")
                    continue
                with lock:
                    out[tok] = hflmtp.expected_stored(msg, SENDER, "alice@localhost")
            conn.quit()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        fail(f"filling the mailbox: {errors[:5]}")
    return out


def token_of(stored: bytes):
    i = stored.find(b"X-Token: ")
    return stored[i + 9:stored.find(b"\r\n", i)].decode() if i >= 0 else None


def main(args):
    rnd = random.Random(SEED)
    random.seed(SEED)
    log(f"messages={MESSAGES} kills={KILLS} seed={SEED} sanitized={SAN}")
    with hfsys.TempDir(prefix="hfpop3k-", keep=args.keep) as tmp:
        binary = hflmtp.private_binary(args.holdfast, tmp.sub("bin"))
        data = tmp.sub("data")
        hf = hfsys.Holdfast(binary, data)
        hf.run("user", "add", "alice", "--password-stdin", input=(PW + "\n").encode())
        srv = hflmtp.Server(binary, data, tmp.sub("serve.log"))
        try:
            srv.start()
            t0 = time.monotonic()
            want = fill(srv, MESSAGES)
            hflmtp.wait_count(hf, "alice", MESSAGES, timeout=120)
            log(f"  {len(want)} messages delivered in {time.monotonic() - t0:.1f}s")
            # UIDL (the MessageId) -> token, from one reading of the mailbox.
            token_by_uidl = {e["message_id"]: token_of(c) for (e, c) in hflmtp.read_mailbox(hf, "alice")}
            never_marked = set(want)
            gone_for_good = set()   # confirmed absent once, or deleted by an acknowledged QUIT
            maybe_gone = set()      # marked in a killed round
            acked_rounds = killed_rounds = 0
            for k in range(KILLS):
                if not srv.alive():
                    srv.start()
                p = poplib.POP3("127.0.0.1", srv.pop3_port, timeout=60)
                p.user("alice")
                p.pass_(PW)
                uidl = pop3_uidl(p)
                present = {n: token_by_uidl[u] for n, u in uidl.items()}
                # At most a 1/(rounds left + 1) share, so the mailbox never runs dry.
                hi = max(1, min(150, len(present) // (KILLS - k + 1)))
                marked = rnd.sample(sorted(present), rnd.randint(1, min(hi, len(present))))
                for n in marked:
                    p.dele(n)
                marked_tokens = {present[n] for n in marked}
                never_marked -= marked_tokens
                mode = rnd.random()
                p._putcmd("QUIT")
                if mode < 0.2:
                    delay = 0.0
                elif mode < 0.4:
                    delay = None  # let the reply come
                else:
                    delay = rnd.uniform(0, 0.04)
                if delay is None:
                    reply = p._getresp()
                    check(reply.startswith(b"+OK"), f"round {k}: QUIT answered {reply!r}")
                    gone_for_good |= marked_tokens
                    acked_rounds += 1
                    srv.kill9()
                else:
                    time.sleep(delay)
                    srv.kill9()
                    maybe_gone |= marked_tokens
                    killed_rounds += 1
                p.close()
                srv.start()
                # Check through the server (RETR) and the listing.
                p = poplib.POP3("127.0.0.1", srv.pop3_port, timeout=60)
                p.user("alice")
                p.pass_(PW)
                uidl = pop3_uidl(p)
                tokens = {}
                problems = []
                # Presence from UIDL for all; bytes by RETR for the messages
                # marked in this round that survived and 200 others (all of
                # them in the last round).
                last = k == KILLS - 1
                sample = set(rnd.sample(sorted(uidl), min(200, len(uidl))))
                for n, u in uidl.items():
                    tok = token_by_uidl.get(u)
                    if tok is None:
                        problems.append(f"message {n} ({u}) is not one that was delivered")
                        continue
                    if tok in tokens:
                        problems.append(f"{tok} twice")
                    tokens[tok] = u
                    if not (last or n in sample or tok in marked_tokens):
                        continue
                    raw = hflmtp.strip_received(pop3_retr_raw(p, n), u)  # compared without holdfast's Received:
                    if token_of(raw) != tok:
                        problems.append(f"message {n}: UIDL {u} but the content of {token_of(raw)}")
                    tok = token_of(raw)
                    if tok not in want:
                        problems.append(f"message {n} ({u}) is not one that was delivered")
                        continue
                    if raw != pop3_wire_form(want[tok]):
                        problems.append(f"message {n} ({tok}) is not byte-exact")
                p.quit()
                back = gone_for_good & set(tokens)
                lost = never_marked - set(tokens)
                check(not problems and not back and not lost,
                      f"round {k} ({'QUIT acknowledged' if delay is None else f'killed {delay * 1000:.0f} ms after QUIT'}, "
                      f"{len(marked)} marked): {len(tokens)} present, none lost, none back, "
                      f"{'all' if last else 'sampled'} byte-exact",
                      "\n".join(problems[:5] + [f"came back: {sorted(back)[:5]}", f"lost: {sorted(lost)[:5]}"]))
                # Whatever is absent now stays absent for ever.
                gone_for_good |= set(want) - set(tokens)
            check(srv.stop()[0] == 0, "SIGTERM at the end: exit 0")
            hf.fsck("alice")
            log("  fsck: clean")
            bad = [ln for ln in srv.log_lines() if "recovery_failed" in ln or " error " in ln] + srv.sanitizer_reports()
            check(not bad, "no recovery failure or error in the server log", "\n".join(bad[:10]))
            log(f"\n== summary ==\n  rounds: {KILLS} ({acked_rounds} with QUIT acknowledged before the kill, "
                f"{killed_rounds} killed during QUIT); messages: {MESSAGES}; gone: {len(gone_for_good)}; "
                f"marked in killed rounds: {len(maybe_gone)}")
        except BaseException:
            log(f"\n--- server log (last 30 lines) ---\n{srv.log_tail(30)}")
            raise
        finally:
            srv.kill9()


if __name__ == "__main__":
    hfsys.run_test(main, __doc__)
