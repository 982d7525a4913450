"""A private rspamd for holdfast's system tests (Python standard library only).

    with hfrspamd.Rspamd(tmp.sub("rspamd")) as rs:
        status, reply = rs.check(message, sender="a@example.org", rcpts=["b@localhost"])
        holdfast config:  address = "127.0.0.1:%d" % rs.port

What it runs: the packaged rspamd (Debian 12: 3.4) in the foreground
(`rspamd -f`), as our child in a new session, on a private configuration in
its work directory. Nothing is shared with a system rspamd (which is never
started or touched): own rspamd.conf, LOCAL_CONFDIR, DBDIR, RUNDIR (pid file,
control socket), LOGDIR; one normal worker on 127.0.0.1:<free port>; no
controller, no proxy, no fuzzy storage.

The configuration (written by write_config(); all but rspamd.conf are
local.d/ overrides of the packaged /etc/rspamd, found through
--var LOCAL_CONFDIR=<workdir>):
  * rspamd.conf: the packaged common.conf (actions, groups, composites,
    statistics, modules.d with their local.d/override.d hooks) and
    options.inc, with our own logging and worker sections;
  * no network: every module that makes DNS or HTTP requests, or needs Redis,
    is disabled (rbl/surbl/emails, dkim, spf, dmarc, arc, fuzzy_check, asn,
    mx_check, hfilter, whitelist, phishing, reputation, neural, ratelimit,
    greylist, replies, rspamd_update, ...), and the resolver points at a dead
    loopback port with a short timeout, so a lookup that remains fails fast
    instead of going out. Bayes has no Redis and stays silent;
  * actions: the packaged thresholds (greylist 4, add header 6, reject 15),
    plus rewrite subject at 9 with subject "***SPAM*** %s";
  * two test symbols (multimap on the Subject header) so every action can be
    produced on purpose: ADD_HEADER_MARK scores 7 -> "add header",
    REWRITE_SUBJECT_MARK scores 10 -> "rewrite subject"; GTUBE gives
    "reject" (rspamd's built-in GTUBE check); clean_message() -> "no action";
  * milter_headers adds X-Spamd-Result and X-Spam-Status (also for local,
    127.0.0.1, senders), so replies carry milter.add_headers/remove_headers.

Start-up time, measured on the 2-core test machine (Debian 12, rspamd 3.4):
most of it is compiling the URL matcher over the public-suffix list with
Hyperscan (rspamd 3.4 uses Hyperscan for it whatever disable_hyperscan says).
With rspamd's full list (9,600 suffixes) a cold start took 69-77 s (with a
build running). With the one-label top-level domains only (1,659, written to
the work directory; enough to find URLs, and no module that would use the
rest is enabled) a cold start takes 4.4 s on the idle machine (6-14 s with a
build or two other rspamds starting at the same time), and with the compiled
matchers cached (hs_cache_dir, see cache_dir(): shared between runs and
between concurrent instances; rspamd keys the files by content) 1.1-1.7 s.
Rspamd.started_in holds the measured time.

Root: rspamd refuses to run its workers as root unless given -i (insecure);
the tests may run as root, so -i is passed then. As any other user it runs as
that user, no flag needed (every path it writes is in the work directory or
the cache directory).
"""

import http.client
import json
import os
import signal
import socket
import stat
import subprocess
import tempfile
import time

import hfsys  # noqa: E402  (beside this file; stop_group)

RSPAMD = "/usr/bin/rspamd"
RSPAMD_CONFDIR = "/etc/rspamd"
TLD_FILE = "/usr/share/rspamd/effective_tld_names.dat"

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
ADD_HEADER_MARK = "HOLDFAST-TEST-ADD-HEADER"
REWRITE_SUBJECT_MARK = "HOLDFAST-TEST-REWRITE-SUBJECT"

START_TIMEOUT = 240  # seconds; a cold start on a loaded machine is slow (see above)

# Modules that would look something up on the network (DNS, HTTP maps) or need Redis.
DISABLED_MODULES = [
    "antivirus", "arc", "asn", "bimi", "clickhouse", "dcc", "dkim", "dkim_signing", "dmarc",
    "elastic", "emails", "external_services", "fuzzy_check", "greylist", "hfilter", "history_redis",
    "ip_score", "maillist", "metadata_exporter", "metric_exporter", "mx_check", "neural",
    "once_received", "p0f", "phishing", "ratelimit", "rbl", "replies", "reputation",
    "rspamd_update", "spamassassin", "spf", "surbl", "trie", "url_redirector", "whitelist",
]


