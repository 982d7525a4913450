#!/usr/bin/env python3
"""SIGHUP in a loop while POP3 clients log in: a reload replaces
the whole configuration while logins on the daemon's thread pool are reading
it. Each session and each login must work on one snapshot, old or new, and
nothing may crash, hang or mix the two. (Before the configuration became an
immutable snapshot, a reload move-assigned the object a login was reading:
a data race that ThreadSanitizer reports and that could hand a login a torn
hostname or limits.)

Set-up: users u0..u{CLIENTS-1} (a POP3 maildrop takes one session at a
time) with one message each (LMTP, smtplib.LMTP); DATA/holdfast.toml
alternates between two versions, A and B, which differ in everything a POP3
login and session read: hostname (a.example / b.example, in the greeting and
the sign-off), pop3.auth_cache_ttl_ms (0 / 60000: a login verifies the hash
each time, or may skip it), pop3.idle_timeout_ms and the log level.

Load: CLIENTS poplib clients (default 4) each log in LOGINS times (default
60; HOLDFAST_RELOAD_LOGINS) -- USER/PASS, STAT, QUIT -- while one thread
rewrites the file (write + rename, so a reload never reads half a file) and
sends SIGHUP every 5 ms until the clients are done.

Checks: every login succeeds and STAT says 1 message; each greeting and each
sign-off names a.example or b.example whole; the server logged at least 20
`event=reloaded` and no `reload_failed`; it is the same process throughout,
its log has no sanitizer report, and SIGTERM ends it with exit 0.

Run:  /usr/bin/python3 tests/system/test_reload_during_logins.py --holdfast build/holdfast
Exit: 0 pass, 1 fail.
"""

import os
import poplib
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
import hflmtp  # noqa: E402
from hfsys import check, log  # noqa: E402

PASSWORD = "alice-pw"
VERSIONS = [
    'hostname = "a.example"\n[pop3]\nauth_cache_ttl_ms = 0\nidle_timeout_ms = 600000\n[log]\nlevel = "info"\n',
    'hostname = "b.example"\n[pop3]\nauth_cache_ttl_ms = 60000\nidle_timeout_ms = 300000\n[log]\nlevel = "debug"\n',
]
NAMES = re.compile(rb"^\+OK (a\.example|b\.example) POP3 holdfast (ready|signing off)")


def write_atomically(data_dir, text):
    path = os.path.join(data_dir, "holdfast.toml")
    with open(path + ".new", "w", encoding="utf-8") as f:
        f.write(text)
    os.rename(path + ".new", path)


def main(args):
    clients = int(os.environ.get("HOLDFAST_RELOAD_CLIENTS", "4"))
    logins = int(os.environ.get("HOLDFAST_RELOAD_LOGINS", "60"))
    with hfsys.TempDir(prefix="hfrl-", keep=args.keep) as tmp:
        binary = hflmtp.private_binary(args.holdfast, tmp.sub("bin"))
        data = tmp.sub("data")
        hf = hfsys.Holdfast(binary, data)
        users = [f"u{n}" for n in range(clients)]
        for u in users:
            hf.user_add(u, PASSWORD)
        write_atomically(data, VERSIONS[0])
        srv = hflmtp.Server(binary, data, tmp.sub("serve.log"))
        try:
            srv.start()
            pid = srv.proc.pid
            conn = hflmtp.connect(srv.port)
            rcpts = [f"{u}@localhost" for u in users]
            _, final = hflmtp.lmtp_send(conn, "sender@example.org", rcpts, b"Subject: reload\r\n\r\nbody\r\n")
            conn.quit()
            check(all(final.get(r, (None,))[0] == 250 for r in rcpts), "the message is accepted for every user")
            deadline = time.monotonic() + 30
            while any(len(hf.mailbox_list(u)) < 1 for u in users) and time.monotonic() < deadline:
                time.sleep(0.05)

            errors = []
            done = threading.Event()

            def client(n):
                for i in range(logins):
                    try:
                        p = poplib.POP3("127.0.0.1", srv.pop3_port, timeout=60)
                        greeting = p.getwelcome()
                        p.user(users[n])
                        p.pass_(PASSWORD)
                        count, _ = p.stat()
                        bye = p.quit()
                        if count != 1:
                            errors.append(f"client {n} login {i}: STAT says {count}")
                        for line in (greeting, bye):
                            if not NAMES.match(line):
                                errors.append(f"client {n} login {i}: {line!r}")
                    except Exception as e:  # noqa: BLE001 -- every failure is reported
                        errors.append(f"client {n} login {i}: {e!r}")

            def reloader():
                k = 0
                while not done.is_set():
                    k += 1
                    write_atomically(data, VERSIONS[k % 2])
                    srv.signal(signal.SIGHUP)
                    time.sleep(0.005)

            hup = threading.Thread(target=reloader)
            hup.start()
            t0 = time.monotonic()
            threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            done.set()
            hup.join()
            log(f"{clients * logins} logins in {time.monotonic() - t0:.1f}s under SIGHUP every 5 ms")
            check(not errors, f"all {clients * logins} logins succeeded with whole greetings", "\n".join(errors[:5]))
            reloads = len(srv.grep(r"event=reloaded"))
            log(f"reloads: {reloads}")
            check(reloads >= 20, f"the server reloaded at least 20 times ({reloads})")
            check(not srv.grep(r"event=reload_failed"), "no reload failed")
            check(srv.alive() and srv.proc.pid == pid, "the daemon never went down")
            check(srv.stop()[0] == 0, "SIGTERM: exit 0")
            check(not srv.sanitizer_reports(), "no sanitizer reports in the server log")
        except BaseException:
            log(f"\n--- server log (last 40 lines) ---\n{srv.log_tail(40)}")
            raise
        finally:
            srv.kill9()


if __name__ == "__main__":
    hfsys.run_test(main, __doc__)
