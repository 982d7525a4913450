#!/usr/bin/env bash
# kill9_torture.sh -- the long kill -9 torture run (docs/torture.md).
#
# Runs tests/system/test_kill9_torture.py with HOLDFAST_KILLS=KILLS (default
# 1000): `holdfast serve` under LMTP load from 4 client threads is SIGKILLed
# KILLS times at random moments (0.05-0.6 s after it became ready; every 4th
# restart is also killed during start-up), restarted on the same data
# directory each time; then every acknowledged (message, recipient) must be in
# its mailbox exactly once, byte for byte, nothing partial, fsck clean.
# The short version (20 kills) is part of `make test`.
#
# Usage:  bench/kill9_torture.sh [KILLS] [--keep]
#   KILLS        number of SIGKILLs after readiness (default 1000)
#   --keep       keep the scratch directory (data, server log) afterwards
# Environment:
#   HOLDFAST                  the binary (default: build/holdfast, Release)
#   HOLDFAST_TORTURE_CLIENTS  client threads (default 4)
#   HOLDFAST_TORTURE_SEED     seed for sizes, recipients and kill times
#                             (default: the current time; printed at the start)
#   TMPDIR                    parent of the scratch directory (default /tmp);
#                             a 1000-kill run stores a few GB of mail there
#   TORTURE_LOG               where the full output goes
#                             (default /var/tmp/holdfast-kill9-<date>.log)
#
# Exit status: that of the test (0 pass, 1 fail). The last lines printed are
# the summary to copy into docs/torture.md ("Last result").
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KILLS=1000
KEEP=()
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) KEEP=(--keep); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *[!0-9]*|"") echo "kill9_torture.sh: bad argument '$1' (try --help)" >&2; exit 64 ;;
    *) KILLS="$1"; shift ;;
  esac
done

BIN="${HOLDFAST:-$REPO/build/holdfast}"
if [ ! -x "$BIN" ]; then
  echo "kill9_torture.sh: no holdfast binary at $BIN (build it: cmake --build build --target holdfast)" >&2
  exit 1
fi
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
LOG="${TORTURE_LOG:-/var/tmp/holdfast-kill9-$STAMP.log}"

{
  echo "# holdfast kill -9 torture, long run"
  echo "# date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "# command: HOLDFAST_KILLS=$KILLS /usr/bin/python3 tests/system/test_kill9_torture.py --holdfast $BIN ${KEEP[*]:-}"
  echo "# git:     $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
  echo "# machine: $(nproc) cores, $(uname -sr), $(df -hT "${TMPDIR:-/tmp}" | awk 'NR==2 {print $2" on "$1}')"
} | tee "$LOG"

start=$(date +%s)
set +e
HOLDFAST_KILLS="$KILLS" /usr/bin/python3 "$REPO/tests/system/test_kill9_torture.py" --holdfast "$BIN" "${KEEP[@]}" \
  2>&1 | tee -a "$LOG" | grep --line-buffered -v '^[0-9]\{4\}-[0-9][0-9]-[0-9][0-9]T'
# (the server log lines the test prints on a failure go to $LOG only)
rc=${PIPESTATUS[0]}
set -e
end=$(date +%s)
{
  echo "# exit status: $rc; wall time: $((end - start)) s"
  echo "# full output: $LOG"
} | tee -a "$LOG"
exit "$rc"
