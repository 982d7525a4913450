#!/usr/bin/env bash
# mailbox_scale.sh -- do holdfast's per-message costs grow with the size of
# the mailbox? One big mailbox (BIG messages) against empty and small ones,
# with `holdfast deliver` and `holdfast serve` (LMTP, POP3).
#
# A benchmark, not a test: it prints a markdown table (figure, value, target,
# met) of four figures:
#   1. `holdfast deliver -u USER` wall time: median of R sequential runs into
#      the BIG mailbox and of R into an EMPTY one (interleaved big, empty,
#      empty, big, ... so drifting load hits both), one warm-up delivery to
#      each first; both medians and big/empty (target <= 1.2). Run before
#      `serve` is started.
#   2. `holdfast serve` RSS (VmRSS, /proc/PID/status): at start (event=ready),
#      after one POP3 login to the big mailbox (USER/PASS, STAT, LIST, QUIT),
#      after M messages over LMTP into it (every one in the Maildir), and
#      after touching MANY small mailboxes (SMALL_N messages each): one LMTP
#      message to each (one session, one recipient a message), and with
#      MANY_POP3=1 also one POP3 login (USER/PASS, STAT, QUIT) to each. The
#      target for the last is start + [cache] mailbox_bytes (128 MiB, the
#      default: the budget of the open-mailbox caches).
#   3. LMTP server CPU per message: utime+stime of the serve process
#      (/proc/PID/stat, all threads; resolution 1/CLK_TCK) from just before
#      a session of M messages starts until all M are in the Maildir, divided
#      by M; into the big mailbox and into a small one (SMALL_N messages),
#      CPU_ROUNDS rounds each, alternating, after one warm-up message to
#      each; ms/message for each and big/small (target <= 1.2).
#   4. First POP3 login after a restart: serve is stopped (SIGTERM) and
#      started again, then one login is timed from connect to the STAT reply
#      (USER, PASS until +OK, STAT): to the big mailbox, and after another
#      restart to an empty one; FIRST_ROUNDS rounds, medians of each and the
#      difference big - empty (target <= 100 ms). Both include the yescrypt
#      check (the credentials cache starts empty). The page cache is not
#      dropped: the mailbox files are warm, as on a busy server.
#
# Set-up, in a fresh data directory: users are made with `holdfast user add
# --password-stdin`; the big mailbox is `holdfast import maildir` of a
# generated Maildir of BIG small messages (all in cur/, flag S, so LMTP mail
# is what lands in new/), each small mailbox an import of a SMALL_N-message
# Maildir. The MANY users are made MANY_JOBS at a time (yescrypt makes each
# `user add` about 0.1 s). With CACHE=DIR the generated big Maildir is kept in
# DIR (big-maildir-BIG) and reused by the next run; nothing else is cached.
# The mailbox counts are checked after every import and every LMTP batch.
#
# Usage:  bench/mailbox_scale.sh [--dir DIR]
#   --dir DIR     parent of the scratch directory (default /var/tmp). Removed
#                 afterwards (KEEP=1 keeps it).
# Environment:
#   HOLDFAST      the binary (default: build/holdfast; a Release build)
#   BIG           messages in the big mailbox                  (default 100000)
#   R             deliver runs per mailbox (figure 1)         (default 20)
#   M             LMTP messages per batch (figures 2, 3)      (default 200)
#   MANY          small mailboxes touched (figure 2)           (default 2000)
#   SMALL_N       messages in each small mailbox               (default 50)
#   MANY_POP3     1: also one POP3 login to each small mailbox (default 0)
#   MANY_JOBS     parallel `user add` / `import` in set-up     (default nproc)
#   CPU_ROUNDS    rounds of figure 3                           (default 3)
#   FIRST_ROUNDS  restart pairs of figure 4                    (default 1)
#   CACHE         directory to keep the generated big Maildir in (default none)
#   KEEP          1: keep the scratch directory                (default 0)
#
# The python3 client (standard library only: poplib, smtplib.LMTP) is
# written into the scratch directory. Ports are free ones on 127.0.0.1
# (metrics off). Run it on an otherwise idle machine; the load average
# before and after is printed.
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
BIG="${BIG:-100000}"
R="${R:-20}"
M="${M:-200}"
MANY="${MANY:-2000}"
SMALL_N="${SMALL_N:-50}"
MANY_POP3="${MANY_POP3:-0}"
MANY_JOBS="${MANY_JOBS:-$(nproc)}"
CPU_ROUNDS="${CPU_ROUNDS:-3}"
FIRST_ROUNDS="${FIRST_ROUNDS:-1}"
CACHE="${CACHE:-}"
KEEP="${KEEP:-0}"
PASS=bench-password

