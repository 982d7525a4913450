"""Helpers for the LMTP system tests (standard library only).

Used by test_lmtp_clients.py, test_postfix_relay.py and test_kill9_torture.py.
Builds on hfsys.py (check/fail/skip, run_test, TempDir, Holdfast, free_port).

  * sanitized(): whether the binary is an ASan+UBSan build ($HOLDFAST_SANITIZED=1)
  * private_binary(): a copy of the binary in the scratch directory, so a long
    run keeps using one build even if build/holdfast is relinked meanwhile
  * Server: one `holdfast serve` on 127.0.0.1:<free port> (and optionally a
    UNIX socket) over one data directory. Started in its own session; stderr
    is appended to a log file (one log across restarts, each start's offset
    remembered); ready = a connection got the `220` greeting. stop() sends
    SIGTERM and returns the exit status, kill9() SIGKILLs. Every Server ever
    started is killed at interpreter exit if it is still running, so no test
    leaves a daemon behind, whatever happened.
  * lmtp_send(): one LMTP transaction that reads ALL per-recipient replies.
    smtplib.LMTP is smtplib.SMTP with LHLO: its data()/sendmail() read only the
    first reply after the final dot, and the others would be taken as replies
    to the next commands. lmtp_send uses smtplib's own mail()/rcpt()/data()
    (so dot-stuffing is smtplib's) and then getreply() once per further
    accepted recipient.
  * RawLmtp: a raw socket client for byte-level tests.
  * expected_stored(): what holdfast must store for an LMTP delivery.
  * Mailbox helpers: list a user's mailbox and read each file, checking
    that the listing's size and sha256 match the bytes; wait for a count.
"""

import atexit
import http.client
import hashlib
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
from hfsys import check, fail, log  # noqa: E402,F401

DELIVERY_TIMEOUT = 20.0   # seconds from a 250 until the mail is in the mailbox
READY_TIMEOUT = 120.0     # seconds from spawn until the 220 greeting (recovery replays the spool first)

CRLF = b"\r\n"


def sanitized():
    return os.environ.get("HOLDFAST_SANITIZED", "") not in ("", "0", "OFF", "FALSE", "false", "off")


def private_binary(binary, directory):
    os.makedirs(directory, exist_ok=True)
    copy = os.path.join(directory, "holdfast")
    shutil.copy2(binary, copy)
    os.chmod(copy, 0o755)
    return copy


def sha256_hex(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# --------------------------------------------------------------------------
# The server

_LIVE = set()


def _kill_leftovers():
    for srv in list(_LIVE):
        try:
            srv.kill9()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_kill_leftovers)


def write_config(data_dir, text):
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, "holdfast.toml"), "w", encoding="utf-8") as f:
        f.write(text)


