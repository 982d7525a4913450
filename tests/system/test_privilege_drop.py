#!/usr/bin/env python3
"""Privilege drop: `holdfast serve` started as root with
`user = "<mail user>"` binds its ports as root -- here a privileged LMTP
port below 1024 -- then runs as that user for good.

Needs root (exit 77 otherwise). The mail user is hfsys.mail_user() (a
system account the tests create).

1. DATA owned by root, `user` set: serve refuses to start (exit EX_CONFIG
   78) and says to chown the data directory; nothing listens.
2. `user = "nosuchuser"`: refused, "no such user".
3. DATA chowned to the user: serve starts with LMTP on 127.0.0.1:<free port
   < 1024>; /proc/PID/status shows real, effective, saved and filesystem uid
   and gid all the user's and no supplementary root group; the log has
   event=privileges_dropped. A message over LMTP is acknowledged, filed, and
   its file belongs to the user; a POP3 login (poplib) retrieves it.
4. SIGTERM: exit 0.

Run:  /usr/bin/python3 tests/system/test_privilege_drop.py --holdfast build/holdfast
Exit: 0 pass, 1 fail, 77 skip.
"""

import os
import poplib
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
import hflmtp  # noqa: E402
from hfsys import check, log  # noqa: E402
from hflmtp import CRLF  # noqa: E402


def free_low_port():
    for port in range(900, 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    hfsys.skip("no free port below 1024")


def status_ids(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            k, _, v = ln.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                out[k] = v.split()
    return out


def main(args):
    if os.geteuid() != 0:
        hfsys.skip("needs root to test dropping it")
    user = hfsys.mail_user()
    with hfsys.TempDir(prefix="hfpriv-", keep=args.keep) as tmp:
        os.chmod(tmp.path, 0o755)
        binary = hflmtp.private_binary(args.holdfast, tmp.sub("bin"))
        os.chmod(os.path.dirname(binary), 0o755)
        data = tmp.sub("data")
        hf = hfsys.Holdfast(binary, data)
        hf.user_add("alice", "pw-alice")
        port = free_low_port()

        def serve_once(expect_fail_with):
            r = subprocess.run([binary, "--data", data, "serve", "--lmtp", f"127.0.0.1:{port}",
                                "--pop3", f"127.0.0.1:{hfsys.free_port()}", "--metrics", ""],
                               capture_output=True, timeout=30)
            err = r.stderr.decode(errors="replace")
            check(r.returncode == 78 and expect_fail_with in err,
                  f"refused with exit 78 and {expect_fail_with!r}", f"exit {r.returncode}\n{err[-800:]}")

        hflmtp.write_config(data, f'user = "{user.name}"\n')
        serve_once("chown -R")
        hflmtp.write_config(data, 'user = "nosuchuser"\n')
        serve_once("no such user")

        hflmtp.write_config(data, f'user = "{user.name}"\n')
        os.chown(data, user.uid, user.gid)
        user.chown_tree(data)
        srv = hflmtp.Server(binary, data, tmp.sub("serve.log"), port=port)
        try:
            srv.start()
            ids = status_ids(srv.proc.pid)
            check(ids["Uid"] == [str(user.uid)] * 4, f"uid real/effective/saved/fs = {user.uid} ({ids['Uid']})")
            check(ids["Gid"] == [str(user.gid)] * 4, f"gid real/effective/saved/fs = {user.gid} ({ids['Gid']})")
            check("0" not in ids.get("Groups", []), f"no root in the supplementary groups ({ids.get('Groups')})")
            check(srv.grep(r"event=privileges_dropped user="), "the log has event=privileges_dropped")
            conn = hflmtp.connect(port)
            body = b"Subject: privileges" + CRLF + CRLF + b"dropped" + CRLF
            _, final = hflmtp.lmtp_send(conn, "s@example.org", ["alice@localhost"], body)
            conn.quit()
            check(final.get("alice@localhost", (None,))[0] == 250, f"LMTP on privileged port {port}: 250")
            listing = hflmtp.wait_count(hf, "alice", 1)
            path = os.path.join(data, "mail", "alice", listing[0]["name"])
            st = os.stat(path)
            check(st.st_uid == user.uid, f"the delivered file belongs to {user.name} (uid {st.st_uid})")
            p = poplib.POP3("127.0.0.1", srv.pop3_port, timeout=30)
            p.user("alice")
            p.pass_("pw-alice")
            _, lines, _ = p.retr(1)
            p.quit()
            check(b"dropped" in lines, "POP3 as the dropped user retrieves it")
            check(srv.stop()[0] == 0, "SIGTERM: exit 0")
        except BaseException:
            log(f"\n--- server log (last 30 lines) ---\n{srv.log_tail(30)}")
            raise
        finally:
            srv.kill9()


if __name__ == "__main__":
    hfsys.run_test(main, __doc__)
