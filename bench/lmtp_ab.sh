#!/usr/bin/env bash
# lmtp_ab.sh -- two holdfast binaries under the same LMTP load, alternately:
# what a change to holdfast's own code did. Not a comparison with Dovecot
# (that is bench/lmtp_bench.sh); this answers "did the CPU per message go
# down, and the rate up?" with the server's own CPU time (perf stat).
#
# Usage:  bench/lmtp_ab.sh BINARY_A BINARY_B
# Environment:
#   N         messages per run (default 4000)
#   SESSIONS  concurrent smtp-source sessions (default 32)
#   SIZES     smtp-source -l payload sizes (default "4096 65536")
#   ROUNDS    runs per binary and size, alternating A, B, A, B ... (default 3)
#   DIR       parent of the scratch directories (default /var/tmp)
# Each run: a fresh data directory (in its own ext4 block groups, chattr +T:
# see lmtp_bench.sh), `holdfast serve`, 40 warm-up messages, then N messages
# from `smtp-source -L -d -s SESSIONS`; measured from the first message to
# the last 250 (acked/s) and until DATA/mail/u/new holds all (in mailbox/s),
# with `perf stat -p` on the server over the same time (CPU ms per message,
# context switches per message). Prints one line per run and a median line
# per binary and size.
# Needs: postfix (smtp-source), perf (linux-perf), curl.
set -euo pipefail

[ $# -eq 2 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
A="$(realpath "$1")"; B="$(realpath "$2")"
N="${N:-4000}"; SESSIONS="${SESSIONS:-32}"; SIZES="${SIZES:-4096 65536}"; ROUNDS="${ROUNDS:-3}"
DIR="${DIR:-/var/tmp}"
SMTP_SOURCE=/usr/sbin/smtp-source
die() { echo "lmtp_ab: FAILED: $*" >&2; exit 1; }
for x in "$A" "$B"; do [ -x "$x" ] || die "not an executable: $x"; done
[ -x "$SMTP_SOURCE" ] || die "$SMTP_SOURCE not found: install postfix"
command -v perf >/dev/null || die "perf not found: install linux-perf"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
count_new() { find "$1/new" -maxdepth 1 -type f 2>/dev/null | wc -l; }
OUT="$(mktemp -d "$DIR/hf-lmtp-ab.XXXXXXXX")"
trap 'rm -rf "$OUT"' EXIT

# one_run BINARY SIZE: prints "acked/s mailbox/s cpu_ms_per_msg csw_per_msg"
one_run() {
  local hf=$1 size=$2 t pid port perf_pid t0 t1 t2
  t="$(mktemp -d "$DIR/hf-lmtp-ab-run.XXXXXXXX")"
  chattr +T "$t" 2>/dev/null || true
  printf 'pw\n' | "$hf" --data "$t/d" user add u --password-stdin >/dev/null 2>&1
  port=$(free_port)
  setsid "$hf" --data "$t/d" serve --lmtp "127.0.0.1:$port" --pop3 "127.0.0.1:$(free_port)" \
    --metrics "127.0.0.1:$(free_port)" </dev/null >"$t/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q event=ready "$t/log" 2>/dev/null && break; sleep 0.1; done
  grep -q event=ready "$t/log" || { cat "$t/log" >&2; die "$hf serve did not start"; }
  "$SMTP_SOURCE" -L -d -s "$SESSIONS" -m 40 -l "$size" -t u@localhost -f b@example.org "127.0.0.1:$port"
  while [ "$(count_new "$t/d/mail/u")" -lt 40 ]; do sleep 0.01; done
  perf stat -x, -e task-clock,context-switches -p "$pid" -o "$t/perf" & perf_pid=$!
  sleep 0.2
  t0=$(date +%s%N)
  "$SMTP_SOURCE" -L -d -s "$SESSIONS" -m "$N" -l "$size" -t u@localhost -f b@example.org "127.0.0.1:$port"
  t1=$(date +%s%N)
  while [ "$(count_new "$t/d/mail/u")" -lt $(( N + 40 )) ]; do sleep 0.01; done
  t2=$(date +%s%N)
  kill -INT "$perf_pid"; wait "$perf_pid" || true
  kill -TERM "$pid"; wait "$pid" || true
  grep -q "accepted=$(( N + 40 )) delivered=$(( N + 40 )) unretired=0" "$t/log" || die "counters disagree: $(tail -1 "$t/log")"
  awk -F, -v n="$N" -v a=$(( t1 - t0 )) -v b=$(( t2 - t0 )) '
    $3 == "task-clock" { cpu = $1 } $3 == "context-switches" { csw = $1 }
    END { printf "%.0f %.0f %.3f %.2f\n", n / (a / 1e9), n / (b / 1e9), cpu / n, csw / n }' "$t/perf"
  mv "$t" "$OUT/"  # removed at exit, not now: a fresh delete would slow the next run's file creation
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "A = $A"
echo "B = $B"
echo "N=$N SESSIONS=$SESSIONS ROUNDS=$ROUNDS; columns: acked/s, in mailbox/s, server CPU ms/message, context switches/message"
for size in $SIZES; do
  : > "$OUT/A.$size"; : > "$OUT/B.$size"
  for ((r = 1; r <= ROUNDS; r++)); do
    for side in A B; do
      bin=$A; [ "$side" = B ] && bin=$B
      line=$(one_run "$bin" "$size")
      echo "$line" >> "$OUT/$side.$size"
      echo "size $size round $r $side: $line"
    done
  done
  for side in A B; do
    f="$OUT/$side.$size"
    echo "median $side size $size: acked/s $(cut -d' ' -f1 "$f" | median), in mailbox/s $(cut -d' ' -f2 "$f" | median), CPU ms/msg $(cut -d' ' -f3 "$f" | median), csw/msg $(cut -d' ' -f4 "$f" | median)"
  done
done