die() { echo "mailbox_scale: $*" >&2; exit 1; }
note() { echo "[$(date +%T)] $*" >&2; }
[ -x "$HF" ] || die "holdfast binary not found at $HF (build it: cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build; or set HOLDFAST)"
HF_ORIG="$(cd "$(dirname "$HF")" && pwd)/$(basename "$HF")"
BUILD_TYPE="$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$(dirname "$HF_ORIG")/CMakeCache.txt" 2>/dev/null || true)"
if [ -n "$BUILD_TYPE" ] && [ "$BUILD_TYPE" != "Release" ]; then
  echo "WARNING: $HF_ORIG is not from a Release build (CMAKE_BUILD_TYPE='$BUILD_TYPE'); numbers are not representative." >&2
fi
command -v python3 >/dev/null || die "python3 is needed"

# --- scratch directory, cleanup ----------------------------------------------
mkdir -p "$PARENT"
T="$(mktemp -d "$PARENT/hf-scale.XXXXXXXX")"
SERVE_PID=""
stop_serve() {
  [ -n "$SERVE_PID" ] || return 0
  kill -TERM "$SERVE_PID" 2>/dev/null || true
  for _ in $(seq 600); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SERVE_PID" 2>/dev/null || true
  wait "$SERVE_PID" 2>/dev/null || true
  SERVE_PID=""
}
cleanup() {
  stop_serve
  if [ "$KEEP" = 1 ]; then echo "scratch kept in $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run a copy, so a rebuild of build/ during the run cannot disturb it.
cp "$HF_ORIG" "$T/holdfast"
HF="$T/holdfast"
D="$T/data"
mkdir -p "$D"
hf() { "$HF" --data "$D" "$@"; }

# --- the python3 client ------------------------------------------------------
cat > "$T/client.py" <<'PYEOF'
import os, poplib, smtplib, socket, sys, time, threading

HOST = "127.0.0.1"

def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind((HOST, 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    print(" ".join(map(str, ports)))

def count_new(data, user):
    return len(os.listdir(os.path.join(data, "mail", user, "new")))

def lmtp(port, data, users, per_user, tag):
    """Sends per_user messages to each of users, one session, one recipient a
    message; waits until each user's new/ holds per_user more files."""
    before = {u: count_new(data, u) for u in users}
    s = smtplib.LMTP(HOST, int(port))
    s.ehlo("bench.example.org")
    n = 0
    for i in range(per_user):
        for u in users:
            n += 1
            msg = (f"From: bench@example.org\r\nTo: {u}@localhost\r\n"
                   f"Subject: {tag} {n}\r\nMessage-ID: <{tag}-{n}-{time.time_ns()}@example.org>\r\n"
                   f"\r\nmailbox_scale {tag} message {n}\r\n").encode()
            refused = s.sendmail("bench@example.org", [f"{u}@localhost"], msg)
            if refused:
                sys.exit(f"LMTP refused {refused}")
    s.quit()
    deadline = time.monotonic() + 300
    pending = set(users)
    while pending:
        pending = {u for u in pending if count_new(data, u) < before[u] + per_user}
        if not pending:
            break
        if time.monotonic() > deadline:
            sys.exit(f"{len(pending)} mailboxes lack their LMTP mail after 300 s")
        time.sleep(0.01)
    for u in users:
        if count_new(data, u) != before[u] + per_user:
            sys.exit(f"{u}: {count_new(data, u)} in new/, expected {before[u] + per_user}")

def pop3_login(port, user, password, expect, do_list):
    p = poplib.POP3(HOST, int(port), timeout=600)
    p.user(user)
    p.pass_(password)
    n, _ = p.stat()
    if expect is not None and n != expect:
        sys.exit(f"{user}: STAT says {n}, expected {expect}")
    if do_list:
        resp, lines, _ = p.list()
        if len(lines) != n:
            sys.exit(f"{user}: LIST gave {len(lines)} lines, STAT {n}")
    p.quit()
    return n

def first_login(port, user, password, expect):
    """Connect, USER, PASS until +OK, STAT: milliseconds (login, login+STAT)."""
    t0 = time.perf_counter()
    p = poplib.POP3(HOST, int(port), timeout=600)
    p.user(user)
    p.pass_(password)
    t1 = time.perf_counter()
    n, _ = p.stat()
    t2 = time.perf_counter()
    p.quit()
    if n != expect:
        sys.exit(f"{user}: STAT says {n}, expected {expect}")
    print(f"{(t1 - t0) * 1e3:.1f} {(t2 - t0) * 1e3:.1f}")

def many_pop3(port, password, users, expect, threads=4):
    errors = []
    it = iter(users)
    lock = threading.Lock()
    def work():
        while True:
            with lock:
                u = next(it, None)
            if u is None:
                return
            try:
                pop3_login(port, u, password, expect, False)
            except BaseException as e:  # noqa
                errors.append(f"{u}: {e}")
    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts: t.start()
    for t in ts: t.join()
    if errors:
        sys.exit(f"{len(errors)} POP3 logins failed, first: {errors[0]}")

def gen_maildir(path, n, prefix):
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    cur = os.path.join(path, "cur")
    for i in range(n):
        with open(os.path.join(cur, f"1700000000.M{i}P{prefix}.bench:2,S"), "w") as f:
            f.write(f"From: Bench Sender <bench@example.org>\nTo: user@example.net\n"
                    f"Subject: {prefix} message {i}\nDate: {date}\n"
                    f"Message-ID: <{prefix}-{i}@bench.example.org>\n\n"
                    f"mailbox_scale.sh message {i} of {n}\n")

cmd, *a = sys.argv[1:]
if cmd == "ports": free_ports(int(a[0]))
elif cmd == "gen": gen_maildir(a[0], int(a[1]), a[2])
elif cmd == "lmtp": lmtp(a[0], a[1], a[4:], int(a[2]), a[3])
elif cmd == "lmtp-file": lmtp(a[0], a[1], open(a[4]).read().split(), int(a[2]), a[3])
elif cmd == "pop3": pop3_login(a[0], a[1], a[2], int(a[3]), True)
elif cmd == "first": first_login(a[0], a[1], a[2], int(a[3]))
elif cmd == "many-pop3": many_pop3(a[0], a[1], open(a[3]).read().split(), int(a[2]))
else: sys.exit(f"unknown client command {cmd}")
PYEOF
client() { python3 "$T/client.py" "$@"; }

read -r LMTP_PORT POP3_PORT < <(client ports 2)
cat > "$D/holdfast.toml" <<EOF
# mailbox_scale.sh: free loopback ports, no metrics, no POP3S.
[lmtp]
listen = "127.0.0.1:$LMTP_PORT"

[pop3]
listen = "127.0.0.1:$POP3_PORT"

[metrics]
listen = ""
EOF

count_mail() { # user -> files in new/ and cur/
  find "$D/mail/$1/new" "$D/mail/$1/cur" -type f | wc -l
}
check_count() { # user expected
  local n; n=$(count_mail "$1")
  [ "$n" -eq "$2" ] || die "$1 holds $n messages, expected $2"
}
add_user() { printf '%s\n' "$PASS" | hf user add "$1" --password-stdin >/dev/null 2>"$T/user-add.err" \
  || { cat "$T/user-add.err" >&2; die "holdfast user add $1 failed"; }; }
export -f add_user hf die
export HF D PASS T

# --- set-up -------------------------------------------------------------------
T_START=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

if [ -n "$CACHE" ]; then
  mkdir -p "$CACHE"
  BIGDIR="$CACHE/big-maildir-$BIG"
  if [ ! -d "$BIGDIR" ]; then
    note "generating a $BIG-message Maildir in $BIGDIR (cached for the next run)"
    rm -rf "$BIGDIR.tmp"
    client gen "$BIGDIR.tmp" "$BIG" big
    mv "$BIGDIR.tmp" "$BIGDIR"
  else
    note "reusing $BIGDIR"
  fi
else
  BIGDIR="$T/big-maildir"
  note "generating a $BIG-message Maildir"
  client gen "$BIGDIR" "$BIG" big
fi
[ "$(find "$BIGDIR/cur" -type f | wc -l)" -eq "$BIG" ] || die "$BIGDIR/cur does not hold $BIG files"
client gen "$T/small-maildir" "$SMALL_N" small

for u in big empty small popempty; do add_user "$u"; done
note "importing the big mailbox"
hf import maildir "$BIGDIR" -u big >/dev/null
check_count big "$BIG"
hf import maildir "$T/small-maildir" -u small >/dev/null
check_count small "$SMALL_N"

note "making $MANY small mailboxes of $SMALL_N messages ($MANY_JOBS at a time)"
: > "$T/many-users"
for ((i = 0; i < MANY; i++)); do printf 'm%05d\n' "$i" >> "$T/many-users"; done
xargs -P "$MANY_JOBS" -n 1 bash -c 'add_user "$1"' _ < "$T/many-users"
xargs -P "$MANY_JOBS" -n 1 bash -c 'hf import maildir "$T/small-maildir" -u "$1" >/dev/null || die "import into $1 failed"' _ < "$T/many-users"
[ "$(hf user list | grep -c '^m[0-9]')" -eq "$MANY" ] || die "not $MANY small users"
check_count "$(tail -1 "$T/many-users")" "$SMALL_N"
sync
T_SETUP=$(( $(date +%s) - T_START ))

# --- helpers --------------------------------------------------------------------
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVE_PID/status"; }
cpu_ticks() { # utime + stime of serve (fields 14, 15; the name in field 2 has no spaces)
  awk '{ print $14 + $15 }' "/proc/$SERVE_PID/stat"
}
CLK_TCK=$(getconf CLK_TCK)
SERVE_N=0
start_serve() {
  SERVE_N=$((SERVE_N + 1))
  local log="$T/serve-$SERVE_N.log"
  "$HF" --data "$D" serve >"$log" 2>&1 &
  SERVE_PID=$!
  for _ in $(seq 6000); do
    grep -q 'event=ready' "$log" && return 0
    kill -0 "$SERVE_PID" 2>/dev/null || { cat "$log" >&2; SERVE_PID=""; die "holdfast serve exited"; }
    sleep 0.05
  done
  die "holdfast serve not ready after 300 s"
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# --- 1. holdfast deliver: big vs empty -----------------------------------------
note "figure 1: $R x holdfast deliver into big and into empty"
printf 'From: Bench Sender <bench@example.org>\nTo: user@example.net\nSubject: deliver\nMessage-ID: <deliver@bench.example.org>\n\nmailbox_scale.sh deliver\n' > "$T/msg"
deliver_ms() { # user -> wall ms of one deliver
  local t0 t1
  t0=$EPOCHREALTIME
  hf deliver -u "$1" -f bench@example.org < "$T/msg" || die "holdfast deliver -u $1 failed (exit $?)"
  t1=$EPOCHREALTIME
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) * 1000 }'
}
deliver_ms big >/dev/null; deliver_ms empty >/dev/null
: > "$T/d-big"; : > "$T/d-empty"
for ((r = 0; r < R; r++)); do
  if (( r % 2 == 0 )); then deliver_ms big >> "$T/d-big"; deliver_ms empty >> "$T/d-empty"
  else deliver_ms empty >> "$T/d-empty"; deliver_ms big >> "$T/d-big"; fi
done
check_count big $((BIG + R + 1)); check_count empty $((R + 1))
D_BIG=$(median < "$T/d-big"); D_EMPTY=$(median < "$T/d-empty")
D_RATIO=$(awk -v a="$D_BIG" -v b="$D_EMPTY" 'BEGIN { printf "%.2f", a / b }')
BIG_NOW=$((BIG + R + 1))

# --- 2. serve RSS -----------------------------------------------------------------
note "figure 2: serve RSS"
start_serve
sleep 1
RSS_START=$(rss_kb)
client pop3 "$POP3_PORT" big "$PASS" "$BIG_NOW"
RSS_POP3=$(rss_kb)
client lmtp "$LMTP_PORT" "$D" "$M" rss big
BIG_NOW=$((BIG_NOW + M))
RSS_LMTP=$(rss_kb)
note "LMTP: one message to each of $MANY small mailboxes"
client lmtp-file "$LMTP_PORT" "$D" 1 many "$T/many-users"
RSS_MANY_LMTP=$(rss_kb)
RSS_MANY_POP3=""
if [ "$MANY_POP3" = 1 ]; then
  note "POP3: one login to each of $MANY small mailboxes"
  client many-pop3 "$POP3_PORT" "$PASS" $((SMALL_N + 1)) "$T/many-users"
  RSS_MANY_POP3=$(rss_kb)
fi

# --- 3. LMTP CPU per message: big vs small --------------------------------------
note "figure 3: LMTP server CPU, $CPU_ROUNDS rounds of $M messages into big and into small"
client lmtp "$LMTP_PORT" "$D" 1 warm big small
BIG_NOW=$((BIG_NOW + 1))
CPU_BIG=0; CPU_SMALL=0
cpu_batch() { # user: adds the batch's ticks to CPU_BIG or CPU_SMALL
  local c0 c1
  c0=$(cpu_ticks)
  client lmtp "$LMTP_PORT" "$D" "$M" cpu "$1"
  c1=$(cpu_ticks)
  if [ "$1" = big ]; then CPU_BIG=$((CPU_BIG + c1 - c0)); else CPU_SMALL=$((CPU_SMALL + c1 - c0)); fi
}
for ((r = 0; r < CPU_ROUNDS; r++)); do
  if (( r % 2 == 0 )); then cpu_batch big; cpu_batch small
  else cpu_batch small; cpu_batch big; fi
done
BIG_NOW=$((BIG_NOW + CPU_ROUNDS * M))
check_count big "$BIG_NOW"
check_count small $((SMALL_N + 1 + CPU_ROUNDS * M))
per_msg() { awk -v t="$1" -v hz="$CLK_TCK" -v n=$((CPU_ROUNDS * M)) 'BEGIN { printf "%.3f", t * 1000 / hz / n }'; }
C_BIG=$(per_msg "$CPU_BIG"); C_SMALL=$(per_msg "$CPU_SMALL")
C_RATIO=$(awk -v a="$CPU_BIG" -v b="$CPU_SMALL" 'BEGIN { if (b == 0) print "inf"; else printf "%.2f", a / b }')

# --- 4. first POP3 login after a restart: big vs empty -------------------------
note "figure 4: first POP3 login after a restart, $FIRST_ROUNDS round(s)"
: > "$T/f-big"; : > "$T/f-empty"; : > "$T/f-big-login"; : > "$T/f-empty-login"
START_MS=()
restart_serve() {
  local t0 t1
  stop_serve
  t0=$EPOCHREALTIME; start_serve; t1=$EPOCHREALTIME
  START_MS+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) * 1000 }')")
}
first() { # user expected tag
  local out login full
  restart_serve
  out=$(client first "$POP3_PORT" "$1" "$PASS" "$2") || die "first POP3 login to $1 failed"
  read -r login full <<< "$out"
  echo "$full" >> "$T/f-$3"; echo "$login" >> "$T/f-$3-login"
}
for ((r = 0; r < FIRST_ROUNDS; r++)); do
  if (( r % 2 == 0 )); then first big "$BIG_NOW" big; first popempty 0 empty
  else first popempty 0 empty; first big "$BIG_NOW" big; fi
