#!/usr/bin/env bash
# poison_drain.sh -- how fast the filter stage of `holdfast serve` drains a
# backlog through one external `command` filter step, with and without poison
# messages (a filter that segfaults, loops, or allocates without bound on
# them) mixed in.
#
# A benchmark, not a test: it prints a markdown table of the drain time of a
# backlog of N messages, clean and with POISON poison messages among them,
# their ratio (target: poison/clean <= 1.25), the attempts each poison
# message cost, and the worst delay an innocent message saw.
#
# The filter: one `[[filters.chain]]` step of type "command", a /bin/sh
# (dash) script that reads the message's header from stdin (shell builtin
# `read`, up to the empty line) and exits 0 with no output -- "deliver,
# unchanged" (docs/filters.md, "Exit status", "Directives") -- unless the
# header has an `X-Poison:` field:
#   X-Poison: segv   `kill -SEGV $$`: the filter dies by SIGSEGV at once
#   X-Poison: loop   `while :; do :; done`: burns CPU until the step's
#                    timeout_ms (TIMEOUT_MS, default 2000 ms) kills its group
#   X-Poison: alloc  exec /usr/bin/python3 appending 1 MiB bytearrays until
#                    the [filters] memory_bytes limit (RLIMIT_AS; MEM_MB,
#                    default 64 MiB, ample for a worker with a batch of
#                    32 small messages) makes it fail with MemoryError. On
#                    a 2-CPU VM python needs 0.3 s alone to reach 64 MiB,
#                    0.4 s for 128 MiB, 0.8 s for 256 MiB: with the CPUs
#                    busy, 128 MiB and more often ran into the 2 s timeout
#                    instead (the reason then says "timeout").
# Each kind is a failure of the step on that message (it counts towards K =
# [filters] max_attempts, default 3, the message is retried alone at once),
# so every poison message should end in the quarantine after exactly K
# attempts. The kinds are mixed equally (segv, loop, alloc in turn) at
# random positions (SEED) in the sending order; the poison run has N-POISON
# innocent messages and POISON poison ones, N in all, the clean run N
# innocent ones. Messages are otherwise alike (SIZE bytes, one recipient).
# Core dumps are off (ulimit -c 0) for everything the script starts.
#
# How the backlog is made (the same for both runs, each in a fresh data
# directory): every message is made durable in the spool first, with the
# filter stage configured but unable to pass anything, then the server is
# restarted and the drain is timed from that start:
#   1. intake: `holdfast serve` with the chain below and
#      tempfail_delay_ms = 86400000 runs with HF_BENCH_GATE=1 in its
#      environment (which the filter commands inherit); with it the filter
#      exits 75 (EX_TEMPFAIL) at once, so whatever the filter stage picks up
#      during intake waits a day, and nothing reaches the mailbox. N
#      messages go in over LMTP (SESSIONS concurrent raw-socket sessions,
#      PIPELINING, every reply must be 250).
#   2. SIGTERM; the script checks that `holdfast queue list` holds exactly N
#      messages and the mailbox none.
#   3. drain: `holdfast serve` again, same data directory and configuration,
#      without HF_BENCH_GATE. Replay puts all N messages in the filter queue,
#      due at once (a temporary failure's delay is not kept across a
#      restart). The clock starts just before serve is started (so replay
#      and mailbox recovery count) and stops when the drain is finished:
#      DATA/mail/bench/{new,cur} holds every innocent message, DATA/quarantine
#      every poison message (*.q files), and `holdfast queue list` is empty
#      (polled every 0.1 s by one python process that counts with readdir;
#      `queue list` only once the two counts are there).
#      The configuration is the same in both phases: only the environment
#      differs.
# Figures, from the drain phase's event log (`holdfast trace --json`):
#   - attempts per poison message: its filter_failed events (min/mean/max,
#     and per kind); each poison must end `quarantined`, no innocent may
#     have a filter_failed or be quarantined, each innocent is delivered
#     exactly once;
#   - delay of an innocent message: from the drain's start (serve started)
#     to its `delivered` event. Every message is already waiting when the
#     drain starts, so its max is about the drain time of the innocent
#     messages; its p50 says how the middle of the queue fared. The table
#     gives both for both runs, and "max extra": the largest increase of one
#     message's delay in the poison run over the same message (same index
#     in the sending order) in the clean run.
#   - CPU per message: serve's own CPU time during the drain, and that of
#     its reaped children -- the workers, including the filter commands
#     they reaped (/proc/PID/stat utime+stime and cutime+cstime), divided
#     by N.
#   - filter alone: for reference, the same filter script run FILTER_REF
#     times in a row from bash on one innocent message (fork+exec+sh, no
#     holdfast), as runs/s.
#
# Usage:  bench/poison_drain.sh [--dir DIR]
#   --dir DIR     parent of the scratch directory (default /var/tmp). Removed
#                 afterwards (KEEP=1 keeps it).
# Environment:
#   HOLDFAST      the binary (default: build/holdfast; a Release build)
#   N             messages in the backlog                   (default 20000)
#   POISON        poison messages among them in the poison run (default 100)
#   SIZE          bytes per message, about                  (default 4096)
#   SESSIONS      concurrent LMTP sessions for the intake   (default 4)
#   TIMEOUT_MS    the filter step's timeout_ms              (default 2000)
#   MEM_MB        [filters] memory_bytes in MiB             (default 64)
#   WORKERS       [filters] workers                         (default 2, holdfast's default)
#   BATCH         [filters] batch_size                      (default 32, holdfast's default)
#   K             [filters] max_attempts                    (default 3, holdfast's default)
#   SEED          seed of the poison positions              (default 1)
#   FILTER_REF    runs of the filter alone for the reference rate (default 1000; 0: skip)
#   DRAIN_TIMEOUT seconds a drain may take before the run fails (default 3600)
#   LOAD_MAX      wait before measuring while the 1-minute load average is
#                 above this ...                              (default 3)
#   LOAD_WAIT     ... but at most this many seconds           (default 0: measure at once;
#                 the load is printed either way)
# Needs: python3 (/usr/bin/python3: the load generator, the analysis, and
# the alloc poison).
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
N="${N:-20000}"
POISON="${POISON:-100}"
SIZE="${SIZE:-4096}"
SESSIONS="${SESSIONS:-4}"
TIMEOUT_MS="${TIMEOUT_MS:-2000}"
MEM_MB="${MEM_MB:-64}"
WORKERS="${WORKERS:-2}"
BATCH="${BATCH:-32}"
K="${K:-3}"
SEED="${SEED:-1}"
FILTER_REF="${FILTER_REF:-1000}"
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-3600}"
LOAD_MAX="${LOAD_MAX:-3}"
LOAD_WAIT="${LOAD_WAIT:-0}"
PY=/usr/bin/python3

