"""Shared helpers for holdfast's system tests (Python standard library only).

A system test is a script run as

    /usr/bin/python3 tests/system/test_X.py --holdfast /path/to/holdfast

Exit status: 0 passed, 1 failed, 77 skipped (CTest SKIP_RETURN_CODE).

What lives here:
  * argument parsing and locating the binary (--holdfast, $HOLDFAST, build/holdfast)
  * check()/fail()/skip() and run_test(), which turns exceptions into exit codes
  * TempDir: a private scratch directory, removed afterwards
    (kept if $HOLDFAST_TEST_KEEP=1, for debugging)
  * MailUser: the unprivileged account that owns the test Maildirs (see below)
  * Holdfast: runs the binary against one data directory
  * Dovecot: a private Dovecot instance (own base_dir, state_dir, log file,
    random loopback port) started in the foreground in its own process group,
    so stopping it can never touch a system Dovecot
  * POP3 helpers that return the exact bytes on the wire

Why a separate mail user: Dovecot refuses mail access as root ("Mail access
not allowed for root"; for pop3/imap this is hard-coded, not a setting), so when
the tests run as root both holdfast and Dovecot work on the Maildirs as one
unprivileged user -- the way a real "vmail" deployment runs. That user is
$HOLDFAST_TEST_MAIL_USER, else "hfsystest", which is created with
`useradd --system` if it is missing. Run as non-root, the current user is used.
"""

import argparse
import json
import os
import poplib
import pwd
import grp
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# sysexits.h
EX_OK = 0
EX_DATAERR = 65
EX_NOUSER = 67
EX_TEMPFAIL = 75

DOVECOT = "/usr/sbin/dovecot"
DOVECOT_LDA = "/usr/lib/dovecot/dovecot-lda"
DOVEADM = "/usr/bin/doveadm"

CMD_TIMEOUT = 120  # seconds for any single command; nothing here may hang


class TestFailure(Exception):
    pass


class TestSkip(Exception):
    pass


def log(msg):
    print(msg, flush=True)


def check(cond, what, detail=""):
    """Print what is checked; raise TestFailure when it does not hold."""
    if cond:
        log(f"  ok   {what}")
    else:
        log(f"  FAIL {what}")
        raise TestFailure(what + (f"\n{detail}" if detail else ""))


def fail(msg):
    raise TestFailure(msg)


def skip(msg):
    raise TestSkip(msg)


def parse_args(argv=None, description=""):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--holdfast", help="path to the holdfast binary "
                    "(default: $HOLDFAST, else build/holdfast in the repository)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary directory (also: HOLDFAST_TEST_KEEP=1)")
    args = ap.parse_args(argv)
    path = args.holdfast or os.environ.get("HOLDFAST") or os.path.join(REPO, "build", "holdfast")
    path = os.path.abspath(path)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        # A missing binary is a build problem, not a reason to skip.
        log(f"FAIL: holdfast binary not found or not executable: {path}")
        sys.exit(1)
    args.holdfast = path
    if os.environ.get("HOLDFAST_TEST_KEEP") == "1":
        args.keep = True
    return args


def run_test(body, description=""):
    """Parse argv, run body(args); map the outcome to an exit status."""
    args = parse_args(description=description)

    def on_sigterm(signum, frame):
        # e.g. a CTest timeout: unwind so every finally/with block stops the
        # processes it started.
        raise TestFailure(f"terminated by signal {signum}")
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        body(args)
    except TestSkip as e:
        log(f"SKIP: {e}")
        sys.exit(SKIP)
    except TestFailure as e:
        log(f"\nFAILED: {e}")
        sys.exit(1)
    except Exception:  # a bug in the test or an unexpected error: still a failure
        import traceback
        traceback.print_exc()
        log("\nFAILED: unexpected exception (see above)")
        sys.exit(1)
    log("\nPASSED")
    sys.exit(0)


# --------------------------------------------------------------------------
# Scratch directories and the mail user


def stop_group(proc):
    """SIGTERM a process that leads its own group (start_new_session), then
    SIGKILL the group until no member is left, even if the leader died first
    or hung; reaps the leader."""
    pgid = proc.pid
    try:
        proc.terminate()
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    for _ in range(50):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


class TempDir:
    """mkdtemp() that is world-traversable (Dovecot's login/auth processes and
    the mail user must reach inside) and removed on exit."""

    def __init__(self, prefix="hfsys-", parent=None, keep=False):
        self.path = tempfile.mkdtemp(prefix=prefix, dir=parent)
        os.chmod(self.path, 0o755)
        self.keep = keep

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.keep:
            log(f"(kept temporary directory {self.path})")
        else:
            shutil.rmtree(self.path, ignore_errors=True)
        return False

    def sub(self, *parts):
        return os.path.join(self.path, *parts)


