#!/usr/bin/env python3
"""A real Postfix relays mail to `holdfast serve` over LMTP.

A private Postfix 3.x instance: its own config directory (postfix -c DIR),
queue_directory, data_directory and log file (maillog_file) in a temp dir;
one smtpd on 127.0.0.1:<free port> (master.cf), every service chroot = n;
mydestination empty; example.test is a relay domain whose transport is
`lmtp:inet:127.0.0.1:<holdfast port>`; no DNS (smtp_dns_support_level =
disabled, lmtp/smtp_host_lookup = native). holdfast delivers example.test by
local part (DATA/holdfast.toml: [lmtp] local_domains = ["example.test",
"localhost"]), users alice and bob.

Python smtplib.SMTP submits to Postfix's smtpd:
  1. one message to alice@example.test;
  2. one message to alice@example.test and bob@example.test (Postfix puts both
     in one LMTP transaction and needs one reply per recipient);
  3. a 1 MB message to bob@example.test.
Within 60 s (postqueue -f flushes if it takes longer than 10 s) each copy is
in its mailbox exactly once and is, byte for byte,
    Return-Path: <sender> CRLF Delivered-To: <rcpt> CRLF Received: (Postfix's,
    folded) + the message as submitted;
Postfix's log says status=sent with holdfast's reply, and the MessageId in that
reply is the one `mailbox list` shows. Postfix's queue is empty afterwards,
holdfast exits 0 on SIGTERM with nothing left in its spool, fsck is clean.
Postfix is stopped with `postfix -c DIR stop` in any case, and any process of
this instance still there (found by MAIL_CONFIG=DIR in its environment) is
killed by pid.

Run:  /usr/bin/python3 tests/system/test_postfix_relay.py --holdfast build/holdfast
Exit: 0 pass, 1 fail, 77 skip (Postfix not installed, or not running as root:
Postfix's master must start as root).
"""

import grp
import os
import pwd
import re
import signal
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
import hflmtp  # noqa: E402
from hfsys import check, fail, log  # noqa: E402
from hflmtp import read_mailbox, with_token  # noqa: E402

POSTFIX = "/usr/sbin/postfix"
POSTQUEUE = "/usr/sbin/postqueue"
POSTCONF = "/usr/sbin/postconf"
MASTER = "/usr/lib/postfix/sbin/master"
SENDER = "bob@example.org"
TIMEOUT = 60.0
MYHOSTNAME = "pf-test.example.net"

