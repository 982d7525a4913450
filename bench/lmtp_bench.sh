#!/usr/bin/env bash
# lmtp_bench.sh -- durable LMTP delivery: `holdfast serve` vs Dovecot's LMTP
# server, into Maildir, on the same file system, in the same run, driven by
# Postfix's load generator `smtp-source -L`.
#
# A benchmark, not a test: it prints a markdown table of messages/s for
# message sizes 4 KiB and 64 KiB and 1, 8 and 32 concurrent LMTP sessions.
#
# Both sides are durable before they say 250:
#   - holdfast replies 250 once the message is fdatasync'ed in its spool
#     (group commit: concurrent sessions share one fdatasync); delivery into
#     the Maildir follows asynchronously (and is durable too). So holdfast
#     gets two numbers: "acked/s" (smtp-source's wall time) and
#     "in mailbox/s" (until DATA/mail/USER/new holds every message).
#   - Dovecot LMTP replies 250 after its own delivery into the Maildir,
#     with mail_fsync = optimized (Dovecot's default: the mail file is
#     fsynced, index files are not; DOVECOT_FSYNC=always to compare); its one
#     rate is both.
#
# Usage:  bench/lmtp_bench.sh [--dir DIR]
#   --dir DIR     parent of the scratch directory (default /var/tmp; it must be
#                 on the file system you want to measure). Removed afterwards.
# Environment:
#   HOLDFAST      the binary (default: build/holdfast; must be a Release build)
#   N             messages per case and server                (default 8000)
#   SESSIONS      concurrent LMTP sessions, one case each     (default "1 8 32")
#   SIZES         smtp-source -l payload sizes in bytes       (default "4096 65536")
#   CHUNKS        each case runs as CHUNKS alternating slices, holdfast then
#                 Dovecot, so background load hits both alike; each slice
#                 goes to a fresh mailbox (default 4: 2000 messages a slice)
#   REUSE         1: keep each session's connection for many messages
#                 (smtp-source -d, like Postfix's LMTP connection cache);
#                 0: one connection per message                (default 1)
#   LOAD_MAX      wait before measuring while the 1-minute load average is
#                 above this ...                              (default 3)
#   LOAD_WAIT     ... but at most this many seconds           (default 300)
#   DOVECOT_FSYNC Dovecot's mail_fsync                          (default optimized)
#   SLICE_TIMEOUT seconds one slice may take before the case fails (default 900)
#   HOLDFAST_TEST_MAIL_USER  unprivileged owner of Dovecot's Maildir when run
#                 as root (default hfsystest; created with useradd --system if
#                 missing -- Dovecot refuses to access mail as root)
#
# All messages of a slice go to one fresh mailbox per server (concurrent
# sessions contend for the same Maildir; Dovecot slows down as a mailbox
# grows, so mailboxes stay at N/CHUNKS messages, 2000 by default, whatever
# N is). After each slice the script checks that each mailbox holds exactly
# the number of messages sent, and at the end that holdfast's own counters
# agree and its log has no warning or error.
# Ack latency: during every slice one more session (bench/lmtp_probe.py)
#   sends messages one after another, one at most every 10 ms (the same
#   small extra load for a fast server and a slow one), to a `probe` mailbox
#   and records, per message, the time from its final dot to the 250; the
#   table gives p50 and p99 per case and server (the latency a sender sees
#   under that load).
# Ceiling: after each case the same load (N/CHUNKS messages, CHUNKS times)
#   goes to Postfix's smtp-sink -L, a test server that answers 250 and keeps
#   nothing: the most this load generator gets out of this machine at all.
#   The table gives its rate and holdfast's acked rate as a share of it.
# Needs: postfix (for /usr/sbin/smtp-source and smtp-sink; no Postfix daemon is started),
# dovecot-core and dovecot-lmtpd, python3 (to pick free ports).
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
N="${N:-8000}"
SESSIONS="${SESSIONS:-1 8 32}"
SIZES="${SIZES:-4096 65536}"
CHUNKS="${CHUNKS:-4}"
REUSE="${REUSE:-1}"
LOAD_MAX="${LOAD_MAX:-3}"
LOAD_WAIT="${LOAD_WAIT:-300}"
SLICE_TIMEOUT="${SLICE_TIMEOUT:-900}"
DOVECOT_FSYNC="${DOVECOT_FSYNC:-optimized}"
SMTP_SOURCE=/usr/sbin/smtp-source
SMTP_SINK=/usr/sbin/smtp-sink
DOVECOT=/usr/sbin/dovecot
DV_LMTP=/usr/lib/dovecot/lmtp

