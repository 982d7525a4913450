#!/usr/bin/env bash
# pop3_bench.sh -- POP3: `holdfast serve` vs Dovecot's POP3 server, on copies
# of the same Maildirs on the same file system, in the same run.
#
# A benchmark, not a test: it prints a markdown table with one row per case,
# holdfast's figure, Dovecot's, and holdfast's speed-up (> 1: holdfast is
# faster; for times it is Dovecot's time / holdfast's time):
#   (a) login + STAT on a BIG_N-message mailbox (small messages): warm (after
#       a priming login; median of WARM_RUNS) and cold (index files deleted and
#       the page cache dropped before each login; median of COLD_RUNS), plus
#       the same warm login on a 1-message mailbox, which is mostly the
#       password hash and the process/session set-up;
#   (b) one client retrieving RETR_N messages of RETR_SIZE bytes: LIST, RETR
#       of every message (pipelined, WINDOW commands in flight), QUIT;
#       messages/s and MB/s (1 MB = 10^6 octets of message, as LIST counts);
#  (b') the same mailbox, RTT_N RETRs one at a time (no pipelining, like
#       poplib or most mail clients): median time per RETR;
#   (c) POLL_USERS concurrent clients, one user each (POLL_MSGS messages),
#       each looping connect, USER/PASS, STAT, UIDL, RETR of POLL_RETR random
#       messages, QUIT, for POLL_SECS seconds per server; sessions/s, msgs/s.
# Both servers run throughout; each measurement alternates between them
# (holdfast, Dovecot, holdfast, ...) so a change in background load hits both
# alike. Both authenticate against the same yescrypt hash ({CRYPT}$y$...,
# what `holdfast user add` writes) unless DV_PASS=plain gives Dovecot
# {PLAIN} passwords.
#
# Checked during the run (it fails loudly otherwise): every STAT reports the
# generated number of messages and octets (RFC 1939 sizes) on both servers;
# in (b) every RETR returns as many octets as LIST announced and the set of
# retrieved messages (SHA-256 of each, undotted) equals the generated set on
# both servers; in (c) no client sees an error and every session's STAT and
# UIDL agree with the mailbox; holdfast logs nothing but `info` lines and
# every login succeeds; Dovecot logs no Error/Fatal/Panic.
#
# Usage:  bench/pop3_bench.sh [--dir DIR]
#   --dir DIR     parent of the scratch directory (default /var/tmp; it must be
#                 on the file system you want to measure). Removed afterwards
#                 (KEEP=1 keeps it).
# Environment (defaults in parentheses):
#   HOLDFAST      the binary (build/holdfast; must be a Release build)
#   BIG_N         messages in the (a) mailbox                        (100000)
#   BIG_MIN, BIG_MAX  their sizes in bytes, uniform                  (500, 2048)
#   WARM_RUNS, COLD_RUNS  logins per server for (a)                  (5, 3)
#   COLD          0: skip the cold case (it needs root to drop caches) (1)
#   RETR_N, RETR_SIZE, RETR_RUNS, WINDOW  (b)                 (10000, 4096, 3, 100)
#   RTT_N         (b') RETRs sent one at a time, per server (latency)  (50)
#   POLL_USERS, POLL_MSGS, POLL_RETR  (c)                       (50, 200, 5)
#   POLL_SECS     seconds of load per server in (c)                  (20)
#   POLL_SLICES   ... split into this many alternating slices        (2)
#   POLL_PROCS    client processes for (c) (threads inside)          (4)
#   DV_PASS       crypt: Dovecot checks the same yescrypt hash as
#                 holdfast; plain: {PLAIN} passwords for Dovecot     (crypt)
#   DV_AUTH_CACHE 1: turn on Dovecot's auth_cache (auth_cache_size = 10M,
#                 auth_cache_ttl = 1 hour), like holdfast's credentials
#                 cache, which is on by default; 0: Dovecot's default (off) (0)
#   LOAD_MAX      wait before measuring while the 1-minute load average is
#                 above this ...                                     (3)
#   LOAD_WAIT     ... but at most this many seconds                  (120)
#   HOLDFAST_TEST_MAIL_USER  unprivileged owner of Dovecot's Maildirs when
#                 run as root (hfsystest; created with useradd --system if
#                 missing -- Dovecot refuses to access mail as root)
#
# Messages are generated (bash + python3's standard library only) as
# cur/<secs>.<seed>x<n>.bench:2,S, LF line ends, some lines starting with "."
# (so both servers dot-stuff), into holdfast's DATA/mail/USER, which holdfast
# adopts as another tool's mail, and copied with `cp -a` for Dovecot. They are
# "seen" and in cur/, so neither server renames anything during the run. No
# DELE is sent: the mailboxes are the same for every run.
# Needs: dovecot-core and dovecot-pop3d, python3. Run as root for the cold
# case (drop_caches).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PARENT=/var/tmp
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) PARENT="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

HF="${HOLDFAST:-$REPO/build/holdfast}"
BIG_N="${BIG_N:-100000}"; BIG_MIN="${BIG_MIN:-500}"; BIG_MAX="${BIG_MAX:-2048}"
WARM_RUNS="${WARM_RUNS:-5}"; COLD_RUNS="${COLD_RUNS:-3}"; COLD="${COLD:-1}"
RETR_N="${RETR_N:-10000}"; RETR_SIZE="${RETR_SIZE:-4096}"; RETR_RUNS="${RETR_RUNS:-3}"; WINDOW="${WINDOW:-100}"
RTT_N="${RTT_N:-50}"
POLL_USERS="${POLL_USERS:-50}"; POLL_MSGS="${POLL_MSGS:-200}"; POLL_RETR="${POLL_RETR:-5}"
POLL_SECS="${POLL_SECS:-20}"; POLL_SLICES="${POLL_SLICES:-2}"; POLL_PROCS="${POLL_PROCS:-4}"
DV_PASS="${DV_PASS:-crypt}"
DV_AUTH_CACHE="${DV_AUTH_CACHE:-0}"
LOAD_MAX="${LOAD_MAX:-3}"; LOAD_WAIT="${LOAD_WAIT:-120}"
PASSWORD=bench-password
PY=/usr/bin/python3
DOVECOT=/usr/sbin/dovecot
DV_POP3=/usr/lib/dovecot/pop3

die() { echo "pop3_bench: FAILED: $*" >&2; exit 1; }
[ -x "$HF" ] || die "holdfast binary not found at $HF (build it: cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build; or set HOLDFAST)"
HF="$(cd "$(dirname "$HF")" && pwd)/$(basename "$HF")"
HF_ORIG="$HF"
[ -x "$DOVECOT" ] || die "Dovecot is not installed (dovecot-core)"
[ -x "$DV_POP3" ] || die "Dovecot's POP3 server $DV_POP3 is not installed (apt-get install dovecot-pop3d)"
[ -x "$PY" ] || die "$PY is needed"
case "$DV_PASS" in crypt|plain) ;; *) die "DV_PASS must be crypt or plain" ;; esac
case "$DV_AUTH_CACHE" in 0|1) ;; *) die "DV_AUTH_CACHE must be 0 or 1" ;; esac
BUILD_TYPE="$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$(dirname "$HF")/CMakeCache.txt" 2>/dev/null || true)"
SANITIZE="$(sed -n 's/^HOLDFAST_SANITIZE:BOOL=//p' "$(dirname "$HF")/CMakeCache.txt" 2>/dev/null || true)"
case "$SANITIZE" in ON|on|1|TRUE|true) echo "WARNING: $HF is built with sanitizers" >&2; BUILD_TYPE="$BUILD_TYPE+ASan";; esac
if [ "$BUILD_TYPE" != "Release" ]; then
  echo "WARNING: $HF is not from a Release build (CMAKE_BUILD_TYPE='${BUILD_TYPE:-unknown}'); numbers are not representative." >&2
