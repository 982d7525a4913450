#!/usr/bin/env bash
# deliver_bench.sh -- durable local delivery: `holdfast deliver` vs Dovecot's
# dovecot-lda, into Maildir, on the same file system, in the same run.
#
# A benchmark, not a test: it prints a markdown table of messages/s for
# message sizes 4 KiB and 64 KiB, sequential (1 process) and parallel
# (8 processes), and the ratio holdfast/dovecot.
#
# Both sides are durable. holdfast always fsyncs (data, then every new
# directory entry) before `deliver` exits 0; there is no switch to turn that
# off. Dovecot runs with mail_fsync = always.
#
# Usage:  bench/deliver_bench.sh [--dir DIR]
#   --dir DIR     parent of the scratch directory (default /var/tmp; it must be
#                 on the file system you want to measure). Removed afterwards.
# Environment:
#   HOLDFAST      the binary (default: build/holdfast; must be a Release build)
#   SEQ_N         messages in each sequential case          (default 2000)
#   PAR_PROCS     processes in each parallel case           (default 8)
#   PAR_N         messages per process in a parallel case   (default 500)
#   SIZES         message sizes in bytes                    (default "4096 65536")
#   CHUNKS        each case runs as CHUNKS alternating slices, holdfast then
#                 dovecot-lda, so background load hits both alike (default 4)
#   HOLDFAST_TEST_MAIL_USER  unprivileged owner of Dovecot's Maildir when run
#                 as root (default hfsystest; created with useradd --system if
#                 missing -- Dovecot refuses to access mail as root)
#
# Every delivery is one process start (fork+exec) for both programs, as when
# an MTA pipes a message to a local delivery agent. All messages of a case go
# to one fresh mailbox (parallel processes contend for the same Maildir and
# index, the hard case). After each case the script checks that exactly the
# expected number of files is in the mailbox.
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
SEQ_N="${SEQ_N:-2000}"
PAR_PROCS="${PAR_PROCS:-8}"
PAR_N="${PAR_N:-500}"
SIZES="${SIZES:-4096 65536}"
CHUNKS="${CHUNKS:-4}"
LDA=/usr/lib/dovecot/dovecot-lda
DOVECOT=/usr/sbin/dovecot

die() { echo "deliver_bench: $*" >&2; exit 1; }
[ -x "$HF" ] || die "holdfast binary not found at $HF (build it: cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build; or set HOLDFAST)"
HF="$(cd "$(dirname "$HF")" && pwd)/$(basename "$HF")"
HF_ORIG="$HF"
[ -x "$LDA" ] && [ -x "$DOVECOT" ] || die "Dovecot is not installed (scripts/bootstrap.sh installs dovecot-core)"
BUILD_TYPE="$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$(dirname "$HF")/CMakeCache.txt" 2>/dev/null || true)"
SANITIZE="$(sed -n 's/^HOLDFAST_SANITIZE:BOOL=//p' "$(dirname "$HF")/CMakeCache.txt" 2>/dev/null || true)"
case "$SANITIZE" in ON|on|1|TRUE|true) echo "WARNING: $HF is built with sanitizers" >&2; BUILD_TYPE="$BUILD_TYPE+ASan";; esac
if [ "$BUILD_TYPE" != "Release" ]; then
  echo "WARNING: $HF is not from a Release build (CMAKE_BUILD_TYPE='${BUILD_TYPE:-unknown}'); numbers are not representative." >&2
fi

# --- the unprivileged mail user Dovecot needs when we are root -------------
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