die() { echo "poison_drain: FAILED: $*" >&2; exit 1; }
note() { echo "poison_drain: $*" >&2; }
[ -x "$HF" ] || die "holdfast binary not found at $HF (build it: cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build; or set HOLDFAST)"
HF="$(cd "$(dirname "$HF")" && pwd)/$(basename "$HF")"
HF_ORIG="$HF"
[ -x "$PY" ] || die "$PY is needed (load generator, analysis, the alloc poison)"
[ "$POISON" -lt "$N" ] || die "POISON ($POISON) must be below N ($N)"
BUILD_TYPE="$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$(dirname "$HF")/CMakeCache.txt" 2>/dev/null || true)"
SANITIZE="$(sed -n 's/^HOLDFAST_SANITIZE:BOOL=//p' "$(dirname "$HF")/CMakeCache.txt" 2>/dev/null || true)"
case "$SANITIZE" in ON|on|1|TRUE|true) echo "WARNING: $HF is built with sanitizers" >&2; BUILD_TYPE="$BUILD_TYPE+ASan";; esac
if [ "$BUILD_TYPE" != "Release" ]; then
  echo "WARNING: $HF is not from a Release build (CMAKE_BUILD_TYPE='${BUILD_TYPE:-unknown}'); numbers are not representative." >&2
fi
ulimit -c 0