class Server:
    """`holdfast --data DATA serve --lmtp 127.0.0.1:PORT --pop3 127.0.0.1:POP3_PORT
    --metrics 127.0.0.1:METRICS_PORT [--lmtp-unix PATH]` (free ports unless given)."""

    def __init__(self, binary, data_dir, log_path, port=None, unix_path=None, pop3_port=None):
        self.binary = binary
        self.data = data_dir
        self.port = port or hfsys.free_port()
        self.pop3_port = pop3_port or hfsys.free_port()
        self.metrics_port = hfsys.free_port()
        self.unix_path = unix_path
        self.log_path = log_path
        self.proc = None
        self.log_offset = 0   # where the current (or last) run's log starts
        self.starts = 0
        self.ready_times = []  # seconds from spawn to the 220 greeting, per start

    # -- process control

    def spawn(self):
        """Start the process without waiting for readiness."""
        if self.proc is not None and self.proc.poll() is None:
            fail("Server.spawn: already running")
        cmd = [self.binary, "--data", self.data, "serve", "--lmtp", f"127.0.0.1:{self.port}",
               "--pop3", f"127.0.0.1:{self.pop3_port}", "--metrics", f"127.0.0.1:{self.metrics_port}"]
        if self.unix_path:
            cmd += ["--lmtp-unix", self.unix_path]
        with open(self.log_path, "ab") as f:
            self.log_offset = f.tell()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=f, start_new_session=True)
        _LIVE.add(self)
        self.starts += 1
        self.spawned_at = time.monotonic()
        return self.proc

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Ready = a fresh TCP connection is greeted with 220."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                fail(f"holdfast serve exited with {self.proc.returncode} before it was ready\n"
                     f"log:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.settimeout(5)
                    line = s.makefile("rb").readline()
                    if line.startswith(b"220 "):
                        self.ready_times.append(time.monotonic() - self.spawned_at)
                        try:
                            s.sendall(b"QUIT\r\n")
                        except OSError:
                            pass
                        return line
            except OSError:
                pass
            time.sleep(0.01)
        fail(f"holdfast serve not ready (no 220 greeting on port {self.port}) within {timeout}s\n"
             f"log:\n{self.log_tail()}")

    def start(self, timeout=READY_TIMEOUT):
        self.spawn()
        return self.wait_ready(timeout)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout):
        """Exit status, or None if still running after timeout."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        _LIVE.discard(self)
        return rc

    def stop(self, timeout=40):
        """SIGTERM; returns (exit status, seconds). Kills and fails on a hang."""
        if self.proc is None:
            return None, 0.0
        if self.proc.poll() is not None:
            _LIVE.discard(self)
            return self.proc.returncode, 0.0
        t0 = time.monotonic()
        os.kill(self.proc.pid, signal.SIGTERM)
        rc = self.wait(timeout)
        took = time.monotonic() - t0
        if rc is None:
            self.kill9()
            fail(f"holdfast serve did not exit within {timeout}s of SIGTERM\nlog:\n{self.log_tail()}")
        return rc, took

    def kill9(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        _LIVE.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill9()
        return False

    # -- the log

    def log_bytes(self, since_start=False):
        try:
            with open(self.log_path, "rb") as f:
                if since_start:
                    f.seek(self.log_offset)
                return f.read()
        except FileNotFoundError:
            return b""

    def log_text(self, since_start=False):
        return self.log_bytes(since_start).decode("utf-8", errors="replace")

    def log_lines(self, since_start=False):
        return self.log_text(since_start).splitlines()

    def log_tail(self, n=40):
        return "\n".join(self.log_lines()[-n:])

    def events(self, name, since_start=False):
        """Log lines whose event is `name` (e.g. 'accepted', 'stopped')."""
        pat = re.compile(r"\bevent=" + re.escape(name) + r"\b")
        return [ln for ln in self.log_lines(since_start) if pat.search(ln)]

    def sanitizer_reports(self):
        """ASan/UBSan/LSan/TSan reports in the whole log (stderr of every run)."""
        return self.grep(r"ERROR: (AddressSanitizer|LeakSanitizer)|WARNING: ThreadSanitizer|runtime error:|"
                         r"SUMMARY: \w+Sanitizer")

    def grep(self, regex, since_start=False):
        r = re.compile(regex)
        return [ln for ln in self.log_lines(since_start) if r.search(ln)]


def spool_backlog(srv):
    """holdfast_spool_backlog_messages from /metrics, or None."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", srv.metrics_port, timeout=5)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
    except OSError:
        return None
    m = re.search(r"^holdfast_spool_backlog_messages (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def kv(line, key):
    """Value of key=value in a log line (unquoted values only)."""
    m = re.search(r"\b" + re.escape(key) + r"=(\S+)", line)
    return m.group(1) if m else None


# --------------------------------------------------------------------------
# Clients


def connect(port, timeout=30):
    c = smtplib.LMTP("127.0.0.1", port, timeout=timeout)
    code, resp = c.ehlo("client.test")  # LHLO
    if code != 250:
        c.close()
        fail(f"LHLO answered {code} {resp!r}")
    return c


def lmtp_send(conn: smtplib.LMTP, sender, rcpts, body: bytes, mail_options=(), final=None):
    """One transaction on an open LMTP connection. Returns (rcpt_replies,
    final_replies): rcpt_replies maps every address to its RCPT reply
    (code, text); final_replies maps every accepted address to its reply
    after the final dot. final_replies is {} if MAIL failed or no RCPT was
    accepted (then the transaction is reset). Network errors propagate;
    pass your own dict as `final` to keep the replies that arrived before
    the error (a 250 for the first recipient counts even if the connection
    then breaks)."""
    code, resp = conn.mail(sender, list(mail_options))
    rcpt_replies = {}
    if code != 250:
        conn.rset()
        return {"MAIL": (code, resp)}, {}
    accepted = []
    for r in rcpts:
        rc = conn.rcpt(r)
        rcpt_replies[r] = rc
        if rc[0] in (250, 251):
            accepted.append(r)
    if not accepted:
        conn.rset()
        return rcpt_replies, {}
    if final is None:
        final = {}
    first = conn.data(body)  # smtplib dot-stuffs and terminates; reads ONE reply
    final[accepted[0]] = first
    for r in accepted[1:]:
        final[r] = conn.getreply()
    return rcpt_replies, final


def smtplib_wire_body(body: bytes) -> bytes:
    """What holdfast receives (after unstuffing) when smtplib sends body:
    smtplib adds a CRLF when the message does not end with one."""
    return body if body.endswith(CRLF) else body + CRLF


def expected_stored(body: bytes, sender: str, rcpt_address: str) -> bytes:
    """Return-Path + Delivered-To (the address as given) + body, in the line
    ending of the body's first line."""
    eol = hfsys.first_line_ending(body)
    return (b"Return-Path: <" + sender.encode() + b">" + eol +
            b"Delivered-To: " + rcpt_address.encode() + eol + body)


def describe_diff(want: bytes, got: bytes) -> str:
    """Where two byte strings first differ, with context."""
    n = min(len(want), len(got))
    i = next((k for k in range(n) if want[k] != got[k]), n)
    lo = max(0, i - 60)
    return (f"want {len(want)} bytes, got {len(got)} bytes; first difference at offset {i}:\n"
            f"  want ...{want[lo:i + 80]!r}\n  got  ...{got[lo:i + 80]!r}")


def dot_stuff(body: bytes) -> bytes:
    """RFC 5321 transparency for a raw client: a '.' at line start doubled."""
    out = re.sub(rb"(?m)^\.", b"..", body)
    return out


class RawLmtp:
    """A plain socket speaking bytes; replies parsed line by line."""

    def __init__(self, port, timeout=10.0, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def send(self, data: bytes):
        self.sock.sendall(data)

    def readline(self):
        """One line including its line end; b'' at EOF (a partial line at EOF
        is returned as is)."""
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                line, self.buf = self.buf, b""
                return line
            self.buf += chunk
        i = self.buf.index(b"\n") + 1
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def reply(self):
        """(code, [lines]) of one possibly multi-line reply; (None, lines) at EOF."""
        lines = []
        while True:
            line = self.readline()
            if not line:
                return None, lines
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                try:
                    return int(line[:3]), lines
                except ValueError:
                    return None, lines

    def expect(self, code, what):
        got, lines = self.reply()
        check(got == code, f"{what}: {code}", f"got {got} {b''.join(lines)!r}")
        return lines

    def eof(self, timeout=5.0):
        """True if the server closes the connection (nothing more to read)."""
        self.sock.settimeout(timeout)
        try:
            rest = self.readline()
        except socket.timeout:
            return False
        return rest == b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def healthy(port, what="the server"):
    """A fresh connection gets the greeting and normal answers."""
    with RawLmtp(port) as c:
        code, lines = c.reply()
        if code != 220:
            fail(f"{what}: fresh connection greeted with {code} {lines!r}")
        c.send(b"LHLO fresh.test\r\nNOOP\r\nQUIT\r\n")
        codes = []
        for _ in range(3):
            code, lines = c.reply()
            codes.append(code)
        if codes != [250, 250, 221]:
            fail(f"{what}: fresh connection got {codes} for LHLO/NOOP/QUIT")
    log(f"  ok   {what}: a fresh connection is served normally (220, LHLO 250, NOOP 250, QUIT 221)")


# --------------------------------------------------------------------------
# Mailboxes


def read_mailbox(hf: hfsys.Holdfast, user, raw=False):
    """[(entry, bytes)] for every message `mailbox list USER` names; checks
    that each file exists and matches the listing's size and sha256. Unless
    `raw`, holdfast's own Received: line is checked and left out
    (strip_received)."""
    return list(iter_mailbox(hf, user, raw=raw))


def iter_mailbox(hf: hfsys.Holdfast, user, listing=None, raw=False):
    """read_mailbox, one message at a time (for big mailboxes)."""
    maildir = os.path.join(hf.data, "mail", user)
    for e in (listing if listing is not None else hf.mailbox_list(user)):
        path = os.path.join(maildir, e["name"])
        try:
            with open(path, "rb") as f:
                content = f.read()
        except FileNotFoundError:
            fail(f"{user}: listed file {e['name']} does not exist")
        if len(content) != e["size"] or sha256_hex(content) != e["sha256"]:
            fail(f"{user}: {e['name']} does not match its listing: {len(content)} bytes, "
                 f"sha256 {sha256_hex(content)}; listing says {e['size']} bytes, {e['sha256']}")
        yield e, content if raw else strip_received(content, e["message_id"])


RECEIVED_RE = re.compile(
    rb"Received: from [^\r\n]* \((?:local|\[[^\]\r\n]*\])\)(\r?\n)\tby [^\r\n]* \(holdfast\) with LMTP id "
    rb"([0-9A-Za-z]+);\1\t[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d \+0000\1")


def strip_received(content: bytes, message_id=None) -> bytes:
    """The message without the Received: line holdfast adds to LMTP mail
    (RFC 5321 4.4; docs/lmtp.md), so tests can compare the rest byte for
    byte. The line must sit right below Return-Path:/Delivered-To: and name
    this message's own MessageId; a message without one is returned as is
    (test_lmtp_clients checks that the default adds it)."""
    pos = 0
    for name in (b"Return-Path:", b"Delivered-To:"):
        if content.startswith(name, pos):
            pos = content.index(b"\n", pos) + 1
    m = RECEIVED_RE.match(content, pos)
    if not m:
        if content.startswith(b"Received: ", pos) and b"(holdfast)" in content[pos:pos + 400]:
            fail(f"malformed holdfast Received: line: {content[pos:pos + 400]!r}")
        return content
    if message_id is not None and m.group(2).decode() != message_id:
        fail(f"Received: line names id {m.group(2).decode()}, the message is {message_id}")
    return content[:pos] + content[m.end():]


def wait_count(hf: hfsys.Holdfast, user, n, timeout=DELIVERY_TIMEOUT):
    """Poll `mailbox list USER` until it has >= n messages; returns the listing."""
    deadline = time.monotonic() + timeout
    while True:
        listing = hf.mailbox_list(user)
        if len(listing) >= n or time.monotonic() > deadline:
            return listing
        time.sleep(0.1)


def wait_for(hf, user, pred, timeout=DELIVERY_TIMEOUT):
    """Poll read_mailbox(USER) until pred(messages) is true; returns the messages
    (the last ones read, also on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        msgs = read_mailbox(hf, user)
        if pred(msgs) or time.monotonic() > deadline:
            return msgs
        time.sleep(0.1)


def with_token(msgs, token: bytes):
    return [(e, c) for (e, c) in msgs if token in c]