die() { echo "lmtp_bench: FAILED: $*" >&2; exit 1; }
[ -x "$HF" ] || die "holdfast binary not found at $HF (build it: cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build; or set HOLDFAST)"
HF="$(cd "$(dirname "$HF")" && pwd)/$(basename "$HF")"
HF_ORIG="$HF"
[ -x "$SMTP_SOURCE" ] || die "$SMTP_SOURCE not found: install postfix (scripts/bootstrap.sh)"
[ -x "$SMTP_SINK" ] || die "$SMTP_SINK not found: install postfix (scripts/bootstrap.sh)"
[ -x "$DOVECOT" ] || die "Dovecot is not installed (dovecot-core)"
[ -x "$DV_LMTP" ] || die "Dovecot's LMTP server $DV_LMTP is not installed (apt-get install dovecot-lmtpd)"
command -v python3 >/dev/null || die "python3 is needed to pick free ports"
BUILD_TYPE="$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$(dirname "$HF")/CMakeCache.txt" 2>/dev/null || true)"
SANITIZE="$(sed -n 's/^HOLDFAST_SANITIZE:BOOL=//p' "$(dirname "$HF")/CMakeCache.txt" 2>/dev/null || true)"
case "$SANITIZE" in ON|on|1|TRUE|true) echo "WARNING: $HF is built with sanitizers" >&2; BUILD_TYPE="$BUILD_TYPE+ASan";; esac
if [ "$BUILD_TYPE" != "Release" ]; then
  echo "WARNING: $HF is not from a Release build (CMAKE_BUILD_TYPE='${BUILD_TYPE:-unknown}'); numbers are not representative." >&2
fi
SRC_OPTS=(-L)
[ "$REUSE" = 1 ] && SRC_OPTS+=(-d)

# --- the unprivileged mail user Dovecot needs when we are root -------------
# (as in bench/deliver_bench.sh)
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
T="$(mktemp -d "$PARENT/hf-lmtp-bench.XXXXXXXX")"
chmod 755 "$T"
# Each server's tree in its own block groups, as when it runs alone: ext4
# places a new file's inode in its directory's block group, and without a
# journal it skips every inode freed there in the last minutes
# (recently_deleted() in fs/ext4/ialloc.c), so Dovecot's dotlock
# dovecot-uidlist.lock (created and removed at every delivery, seen with
# strace) would slow holdfast's file creation next door. `chattr +T` makes
# the scratch directory a top of hierarchy for ext4's Orlov allocator, which
# spreads its subdirectories over different groups.
if chattr +T "$T" 2>/dev/null; then
  ISOLATION="each server's tree in its own ext4 block groups (chattr +T on the scratch directory)"
else
  ISOLATION="not isolated: chattr +T failed on $PARENT (not ext4?); the servers may share block groups"
  echo "lmtp_bench: note: $ISOLATION" >&2