# --- scratch directory, server, cleanup --------------------------------------
mkdir -p "$PARENT"
T="$(mktemp -d "$PARENT/hf-poison-drain.XXXXXXXX")"
chmod 755 "$T"
HF_PID=""
stop_group() { # pid seconds: TERM the process, wait, then KILL its process group
  local pid=$1 secs=$2
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $(( secs * 10 ))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true   # its process group (setsid below)
}
cleanup() {
  [ -z "$HF_PID" ] || stop_group "$HF_PID" 30
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
now_ms() { date +%s%3N; }
load1() { cut -d' ' -f1 /proc/loadavg; }
load3() { cut -d' ' -f1-3 /proc/loadavg; }
# count_dir DIR: entries in DIR (ls -f: unsorted, fast for 20,000 files)
count_dir() { if [ -d "$1" ]; then ls -f "$1" | grep -vc '^\.\.\{0,1\}$' || true; else echo 0; fi; }
count_box() { echo $(( $(count_dir "$1/mail/bench/new") + $(count_dir "$1/mail/bench/cur") )); }
# queue_count DATA: messages `holdfast queue list` shows (its comment line aside)
queue_count() { "$HF" --data "$1" queue list 2>/dev/null | grep -v '^#' | grep -c . || true; }
count_quarantine() { if [ -d "$1/quarantine" ]; then ls -f "$1/quarantine" | grep -c '\.q$' || true; else echo 0; fi; }

# Run a copy, so a rebuild of build/ during the run cannot disturb it.
cp "$HF_ORIG" "$T/holdfast"
HF="$T/holdfast"

# --- the filter ----------------------------------------------------------------
cat > "$T/filter.sh" <<EOF
#!/bin/sh
# poison_drain.sh's filter: deliver (exit 0, no output) unless X-Poison says otherwise.
[ -z "\${HF_BENCH_GATE:-}" ] || exit 75   # intake phase: temporary failure, try tomorrow
cr='$(printf '\r')'                       # a literal CR: no subshell per message
kind=
while IFS= read -r line; do
  line=\${line%"\$cr"}
  [ -n "\$line" ] || break
  case \$line in
    X-Poison:*) kind=\${line#X-Poison:}; kind=\${kind# } ;;
  esac
done
case \$kind in
  segv) kill -SEGV \$\$ ;;
  loop) while :; do :; done ;;
  alloc) exec $PY -c 'x = []
while True: x.append(bytearray(1 << 20))' ;;
esac
exit 0
EOF
chmod 755 "$T/filter.sh"

# --- the load generator: N messages over LMTP, every reply checked -----------
# The drain's poller: one process counting with readdir every 0.1 s. (A
# shell loop forking ls, grep and sleep ten times a poll took about a third
# of a CPU from the drain it measured.) Exit 0: the counts are there; 2: the
# server is gone; 3: past the deadline (epoch seconds).
cat > "$T/wait.py" <<'EOF'
import os, sys, time
d, want_box, want_q, pid, deadline = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
def count(path, suffix=""):
    try:
        with os.scandir(path) as it:
            return sum(1 for e in it if e.name.endswith(suffix))
    except FileNotFoundError:
        return 0
while True:
    box = count(d + "/mail/bench/new") + count(d + "/mail/bench/cur")
    q = count(d + "/quarantine", ".q")
    if box >= want_box and q >= want_q:
        sys.exit(0)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(2)
    if time.time() > deadline:
        print(f"{box} of {want_box} in the mailbox, {q} of {want_q} in the quarantine", file=sys.stderr)
        sys.exit(3)
    time.sleep(0.1)
EOF
cat > "$T/load.py" <<'EOF'
import random, socket, sys, threading
port, n, poison, size, seed, sessions, tag = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                              int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7])
kinds = ["segv", "loop", "alloc"]
rng = random.Random(seed)
kind_of = {}
for j, pos in enumerate(rng.sample(range(n), poison)):
    kind_of[pos] = kinds[j % 3]

def message(i):
    kind = kind_of.get(i)
    head = (f"From: <bench@example.org>\r\nTo: <bench@localhost>\r\n"
            f"Subject: poison drain {tag} {i}\r\n"
            f"Message-ID: <pd.{i}.{kind or 'ok'}.{tag}@bench>\r\n"
            f"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n")
    if kind:
        head += f"X-Poison: {kind}\r\n"
    head += "\r\n"
    line = "the quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopq\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return (head + body).encode()

next_i = [0]
lock = threading.Lock()
errors = []

def reply(f):
    lines = []
    while True:
        l = f.readline()
        if not l:
            raise RuntimeError("connection closed")
        lines.append(l)
        if l[3:4] != b"-":
            return lines[-1]

def session():
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=120)
        f = s.makefile("rb")
        assert reply(f).startswith(b"220")
        s.sendall(b"LHLO bench\r\n")
        assert reply(f).startswith(b"250")
        while True:
            with lock:
                i = next_i[0]
                if i >= n:
                    break
                next_i[0] += 1
            s.sendall(b"MAIL FROM:<bench@example.org>\r\nRCPT TO:<bench@localhost>\r\nDATA\r\n")
            r = [reply(f) for _ in range(3)]
            if not (r[0].startswith(b"250") and r[1].startswith(b"250") and r[2].startswith(b"354")):
                raise RuntimeError(f"message {i}: {r}")
            s.sendall(message(i) + b".\r\n")
            r = reply(f)
            if not r.startswith(b"250"):
                raise RuntimeError(f"message {i}: {r}")
        s.sendall(b"QUIT\r\n")
        s.close()
    except Exception as e:
        errors.append(repr(e))