done
stop_serve
F_BIG=$(median < "$T/f-big"); F_EMPTY=$(median < "$T/f-empty")
F_BIG_LOGIN=$(median < "$T/f-big-login"); F_EMPTY_LOGIN=$(median < "$T/f-empty-login")
F_DIFF=$(awk -v a="$F_BIG" -v b="$F_EMPTY" 'BEGIN { printf "%.1f", a - b }')
if grep -h -E '^[^ ]+ (error|fatal) ' "$T"/serve-*.log >&2; then
  echo "WARNING: holdfast serve logged errors (above)" >&2
fi

# --- report -----------------------------------------------------------------------
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
T_TOTAL=$(( $(date +%s) - T_START ))
FS_INFO=$(findmnt -n -T "$T" -o SOURCE,FSTYPE,OPTIONS 2>/dev/null || echo unknown)
met() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "yes" : "**no**" }'; }
rss_row() { # label kb
  printf '| 2. serve RSS %s | %s MiB (%+.1f vs start) | %s | %s |\n' "$1" "$(mib "$2")" \
    "$(awk -v a="$2" -v b="$RSS_START" 'BEGIN { print (a - b) / 1024 }')" "${3:-—}" "${4:-}"
}
CACHE_KB=$((128 * 1024))
cat <<EOF

