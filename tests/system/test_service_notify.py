#!/usr/bin/env python3
"""`holdfast serve` speaks systemd's notify protocol (Type=notify units,
dist/systemd/holdfast.service), checked with a socket of our own in place of
systemd's:

  * with NOTIFY_SOCKET set, READY=1 carries a STATUS and arrives once
    recovery has run and the listeners are open: LMTP answers 220 at once;
    after a kill -9 under load, a start reports READY=1 and every message
    acknowledged before the kill reaches its mailbox (the spool replay was
    queued before READY and files in the background);
  * SIGHUP sends RELOADING=1 and then READY=1 again;
  * SIGTERM sends STOPPING=1, and the server exits 0;
  * the abstract-namespace form of NOTIFY_SOCKET ("@name") works too;
  * without NOTIFY_SOCKET nothing changes (every other system test).

Run:  /usr/bin/python3 tests/system/test_service_notify.py --holdfast build/holdfast
Exit: 0 pass, 1 fail.
"""

import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
import hflmtp  # noqa: E402
from hfsys import check, fail, log  # noqa: E402


def receive(sock, want, timeout=60):
    """Datagrams until one holds `want`; returns all received."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            d = sock.recv(4096).decode()
        except socket.timeout:
            break
        got.append(d)
        if want in d.split("\n"):
            return got
    fail(f"no {want} within {timeout}s; received {got}")


def run(binary, data, tmp, addr, bind_to):
    note = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    note.bind(bind_to)
    port, pop3 = hfsys.free_port(), hfsys.free_port()
    logf = open(os.path.join(tmp, "serve.log"), "ab")
    env = dict(os.environ, NOTIFY_SOCKET=addr)
    proc = subprocess.Popen([binary, "--data", data, "serve", "--lmtp", f"127.0.0.1:{port}",
                             "--pop3", f"127.0.0.1:{pop3}"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=logf, start_new_session=True)
    try:
        got = receive(note, "READY=1")
        check(any("STATUS=" in g for g in got), f"READY=1 with a STATUS ({got[-1]!r})")
        # Ready means listening: the LMTP greeting comes at once.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            check(s.makefile("rb").readline().startswith(b"220"), "after READY=1 the LMTP port answers 220")
        os.kill(proc.pid, signal.SIGHUP)
        got = receive(note, "READY=1")
        check(any("RELOADING=1" in g for g in got), f"SIGHUP: RELOADING=1 then READY=1 ({got})")
        os.kill(proc.pid, signal.SIGTERM)
        receive(note, "STOPPING=1")
        check(proc.wait(timeout=30) == 0, "SIGTERM: STOPPING=1, exit 0")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        note.close()
        logf.close()
    return port


def main(args):
    with hfsys.TempDir(prefix="hfnotify-", keep=args.keep) as tmp:
        binary = hflmtp.private_binary(args.holdfast, tmp.sub("bin"))
        data = tmp.sub("data")
        hf = hfsys.Holdfast(binary, data)
        hf.user_add("alice", "pw-alice")
        path = tmp.sub("notify.sock")
        log("-- NOTIFY_SOCKET as a path")
        run(binary, data, tmp.path, path, path)
        log("-- NOTIFY_SOCKET in the abstract namespace")
        name = f"hfnotify-{os.getpid()}"
        run(binary, data, tmp.path, "@" + name, "\0" + name)

        # A start after kill -9: READY=1, then every acknowledged message
        # reaches the mailbox.
        srv = hflmtp.Server(binary, data, tmp.sub("serve2.log"))
        srv.start()
        conn = hflmtp.connect(srv.port)
        body = b"Subject: before the kill\r\n\r\n" + b"x" * 100000 + b"\r\n"
        acked = 0
        for _ in range(30):
            _, final = hflmtp.lmtp_send(conn, "s@example.org", ["alice@localhost"], body)
            acked += final.get("alice@localhost", (0,))[0] == 250
        srv.kill9()
        check(acked == 30, f"30 messages acknowledged before the kill ({acked})")
        note = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        note.bind(tmp.sub("notify2.sock"))
        env = dict(os.environ, NOTIFY_SOCKET=tmp.sub("notify2.sock"))
        proc = subprocess.Popen([binary, "--data", data, "serve", "--lmtp", f"127.0.0.1:{hfsys.free_port()}",
                                 "--pop3", f"127.0.0.1:{hfsys.free_port()}"], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            receive(note, "READY=1")
            listing = hf.mailbox_list("alice")
            # The replay files in the background after READY; what READY
            # promises is that nothing acknowledged is lost: wait for all 30.
            deadline = time.monotonic() + 20
            while len(listing) < 30 and time.monotonic() < deadline:
                time.sleep(0.1)
                listing = hf.mailbox_list("alice")
            check(len(listing) == 30, f"after READY=1 every acknowledged message reaches the mailbox ({len(listing)})")
            os.kill(proc.pid, signal.SIGTERM)
            check(proc.wait(timeout=30) == 0, "SIGTERM: exit 0")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            note.close()


if __name__ == "__main__":
    hfsys.run_test(main, __doc__)