ts = [threading.Thread(target=session) for _ in range(sessions)]
for t in ts: t.start()
for t in ts: t.join()
if errors:
    print("\n".join(errors[:5]), file=sys.stderr)
    sys.exit(1)
EOF

# --- the analysis of one drain's event log ------------------------------------
cat > "$T/analyze.py" <<'EOF'
import json, re, sys
trace, t0, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
innocent, poison = {}, {}
problems = []
with open(trace) as f:
    for line in f:
        m = json.loads(line)
        ev = m["events"]
        mid = next((e.get("message_id", "") for e in ev if e["event"] in ("received", "replayed")), "")
        g = re.match(r"<pd\.(\d+)\.(\w+)\.", mid)
        if not g:
            problems.append(f"{m['id']}: unknown message_id {mid!r}")
            continue
        idx, kind = int(g.group(1)), g.group(2)
        drain = [e for e in ev if e["time_ms"] >= t0]
        delivered = [e["time_ms"] for e in drain if e["event"] == "delivered"]
        failed = [e for e in drain if e["event"] == "filter_failed"]
        quar = [e for e in drain if e["event"] == "quarantined"]
        if kind == "ok":
            if len(delivered) != 1 or failed or quar:
                problems.append(f"innocent {idx}: {len(delivered)} deliveries, {len(failed)} failures, {len(quar)} quarantined")
                continue
            innocent[idx] = delivered[0] - t0
        else:
            if len(quar) != 1 or delivered:
                problems.append(f"poison {idx} ({kind}): {len(quar)} quarantined, {len(delivered)} deliveries")
                continue
            poison[idx] = (kind, len(failed), quar[0]["time_ms"] - t0, quar[0].get("reason", ""))
json.dump({"innocent": innocent, "poison": poison, "problems": problems}, open(out, "w"))
for p in problems[:10]:
    print(p, file=sys.stderr)
sys.exit(1 if problems else 0)
EOF