## mailbox_scale.sh: per-message costs against mailbox size

- date: $(date -u '+%Y-%m-%d %H:%M UTC')
- machine: $(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, kernel $(uname -r)
- file system: $FS_INFO (scratch dir under $PARENT)
- holdfast: $("$HF" --version 2>/dev/null || echo '?') ($HF_ORIG)
- BIG=$BIG R=$R M=$M MANY=$MANY SMALL_N=$SMALL_N MANY_POP3=$MANY_POP3 CPU_ROUNDS=$CPU_ROUNDS FIRST_ROUNDS=$FIRST_ROUNDS
- load average before / after: $LOAD_BEFORE / $LOAD_AFTER
- set-up ${T_SETUP} s, whole run ${T_TOTAL} s; serve start-ups (SIGTERM + start to event=ready, figure 4): ${START_MS[*]} ms
- figure 4 login alone (connect to PASS +OK), big / empty: $F_BIG_LOGIN / $F_EMPTY_LOGIN ms

| figure | value | target | met |
|---|---:|---|---|
| 1. deliver into big ($BIG msgs), median of $R | $D_BIG ms | | |
| 1. deliver into empty, median of $R | $D_EMPTY ms | | |
| 1. deliver big / empty | $D_RATIO | <= 1.2 | $(met "$D_RATIO" 1.2) |
EOF
rss_row "at start" "$RSS_START"
rss_row "after POP3 login to big (STAT, LIST)" "$RSS_POP3"
rss_row "after $M LMTP msgs into big" "$RSS_LMTP"
rss_row "after 1 LMTP msg to each of $MANY small" "$RSS_MANY_LMTP" "<= start + 128 MiB ([cache] mailbox_bytes)" \
  "$(met "$RSS_MANY_LMTP" $((RSS_START + CACHE_KB)))"
if [ -n "$RSS_MANY_POP3" ]; then
  rss_row "after 1 POP3 login to each of $MANY small" "$RSS_MANY_POP3" "<= start + 128 MiB ([cache] mailbox_bytes)" \
    "$(met "$RSS_MANY_POP3" $((RSS_START + CACHE_KB)))"
fi
cat <<EOF
| 3. LMTP server CPU into big, $((CPU_ROUNDS * M)) msgs | $C_BIG ms/msg | | |
| 3. LMTP server CPU into small ($SMALL_N msgs), $((CPU_ROUNDS * M)) msgs | $C_SMALL ms/msg | | |
| 3. CPU big / small | $C_RATIO | <= 1.2 | $(met "$C_RATIO" 1.2) |
| 4. first POP3 login + STAT after restart, big, median of $FIRST_ROUNDS | $F_BIG ms | | |
| 4. first POP3 login + STAT after restart, empty, median of $FIRST_ROUNDS | $F_EMPTY ms | | |
| 4. big - empty | $F_DIFF ms | <= 100 ms | $(met "$F_DIFF" 100) |
EOF