class MailUser:
    def __init__(self, name, uid, gid):
        self.name, self.uid, self.gid = name, uid, gid
        self.is_self = (uid == os.geteuid())

    def chown_tree(self, path):
        if self.is_self:
            return
        os.chown(path, self.uid, self.gid)
        for root, dirs, files in os.walk(path):
            for n in dirs + files:
                os.lchown(os.path.join(root, n), self.uid, self.gid)

    def popen_kwargs(self):
        """subprocess kwargs that run a child as this user."""
        if self.is_self:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def __repr__(self):
        return f"{self.name}({self.uid}:{self.gid})"


def mail_user():
    """The account that owns test Maildirs (see module docstring)."""
    if os.geteuid() != 0:
        pw = pwd.getpwuid(os.geteuid())
        return MailUser(pw.pw_name, pw.pw_uid, os.getegid())
    name = os.environ.get("HOLDFAST_TEST_MAIL_USER", "hfsystest")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        log(f"creating system user {name} for the test Maildirs (useradd --system)")
        r = subprocess.run([useradd, "--system", "--user-group", "--no-create-home",
                            "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                            "--comment", "holdfast system tests", name],
                           capture_output=True, text=True, timeout=CMD_TIMEOUT)
        try:
            pw = pwd.getpwnam(name)  # also fine if a parallel test created it first
        except KeyError:
            skip(f"cannot create mail user {name}: {r.stderr.strip()}")
    if pw.pw_uid == 0:
        fail(f"mail user {name} must not be root")
    return MailUser(pw.pw_name, pw.pw_uid, pw.pw_gid)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_greeting(port, prefix=b"+OK", timeout=15.0, proc=None):
    """Wait until a server on 127.0.0.1:port sends a greeting line starting
    with prefix (an accepted connection alone is not enough: Dovecot's master
    accepts before its login process works)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.makefile("rb").readline().startswith(prefix):
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


# --------------------------------------------------------------------------
# Message byte helpers


def first_line_ending(msg: bytes) -> bytes:
    """The line ending of the message's first line (CRLF or LF)."""
    i = msg.find(b"\n")
    if i > 0 and msg[i - 1:i] == b"\r":
        return b"\r\n"
    return b"\n"


def expected_stored(msg: bytes, user: str, sender: str) -> bytes:
    """What `holdfast deliver -u USER -f SENDER` must store, byte for byte."""
    eol = first_line_ending(msg)
    return (b"Return-Path: <" + sender.encode() + b">" + eol +
            b"Delivered-To: " + user.encode() + eol + msg)


def to_crlf(b: bytes) -> bytes:
    """Every LF not preceded by CR becomes CRLF (the RFC 5322 'virtual' form)."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", b)


def vsize(b: bytes) -> int:
    return len(to_crlf(b))


def pop3_wire_form(stored: bytes) -> bytes:
    """What a POP3 server sends for a stored message, after un-dot-stuffing:
    CRLF line ends, and a final CRLF added when the message lacks one."""
    c = to_crlf(stored)
    if not c.endswith(b"\r\n"):
        c += b"\r\n"
    return c


# --------------------------------------------------------------------------
# holdfast


class Holdfast:
    def __init__(self, binary, data_dir, user: MailUser = None, scratch=None):
        self.data = data_dir
        self.user = user
        self.binary = binary
        if user is not None and not user.is_self and scratch is not None:
            # The mail user may not be able to reach the build tree; run a copy.
            os.makedirs(scratch, exist_ok=True)
            os.chmod(scratch, 0o755)
            copy = os.path.join(scratch, "holdfast")
            shutil.copy2(binary, copy)
            os.chmod(copy, 0o755)
            self.binary = copy

    def run(self, *args, input=b"", expect=0, timeout=CMD_TIMEOUT):
        """Run `holdfast --data DATA ARGS`. expect: an exit code, a set of
        allowed codes, or None (no check). Returns CompletedProcess (bytes)."""
        cmd = [self.binary, "--data", self.data] + list(args)
        kw = self.user.popen_kwargs() if self.user else {}
        try:
            r = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, **kw)
        except subprocess.TimeoutExpired:
            fail(f"timed out after {timeout}s: {' '.join(cmd)}")
        if expect is not None:
            ok = r.returncode in expect if isinstance(expect, (set, tuple, list)) else r.returncode == expect
            if not ok:
                fail(f"`holdfast {' '.join(args)}` exited {r.returncode}, expected {expect}\n"
                     f"stdout: {r.stdout.decode(errors='replace')[-2000:]}\n"
                     f"stderr: {r.stderr.decode(errors='replace')[-2000:]}")
        return r

    def user_add(self, name, password):
        return self.run("user", "add", name, "--password-stdin", input=password.encode() + b"\n")

    def deliver(self, user, msg: bytes, sender="sender@example.org", expect=0):
        return self.run("deliver", "-u", user, "-f", sender, input=msg, expect=expect)

    def mailbox_list(self, user):
        r = self.run("mailbox", "list", user, "--json")
        try:
            data = json.loads(r.stdout)
        except ValueError as e:
            fail(f"`mailbox list {user} --json` printed invalid JSON ({e}):\n"
                 f"{r.stdout.decode(errors='replace')[:2000]}")
        if not isinstance(data, list):
            fail(f"`mailbox list --json` printed {type(data).__name__}, expected an array")
        return data

    def fsck(self, *users, expect=0):
        return self.run("fsck", *users, expect=expect)

    def users_file_hash(self, name):
        """The password field of NAME in DATA/users (a Dovecot passwd-file)."""
        with open(os.path.join(self.data, "users"), encoding="utf-8") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if fields and fields[0] == name:
                    return fields[1]
        return None


# --------------------------------------------------------------------------
# A private Dovecot


def have_dovecot(pop3=True):
    need = [DOVECOT, DOVECOT_LDA, DOVEADM]
    if pop3:
        need.append("/usr/lib/dovecot/pop3")
    return [p for p in need if not os.path.exists(p)]


class Dovecot:
    """A private Dovecot 2.3: its own config, base_dir, state_dir and log, POP3
    on 127.0.0.1:<random port>, passdb+userdb = DATA/users (holdfast's passwd-file),
    mail_location = maildir:DATA/mail/%u. Started with -F (foreground) as our
    child in a new session, so stop() kills exactly its process group."""

    def __init__(self, workdir, data_dir, user: MailUser, extra_conf=""):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        os.chmod(workdir, 0o755)
        self.data = data_dir
        self.user = user
        self.extra_conf = extra_conf
        self.conf = os.path.join(workdir, "dovecot.conf")
        self.log_file = os.path.join(workdir, "dovecot.log")
        self.base_dir = os.path.join(workdir, "run")
        self.proc = None
        self._out = None
        self.port = None

    def _write_conf(self):
        u = self.user
        if os.geteuid() == 0:
            # auth runs as the mail user so it can read DATA/users even when
            # holdfast makes it 0600; login processes stay on the packaged
            # unprivileged dovenull account.
            internal, login = u.name, "dovenull"
            internal_group = grp.getgrgid(u.gid).gr_name
        else:
            # Non-root Dovecot: every process runs as us, in our group (the
            # master cannot chown its sockets to the packaged dovecot group).
            internal, login = u.name, u.name
            internal_group = grp.getgrgid(u.gid).gr_name
            # ... and cannot chroot.
            self.extra_conf = ("service anvil {\n  chroot =\n}\n"
                               "service pop3-login {\n  chroot =\n}\n") + self.extra_conf
        conf = f"""# Private Dovecot for holdfast system tests; generated, do not edit.
# Nothing here is shared with a system Dovecot: own base_dir (sockets, pid),
# state_dir, instance name and log file, a loopback port chosen at random.
base_dir = {self.base_dir}
state_dir = {self.dir}/state
instance_name = hfsys-{os.path.basename(self.dir)}-{os.getpid()}
log_path = {self.log_file}
info_log_path = {self.log_file}
protocols = pop3
listen = 127.0.0.1
ssl = no
# Plain-text logins over loopback: the tests authenticate with USER/PASS.
disable_plaintext_auth = no
auth_mechanisms = plain
auth_verbose = yes

# holdfast's DATA/users is a Dovecot passwd-file: "name:{{CRYPT}}$y$...::::::".
# The uid/gid/home fields are empty, so mail_uid/mail_gid below apply.
# passdb is the snippet docs/users.md gives (%Lu: holdfast lowercases names).
passdb {{
  driver = passwd-file
  args = scheme=CRYPT username_format=%Lu {self.data}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%Lu {self.data}/users
}}
mail_location = maildir:{self.data}/mail/%u

# Dovecot will not access mail as root, so mail is owned by an unprivileged
# user; its uid/gid may be a system id below the default first_valid_uid 500.
mail_uid = {u.uid}
mail_gid = {u.gid}
first_valid_uid = {min(u.uid, 500)}
first_valid_gid = {min(u.gid, 500)}
default_internal_user = {internal}
default_login_user = {login}
default_internal_group = {internal_group}

pop3_uidl_format = %08Xu%08Xv
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.port}
  }}
}}
{self.extra_conf}
"""
        with open(self.conf, "w") as f:
            f.write(conf)

    def start(self, attempts=3):
        for attempt in range(attempts):
            self.port = free_port()
            self._write_conf()
            r = subprocess.run([DOVECOT, "-c", self.conf, "-n"], capture_output=True, text=True,
                               timeout=CMD_TIMEOUT)
            if r.returncode != 0:
                fail(f"Dovecot rejects the generated config {self.conf}:\n{r.stderr}")
            self._out = open(os.path.join(self.dir, "dovecot.stdout"), "ab")
            self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf],
                                         stdin=subprocess.DEVNULL,
                                         stdout=self._out,
                                         stderr=subprocess.STDOUT,
                                         start_new_session=True)
            if wait_greeting(self.port, proc=self.proc) and os.path.exists(
                    os.path.join(self.base_dir, "auth-userdb")):
                log(f"  started private Dovecot (pid {self.proc.pid}) pop3 on 127.0.0.1:{self.port}")
                return self
            self.stop()
            log(f"  Dovecot did not come up on port {self.port} (attempt {attempt + 1})")
        fail("could not start a private Dovecot; log tail:\n" + self.log_tail())

    def stop(self):
        if self.proc is None:
            return
        stop_group(self.proc)  # the master stops its children (auth, pop3, log, ...) itself
        self.proc = None
        if self._out is not None:
            self._out.close()
            self._out = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def log_tail(self, n=40):
        try:
            with open(self.log_file, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def lda(self, user, msg: bytes, sender="sender@example.org"):
        """Deliver with dovecot-lda (runs as root or us; drops to mail_uid itself)."""
        r = subprocess.run([DOVECOT_LDA, "-c", self.conf, "-d", user, "-f", sender],
                           input=msg, capture_output=True, timeout=CMD_TIMEOUT)
        if r.returncode != 0:
            fail(f"dovecot-lda -d {user} exited {r.returncode}: {r.stderr.decode(errors='replace')}\n"
                 f"log tail:\n{self.log_tail()}")
        return r

    def doveadm(self, *args, expect=0):
        r = subprocess.run([DOVEADM, "-c", self.conf] + list(args), capture_output=True,
                           text=True, timeout=CMD_TIMEOUT)
        if expect is not None and r.returncode != expect:
            fail(f"doveadm {' '.join(args)} exited {r.returncode}: {r.stderr}\n"
                 f"log tail:\n{self.log_tail()}")
        return r

    def pop3(self, user, password):
        """A logged-in poplib.POP3 (USER/PASS)."""
        try:
            p = poplib.POP3("127.0.0.1", self.port, timeout=30)
        except (OSError, poplib.error_proto) as e:
            fail(f"POP3 connect to 127.0.0.1:{self.port} failed: {e}\nDovecot log tail:\n{self.log_tail()}")
        try:
            p.user(user)
            p.pass_(password)
        except poplib.error_proto as e:
            p.close()
            fail(f"POP3 login as {user} failed: {e}\nDovecot log tail:\n{self.log_tail()}")
        return p


# --------------------------------------------------------------------------
# POP3 helpers that see the exact wire bytes


def pop3_retr_raw(p: poplib.POP3, n: int) -> bytes:
    """RETR n; return the message as sent (CRLF line ends kept), un-dot-stuffed.
    poplib's own retr() strips line ends and refuses lines over 2048 octets, so
    this reads the socket file directly."""
    p._putcmd(f"RETR {n}")
    resp = p._getresp()  # raises error_proto on -ERR
    if not resp.startswith(b"+OK"):
        fail(f"RETR {n}: {resp!r}")
    out = []
    while True:
        line = p.file.readline()
        if not line:
            fail(f"RETR {n}: connection closed before the terminating '.'")
        if line == b".\r\n":
            break
        if not line.endswith(b"\r\n"):
            fail(f"RETR {n}: line without CRLF on the wire: {line[:80]!r}")
        if line.startswith(b"."):
            line = line[1:]
        out.append(line)
    return b"".join(out)


def pop3_list(p: poplib.POP3):
    """{msgnum: size} from LIST."""
    resp, lines, _ = p.list()
    out = {}
    for l in lines:
        num, size = l.split()
        out[int(num)] = int(size)
    return out


def pop3_uidl(p: poplib.POP3):
    resp, lines, _ = p.uidl()
    out = {}
    for l in lines:
        num, uid = l.split()
        out[int(num)] = uid.decode()
    return out