class RspamdError(Exception):
    pass


def _log(msg):
    print(msg, flush=True)


def have_rspamd():
    """'' when rspamd can be run here, else why not."""
    if not os.access(RSPAMD, os.X_OK):
        return f"{RSPAMD} not installed (Debian package rspamd)"
    if not os.path.exists(os.path.join(RSPAMD_CONFDIR, "common.conf")):
        return f"{RSPAMD_CONFDIR}/common.conf missing (package rspamd not configured?)"
    return ""


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cache_dir():
    """A directory for rspamd's compiled Hyperscan databases that outlives
    one test: $HOLDFAST_RSPAMD_CACHE, else <tmp>/holdfast-rspamd-cache-<uid>.
    Used only if it is a real directory owned by us and not writable by
    others; else None (the work directory is used: a cold start every time)."""
    path = os.environ.get("HOLDFAST_RSPAMD_CACHE") or os.path.join(
        tempfile.gettempdir(), f"holdfast-rspamd-cache-{os.geteuid()}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        return None
    return path


def clean_message(tag="clean"):
    """A plain, well-formed message that this configuration scores 'no action'."""
    return (b"From: Alice <alice@example.org>\r\n"
            b"To: bob@localhost\r\n"
            b"Subject: lunch tomorrow (" + tag.encode() + b")\r\n"
            b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
            b"Message-ID: <" + tag.encode() + b"." + str(os.getpid()).encode() + b"@example.org>\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=us-ascii\r\n"
            b"\r\n"
            b"Hi Bob,\r\n\r\nlunch at noon tomorrow?\r\n\r\n-- Alice\r\n")


def gtube_message(tag="gtube"):
    """The GTUBE test pattern: 'reject'."""
    return (b"From: Spammer <spammer@example.org>\r\n"
            b"To: bob@localhost\r\n"
            b"Subject: GTUBE (" + tag.encode() + b")\r\n"
            b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
            b"Message-ID: <" + tag.encode() + b"." + str(os.getpid()).encode() + b"@example.org>\r\n"
            b"\r\n"
            b"This is the GTUBE, the Generic Test for Unsolicited Bulk Email.\r\n\r\n" + GTUBE + b"\r\n")


def marked_message(mark, tag="marked"):
    """clean_message() with mark (ADD_HEADER_MARK / REWRITE_SUBJECT_MARK) in the Subject."""
    return clean_message(tag).replace(b"Subject: ", b"Subject: " + mark.encode() + b" ", 1)


def write_config(workdir, port, cache):
    """The private configuration (see the module docstring). Returns the path of rspamd.conf."""
    local = os.path.join(workdir, "local.d")
    for d in ("local.d", "override.d", "db", "run", "log"):
        os.makedirs(os.path.join(workdir, d), exist_ok=True)

    def put(rel, text):
        with open(os.path.join(workdir, rel), "w") as f:
            f.write(text)

    put("rspamd.conf", f"""# Private rspamd for holdfast system tests; generated by hfrspamd.py, do not edit.
# The packaged rules (CONFDIR={RSPAMD_CONFDIR}) with overrides in LOCAL_CONFDIR=this directory.
.include "$CONFDIR/common.conf"

options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}}

logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "info";
}}

worker "normal" {{
    bind_socket = "127.0.0.1:{port}";
    .include "$CONFDIR/worker-normal.inc"
    count = 1;
}}
""")
    tld = os.path.join(workdir, "tld.dat")
    with open(TLD_FILE, errors="replace") as src, open(tld, "w") as dst:
        for line in src:
            line = line.strip()
            if line and not line.startswith("//") and "." not in line:
                dst.write(line + "\n")
    put("local.d/options.inc", f"""# No network: a lookup that is left goes to a dead loopback port and fails fast.
dns {{
    nameserver = ["127.0.0.1:1"];
    timeout = 0.2s;
    retransmits = 1;
}}
# One-label top-level domains only: the URL matcher compiles in seconds, not a minute.
url_tld = "{tld}";
hs_cache_dir = "{cache}";
""")
    for m in DISABLED_MODULES:
        put(f"local.d/{m}.conf", "enabled = false;\n")
    put("local.d/actions.conf", 'rewrite_subject = 9;\nsubject = "***SPAM*** %s";\n')
    put("local.d/milter_headers.conf",
        'use = ["x-spamd-result", "x-spam-status"];\nskip_local = false;\nskip_authenticated = false;\n')
    put("add_header.map", f"/{ADD_HEADER_MARK}/\n")
    put("rewrite_subject.map", f"/{REWRITE_SUBJECT_MARK}/\n")
    put("local.d/multimap.conf", """HOLDFAST_TEST_ADD_HEADER {
  type = "header";
  header = "Subject";
  regexp = true;
  map = "${LOCAL_CONFDIR}/add_header.map";
  score = 7.0;
  description = "holdfast test marker: add header";
}
HOLDFAST_TEST_REWRITE_SUBJECT {
  type = "header";
  header = "Subject";
  regexp = true;
  map = "${LOCAL_CONFDIR}/rewrite_subject.map";
  score = 10.0;
  description = "holdfast test marker: rewrite subject";
}
""")
    return os.path.join(workdir, "rspamd.conf")


def checkv2(port, message: bytes, sender="", rcpts=(), ip=None, helo=None, queue_id=None, timeout=30):
    """POST /checkv2 with the request headers holdfast's client sends
    (src/filter/rspamd.cc). Returns (HTTP status, parsed JSON or None, raw body)."""
    headers = {"Connection": "close", "User-Agent": "holdfast",
               "From": sender if sender else "<>"}
    if queue_id:
        headers["Queue-Id"] = queue_id
    if ip:
        headers["IP"] = ip
    if helo:
        headers["Helo"] = helo
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest("POST", "/checkv2", skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        for r in rcpts:  # one Rcpt header per recipient
            conn.putheader("Rcpt", r)
        conn.putheader("Content-Length", str(len(message)))
        conn.endheaders(message)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    try:
        reply = json.loads(body)
    except ValueError:
        reply = None
    return resp.status, reply, body


class Rspamd:
    def __init__(self, workdir):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = None
        self.proc = None
        self._out = None
        self.conf = None
        self.started_in = None  # seconds from spawn to the first answered /checkv2
        self.log_file = os.path.join(workdir, "log", "rspamd.log")

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=START_TIMEOUT, attempts=3, port=None):
        """Start and wait until /checkv2 answers. port: listen there (e.g. the
        previous port, to bring the scanner back where a server expects it);
        default a free one."""
        why = have_rspamd()
        if why:
            raise RspamdError(why)
        cache = cache_dir() or os.path.join(self.dir, "db")
        for attempt in range(attempts):
            self.port = port or free_port()
            self.conf = write_config(self.dir, self.port, cache)
            cmd = [RSPAMD, "-f", "-c", self.conf,
                   "--var", f"CONFDIR={RSPAMD_CONFDIR}",
                   "--var", f"LOCAL_CONFDIR={self.dir}",
                   "--var", f"DBDIR={os.path.join(self.dir, 'db')}",
                   "--var", f"RUNDIR={os.path.join(self.dir, 'run')}",
                   "--var", f"LOGDIR={os.path.join(self.dir, 'log')}"]
            if os.geteuid() == 0:
                cmd.append("-i")  # workers as root: refused without it
            self._out = open(os.path.join(self.dir, "rspamd.stdout"), "ab")
            t0 = time.monotonic()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            if self._wait_ready(t0 + timeout):
                self.started_in = time.monotonic() - t0
                _log(f"  started private rspamd (pid {self.proc.pid}) on {self.address} "
                     f"in {self.started_in:.1f} s")
                return self
            self.stop()
            _log(f"  rspamd did not come up on port {self.port} (attempt {attempt + 1})")
        raise RspamdError("could not start a private rspamd; log tail:\n" + self.log_tail())

    def _wait_ready(self, deadline):
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                status, reply, _ = checkv2(self.port, b"Subject: ping\r\n\r\nping\r\n", timeout=5)
                if status == 200 and isinstance(reply, dict) and "action" in reply:
                    return True
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.2)
        return False

    def check(self, message: bytes, **kw):
        """checkv2() against this instance."""
        return checkv2(self.port, message, **kw)

    def stop(self):
        if self.proc is None:
            return
        hfsys.stop_group(self.proc)  # the main process stops its workers itself
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
        out = ""
        for path in (os.path.join(self.dir, "rspamd.stdout"), self.log_file):
            try:
                with open(path, errors="replace") as f:
                    out += f"--- {path}\n" + "".join(f.readlines()[-n:])
            except OSError:
                out += f"--- {path}: (none)\n"
        return out


if __name__ == "__main__":
    # Manual use: start one, print its address, keep it until Ctrl-C.
    d = tempfile.mkdtemp(prefix="hfrspamd-")
    with Rspamd(d) as rs:
        print(f"rspamd on {rs.address} (work dir {d}); Ctrl-C stops it", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