fi
DV_PID=""
HF_PID=""
SINK_PID=""
stop_group() { # pid seconds: TERM the process, wait, then KILL its process group
  local pid=$1 secs=$2
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $(( secs * 10 ))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true   # its process group (setsid below)
}
cleanup() {
  [ -z "${PROBE_PID:-}" ] || kill -KILL "$PROBE_PID" 2>/dev/null || true
  [ -z "$HF_PID" ] || stop_group "$HF_PID" 45
  [ -z "$DV_PID" ] || stop_group "$DV_PID" 5
  [ -z "$SINK_PID" ] || stop_group "$SINK_PID" 5
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# wait_greeting port: until a server there sends its "220" greeting (15 s)
wait_greeting() {
  local port=$1 line
  for _ in $(seq 150); do
    # Braces: a bare `exec ... 2>/dev/null` would redirect the script's own
    # stderr for good.
    if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
      line=""
      read -r -t 2 line <&3 || true
      exec 3<&- 3>&-
      case "$line" in 220*) return 0 ;; esac
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

# One mailbox per (size, sessions, slice) and server.
CASE_USERS=(warmup probe)
for s in $SIZES; do for c in $SESSIONS; do for ((k = 0; k < CHUNKS; k++)); do CASE_USERS+=("b${s}s${c}k${k}"); done; done; done
: > "$DVDIR/users"
for u in "${CASE_USERS[@]}"; do
  printf '%s\n' "bench-password" | "$HF" --data "$HFDATA" user add "$u" --password-stdin \
    >"$T/user-add.out" 2>&1 || { cat "$T/user-add.out" >&2; die "holdfast user add $u failed"; }
  # Dovecot's own passwd-file: only the userdb part matters to LMTP.
  printf '%s:{PLAIN}unused::::::\n' "$u" >> "$DVDIR/users"
done
chown -R "$MUID:$MGID" "$DVDIR/mail" "$DVDIR/users" 2>/dev/null || true

# --- holdfast serve ---------------------------------------------------------
HF_LOG="$T/holdfast.log"
for attempt in 1 2 3; do
  HF_PORT=$(free_port)
  setsid "$HF" --data "$HFDATA" serve --lmtp "127.0.0.1:$HF_PORT" --pop3 "127.0.0.1:$(free_port)" </dev/null >"$HF_LOG" 2>&1 &
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

# --- private Dovecot with LMTP on loopback ----------------------------------
for attempt in 1 2 3; do
  DV_PORT=$(free_port)
  cat > "$DVDIR/dovecot.conf" <<EOF
# Private Dovecot for lmtp_bench.sh: nothing shared with a system Dovecot.
base_dir = $DVDIR/run
state_dir = $DVDIR/state
instance_name = hf-lmtp-bench-$$
log_path = $DVDIR/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
# RCPT TO:<user@localhost> -> user (holdfast maps its local domains the same way)
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%Ln $DVDIR/users
}
userdb {
  driver = passwd-file
  args = username_format=%Ln $DVDIR/users
}
mail_location = maildir:$DVDIR/mail/%Ln
# optimized: the mail file is fsynced before the 250; always: index files too.
mail_fsync = $DOVECOT_FSYNC
# Dovecot will not access mail as root.
mail_uid = $MUID
mail_gid = $MGID
first_valid_uid = $FIRST_UID
first_valid_gid = $FIRST_GID
default_internal_user = $MAILUSER
default_internal_group = $MGROUP
default_login_user = $LOGIN_USER
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $DV_PORT
  }
}
EOF
  if [ "$(id -u)" -ne 0 ]; then
    printf 'service anvil {\n  chroot =\n}\n' >> "$DVDIR/dovecot.conf"
  fi
  "$DOVECOT" -c "$DVDIR/dovecot.conf" -n >/dev/null || die "Dovecot rejects $DVDIR/dovecot.conf"
  setsid "$DOVECOT" -F -c "$DVDIR/dovecot.conf" </dev/null >>"$DVDIR/dovecot.log" 2>&1 &
  DV_PID=$!
  if wait_greeting "$DV_PORT"; then break; fi
  tail -20 "$DVDIR/dovecot.log" >&2
  stop_group "$DV_PID" 5; DV_PID=""
  [ $attempt -lt 3 ] || die "private Dovecot did not start"
done

# The ceiling: smtp-sink keeps nothing (it must drop root: -u).
SINK_PORT=$(free_port)
SINK_USER=()
[ "$(id -u)" -ne 0 ] || SINK_USER=(-u "$MAILUSER")
setsid "$SMTP_SINK" "${SINK_USER[@]}" -L 127.0.0.1:"$SINK_PORT" 1024 </dev/null >"$T/smtp-sink.log" 2>&1 &
SINK_PID=$!
wait_greeting "$SINK_PORT" || { cat "$T/smtp-sink.log" >&2; die "smtp-sink did not start"; }