# --- one run: intake with the gate closed, restart, timed drain ---------------
# run NAME POISONCOUNT: sets DRAIN_MS_<NAME>; leaves $T/NAME.json
run() {
  local name=$1 npoison=$2 d="$T/data-$1" port log t0 t1 n q want_box deadline
  mkdir -p "$d"
  printf '%s\n' "bench-password" | "$HF" --data "$d" user add bench --password-stdin >"$T/user-add.out" 2>&1 ||
    { cat "$T/user-add.out" >&2; die "holdfast user add failed"; }
  port=$(free_port)
  cat > "$d/holdfast.toml" <<EOF
[lmtp]
listen = "127.0.0.1:$port"
[pop3]
listen = ""
[metrics]
listen = ""
[spool]
max_backlog_messages = 10000000
max_backlog_bytes = 68719476736
[filters]
workers = $WORKERS
batch_size = $BATCH
max_attempts = $K
memory_bytes = $(( MEM_MB * 1024 * 1024 ))
tempfail_delay_ms = 86400000
[[filters.chain]]
type = "command"
name = "bench"
command = ["$T/filter.sh"]
timeout_ms = $TIMEOUT_MS
EOF
  # 1. intake
  log="$d/intake.log"
  HF_BENCH_GATE=1 setsid "$HF" --data "$d" serve </dev/null >"$log" 2>&1 &
  HF_PID=$!
  for _ in $(seq 600); do
    grep -q 'event=ready' "$log" 2>/dev/null && break
    kill -0 "$HF_PID" 2>/dev/null || { cat "$log" >&2; die "$name: holdfast serve (intake) exited"; }
    sleep 0.1
  done
  grep -q 'event=ready' "$log" || die "$name: holdfast serve (intake) not ready after 60 s"
  note "$name: intake of $N messages ($npoison poison) over $SESSIONS LMTP sessions ..."
  t0=$(now_ms)
  "$PY" "$T/load.py" "$port" "$N" "$npoison" "$SIZE" "$SEED" "$SESSIONS" "$name" || die "$name: LMTP intake failed (log: $log)"
  t1=$(now_ms)
  note "$name: intake took $(( t1 - t0 )) ms; stopping the server"
  stop_group "$HF_PID" 60
  wait "$HF_PID" 2>/dev/null || true
  HF_PID=""
  grep -q 'event=stopped' "$log" || die "$name: intake server did not log event=stopped"
  # 2. the backlog
  n=$(queue_count "$d")
  [ "$n" -eq "$N" ] || die "$name: the spool holds $n messages after intake, expected $N"
  [ "$(count_box "$d")" -eq 0 ] || die "$name: mail reached the mailbox during intake"
  [ "$(count_quarantine "$d")" -eq 0 ] || die "$name: mail reached the quarantine during intake"
  sync
  # 3. the drain
  log="$d/drain.log"
  want_box=$(( N - npoison ))
  note "$name: draining (load $(load1)) ..."
  t0=$(now_ms)
  setsid "$HF" --data "$d" serve </dev/null >"$log" 2>&1 &
  HF_PID=$!
  deadline=$(( $(date +%s) + DRAIN_TIMEOUT ))
  for (( ; ; )); do
    rc=0
    "$PY" "$T/wait.py" "$d" "$want_box" "$npoison" "$HF_PID" "$deadline" || rc=$?
    [ "$rc" -ne 2 ] || { tail -20 "$log" >&2; die "$name: holdfast serve exited during the drain"; }
    [ "$rc" -eq 0 ] || die "$name: not drained after ${DRAIN_TIMEOUT}s"
    [ "$(queue_count "$d")" != 0 ] || break
    sleep 0.1
  done
  t1=$(now_ms)
  # CPU of the drain: serve's own, and its reaped children's (the workers,
  # which reaped their filter commands): /proc/PID/stat utime+stime, cutime+cstime.
  local cpu
  cpu=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.0f %.0f", ($14 + $15) * 1000 / hz, ($16 + $17) * 1000 / hz }' "/proc/$HF_PID/stat" 2>/dev/null || echo "0 0")
  eval "CPU_$name=\"$cpu\""
  eval "DRAIN_MS_$name=$(( t1 - t0 ))"
  eval "T0_$name=$t0"
  note "$name: drained in $(( t1 - t0 )) ms"
  stop_group "$HF_PID" 60
  wait "$HF_PID" 2>/dev/null || true
  HF_PID=""
  [ "$(count_box "$d")" -eq "$want_box" ] || die "$name: $(count_box "$d") messages in the mailbox, expected $want_box"
  [ "$(count_quarantine "$d")" -eq "$npoison" ] || die "$name: $(count_quarantine "$d") in the quarantine, expected $npoison"
  q=$("$HF" --data "$d" queue quarantine list | grep -c '^[0-9A-Z]\{26\}' || true)
  [ "$q" -eq "$npoison" ] || die "$name: holdfast queue quarantine list shows $q entries, expected $npoison"
  "$HF" --data "$d" trace bench@example.org --json > "$T/$name.trace" || die "$name: holdfast trace failed"
  "$PY" "$T/analyze.py" "$T/$name.trace" "$t0" "$T/$name.json" || die "$name: the event log disagrees (see above)"
  BAD=$(grep -v -E '^[^ ]+ info ' "$log" | grep -v -E '^[^ ]+ warn event=running_as_root ' || true)
  if [ -n "$BAD" ]; then
    echo "$BAD" | head -5 >&2
    note "$name: note: the drain's log has $(wc -l <<<"$BAD") line(s) that are not 'info' (first 5 above)"
  fi
}

WAITED=0
while awk -v l="$(load1)" -v m="$LOAD_MAX" 'BEGIN { exit !(l > m) }' && [ "$WAITED" -lt "$LOAD_WAIT" ]; do
  note "load average $(load1) > $LOAD_MAX: waiting (${WAITED}s of at most ${LOAD_WAIT}s) ..."
  sleep 15; WAITED=$(( WAITED + 15 ))
done
LOAD_BEFORE=$(load3)
START_S=$(date +%s)
run clean 0
run poison "$POISON"
LOAD_AFTER=$(load3)

# --- the filter alone -----------------------------------------------------------
REF="-"
if [ "$FILTER_REF" -gt 0 ]; then
  "$PY" - "$SIZE" > "$T/one.eml" <<'EOF'