# --- scratch directory, private Dovecot, cleanup ---------------------------
mkdir -p "$PARENT"
T="$(mktemp -d "$PARENT/hf-bench.XXXXXXXX")"
chmod 755 "$T"
DV_PID=""
cleanup() {
  if [ -n "$DV_PID" ]; then
    kill -TERM "$DV_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$DV_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$DV_PID" 2>/dev/null || true   # its process group (setsid below)
  fi
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run a copy, so a rebuild of build/ during the run cannot disturb it.
cp "$HF_ORIG" "$T/holdfast"
HF="$T/holdfast"
HFDATA="$T/holdfast-data"
DVDIR="$T/dovecot"
mkdir -p "$HFDATA" "$DVDIR/run" "$DVDIR/state" "$DVDIR/mail"

# One mailbox per (size, mode) case and implementation.
CASE_USERS=()
for s in $SIZES; do for m in seq par; do CASE_USERS+=("b${s}${m}"); done; done
CASE_USERS+=(warmup)

: > "$DVDIR/users"
for u in "${CASE_USERS[@]}"; do
  printf '%s\n' "bench-password" | "$HF" --data "$HFDATA" user add "$u" --password-stdin \
    >"$T/user-add.out" 2>&1 || { cat "$T/user-add.out" >&2; die "holdfast user add $u failed"; }
  # Dovecot's own passwd-file: only the userdb part matters to dovecot-lda.
  printf '%s:{PLAIN}unused::::::\n' "$u" >> "$DVDIR/users"
done
chown -R "$MUID:$MGID" "$DVDIR/mail" "$DVDIR/users" 2>/dev/null || true

cat > "$DVDIR/dovecot.conf" <<EOF
# Private Dovecot for deliver_bench.sh: nothing shared with a system Dovecot.
base_dir = $DVDIR/run
state_dir = $DVDIR/state
instance_name = hf-bench-$$
log_path = $DVDIR/dovecot.log
# No listeners needed: dovecot-lda only asks the auth service for the userdb.
protocols = none
ssl = no
passdb {
  driver = passwd-file
  args = scheme=PLAIN $DVDIR/users
}
userdb {
  driver = passwd-file
  args = $DVDIR/users
}
mail_location = maildir:$DVDIR/mail/%u
# Durable like holdfast: fsync mail data, directories and index files.
mail_fsync = always
# Dovecot will not access mail as root.
mail_uid = $MUID
mail_gid = $MGID
first_valid_uid = $FIRST_UID
first_valid_gid = $FIRST_GID
default_internal_user = $MAILUSER
default_internal_group = $MGROUP
default_login_user = $LOGIN_USER
EOF
if [ "$(id -u)" -ne 0 ]; then
  printf 'service anvil {\n  chroot =\n}\n' >> "$DVDIR/dovecot.conf"
fi
"$DOVECOT" -c "$DVDIR/dovecot.conf" -n >/dev/null || die "Dovecot rejects $DVDIR/dovecot.conf"
setsid "$DOVECOT" -F -c "$DVDIR/dovecot.conf" </dev/null >>"$DVDIR/dovecot.log" 2>&1 &
DV_PID=$!
for _ in $(seq 100); do [ -S "$DVDIR/run/auth-userdb" ] && break; sleep 0.1; done
[ -S "$DVDIR/run/auth-userdb" ] || { tail -20 "$DVDIR/dovecot.log" >&2; die "private Dovecot did not start"; }

# --- messages ----------------------------------------------------------------
make_message() { # size file
  local size=$1 file=$2 hdr
  hdr="From: Bench Sender <bench@example.org>
To: bench@example.net
Subject: deliver benchmark, $size bytes
Message-ID: <bench-$size@example.org>
Date: $(date -R)
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

"
  { printf '%s' "$hdr"
    head -c "$size" /dev/urandom | base64 -w 76 | head -c $(( size - ${#hdr} - 1 ))
    printf '\n'
  } > "$file"
  [ "$(stat -c %s "$file")" -eq "$size" ] || die "message $file is not $size bytes"
}
for s in $SIZES; do make_message "$s" "$T/msg-$s"; done

# --- delivery loops --------------------------------------------------------
hf_loop() { # user msgfile count
  local i
  for ((i = 0; i < $3; i++)); do
    "$HF" --data "$HFDATA" deliver -u "$1" -f bench@example.org < "$2" \
      || { echo "holdfast deliver failed (exit $?)" >&2; return 1; }
  done
}
dv_loop() { # user msgfile count
  local i
  for ((i = 0; i < $3; i++)); do
    "$LDA" -c "$DVDIR/dovecot.conf" -d "$1" -f bench@example.org < "$2" \
      || { echo "dovecot-lda failed (exit $?)" >&2; return 1; }
  done
}
now_ns() { date +%s%N; }
count_files() { find "$1/new" "$1/cur" -type f | wc -l; }

# timed IMPL USER MSG PROCS PER_PROC -> prints elapsed nanoseconds
timed() {
  local impl=$1 user=$2 msg=$3 procs=$4 per=$5 t0 t1 pids=() p rc=0
  sync
  t0=$(now_ns)
  for ((p = 0; p < procs; p++)); do
    "${impl}_loop" "$user" "$msg" "$per" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  t1=$(now_ns)
  [ $rc -eq 0 ] || die "$impl: a delivery failed"
  echo $(( t1 - t0 ))
}
check_count() { # dir expected
  local n; n=$(count_files "$1")
  [ "$n" -eq "$2" ] || die "$n messages in $1, expected $2"
}
rate() { awk -v n="$1" -v ns="$2" 'BEGIN { printf "%.0f", n / (ns / 1e9) }'; }

# The disk's own limit, for context: 4 KiB writes with O_DSYNC, one writer.
disk_dsync_rate() {
  local t0 t1 n=1000
  t0=$(now_ns)
  dd if=/dev/zero of="$T/dsync-probe" bs=4k count=$n oflag=dsync status=none
  t1=$(now_ns)
  rm -f "$T/dsync-probe"
  awk -v n=$n -v ns=$(( t1 - t0 )) 'BEGIN { printf "%.0f", n / (ns / 1e9) }'
}

# --- run -------------------------------------------------------------------
echo "warming up ..." >&2
hf_loop warmup "$T/msg-4096" 20
dv_loop warmup "$T/msg-4096" 20

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
DSYNC=$(disk_dsync_rate)
ROWS=()
for s in $SIZES; do
  for m in seq par; do
    if [ $m = seq ]; then procs=1; per=$SEQ_N; else procs=$PAR_PROCS; per=$PAR_N; fi
    user="b${s}${m}"
    # Interleave the two programs in CHUNKS slices (ABAB...), so that a
    # change in background load hits both about equally.
    hf_ns=0; dv_ns=0; done_per=0
    for ((c = 0; c < CHUNKS; c++)); do
      slice=$(( (per * (c + 1)) / CHUNKS - done_per ))
      done_per=$(( done_per + slice ))
      [ "$slice" -gt 0 ] || continue
      echo "size $s, $procs process(es) x $per, slice $((c + 1))/$CHUNKS: holdfast, dovecot-lda" >&2
      hf_ns=$(( hf_ns + $(timed hf "$user" "$T/msg-$s" "$procs" "$slice") ))
      dv_ns=$(( dv_ns + $(timed dv "$user" "$T/msg-$s" "$procs" "$slice") ))
    done
    total=$(( procs * per ))
    check_count "$HFDATA/mail/$user" "$total"
    check_count "$DVDIR/mail/$user" "$total"
    hf_rate=$(rate "$total" "$hf_ns"); dv_rate=$(rate "$total" "$dv_ns")
    ratio=$(awk -v a="$hf_rate" -v b="$dv_rate" 'BEGIN { printf "%.2f", a / b }')
    ROWS+=("| $(( s / 1024 )) KiB | $procs | $total | $hf_rate | $dv_rate | $ratio |")
  done
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
FS_INFO=$(findmnt -n -T "$T" -o SOURCE,FSTYPE,OPTIONS 2>/dev/null || echo unknown)
cat <<EOF

## holdfast deliver vs dovecot-lda (durable Maildir delivery)

- date: $(date -u '+%Y-%m-%d %H:%M UTC')
- machine: $(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, kernel $(uname -r)
- file system: $FS_INFO (scratch dir under $PARENT)
- disk reference: $DSYNC 4 KiB O_DSYNC writes/s (dd, one writer)
- holdfast: $("$HF" --version 2>/dev/null || echo '?') ($HF_ORIG, CMAKE_BUILD_TYPE=${BUILD_TYPE:-unknown}); always fsyncs before exit 0
- Dovecot: $("$DOVECOT" --version) dovecot-lda, mail_fsync = always, default Maildir index settings
- load average before / after: $LOAD_BEFORE / $LOAD_AFTER (other work on the machine skews results)
- each delivery is one process (fork+exec), message on stdin; one fresh mailbox per case;
  each case runs in $CHUNKS alternating slices (holdfast, dovecot-lda, holdfast, ...), times summed per program

| size | processes | messages | holdfast msg/s | dovecot-lda msg/s | holdfast/dovecot |
|---:|---:|---:|---:|---:|---:|
EOF
printf '%s\n' "${ROWS[@]}"