fi
if [ "$COLD" = 1 ] && [ "$(id -u)" -ne 0 ]; then
  echo "WARNING: not root: cannot drop the page cache, so the cold case is skipped (COLD=0)" >&2
  COLD=0
fi
[ "$POLL_MSGS" -ge "$POLL_RETR" ] || die "POLL_MSGS must be at least POLL_RETR"

# --- the unprivileged mail user Dovecot needs when we are root -------------
# (as in bench/lmtp_bench.sh)
if [ "$(id -u)" -eq 0 ]; then
  MAILUSER="${HOLDFAST_TEST_MAIL_USER:-hfsystest}"
  if ! id "$MAILUSER" >/dev/null 2>&1; then
    echo "creating system user $MAILUSER for Dovecot's Maildir (useradd --system)" >&2
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin --comment "holdfast system tests" "$MAILUSER"
  fi
  LOGIN_USER=dovenull
else
  MAILUSER="$(id -un)"
  LOGIN_USER="$MAILUSER"
fi
MUID="$(id -u "$MAILUSER")"; MGID="$(id -g "$MAILUSER")"; MGROUP="$(id -gn "$MAILUSER")"
FIRST_UID=$(( MUID < 500 ? MUID : 500 )); FIRST_GID=$(( MGID < 500 ? MGID : 500 ))

# --- scratch directory, servers, cleanup -----------------------------------
mkdir -p "$PARENT"
T="$(mktemp -d "$PARENT/hf-pop3-bench.XXXXXXXX")"
chmod 755 "$T"
DV_PID=""
HF_PID=""
stop_group() { # pid seconds: TERM the process, wait, then KILL its process group
  local pid=$1 secs=$2
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $(( secs * 10 ))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true   # its process group (setsid below)
}
cleanup() {
  [ -z "$HF_PID" ] || stop_group "$HF_PID" 45
  [ -z "$DV_PID" ] || stop_group "$DV_PID" 5
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the client and Maildir generator (python3 standard library) ------------
cat > "$T/pop3bench.py" <<'PYEOF'
"""pop3_bench.sh's helper: Maildir generator and POP3 load clients (stdlib only).

Subcommands (each prints one JSON object on stdout, or fails with exit 1):
  gen DIR COUNT MIN MAX SEED [DIGEST]   COUNT messages into DIR/cur as <secs>.<n>.bench:2,S
  stat PORT USER PASS                   connect, USER, PASS, STAT: timings
  retr PORT USER PASS WINDOW            login, then LIST, RETR all (pipelined), QUIT
  rtt PORT USER PASS K                  RETR 1..K one at a time: time per RETR
  poll PORT USERS PASS SECS PROCS N     USERS (comma list) loop login/STAT/UIDL/RETR N/QUIT
  cpu PGID...                           CPU seconds of each process group (incl. reaped children)
  comm PGID                             CPU seconds per command name in a process group (live ones)
"""
import hashlib
import json
import os
import random
import resource
import socket
import sys
import threading
import time
import zlib

TIMEOUT = float(os.environ.get("POP3_TIMEOUT", "900"))
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray "
         "yankee zulu mail server maildir index journal durable message body line").split()


_r = random.Random(1)
LINES = [" ".join(_r.choice(WORDS) for _ in range(_r.randint(4, 12))) for _ in range(4096)]


class Fail(Exception):
    pass


# ------------------------------------------------------------------ generator
def make_message(rng, n, size):
    """A message of exactly `size` bytes, LF line ends, ending in LF; some body
    lines start with '.', and some messages have a line that is just '.',
    so both servers have to dot-stuff."""
    head = (f"From: Sender {n % 97} <sender{n % 97}@example.org>\n"
            f"To: bench@localhost\n"
            f"Subject: benchmark message {n}\n"
            f"Date: Thu, 23 Nov 2026 12:00:00 +0000\n"
            f"Message-ID: <{n}.{size}@bench.example.org>\n\n")
    lines = []
    total = len(head)
    k = 0
    while total < size:
        k += 1
        if n % 7 == 0 and k == 2:
            line = "."
        elif n % 5 == 0 and k % 9 == 3:
            line = ".dot " + rng.choice(LINES)
        else:
            line = rng.choice(LINES)
        lines.append(line)
        total += len(line) + 1
    body = "\n".join(lines) + "\n"
    msg = (head + body).encode()
    if len(msg) > size:  # cut the last line short, keep the final LF
        msg = msg[:size - 1] + b"\n"
    assert len(msg) == size and msg.endswith(b"\n") and b"\r" not in msg
    return msg


def wire_form(msg):
    return msg.replace(b"\n", b"\r\n")