MASTER_CF = """# Private Postfix for holdfast's system tests; generated. Every service chroot = n.
# service  type  private unpriv  chroot  wakeup  maxproc command
{smtpd_addr} inet n       -       n       -       -       smtpd
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
local      unix  -       n       n       -       -       local
lmtp       unix  -       -       n       -       -       lmtp
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """# Private Postfix for holdfast's system tests; generated.
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = {myhostname}
mydomain = example.net
myorigin = $myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# example.test is relayed to holdfast over LMTP.
relay_domains = example.test
relay_transport = lmtp:inet:127.0.0.1:{lmtp_port}
default_transport = error:this test Postfix relays only example.test
smtpd_relay_restrictions = permit_mynetworks, permit_auth_destination, reject
smtpd_recipient_restrictions =
# No DNS anywhere.
smtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtputf8_enable = no
# Log to a file of our own (postlogd), not syslog.
maillog_file = {maillog}
maillog_file_prefixes = {prefix}
# Retry quickly if holdfast were not reachable for a moment.
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 10s
"""


def running(pid):
    """True for a live process (a zombie waiting to be reaped is not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")


class Postfix:
    def __init__(self, workdir, smtpd_port, lmtp_port):
        self.dir = workdir
        self.conf = os.path.join(workdir, "conf")
        self.queue = os.path.join(workdir, "queue")
        self.data = os.path.join(workdir, "data")
        self.maillog = os.path.join(workdir, "postfix.log")
        self.port = smtpd_port
        self.lmtp_port = lmtp_port
        self.started = False

    def setup(self):
        pf = pwd.getpwnam("postfix")
        for d in (self.dir, self.conf, self.queue):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        os.makedirs(self.data, exist_ok=True)
        os.chown(self.data, pf.pw_uid, pf.pw_gid)
        os.chmod(self.data, 0o700)
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(queue=self.queue, data=self.data, myhostname=MYHOSTNAME,
                                   lmtp_port=self.lmtp_port, maillog=self.maillog, prefix=self.dir))
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(smtpd_addr=f"127.0.0.1:{self.port}"))

    def run(self, *args, timeout=60):
        cmd = [POSTFIX, "-c", self.conf] + list(args)
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            fail(f"timed out: {' '.join(cmd)}")

    def log_text(self):
        try:
            with open(self.maillog, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def start(self):
        r = self.run("check")
        if r.returncode != 0:
            fail(f"postfix -c {self.conf} check: exit {r.returncode}\n{r.stdout}{r.stderr}\n{self.log_text()}")
        self.started = True  # from here on, stop() must run
        r = self.run("start")
        if r.returncode != 0:
            fail(f"postfix -c {self.conf} start: exit {r.returncode}\n{r.stdout}{r.stderr}\n{self.log_text()}")
        if not hfsys.wait_greeting(self.port, prefix=b"220", timeout=30):
            fail(f"Postfix smtpd on 127.0.0.1:{self.port} did not greet within 30 s\n{self.log_text()}")

    def master_pid(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def own_pids(self):
        """Processes of this instance: MAIL_CONFIG=<our conf dir> in their environment."""
        want = b"MAIL_CONFIG=" + self.conf.encode()
        pids = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if want in env and running(int(name)):
                pids.append(int(name))
        return pids

    def flush(self):
        subprocess.run([POSTQUEUE, "-c", self.conf, "-f"], capture_output=True, timeout=30)

    def queue_listing(self):
        r = subprocess.run([POSTQUEUE, "-c", self.conf, "-p"], capture_output=True, text=True, timeout=30)
        return r.stdout.strip()

    def stop(self):
        """postfix stop; then make sure nothing of this instance is left."""
        if not self.started:
            return
        self.started = False
        master = self.master_pid()
        r = self.run("stop")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.own_pids():
            time.sleep(0.1)
        left = self.own_pids()
        if master and master not in left and running(master):
            left.append(master)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if left:
            log(f"  note postfix stop (exit {r.returncode}) left pids {left}; killed them with SIGKILL")
        else:
            log(f"  ok   postfix -c DIR stop: exit {r.returncode}, no process of this instance remains")


def submit(port, rcpts, msg):
    c = smtplib.SMTP("127.0.0.1", port, timeout=60)
    try:
        c.ehlo("submitter.test")
        refused = c.sendmail(SENDER, rcpts, msg)
        c.quit()
    except smtplib.SMTPException as e:
        fail(f"Postfix refused the submission to {rcpts}: {e!r}")
    check(refused == {}, f"Postfix smtpd accepted the message for {', '.join(rcpts)}", repr(refused))


def make_msg(tok: bytes, to: str, body_extra=b""):
    return (b"From: Bob <bob@example.org>\r\nTo: " + to.encode() + b"\r\n"
            b"Subject: relayed " + tok + b"\r\nDate: Mon, 23 Nov 2026 12:00:00 +0000\r\n"
            b"Message-ID: <" + tok + b"@example.org>\r\nX-Token: " + tok + b"\r\n\r\n"
            b"Relayed through Postfix.\r\n.a line with a leading dot\r\n" + body_extra)


RECEIVED = re.compile(rb"\AReceived: from [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*")


def check_copy(content: bytes, msg: bytes, rcpt: str, what):
    head = b"Return-Path: <" + SENDER.encode() + b">\r\nDelivered-To: " + rcpt.encode() + b"\r\n"
    check(content.startswith(head), f"{what}: starts with Return-Path <{SENDER}> and Delivered-To {rcpt}",
          repr(content[:200]))
    rest = content[len(head):]
    m = RECEIVED.match(rest)
    check(m is not None and b"by " + MYHOSTNAME.encode() + b" (Postfix)" in m.group(0),
          f"{what}: then Postfix's Received header (by {MYHOSTNAME} (Postfix))", repr(rest[:400]))
    check(rest[m.end():] == msg, f"{what}: then the submitted message, byte for byte ({len(msg)} bytes)",
          hflmtp.describe_diff(msg, rest[m.end():]))


def wait_token(hf, pf, user, tok, deadline):
    next_flush = time.monotonic() + 10
    while True:
        msgs = read_mailbox(hf, user)
        found = with_token(msgs, tok)
        if found:
            return msgs, found
        now = time.monotonic()
        if now > deadline:
            fail(f"{tok.decode()} did not reach {user} within {TIMEOUT:.0f}s\n"
                 f"postfix queue:\n{pf.queue_listing()}\npostfix log:\n{pf.log_text()[-4000:]}")
        if now > next_flush:
            log("  note flushing Postfix's queue (postqueue -f)")
            pf.flush()
            next_flush = now + 10
        time.sleep(0.2)


def main(args):
    missing = [p for p in (POSTFIX, POSTQUEUE, POSTCONF, MASTER) if not os.path.exists(p)]
    if missing:
        hfsys.skip(f"Postfix is not installed (missing {', '.join(missing)}; scripts/bootstrap.sh installs it)")
    if os.geteuid() != 0:
        hfsys.skip("Postfix's master must be started as root (postfix: the command is reserved for the superuser)")
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError as e:
        hfsys.skip(f"the Debian postfix package's accounts are missing: {e}")

    t_start = time.monotonic()
    with hfsys.TempDir(prefix="hfpostfix-", keep=args.keep) as tmp:
        binary = hflmtp.private_binary(args.holdfast, tmp.sub("bin"))
        data = tmp.sub("data")
        hf = hfsys.Holdfast(binary, data)
        hf.user_add("alice", "pw-alice")
        hf.user_add("bob", "pw-bob")
        hflmtp.write_config(data, '[lmtp]\nlocal_domains = ["example.test", "localhost"]\n')
        srv = hflmtp.Server(binary, data, tmp.sub("serve.log"))
        pf = Postfix(tmp.sub("postfix"), hfsys.free_port(), srv.port)
        try:
            srv.start()
            log(f"holdfast serve on 127.0.0.1:{srv.port}")
            pf.setup()
            pf.start()
            v = subprocess.run([POSTCONF, "-c", pf.conf, "-h", "mail_version", "relay_transport"],
                               capture_output=True, text=True, timeout=30).stdout.split()
            log(f"Postfix {v[0] if v else '?'} on 127.0.0.1:{pf.port}, relay_transport = {v[1] if len(v) > 1 else '?'}")

            t0 = time.monotonic()
            tok1 = b"PF1-%d-%d" % (os.getpid(), time.monotonic_ns())
            msg1 = make_msg(tok1, "alice@example.test")
            submit(pf.port, ["alice@example.test"], msg1)
            tok2 = b"PF2-%d-%d" % (os.getpid(), time.monotonic_ns())
            msg2 = make_msg(tok2, "alice@example.test, bob@example.test")
            submit(pf.port, ["alice@example.test", "bob@example.test"], msg2)
            tok3 = b"PF3-%d-%d" % (os.getpid(), time.monotonic_ns())
            big = b"".join(b"line %07d of a one-megabyte message relayed by Postfix ..........\r\n" % i
                           for i in range(14000))
            msg3 = make_msg(tok3, "bob@example.test", big)
            submit(pf.port, ["bob@example.test"], msg3)

            deadline = time.monotonic() + TIMEOUT
            expect = [(tok1, msg1, "alice"), (tok2, msg2, "alice"), (tok2, msg2, "bob"), (tok3, msg3, "bob")]
            copies = {}
            for tok, msg, user in expect:
                msgs, found = wait_token(hf, pf, user, tok, deadline)
                copies[(tok, user)] = found
            log(f"  ok   all 4 copies arrived {time.monotonic() - t0:.2f}s after submission")
            time.sleep(0.5)  # a duplicate would show up now
            pflog = pf.log_text()
            for tok, msg, user in expect:
                found = with_token(read_mailbox(hf, user), tok)
                rcpt = f"{user}@example.test"
                what = f"{tok.decode()[:3]} -> {rcpt}"
                check(len(found) == 1, f"{what}: exactly one copy", f"{len(found)} copies")
                entry, content = found[0]
                check_copy(content, msg, rcpt, what)
                m = re.search(r"to=<" + re.escape(rcpt) + r">, relay=127\.0\.0\.1\[127\.0\.0\.1\]:" + str(srv.port) +
                              r",.*status=sent \(250 2\.0\.0 <" + re.escape(rcpt) + r"> (\w+) accepted\)", pflog)
                check(m is not None, f"{what}: Postfix logged status=sent with holdfast's 250 over LMTP")
            # The 250 carries holdfast's MessageId; the mailbox entry has the same id.
            ids_logged = set(re.findall(r"status=sent \(250 2\.0\.0 <[^>]+> (\w+) accepted\)", pflog))
            ids_stored = {f[0][0]["message_id"] for f in copies.values()}
            check(ids_stored <= ids_logged and len(ids_logged) == 3,
                  "the MessageIds in holdfast's replies (3 messages) are the ones the mailboxes list",
                  f"logged {sorted(ids_logged)}, stored {sorted(ids_stored)}")
            two = re.findall(r"lmtp\[\d+\]: (\w+): to=<(?:alice|bob)@example\.test>.*status=sent \(250 2\.0\.0 <[^>]+> "
                             + re.escape(copies[(tok2, 'alice')][0][0]["message_id"]), pflog)
            check(len(two) == 2 and len(set(two)) == 1,
                  "message 2: one LMTP transaction with two recipients, one 250 each", repr(two))

            q = pf.queue_listing()
            check("Mail queue is empty" in q, "Postfix's queue is empty", q)
            accepted = srv.events("accepted")
            check(len(accepted) == 3 and all("client=127.0.0.1:" in a for a in accepted),
                  "holdfast logged 3 event=accepted from 127.0.0.1", "\n".join(accepted))
        except BaseException:
            log(f"\n--- holdfast log (last 40 lines) ---\n{srv.log_tail()}")
            log(f"\n--- postfix log (last 40 lines) ---\n" + "\n".join(pf.log_text().splitlines()[-40:]))
            raise
        finally:
            try:
                pf.stop()
            finally:
                if srv.alive():
                    rc, took = srv.stop()
                    check(rc == 0, f"holdfast: SIGTERM -> exit 0 ({took:.2f}s)", srv.log_tail())
                srv.kill9()
        check(not pf.own_pids(), "no Postfix process of this instance remains")
        stopped = srv.events("stopped")
        check(stopped and hflmtp.kv(stopped[-1], "unretired") == "0", "holdfast's spool is empty at exit (unretired=0)",
              "\n".join(stopped))
        r = hf.fsck()
        check(r.returncode == 0, "holdfast fsck: exit 0")
        check(not srv.sanitizer_reports(), "no sanitizer reports in the server log", "\n".join(srv.sanitizer_reports()))
    log(f"\ntotal {time.monotonic() - t_start:.1f}s")


if __name__ == "__main__":
    hfsys.run_test(main, __doc__)
