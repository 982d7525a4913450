#!/usr/bin/env python3
"""Socket activation: `holdfast serve` started by systemd's own
`systemd-socket-activate` (Debian package systemd: the same LISTEN_FDS /
LISTEN_FDNAMES protocol as a .socket unit, without a running systemd):

  1. Sockets lmtp (TCP), lmtp (UNIX), pop3 and metrics, opened by
     systemd-socket-activate, which starts holdfast at the first connection:
     a message over the TCP socket and one over the UNIX socket (Python
     smtplib.LMTP) both get 250 and are retrieved byte-exact over the pop3
     socket (poplib); /healthz answers 200 on the metrics socket; the log
     says each listener was activated (fd=...), and the configured
     addresses (lmtp.listen etc.) were not opened. SIGTERM: exit 0.
  2. A socket named something holdfast does not know: the server refuses
     to start (exit 69, EX_UNAVAILABLE) and names the descriptor and the
     names it accepts.

Run:  /usr/bin/python3 tests/system/test_socket_activation.py --holdfast build/holdfast
Exit: 0 pass, 1 fail, 77 skipped (no systemd-socket-activate).
"""

import http.client
import os
import poplib
import signal
import smtplib
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
import hflmtp  # noqa: E402
from hfsys import check, log  # noqa: E402
from hflmtp import CRLF  # noqa: E402

ACTIVATE = "/usr/bin/systemd-socket-activate"


def wait_listening(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def main(args):
    if not os.access(ACTIVATE, os.X_OK):
        hfsys.skip(f"{ACTIVATE} is not installed (Debian package systemd)")
    with hfsys.TempDir(prefix="hfsa-", keep=args.keep) as tmp:
        binary = hflmtp.private_binary(args.holdfast, tmp.sub("bin"))
        data = tmp.sub("data")
        hf = hfsys.Holdfast(binary, data)
        hf.user_add("alice", "pw-alice")
        unused = hfsys.free_port()
        # The configured listeners must not be used under activation.
        hflmtp.write_config(data, f'[lmtp]\nlisten = "127.0.0.1:{unused}"\n[pop3]\nlisten = "127.0.0.1:{unused}"\n')
        lmtp_port, pop3_port, metrics_port = hfsys.free_port(), hfsys.free_port(), hfsys.free_port()
        sock_path = tmp.sub("lmtp.sock")
        log_path = tmp.sub("serve.log")
        cmd = [ACTIVATE, "-l", f"127.0.0.1:{lmtp_port}", "-l", sock_path, "-l", f"127.0.0.1:{pop3_port}",
               "-l", f"127.0.0.1:{metrics_port}", "--fdname=lmtp:lmtp:pop3:metrics",
               binary, "--data", data, "serve"]
        with open(log_path, "wb") as lf:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=lf,
                                    start_new_session=True)
        try:
            check(wait_listening(lmtp_port), "systemd-socket-activate listens on the LMTP port")
            bodies = []
            for how in ("tcp", "unix"):
                body = (b"Subject: activated over " + how.encode() + CRLF + b"Message-ID: <sa-" + how.encode() +
                        b"@test>" + CRLF + CRLF + b"hello " + how.encode() + CRLF)
                if how == "tcp":
                    conn = hflmtp.connect(lmtp_port)
                else:
                    conn = smtplib.LMTP(sock_path, timeout=30)
                    conn.ehlo("client.test")  # LHLO
                rcpts, final = hflmtp.lmtp_send(conn, "s@example.org", ["alice@localhost"], body)
                conn.quit()
                check(final.get("alice@localhost", (0,))[0] == 250, f"250 over the activated {how} LMTP socket",
                      f"{rcpts} {final}")
                bodies.append(hflmtp.expected_stored(body, "s@example.org", "alice@localhost"))
            hflmtp.wait_count(hf, "alice", 2)
            p = poplib.POP3("127.0.0.1", pop3_port, timeout=30)
            p.user("alice")
            p.pass_("pw-alice")
            got = [hflmtp.strip_received(hfsys.pop3_retr_raw(p, n)) for n in (1, 2)]
            p.quit()
            check(sorted(got) == sorted(hfsys.pop3_wire_form(b) for b in bodies),
                  "both retrieved byte-exact over the activated pop3 socket")
            c = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=10)
            c.request("GET", "/healthz")
            r = c.getresponse()
            check(r.status == 200 and r.read().startswith(b"ready"), "/healthz 200 on the activated metrics socket")
            c.close()
            with open(log_path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            check(text.count("event=listening protocol=lmtp activated=yes") == 2 and
                  "event=listening protocol=pop3 activated=yes" in text,
                  "the log names the activated listeners", text[-2000:])
            check(f":{unused}" not in text and not wait_listening(unused, timeout=0.5),
                  "the configured addresses were not opened")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                rc = proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
        check(rc == 0, "SIGTERM: exit 0", str(rc))

        bad_port = hfsys.free_port()
        with open(log_path, "wb") as lf:
            proc = subprocess.Popen([ACTIVATE, "-l", f"127.0.0.1:{bad_port}", "--fdname=imap", binary, "--data",
                                     data, "serve"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=lf, start_new_session=True)
        try:
            check(wait_listening(bad_port), "systemd-socket-activate listens")
            rc = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        with open(log_path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        check(rc == 69 and "descriptor 3 is named 'imap'" in text and "lmtp, pop3, pop3s or metrics" in text,
              "an unknown socket name: exit 69 with a clear reason", f"rc={rc}\n{text[-1000:]}")
        log("socket activation checked")


if __name__ == "__main__":
    hfsys.run_test(main, __doc__)