def cmd_gen(d, count, lo, hi, seed, digest_out=None):
    count, lo, hi, seed = int(count), int(lo), int(hi), int(seed)
    rng = random.Random(seed)
    cur = os.path.join(d, "cur")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    octets = 0
    size_sum = 0
    digests = []
    base = 1700000000
    for n in range(count):
        size = rng.randint(lo, hi)
        msg = make_message(rng, n, size)
        name = f"{base + n // 1000}.{seed}x{n}.bench:2,S"
        fd = os.open(os.path.join(cur, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, msg)
        os.close(fd)
        size_sum += size
        octets += size + msg.count(b"\n")  # RFC 1939 size: LF counted as CRLF
        if digest_out:
            digests.append(hashlib.sha256(wire_form(msg)).hexdigest())
    res = {"count": count, "bytes": size_sum, "octets": octets}
    if digest_out:
        res["digest"] = hashlib.sha256("".join(sorted(digests)).encode()).hexdigest()
        with open(digest_out, "w") as f:
            f.write(res["digest"] + "\n")
    print(json.dumps(res))


# --------------------------------------------------------------------- client
class Pop3:
    def __init__(self, port, timeout=TIMEOUT):
        self.s = socket.create_connection(("127.0.0.1", int(port)), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0

    def _fill(self):
        chunk = self.s.recv(1 << 20)
        if not chunk:
            raise Fail("server closed the connection")
        self.buf += chunk

    def send(self, data):
        self.s.sendall(data)

    def line(self):
        if self.pos > (1 << 20):  # only between replies: multiline() keeps offsets
            del self.buf[:self.pos]
            self.pos = 0
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                out = bytes(self.buf[self.pos:i])
                self.pos = i + 2
                return out
            self._fill()

    def ok(self, what):
        ln = self.line()
        if not ln.startswith(b"+OK"):
            raise Fail(f"{what}: {ln[:200]!r}")
        return ln

    def cmd(self, c):
        self.send(c.encode() + b"\r\n")
        return self.ok(c.split()[0])

    def multiline(self, hint=0):
        """The body of a multi-line reply after its status line: the wire bytes
        up to and including the CRLF before the terminating '.' (still
        dot-stuffed). `hint`: the body is at least this long (a LIST size)."""
        start = self.pos
        if self.buf.startswith(b".\r\n", start):  # empty body
            self.pos = start + 3
            return b""
        frm = start + max(hint - 2, 0)
        while True:
            i = self.buf.find(b"\r\n.\r\n", max(frm, start))
            if i >= 0:
                out = bytes(self.buf[start:i + 2])
                self.pos = i + 5
                return out
            frm = max(start, len(self.buf) - 4)
            self._fill()

    def login(self, user, password):
        self.ok("greeting")
        self.cmd(f"USER {user}")
        self.cmd(f"PASS {password}")

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def unstuff(body):
    if body.startswith(b".."):
        body = body[1:]
    return body.replace(b"\r\n..", b"\r\n.")


def parse_stat(ln):
    p = ln.split()
    return int(p[1]), int(p[2])


def cmd_stat(port, user, password):
    t0 = time.perf_counter()
    c = Pop3(port)
    c.ok("greeting")
    t1 = time.perf_counter()
    c.cmd(f"USER {user}")
    c.cmd(f"PASS {password}")
    t2 = time.perf_counter()
    count, octets = parse_stat(c.cmd("STAT"))
    t3 = time.perf_counter()
    c.cmd("QUIT")
    c.close()
    print(json.dumps({"count": count, "octets": octets, "ms": (t3 - t0) * 1e3,
                      "connect_ms": (t1 - t0) * 1e3, "pass_ms": (t2 - t1) * 1e3, "stat_ms": (t3 - t2) * 1e3}))


def cmd_retr(port, user, password, window):
    """LIST, then RETR every message with up to `window` commands in flight,
    then QUIT. While timed, the client only receives and counts terminators
    (bytes.count, in C), so that it costs far less CPU than the server; the
    replies are parsed and checked afterwards."""
    window = int(window)
    c = Pop3(port)
    c.login(user, password)
    # One buffer for every reply, allocated and touched before the clock
    # starts (STAT gives its size: the messages plus dot-stuffing, status
    # lines and terminators).
    count, octets = parse_stat(c.cmd("STAT"))
    cap = octets + octets // 8 + 64 * count + (4 << 20)
    buf = bytearray(b"\1") * cap
    view = memoryview(buf)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    c.cmd("LIST")
    sizes = []
    for ln in c.multiline().split(b"\r\n"):
        if ln:
            num, size = ln.split()
            sizes.append(int(size))
    n = len(sizes)
    rest = bytes(c.buf[c.pos:])  # whatever came after the LIST reply
    buf[:len(rest)] = rest
    filled = len(rest)
    done = buf.count(b"\r\n.\r\n", 0, filled)
    sent = 0

    def send_upto(k):
        nonlocal sent
        k = min(k, n)
        if k > sent:
            c.send(b"".join(b"RETR %d\r\n" % i for i in range(sent + 1, k + 1)))
            sent = k
    send_upto(window)
    quit_sent = False
    while True:
        if done >= n and not quit_sent:
            c.send(b"QUIT\r\n")
            quit_sent = True
        if quit_sent and buf.rfind(b"\r\n", max(0, filled - 2), filled) >= 0 and \
                buf.rfind(b"\r\n.\r\n", 0, filled) < filled - 7:
            break  # the QUIT reply is in
        if filled == cap:
            raise Fail("replies larger than expected")
        got = c.s.recv_into(view[filled:], cap - filled)
        if not got:
            raise Fail("server closed the connection during RETR")
        # a terminator split across two reads is counted once: the 4 bytes
        # before this read cannot hold a whole one
        done += buf.count(b"\r\n.\r\n", max(0, filled - 4), filled + got)
        filled += got
        if not quit_sent and sent - done < window // 2 + 1:
            send_upto(done + window)
    data = bytes(view[:filled])
    view.release()
    t1 = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    c.close()
    # Check every reply: "+OK", a body, the terminator; then QUIT's "+OK".
    pos = 0
    got = []
    for i in range(n):
        eol = data.find(b"\r\n", pos)
        if eol < 0 or not data.startswith(b"+OK", pos):
            raise Fail(f"RETR {i + 1}: {data[pos:pos + 200]!r}")
        start = eol + 2
        if data.startswith(b".\r\n", start):
            got.append(b"")
            pos = start + 3
            continue
        end = data.find(b"\r\n.\r\n", max(start, start + sizes[i] - 2))
        if end < 0:
            raise Fail(f"RETR {i + 1}: no terminator")
        got.append(unstuff(data[start:end + 2]))
        pos = end + 5
    if not data.startswith(b"+OK", pos):
        raise Fail(f"QUIT: {data[pos:pos + 200]!r}")
    wire = len(data)
    octets = sum(len(b) for b in got)
    bad = [i + 1 for i in range(n) if len(got[i]) != sizes[i]]
    digest = hashlib.sha256("".join(sorted(hashlib.sha256(b).hexdigest() for b in got)).encode()).hexdigest()
    secs = t1 - t0
    print(json.dumps({"count": n, "octets": octets, "list_octets": sum(sizes), "wire_bytes": wire,
                      "size_mismatch": bad[:10], "digest": digest, "secs": secs,
                      "msgs_per_s": n / secs, "mb_per_s": octets / secs / 1e6,
                      "client_cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
                      "client_sys_s": r1.ru_stime - r0.ru_stime}))


def cmd_rtt(port, user, password, k):
    """RETR 1..k one at a time, as a client that does not pipeline (poplib,
    most MUAs) would: the time from sending RETR to the end of its reply."""
    k = int(k)
    c = Pop3(port)
    c.login(user, password)
    count, _ = parse_stat(c.cmd("STAT"))
    ms = []
    for i in range(1, min(k, count) + 1):
        t0 = time.perf_counter()
        c.cmd(f"RETR {i}")
        c.multiline()
        ms.append((time.perf_counter() - t0) * 1e3)
    c.cmd("QUIT")
    c.close()
    ms.sort()
    print(json.dumps({"count": len(ms), "median_ms": ms[len(ms) // 2], "mean_ms": sum(ms) / len(ms),
                      "min_ms": ms[0], "max_ms": ms[-1]}))


# ------------------------------------------------------------------ poll load
def poll_worker(port, users, password, start, secs, nretr, expect, q):
    import random as _r
    stats = {"sessions": 0, "messages": 0, "octets": 0, "errors": [], "end": 0.0}
    lock = threading.Lock()

    def client(user, seed):
        rng = _r.Random(seed)
        sessions = messages = octets = 0
        deadline = start + secs
        while time.time() < start:
            time.sleep(0.001)
        try:
            while time.time() < deadline:
                c = Pop3(port, timeout=120)
                try:
                    c.login(user, password)
                    count, _ = parse_stat(c.cmd("STAT"))
                    if expect and count != expect:
                        raise Fail(f"{user}: STAT says {count} messages, expected {expect}")
                    c.cmd("UIDL")
                    lines = [ln for ln in c.multiline().split(b"\r\n") if ln]
                    if len(lines) != count:
                        raise Fail(f"{user}: UIDL listed {len(lines)} of {count}")
                    for m in rng.sample(range(1, count + 1), min(nretr, count)):
                        c.cmd(f"RETR {m}")
                        octets += len(unstuff(c.multiline()))
                        messages += 1
                    c.cmd("QUIT")
                finally:
                    c.close()
                sessions += 1
        except (Fail, OSError) as e:
            with lock:
                stats["errors"].append(f"{user}: {e}")
        with lock:
            stats["sessions"] += sessions
            stats["messages"] += messages
            stats["octets"] += octets

    threads = [threading.Thread(target=client, args=(u, zlib.crc32(u.encode()))) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats["end"] = time.time()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    stats["cpu"] = ru.ru_utime + ru.ru_stime
    q.put(stats)


def cmd_poll(port, users, password, secs, procs, nretr, expect=0):
    import multiprocessing as mp
    users = users.split(",")
    secs, procs, nretr, expect = float(secs), int(procs), int(nretr), int(expect)
    procs = max(1, min(procs, len(users)))
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    start = time.time() + 0.5
    ps = [ctx.Process(target=poll_worker, args=(port, users[k::procs], password, start, secs, nretr, expect, q))
          for k in range(procs)]
    for p in ps:
        p.start()
    res = [q.get(timeout=secs + TIMEOUT) for _ in ps]
    for p in ps:
        p.join()
    end = max(r["end"] for r in res)
    wall = end - start
    out = {"clients": len(users), "procs": procs, "wall": wall,
           "sessions": sum(r["sessions"] for r in res), "messages": sum(r["messages"] for r in res),
           "octets": sum(r["octets"] for r in res), "client_cpu_s": sum(r["cpu"] for r in res),
           "errors": [e for r in res for e in r["errors"]][:10]}
    out["sessions_per_s"] = out["sessions"] / wall
    out["msgs_per_s"] = out["messages"] / wall
    print(json.dumps(out))


def cmd_cpu(*pgids):
    """utime+stime+cutime+cstime (s) summed over every process of each group."""
    tck = os.sysconf("SC_CLK_TCK")
    want = {int(p): 0 for p in pgids}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                st = f.read()
        except OSError:
            continue
        f = st[st.rindex(")") + 2:].split()
        pgrp = int(f[2])
        if pgrp in want:
            want[pgrp] += sum(int(x) for x in f[11:15])
    print(" ".join(f"{want[int(p)] / tck:.2f}" for p in pgids))


def cmd_comm(pgid):
    """{command name: utime+stime (s)} over the live processes of a group."""
    tck = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        f = st[st.rindex(")") + 2:].split()
        if int(f[2]) == int(pgid):
            out[comm] = out.get(comm, 0) + (int(f[11]) + int(f[12])) / tck
    print(json.dumps(out))


def main(argv):
    cmds = {"gen": cmd_gen, "stat": cmd_stat, "retr": cmd_retr, "rtt": cmd_rtt, "poll": cmd_poll,
            "cpu": cmd_cpu, "comm": cmd_comm}
    if len(argv) < 2 or argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        cmds[argv[1]](*argv[2:])
    except (Fail, OSError) as e:
        print(f"pop3bench {argv[1]}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
PYEOF
pyb() { "$PY" "$T/pop3bench.py" "$@"; }
# jget JSON KEY: one field of a helper's JSON output
jget() { "$PY" -c 'import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print(json.dumps(v) if isinstance(v,(list,dict)) else v)' "$1" "$2"; }

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# wait_greeting port: until a server there sends its "+OK" greeting (15 s)
wait_greeting() {
  local port=$1 line
  for _ in $(seq 150); do
    # (the braces: a bare `exec ... 2>/dev/null` would silence this shell's
    # stderr for good)
    if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
      line=""
      read -r -t 2 line <&3 || true
      exec 3<&- 3>&-
      case "$line" in +OK*) return 0 ;; esac
    fi
    sleep 0.1
  done
  return 1
}

# Run a copy, so a rebuild of build/ during the run cannot disturb it.
cp "$HF_ORIG" "$T/holdfast"
HF="$T/holdfast"
HFDATA="$T/holdfast-data"
DVDIR="$T/dovecot"
mkdir -p "$HFDATA" "$DVDIR/run" "$DVDIR/state" "$DVDIR/mail"

# --- users and mailboxes ------------------------------------------------------
POLL_LIST=()
for i in $(seq -w 1 "$POLL_USERS"); do POLL_LIST+=("poll$i"); done
ALL_USERS=(big tiny retr "${POLL_LIST[@]}")
echo "adding ${#ALL_USERS[@]} users (holdfast user add: one yescrypt hash each) ..." >&2
for u in "${ALL_USERS[@]}"; do
  printf '%s\n' "$PASSWORD" | "$HF" --data "$HFDATA" user add "$u" --password-stdin \
    >"$T/user-add.out" 2>&1 || { cat "$T/user-add.out" >&2; die "holdfast user add $u failed"; }
done
# Dovecot's own passwd-file: the very same hashes (holdfast's DATA/users is a
# Dovecot passwd-file), or {PLAIN} with DV_PASS=plain.
if [ "$DV_PASS" = crypt ]; then
  cp "$HFDATA/users" "$DVDIR/users"
else
  for u in "${ALL_USERS[@]}"; do printf '%s:{PLAIN}%s::::::\n' "$u" "$PASSWORD"; done > "$DVDIR/users"
fi
chmod 600 "$DVDIR/users"
# One connection per client session must never hit holdfast's per-address
# limit (50 by default: 50 clients reconnecting would touch it).
printf '[pop3]\nmax_connections_per_ip = 1000\n' > "$HFDATA/holdfast.toml"

echo "generating mailboxes: big $BIG_N x $BIG_MIN-$BIG_MAX B, retr $RETR_N x $RETR_SIZE B, $POLL_USERS x $POLL_MSGS ..." >&2
GEN_BIG=$(pyb gen "$HFDATA/mail/big" "$BIG_N" "$BIG_MIN" "$BIG_MAX" 1) || die "generating big"
GEN_TINY=$(pyb gen "$HFDATA/mail/tiny" 1 1000 1000 2) || die "generating tiny"
GEN_RETR=$(pyb gen "$HFDATA/mail/retr" "$RETR_N" "$RETR_SIZE" "$RETR_SIZE" 3 "$T/retr.digest") || die "generating retr"
k=10
for u in "${POLL_LIST[@]}"; do
  GEN_POLL=$(pyb gen "$HFDATA/mail/$u" "$POLL_MSGS" 1024 8192 "$k") || die "generating $u"
  k=$((k + 1))
done
for u in "${ALL_USERS[@]}"; do cp -a "$HFDATA/mail/$u" "$DVDIR/mail/$u"; done
chown -R "$MUID:$MGID" "$DVDIR/mail" "$DVDIR/users" 2>/dev/null || true
sync

# --- holdfast serve ---------------------------------------------------------
HF_LOG="$T/holdfast.log"
for attempt in 1 2 3; do
  HF_PORT=$(free_port)
  setsid "$HF" --data "$HFDATA" serve --lmtp "127.0.0.1:$(free_port)" --pop3 "127.0.0.1:$HF_PORT" </dev/null >"$HF_LOG" 2>&1 &
  HF_PID=$!
  for _ in $(seq 300); do
    grep -q 'event=ready' "$HF_LOG" 2>/dev/null && break
    kill -0 "$HF_PID" 2>/dev/null || break
    sleep 0.1
  done
  if grep -q 'event=ready' "$HF_LOG" && wait_greeting "$HF_PORT"; then break; fi
  tail -20 "$HF_LOG" >&2
  stop_group "$HF_PID" 5; HF_PID=""
  [ $attempt -lt 3 ] || die "holdfast serve did not start"
done

# --- private Dovecot with POP3 on loopback ----------------------------------
for attempt in 1 2 3; do
  DV_PORT=$(free_port)
  cat > "$DVDIR/dovecot.conf" <<DVEOF
# Private Dovecot for pop3_bench.sh: nothing shared with a system Dovecot.
base_dir = $DVDIR/run
state_dir = $DVDIR/state
instance_name = hf-pop3-bench-$$
log_path = $DVDIR/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
passdb {
  driver = passwd-file
  args = username_format=%Ln $DVDIR/users
}
userdb {
  driver = passwd-file
  args = username_format=%Ln $DVDIR/users
}
mail_location = maildir:$DVDIR/mail/%Ln
# As durable as holdfast: fsync mail data, directories and index files.
mail_fsync = always
$([ "$DV_AUTH_CACHE" = 1 ] && printf 'auth_cache_size = 10M\nauth_cache_ttl = 1 hour\n')
# Dovecot will not access mail as root.
mail_uid = $MUID
mail_gid = $MGID
first_valid_uid = $FIRST_UID
first_valid_gid = $FIRST_GID
default_internal_user = $MAILUSER
default_internal_group = $MGROUP
default_login_user = $LOGIN_USER
pop3_uidl_format = %08Xu%08Xv
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $DV_PORT
  }
}
DVEOF
  if [ "$(id -u)" -ne 0 ]; then
    printf 'service anvil {\n  chroot =\n}\nservice pop3-login {\n  chroot =\n}\n' >> "$DVDIR/dovecot.conf"
  fi
  "$DOVECOT" -c "$DVDIR/dovecot.conf" -n >/dev/null || die "Dovecot rejects $DVDIR/dovecot.conf"
  setsid "$DOVECOT" -F -c "$DVDIR/dovecot.conf" </dev/null >>"$DVDIR/dovecot.log" 2>&1 &
  DV_PID=$!
  if wait_greeting "$DV_PORT"; then break; fi
  tail -20 "$DVDIR/dovecot.log" >&2
  stop_group "$DV_PID" 5; DV_PID=""
  [ $attempt -lt 3 ] || die "private Dovecot did not start"
done

# --- helpers ----------------------------------------------------------------
load1() { cut -d' ' -f1 /proc/loadavg; }
load3() { cut -d' ' -f1-3 /proc/loadavg; }
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
fmt() { awk -v x="$1" -v d="${2:-0}" 'BEGIN { printf "%.*f", d, x }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b == 0 ? 0 : a / b) }'; }
port_of() { if [ "$1" = holdfast ]; then echo "$HF_PORT"; else echo "$DV_PORT"; fi; }
pgid_of() { if [ "$1" = holdfast ]; then echo "$HF_PID"; else echo "$DV_PID"; fi; }
server_cpu() { pyb cpu "$(pgid_of "$1")"; }
server_alive() {
  kill -0 "$HF_PID" 2>/dev/null || { tail -20 "$HF_LOG" >&2; die "holdfast serve died"; }
  kill -0 "$DV_PID" 2>/dev/null || { tail -20 "$DVDIR/dovecot.log" >&2; die "Dovecot died"; }
}

# login_stat SERVER USER WANT_COUNT WANT_OCTETS: one login + STAT, checked;
# prints the JSON
login_stat() {
  local out count octets
  out=$(pyb stat "$(port_of "$1")" "$2" "$PASSWORD") || die "$1: login + STAT as $2 failed"
  count=$(jget "$out" count); octets=$(jget "$out" octets)
  [ "$count" = "$3" ] || die "$1: STAT for $2 says $count messages, expected $3"
  [ "$octets" = "$4" ] || die "$1: STAT for $2 says $octets octets, expected $4"
  echo "$out"
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

BIG_COUNT=$(jget "$GEN_BIG" count); BIG_OCTETS=$(jget "$GEN_BIG" octets); BIG_BYTES=$(jget "$GEN_BIG" bytes)
TINY_COUNT=$(jget "$GEN_TINY" count); TINY_OCTETS=$(jget "$GEN_TINY" octets)
RETR_COUNT=$(jget "$GEN_RETR" count); RETR_OCTETS=$(jget "$GEN_RETR" octets); RETR_DIGEST=$(jget "$GEN_RETR" digest)

# --- priming: each server indexes every mailbox once (not measured) -----------
echo "priming (holdfast POP3 on :$HF_PORT, Dovecot POP3 on :$DV_PORT): one login per mailbox and server ..." >&2
PRIME_NOTE=""
for s in holdfast dovecot; do
  t0=$(date +%s%N)
  login_stat $s big "$BIG_COUNT" "$BIG_OCTETS" >/dev/null
  t1=$(date +%s%N)
  PRIME_NOTE="$PRIME_NOTE $s $(( (t1 - t0) / 1000000 )) ms;"
  login_stat $s tiny "$TINY_COUNT" "$TINY_OCTETS" >/dev/null
  login_stat $s retr "$RETR_COUNT" "$RETR_OCTETS" >/dev/null
done
# poll users: each mailbox's expected STAT, from either server (checked equal)
for u in "${POLL_LIST[@]}"; do
  a=$(pyb stat "$HF_PORT" "$u" "$PASSWORD") || die "holdfast: login as $u failed"
  b=$(pyb stat "$DV_PORT" "$u" "$PASSWORD") || die "Dovecot: login as $u failed"
  [ "$(jget "$a" count) $(jget "$a" octets)" = "$(jget "$b" count) $(jget "$b" octets)" ] ||
    die "$u: holdfast STAT $(jget "$a" count) $(jget "$a" octets), Dovecot $(jget "$b" count) $(jget "$b" octets)"
  [ "$(jget "$a" count)" = "$POLL_MSGS" ] || die "$u: STAT says $(jget "$a" count), expected $POLL_MSGS"
done

# --- wait for a quieter machine ----------------------------------------------
LOAD_INITIAL=$(load3)
WAITED=0
above() { awk -v l="$(load1)" -v m="$LOAD_MAX" 'BEGIN { exit !(l > m) }'; }
while above && [ "$WAITED" -lt "$LOAD_WAIT" ]; do
  echo "load average $(load1) > $LOAD_MAX: waiting (${WAITED}s of at most ${LOAD_WAIT}s) ..." >&2
  sleep 15; WAITED=$(( WAITED + 15 ))
done
LOAD_BEFORE=$(load3)
if [ "$WAITED" -gt 0 ]; then
  LOAD_NOTE="waited ${WAITED}s for the 1-minute load to drop to $LOAD_MAX or below"
  if above; then LOAD_NOTE="$LOAD_NOTE; it did not -- measured anyway"; fi
elif above; then
  LOAD_NOTE="1-minute load above $LOAD_MAX; LOAD_WAIT=$LOAD_WAIT, so measured without waiting"
else
  LOAD_NOTE="1-minute load <= $LOAD_MAX, no wait needed"
fi

# --- (a) login + STAT ----------------------------------------------------------
LOAD_A=$(load1)
declare -A W_BIG W_TINY W_PASS C_BIG
for s in holdfast dovecot; do W_BIG[$s]=""; W_TINY[$s]=""; C_BIG[$s]=""; done
echo "(a) warm login + STAT: $WARM_RUNS runs per server, alternating (load $(load1)) ..." >&2
for ((r = 0; r < WARM_RUNS; r++)); do
  for s in holdfast dovecot; do
    out=$(login_stat $s big "$BIG_COUNT" "$BIG_OCTETS"); W_BIG[$s]="${W_BIG[$s]} $(fmt "$(jget "$out" ms)" 1)"
    out=$(login_stat $s tiny "$TINY_COUNT" "$TINY_OCTETS"); W_TINY[$s]="${W_TINY[$s]} $(fmt "$(jget "$out" ms)" 1)"
  done
done
if [ "$COLD" = 1 ]; then
  echo "(a) cold login + STAT: $COLD_RUNS runs per server, index deleted and page cache dropped before each ..." >&2
  for ((r = 0; r < COLD_RUNS; r++)); do
    for s in holdfast dovecot; do
      if [ $s = holdfast ]; then
        rm -f "$HFDATA/mail/big/holdfast.index"
      else
        rm -f "$DVDIR/mail/big/"dovecot.index* "$DVDIR/mail/big/dovecot-uidlist"
      fi
      drop_caches
      out=$(login_stat $s big "$BIG_COUNT" "$BIG_OCTETS"); C_BIG[$s]="${C_BIG[$s]} $(fmt "$(jget "$out" ms)" 0)"
      echo "  $s cold: $(jget "$out" ms) ms" >&2
    done
  done
fi
server_alive

# The cold case dropped the page cache: read (b)'s and (c)'s mailboxes and
# indexes back in, for both servers alike.
find "$HFDATA/mail" "$DVDIR/mail" -mindepth 1 -maxdepth 1 ! -name big -print0 |
  xargs -0 -I{} find {} -type f -print0 | xargs -0 cat > /dev/null

# --- (b) retrieval --------------------------------------------------------------
LOAD_B=$(load1)
declare -A B_RATE B_MB B_CPU B_CCPU
for s in holdfast dovecot; do B_RATE[$s]=""; B_MB[$s]=""; B_CPU[$s]=""; B_CCPU[$s]=""; done
echo "(b) retrieval of $RETR_N x $RETR_SIZE B: one unmeasured run per server (the cold case dropped the page cache), then $RETR_RUNS runs per server, alternating (load $(load1)) ..." >&2
for s in holdfast dovecot; do
  out=$(pyb retr "$(port_of $s)" retr "$PASSWORD" "$WINDOW") || die "$s: retrieval failed"
  [ "$(jget "$out" digest)" = "$RETR_DIGEST" ] || die "$s: the retrieved messages differ from the generated ones (digest)"
done
for ((r = 0; r < RETR_RUNS; r++)); do
  for s in holdfast dovecot; do
    c0=$(server_cpu $s)
    out=$(pyb retr "$(port_of $s)" retr "$PASSWORD" "$WINDOW") || die "$s: retrieval failed"
    c1=$(server_cpu $s)
    [ "$(jget "$out" count)" = "$RETR_COUNT" ] || die "$s: LIST listed $(jget "$out" count) messages, expected $RETR_COUNT"
    [ "$(jget "$out" size_mismatch)" = "[]" ] || die "$s: RETR sizes differ from LIST for messages $(jget "$out" size_mismatch)"
    [ "$(jget "$out" octets)" = "$RETR_OCTETS" ] || die "$s: retrieved $(jget "$out" octets) octets, expected $RETR_OCTETS"
    [ "$(jget "$out" digest)" = "$RETR_DIGEST" ] || die "$s: the retrieved messages differ from the generated ones (digest)"
    B_RATE[$s]="${B_RATE[$s]} $(fmt "$(jget "$out" msgs_per_s)" 0)"
    B_MB[$s]="${B_MB[$s]} $(fmt "$(jget "$out" mb_per_s)" 1)"
    B_CPU[$s]="${B_CPU[$s]} $(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')"
    B_CCPU[$s]="${B_CCPU[$s]} $(fmt "$(jget "$out" client_cpu_s)" 2)/$(fmt "$(jget "$out" secs)" 2)"
    echo "  $s: $(fmt "$(jget "$out" msgs_per_s)" 0) msg/s, $(fmt "$(jget "$out" mb_per_s)" 1) MB/s, server CPU $(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }') s, client CPU $(fmt "$(jget "$out" client_cpu_s)" 2) s of $(fmt "$(jget "$out" secs)" 2) s" >&2
  done
done
echo "(b) RETR one at a time (no pipelining): $RTT_N messages per server ..." >&2
declare -A RTT
for s in holdfast dovecot; do
  out=$(pyb rtt "$(port_of $s)" retr "$PASSWORD" "$RTT_N") || die "$s: RETR one at a time failed"
  [ "$(jget "$out" count)" = "$RTT_N" ] || die "$s: RETR one at a time: $(jget "$out" count) of $RTT_N"
  RTT[$s]="$(fmt "$(jget "$out" median_ms)" 2) $(fmt "$(jget "$out" min_ms)" 2) $(fmt "$(jget "$out" max_ms)" 2)"
done
server_alive

# --- (c) concurrent polling -------------------------------------------------------
LOAD_C=$(load1)
USERS_CSV=$(IFS=,; echo "${POLL_LIST[*]}")
SLICE_SECS=$(awk -v a="$POLL_SECS" -v b="$POLL_SLICES" 'BEGIN { printf "%.3f", a / b }')
declare -A P_SESS P_MSGS P_WALL P_CPU P_CCPU
for s in holdfast dovecot; do P_SESS[$s]=0; P_MSGS[$s]=0; P_WALL[$s]=0; P_CPU[$s]=0; P_CCPU[$s]=0; done
DV_AUTH=0
echo "(c) $POLL_USERS concurrent clients: 2 s unmeasured per server, then ${POLL_SECS}s per server in $POLL_SLICES slices (load $(load1)) ..." >&2
for s in holdfast dovecot; do
  out=$(pyb poll "$(port_of $s)" "$USERS_CSV" "$PASSWORD" 2 "$POLL_PROCS" "$POLL_RETR" "$POLL_MSGS") ||
    die "$s: polling clients failed (warm-up)"
  [ "$(jget "$out" errors)" = "[]" ] || die "$s: client errors (warm-up): $(jget "$out" errors)"
done
for ((r = 0; r < POLL_SLICES; r++)); do
  for s in holdfast dovecot; do
    [ $s = dovecot ] && a0=$(pyb comm "$DV_PID")
    c0=$(server_cpu $s)
    out=$(pyb poll "$(port_of $s)" "$USERS_CSV" "$PASSWORD" "$SLICE_SECS" "$POLL_PROCS" "$POLL_RETR" "$POLL_MSGS") ||
      die "$s: polling clients failed"
    c1=$(server_cpu $s)
    if [ $s = dovecot ]; then
      a1=$(pyb comm "$DV_PID")
      DV_AUTH=$(awk -v a="$DV_AUTH" -v x="$(jget "$a0" auth 2>/dev/null || echo 0)" -v y="$(jget "$a1" auth 2>/dev/null || echo 0)" 'BEGIN { print a + y - x }')
    fi
    [ "$(jget "$out" errors)" = "[]" ] || die "$s: client errors: $(jget "$out" errors)"
    [ "$(jget "$out" sessions)" -gt 0 ] || die "$s: no session completed"
    P_SESS[$s]=$(( ${P_SESS[$s]} + $(jget "$out" sessions) ))
    P_MSGS[$s]=$(( ${P_MSGS[$s]} + $(jget "$out" messages) ))
    P_WALL[$s]=$(awk -v a="${P_WALL[$s]}" -v b="$(jget "$out" wall)" 'BEGIN { print a + b }')
    P_CPU[$s]=$(awk -v a="${P_CPU[$s]}" -v b="$c0" -v c="$c1" 'BEGIN { print a + c - b }')
    P_CCPU[$s]=$(awk -v a="${P_CCPU[$s]}" -v b="$(jget "$out" client_cpu_s)" 'BEGIN { print a + b }')
    echo "  $s: $(jget "$out" sessions) sessions, $(jget "$out" messages) messages in $(fmt "$(jget "$out" wall)" 2) s; server CPU $(awk -v b="$c0" -v c="$c1" 'BEGIN { printf "%.2f", c - b }') s, client CPU $(fmt "$(jget "$out" client_cpu_s)" 2) s" >&2
  done
done
server_alive
LOAD_AFTER=$(load3)

# --- the servers' own account of the run ------------------------------------------
stop_group "$HF_PID" 45
wait "$HF_PID" 2>/dev/null || true
HF_PID=""
# Run as root, serve warns once at start that it keeps root (no `user =`
# in this private config): an advisory about the set-up, not a fault.
BAD=$(grep -v -E '^[^ ]+ info ' "$HF_LOG" | grep -v -E '^[^ ]+ warn event=running_as_root ' || true)
if [ -n "$BAD" ]; then
  echo "$BAD" | head -20 >&2
  die "holdfast logged $(wc -l <<<"$BAD") line(s) that are not 'info' (see above)"
fi
HF_LOGINS=$(grep -c 'event=login ' "$HF_LOG" || true)
HF_BADLOGINS=$(grep 'event=login ' "$HF_LOG" | grep -vc 'result=ok' || true)
HF_CACHED=$(grep 'event=login ' "$HF_LOG" | grep -c ' auth=cached' || true)
[ "$HF_BADLOGINS" = 0 ] || die "holdfast: $HF_BADLOGINS login(s) did not succeed (see $HF_LOG)"
DV_BAD=$(grep -E '(Error|Fatal|Panic):' "$DVDIR/dovecot.log" || true)
if [ -n "$DV_BAD" ]; then
  echo "$DV_BAD" | head -20 >&2
  die "Dovecot logged $(wc -l <<<"$DV_BAD") error line(s) (see above)"
fi
DV_WARN=$(grep -c 'Warning:' "$DVDIR/dovecot.log" || true)

# --- report ---------------------------------------------------------------------
# speed-up: > 1 means holdfast is faster
su_time() { div "$2" "$1"; }   # holdfast_time dovecot_time
su_rate() { div "$1" "$2"; }   # holdfast_rate dovecot_rate
verdict() { if [ "$1" = 1 ]; then echo "met"; else echo "**not met**"; fi; }
ROWS=()
hw=$(median ${W_TINY[holdfast]}); dw=$(median ${W_TINY[dovecot]})
ROWS+=("| (a) login + STAT, 1-message mailbox, warm (ms, median of $WARM_RUNS) | $hw | $dw | $(su_time "$hw" "$dw") | (reference: password hash + session set-up) | |")
hw=$(median ${W_BIG[holdfast]}); dw=$(median ${W_BIG[dovecot]})
ok=$(awk -v h="$hw" 'BEGIN { print (h < 50) }')
ROWS+=("| (a) login + STAT, $BIG_COUNT messages, warm (ms, median of $WARM_RUNS) | $hw | $dw | $(su_time "$hw" "$dw") | holdfast < 50 ms | $(verdict "$ok") |")
if [ "$COLD" = 1 ]; then
  hc=$(median ${C_BIG[holdfast]}); dc=$(median ${C_BIG[dovecot]})
  ok=$(awk -v h="$hc" -v d="$dc" 'BEGIN { print (h < d) }')
  ROWS+=("| (a) login + STAT, $BIG_COUNT messages, cold (ms, median of $COLD_RUNS) | $hc | $dc | $(su_time "$hc" "$dc") | holdfast < Dovecot | $(verdict "$ok") |")
fi
hr=$(median ${B_RATE[holdfast]}); dr=$(median ${B_RATE[dovecot]})
ok=$(awk -v h="$hr" -v d="$dr" 'BEGIN { print (h >= 1.5 * d) }')
ROWS+=("| (b) RETR $RETR_COUNT x $RETR_SIZE B, one pipelined client (messages/s, median of $RETR_RUNS) | $hr | $dr | $(su_rate "$hr" "$dr") | ≥ 1.5× Dovecot | $(verdict "$ok") |")
hm=$(median ${B_MB[holdfast]}); dm=$(median ${B_MB[dovecot]})
ROWS+=("| (b) the same, MB/s (10^6 octets of message) | $hm | $dm | $(su_rate "$hm" "$dm") | | |")
hl=$(cut -d' ' -f1 <<<"${RTT[holdfast]}"); dl=$(cut -d' ' -f1 <<<"${RTT[dovecot]}")
ROWS+=("| (b') RETR one at a time, no pipelining (ms per message, median of $RTT_N) | $hl | $dl | $(su_time "$hl" "$dl") | | |")
hs=$(awk -v n="${P_SESS[holdfast]}" -v w="${P_WALL[holdfast]}" 'BEGIN { printf "%.1f", n / w }')
ds=$(awk -v n="${P_SESS[dovecot]}" -v w="${P_WALL[dovecot]}" 'BEGIN { printf "%.1f", n / w }')
ok=$(awk -v h="$hs" -v d="$ds" 'BEGIN { print (h >= d) }')
ROWS+=("| (c) $POLL_USERS clients polling: sessions/s ($POLL_SECS s per server) | $hs | $ds | $(su_rate "$hs" "$ds") | ≥ Dovecot | $(verdict "$ok") |")
hp=$(awk -v n="${P_MSGS[holdfast]}" -v w="${P_WALL[holdfast]}" 'BEGIN { printf "%.1f", n / w }')
dp=$(awk -v n="${P_MSGS[dovecot]}" -v w="${P_WALL[dovecot]}" 'BEGIN { printf "%.1f", n / w }')
ok=$(awk -v h="$hp" -v d="$dp" 'BEGIN { print (h >= d) }')
ROWS+=("| (c) the same, messages/s | $hp | $dp | $(su_rate "$hp" "$dp") | ≥ Dovecot | $(verdict "$ok") |")
hcs=$(awk -v c="${P_CPU[holdfast]}" -v n="${P_SESS[holdfast]}" 'BEGIN { printf "%.1f", 1000 * c / n }')
dcs=$(awk -v c="${P_CPU[dovecot]}" -v n="${P_SESS[dovecot]}" 'BEGIN { printf "%.1f", 1000 * c / n }')
ROWS+=("| (c) server CPU per session (ms) | $hcs | $dcs | $(su_time "$hcs" "$dcs") | | |")

FS_INFO=$(findmnt -n -T "$T" -o SOURCE,FSTYPE,OPTIONS 2>/dev/null || echo unknown)
CCPU_H=$(awk -v c="${P_CCPU[holdfast]}" -v w="${P_WALL[holdfast]}" 'BEGIN { printf "%.0f", 100 * c / w }')
CCPU_D=$(awk -v c="${P_CCPU[dovecot]}" -v w="${P_WALL[dovecot]}" 'BEGIN { printf "%.0f", 100 * c / w }')
SCPU_H=$(awk -v c="${P_CPU[holdfast]}" -v w="${P_WALL[holdfast]}" 'BEGIN { printf "%.0f", 100 * c / w }')
SCPU_D=$(awk -v c="${P_CPU[dovecot]}" -v w="${P_WALL[dovecot]}" 'BEGIN { printf "%.0f", 100 * c / w }')
cat <<REPORT

## POP3: holdfast serve vs Dovecot POP3

- command: \`${BENCH_CMD:-bench/pop3_bench.sh}\` (BIG_N=$BIG_N BIG_MIN=$BIG_MIN BIG_MAX=$BIG_MAX WARM_RUNS=$WARM_RUNS COLD_RUNS=$COLD_RUNS COLD=$COLD RETR_N=$RETR_N RETR_SIZE=$RETR_SIZE RETR_RUNS=$RETR_RUNS WINDOW=$WINDOW POLL_USERS=$POLL_USERS POLL_MSGS=$POLL_MSGS POLL_RETR=$POLL_RETR POLL_SECS=$POLL_SECS POLL_SLICES=$POLL_SLICES POLL_PROCS=$POLL_PROCS DV_PASS=$DV_PASS DV_AUTH_CACHE=$DV_AUTH_CACHE)
- date: $(date -u '+%Y-%m-%d %H:%M UTC')
- machine: $(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, kernel $(uname -r)
- file system: $FS_INFO (scratch dir under $PARENT)
- holdfast: $("$HF" --version 2>/dev/null || echo '?') serve ($HF_ORIG, CMAKE_BUILD_TYPE=${BUILD_TYPE:-unknown}), pop3.max_connections_per_ip = 1000, otherwise defaults
- Dovecot: $("$DOVECOT" --version) POP3 (dovecot-pop3d), default services (a login process and a pop3 process per connection), mail_fsync = always, default Maildir index settings
- passwords: both check the same yescrypt hash (\`{CRYPT}\$y\$j9T\$...\`, from \`holdfast user add\`)$([ "$DV_PASS" = plain ] && echo " -- NO: DV_PASS=plain, Dovecot checks {PLAIN} passwords"); holdfast's credentials cache on (its default), Dovecot's auth_cache $([ "$DV_AUTH_CACHE" = 1 ] && echo "on (DV_AUTH_CACHE=1: auth_cache_size = 10M, auth_cache_ttl = 1 hour)" || echo "off (its default)")
- client: $("$PY" --version 2>&1), raw sockets; (b) pipelines $WINDOW RETRs; (c) $POLL_PROCS processes x threads
- mailboxes: $BIG_COUNT messages of $BIG_MIN-$BIG_MAX B ($BIG_BYTES bytes) for (a); $RETR_COUNT x $RETR_SIZE B for (b); $POLL_USERS x $POLL_MSGS messages of 1-8 KiB for (c); generated in cur/ (:2,S), copied with cp -a
- priming login on the $BIG_COUNT-message mailbox (each server's first sight of the files):$PRIME_NOTE
- load average (1/5/15 min) at start / before measuring / after: $LOAD_INITIAL / $LOAD_BEFORE / $LOAD_AFTER ($LOAD_NOTE); 1-minute load at (a) $LOAD_A, (b) $LOAD_B, (c) $LOAD_C
- checked: every STAT count and octet total as generated, on both servers; (b) every RETR as long as LIST said and the retrieved set identical to the generated set (SHA-256) on both; (c) no client error, STAT/UIDL consistent; holdfast $HF_LOGINS logins, all ok ($HF_CACHED answered from its credentials cache, pop3.auth_cache_ttl_ms), nothing but info lines logged (besides the start-up warning event=running_as_root when run as root); Dovecot no Error/Fatal/Panic ($DV_WARN Warning lines)

| case | holdfast | Dovecot | holdfast speed-up | target | |
|---|---:|---:|---:|---|---|
REPORT
printf '%s\n' "${ROWS[@]}"
cat <<REPORT

Per run (ms or per second, in run order):
- (a) warm, $BIG_COUNT: holdfast${W_BIG[holdfast]}; Dovecot${W_BIG[dovecot]}. 1 message: holdfast${W_TINY[holdfast]}; Dovecot${W_TINY[dovecot]}
- (a) cold, $BIG_COUNT: holdfast${C_BIG[holdfast]:- (skipped)}; Dovecot${C_BIG[dovecot]:- (skipped)}
- (b) messages/s: holdfast${B_RATE[holdfast]}; Dovecot${B_RATE[dovecot]}. Server CPU s per run: holdfast${B_CPU[holdfast]}; Dovecot${B_CPU[dovecot]}. Client CPU s / wall s: holdfast${B_CCPU[holdfast]}; Dovecot${B_CCPU[dovecot]}
- (b') RETR one at a time, median / min / max ms: holdfast ${RTT[holdfast]}; Dovecot ${RTT[dovecot]}
- (c) sessions / messages: holdfast ${P_SESS[holdfast]} / ${P_MSGS[holdfast]} in $(fmt "${P_WALL[holdfast]}" 1) s, Dovecot ${P_SESS[dovecot]} / ${P_MSGS[dovecot]} in $(fmt "${P_WALL[dovecot]}" 1) s; server CPU holdfast $SCPU_H %, Dovecot $SCPU_D % of one CPU; client CPU $CCPU_H % / $CCPU_D % of one CPU (of $(nproc) CPUs); Dovecot's auth process $(awk -v c="$DV_AUTH" -v w="${P_WALL[dovecot]}" 'BEGIN { printf "%.0f", 100 * c / w }') % of one CPU
REPORT