# --- helpers ----------------------------------------------------------------
now_ns() { date +%s%N; }
shopt -s nullglob
count_new() { local f=("$1"/new/*); echo ${#f[@]}; }
count_all() { local f=("$1"/new/* "$1"/cur/*); echo ${#f[@]}; }
rate() { awk -v n="$1" -v ns="$2" 'BEGIN { printf "%.0f", n / (ns / 1e9) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
load1() { cut -d' ' -f1 /proc/loadavg; }
load3() { cut -d' ' -f1-3 /proc/loadavg; }

# send PORT USER SIZE SESSIONS COUNT: smtp-source, fails loudly on any non-2xx
send() {
  local port=$1 user=$2 size=$3 sess=$4 count=$5 rc=0
  timeout -k 10 "$SLICE_TIMEOUT" "$SMTP_SOURCE" "${SRC_OPTS[@]}" -s "$sess" -m "$count" -l "$size" \
    -t "$user@localhost" -f bench@example.org "127.0.0.1:$port" >"$T/smtp-source.out" 2>&1 || rc=$?
  if [ $rc -ne 0 ]; then
    cat "$T/smtp-source.out" >&2
    [ $rc -eq 124 ] && echo "smtp-source timed out after ${SLICE_TIMEOUT}s" >&2
    return 1
  fi
}

# probe_start PORT SIZE FILE / probe_stop: one more session (bench/lmtp_probe.py)
# measuring each message's ack latency while smtp-source's load runs.
probe_start() {
  /usr/bin/python3 "$REPO/bench/lmtp_probe.py" "$1" probe@localhost "$2" "$3" &
  PROBE_PID=$!
}
probe_stop() {
  kill -TERM "$PROBE_PID" 2>/dev/null || true
  wait "$PROBE_PID" || die "the latency probe failed"
  PROBE_PID=""
}
# pct FILE P: the P-th percentile (nearest rank) of the numbers in FILE, in ms
pct() { sort -g "$1" | awk -v p="$2" '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } i = int((p / 100) * NR + 0.999999); if (i < 1) i = 1; printf "%.1f", v[i] }'; }

# wait_box DIR EXPECTED: until DIR/new holds EXPECTED files (SLICE_TIMEOUT)
wait_box() {
  local dir=$1 want=$2 n deadline=$(( $(date +%s) + SLICE_TIMEOUT ))
  for (( ; ; )); do
    n=$(count_new "$dir")
    [ "$n" -lt "$want" ] || break
    [ "$(date +%s)" -lt "$deadline" ] || { echo "holdfast: $n of $want messages in $dir after ${SLICE_TIMEOUT}s" >&2; return 1; }
    sleep 0.01
  done
  [ "$n" -eq "$want" ] || { echo "holdfast: $n messages in $dir, expected $want" >&2; return 1; }
}

# The disk's own limit, for context: 4 KiB writes with O_DSYNC, one writer.
disk_dsync_rate() {
  local t0 t1 n=1000
  t0=$(now_ns)
  dd if=/dev/zero of="$T/dsync-probe" bs=4k count=$n oflag=dsync status=none
  t1=$(now_ns)
  rm -f "$T/dsync-probe"
  awk -v n=$n -v ns=$(( t1 - t0 )) 'BEGIN { printf "%.0f", n / (ns / 1e9) }'
}

# --- warm-up, then wait for a quieter machine --------------------------------
echo "warming up (holdfast on :$HF_PORT, Dovecot LMTP on :$DV_PORT) ..." >&2
send "$HF_PORT" warmup 4096 2 40 || die "holdfast: warm-up delivery failed; log: $HF_LOG"
wait_box "$HFDATA/mail/warmup" 40 || die "holdfast: warm-up messages did not reach the mailbox"
send "$DV_PORT" warmup 4096 2 40 || { tail -20 "$DVDIR/dovecot.log" >&2; die "Dovecot: warm-up delivery failed"; }
[ "$(count_all "$DVDIR/mail/warmup")" -eq 40 ] || die "Dovecot: warm-up: $(count_all "$DVDIR/mail/warmup") messages, expected 40"

LOAD_INITIAL=$(load3)
WAITED=0
while awk -v l="$(load1)" -v m="$LOAD_MAX" 'BEGIN { exit !(l > m) }' && [ "$WAITED" -lt "$LOAD_WAIT" ]; do
  echo "load average $(load1) > $LOAD_MAX: waiting (${WAITED}s of at most ${LOAD_WAIT}s) ..." >&2
  sleep 15; WAITED=$(( WAITED + 15 ))
done
LOAD_BEFORE=$(load3)
above() { awk -v l="$(load1)" -v m="$LOAD_MAX" 'BEGIN { exit !(l > m) }'; }
if [ "$WAITED" -gt 0 ]; then
  LOAD_NOTE="waited ${WAITED}s for the 1-minute load to drop to $LOAD_MAX or below"
  if above; then LOAD_NOTE="$LOAD_NOTE; it did not -- measured anyway"; fi
elif above; then
  LOAD_NOTE="1-minute load above $LOAD_MAX; LOAD_WAIT=$LOAD_WAIT, so measured without waiting"
else
  LOAD_NOTE="1-minute load <= $LOAD_MAX, no wait needed"
fi
DSYNC=$(disk_dsync_rate)

# --- run ---------------------------------------------------------------------
ROWS=()
PROBE_SENT=0
for s in $SIZES; do
  for c in $SESSIONS; do
    case_load=$(load1)
    ack_ns=0; box_ns=0; dv_ns=0; sent=0
    : > "$T/lat-hf"; : > "$T/lat-dv"
    # Interleave the two servers in CHUNKS slices (ABAB...), so that a change
    # in background load hits both about equally. holdfast's slice ends when
    # its mailbox holds every message, so its asynchronous delivery never
    # overlaps Dovecot's slice.
    for ((k = 0; k < CHUNKS; k++)); do
      slice=$(( (N * (k + 1)) / CHUNKS - sent ))
      [ "$slice" -gt 0 ] || continue
      sent=$(( sent + slice ))
      user="b${s}s${c}k${k}"
      hfbox="$HFDATA/mail/$user"; dvbox="$DVDIR/mail/$user"
      echo "size $s, $c session(s), $N messages, slice $((k + 1))/$CHUNKS ($slice): holdfast, Dovecot (load $(load1))" >&2
      sync
      probe_start "$HF_PORT" "$s" "$T/lat-slice"
      t0=$(now_ns)
      send "$HF_PORT" "$user" "$s" "$c" "$slice" || die "holdfast: smtp-source failed (size $s, $c sessions); log: $HF_LOG"
      t1=$(now_ns)
      probe_stop; cat "$T/lat-slice" >> "$T/lat-hf"; PROBE_SENT=$(( PROBE_SENT + $(wc -l < "$T/lat-slice") ))
      wait_box "$hfbox" "$slice" || die "holdfast: messages missing from the mailbox (size $s, $c sessions)"
      t2=$(now_ns)
      ack_ns=$(( ack_ns + t1 - t0 )); box_ns=$(( box_ns + t2 - t0 ))
      sync
      probe_start "$DV_PORT" "$s" "$T/lat-slice"
      t0=$(now_ns)
      send "$DV_PORT" "$user" "$s" "$c" "$slice" || { tail -20 "$DVDIR/dovecot.log" >&2; die "Dovecot: smtp-source failed (size $s, $c sessions)"; }
      t1=$(now_ns)
      probe_stop; cat "$T/lat-slice" >> "$T/lat-dv"
      dv_ns=$(( dv_ns + t1 - t0 ))
      n=$(count_all "$dvbox")
      [ "$n" -eq "$slice" ] || die "Dovecot: $n messages in $dvbox after its 250s, expected $slice"
      n=$(count_all "$hfbox"); [ "$n" -eq "$slice" ] || die "holdfast: $n messages in $hfbox, expected $slice"
    done
    sink_ns=0; sent=0
    for ((k = 0; k < CHUNKS; k++)); do
      slice=$(( (N * (k + 1)) / CHUNKS - sent ))
      [ "$slice" -gt 0 ] || continue
      sent=$(( sent + slice ))
      t0=$(now_ns)
      send "$SINK_PORT" sink "$s" "$c" "$slice" || die "smtp-sink: smtp-source failed (size $s, $c sessions)"
      t1=$(now_ns)
      sink_ns=$(( sink_ns + t1 - t0 ))
    done
    ack=$(rate "$N" "$ack_ns"); box=$(rate "$N" "$box_ns"); dv=$(rate "$N" "$dv_ns"); sink=$(rate "$N" "$sink_ns")
    ROWS+=("| $(( s / 1024 )) KiB | $c | $N | $ack | $box | $dv | $(ratio "$ack" "$dv") | $(ratio "$box" "$dv") | $(pct "$T/lat-hf" 50) / $(pct "$T/lat-hf" 99) | $(pct "$T/lat-dv" 50) / $(pct "$T/lat-dv" 99) | $sink | $(awk -v a="$ack" -v b="$sink" 'BEGIN { printf "%.0f%%", 100 * a / b }') | $case_load |")
    echo "  -> holdfast $ack acked/s, $box in mailbox/s; Dovecot $dv/s; smtp-sink $sink/s" >&2
  done
done
LOAD_AFTER=$(load3)

# --- holdfast's own account of the run ----------------------------------------
TOTAL=$(( 40 + PROBE_SENT + N * $(wc -w <<<"$SIZES") * $(wc -w <<<"$SESSIONS") ))
stop_group "$HF_PID" 45
wait "$HF_PID" 2>/dev/null || true
HF_PID=""
STOPPED=$(grep 'event=stopped' "$HF_LOG" || true)
[ -n "$STOPPED" ] || die "holdfast serve did not log event=stopped on SIGTERM; log tail: $(tail -5 "$HF_LOG")"
case "$STOPPED" in
  *"accepted=$TOTAL delivered=$TOTAL unretired=0"*) ;;
  *) die "holdfast's counters disagree with the $TOTAL messages sent: $STOPPED" ;;
esac
# Run as root, serve warns once at start that it keeps root (no `user =`
# in this private config): an advisory about the set-up, not a fault.
BAD=$(grep -v -E '^[^ ]+ info ' "$HF_LOG" | grep -v -E '^[^ ]+ warn event=running_as_root ' || true)
if [ -n "$BAD" ]; then
  echo "$BAD" | head -20 >&2
  die "holdfast logged $(wc -l <<<"$BAD") line(s) that are not 'info' (see above)"
fi

DV_BAD=$(grep -E '(Error|Fatal|Panic):' "$DVDIR/dovecot.log" || true)
if [ -n "$DV_BAD" ]; then
  echo "$DV_BAD" | head -20 >&2
  die "Dovecot logged $(wc -l <<<"$DV_BAD") error line(s) (see above)"
fi

FS_INFO=$(findmnt -n -T "$T" -o SOURCE,FSTYPE,OPTIONS 2>/dev/null || echo unknown)
if [ "$REUSE" = 1 ]; then CONN="each session keeps its connection (smtp-source -d)"; else CONN="one connection per message"; fi
cat <<EOF

## LMTP: holdfast serve vs Dovecot LMTP (durable Maildir delivery)

- command: \`${BENCH_CMD:-bench/lmtp_bench.sh}\` (N=$N SESSIONS="$SESSIONS" SIZES="$SIZES" CHUNKS=$CHUNKS REUSE=$REUSE)
- date: $(date -u '+%Y-%m-%d %H:%M UTC')
- machine: $(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, kernel $(uname -r)
- file system: $FS_INFO (scratch dir under $PARENT; $ISOLATION)
- disk reference: $DSYNC 4 KiB O_DSYNC writes/s (dd, one writer)
- holdfast: $("$HF" --version 2>/dev/null || echo '?') serve ($HF_ORIG, CMAKE_BUILD_TYPE=${BUILD_TYPE:-unknown}); 250 after the spool's group-committed fdatasync
- Dovecot: $("$DOVECOT" --version) LMTP, mail_fsync = $DOVECOT_FSYNC, default Maildir index settings; 250 after delivery
- ceiling: the same smtp-source load against Postfix's smtp-sink -L (answers 250, keeps nothing), after each case
- load generator: $(dpkg-query -W -f='postfix ${Version}' postfix 2>/dev/null || echo postfix) smtp-source ${SRC_OPTS[*]} -s SESSIONS -m N/$CHUNKS -l SIZE; $CONN
- load average (1/5/15 min) at start / before measuring / after: $LOAD_INITIAL / $LOAD_BEFORE / $LOAD_AFTER ($LOAD_NOTE)
- each case: $CHUNKS alternating slices (holdfast, Dovecot, ...) of N/CHUNKS messages, each into a fresh mailbox per server; times summed per server;
  holdfast "in mailbox" = from the start of a slice until DATA/mail/USER/new holds all its messages
- checked: every mailbox holds exactly the N/CHUNKS messages sent to it; holdfast's counters on exit: $(sed 's/.*event=stopped //' <<<"$STOPPED"); no warning or error in its log

| size (-l) | sessions | messages | holdfast acked/s | holdfast in mailbox/s | Dovecot LMTP msg/s | acked/Dovecot | in mailbox/Dovecot | holdfast ack p50 / p99 ms | Dovecot ack p50 / p99 ms | smtp-sink msg/s (keeps nothing) | holdfast acked/smtp-sink | load at case start |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
printf '%s\n' "${ROWS[@]}"