import sys
size = int(sys.argv[1])
head = "From: <bench@example.org>\r\nTo: <bench@localhost>\r\nSubject: ref\r\nMessage-ID: <ref@bench>\r\n\r\n"
line = "the quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopq\r\n"
sys.stdout.write(head + line * max(1, (size - len(head)) // len(line)))
EOF
  t0=$(date +%s%N)
  for (( i = 0; i < FILTER_REF; i++ )); do "$T/filter.sh" < "$T/one.eml"; done
  t1=$(date +%s%N)
  REF=$(awk -v n="$FILTER_REF" -v ns=$(( t1 - t0 )) 'BEGIN { printf "%.0f", n / (ns / 1e9) }')
fi

# --- the table -------------------------------------------------------------------
TABLE=$("$PY" - "$T/clean.json" "$T/poison.json" "$DRAIN_MS_clean" "$DRAIN_MS_poison" "$N" "$POISON" "$K" $CPU_clean $CPU_poison <<'EOF'
import json, sys
c, p = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
dc, dp, n, npois, k, cs, cc, ps, pc = (int(x) for x in sys.argv[3:12])
def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(q / 100 * len(v) + 0.999999) - 1))]
ci = c["innocent"]; pi = p["innocent"]
att = [a for (_, a, _, _) in p["poison"].values()]
by = {}
for kind, a, _, reason in p["poison"].values():
    by.setdefault(kind, []).append(a)
kinds = ", ".join(f"{kd} {min(v)}-{max(v)} ({len(v)})" for kd, v in sorted(by.items()))
extra = max(pi[i] - ci[i] for i in pi if i in ci)
s = lambda ms: f"{ms / 1000:.1f}"
print("| run | messages (innocent + poison) | drain time s | rate msg/s through 1 command step | poison/clean | attempts per poison min / mean / max | innocent delay max s | innocent delay p50 s | max extra delay vs clean s | CPU ms/msg: serve + workers & filters |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
print(f"| clean | {len(ci)} + 0 | {s(dc)} | {n / (dc / 1000):.0f} | 1.00 | - | {s(max(ci.values()))} | {s(pct(ci.values(), 50))} | - | {cs / n:.2f} + {cc / n:.2f} |")
print(f"| poison | {len(pi)} + {len(att)} | {s(dp)} | {n / (dp / 1000):.0f} | {dp / dc:.2f} (target <= 1.25) | "
      f"{min(att)} / {sum(att) / len(att):.2f} / {max(att)} (K = {k}) | {s(max(pi.values()))} | {s(pct(pi.values(), 50))} | {s(extra)} | {ps / n:.2f} + {pc / n:.2f} |")
print()
print(f"attempts per poison kind (min-max (count)): {kinds}")
reasons = {}
for kind, _, _, reason in p["poison"].values():
    reasons.setdefault(kind, set()).add(reason.split(';')[0])
print("quarantine reasons: " + "; ".join(f"{kd}: {' | '.join(sorted(r))}" for kd, r in sorted(reasons.items())))
EOF
) || die "cannot make the table"
RUN_S=$(( $(date +%s) - START_S ))

FS_INFO=$(findmnt -n -T "$T" -o SOURCE,FSTYPE,OPTIONS 2>/dev/null || echo unknown)
cat <<EOF

## Filter stage: drain of a backlog through one command step, clean and with poison

- command: \`${BENCH_CMD:-bench/poison_drain.sh}\` (N=$N POISON=$POISON SIZE=$SIZE TIMEOUT_MS=$TIMEOUT_MS MEM_MB=$MEM_MB WORKERS=$WORKERS BATCH=$BATCH K=$K SEED=$SEED)
- date: $(date -u '+%Y-%m-%d %H:%M UTC'); whole run ${RUN_S} s
- machine: $(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, kernel $(uname -r)
- file system: $FS_INFO (scratch under $PARENT)
- holdfast: $("$HF" --version 2>/dev/null || echo '?') ($HF_ORIG, CMAKE_BUILD_TYPE=${BUILD_TYPE:-unknown})
- filter: one command step, /bin/sh script ($(readlink -f /bin/sh)) reading the header, exit 0 without output; poison (X-Poison:) segv / loop (timeout_ms $TIMEOUT_MS) / alloc (python3 to memory_bytes $MEM_MB MiB), in turn, at random positions
- backlog: all N durable in the spool first (filter gated to exit 75 during intake), then a restart; drain = from that start until mailbox + quarantine hold everything and \`queue list\` is empty
- filter alone (bash loop running the script on one message, no holdfast): ${REF} runs/s
- load average (1/5/15 min) before / after: $LOAD_BEFORE / $LOAD_AFTER

EOF
printf '%s\n' "$TABLE"
