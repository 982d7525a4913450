#!/usr/bin/env bash
# `make run`: on an empty data directory, create a user `demo` with a random
# password (printed once, kept in DATA/demo-password, mode 0600), then start
# holdfast on the embedded defaults.
set -euo pipefail
DATA=${1:-./data}
HF=build/holdfast
if [ ! -s "$DATA/users" ]; then
  pw=$(head -c 15 /dev/urandom | base64 | tr -d '/+=' | head -c 16)
  printf '%s\n' "$pw" | "$HF" --data "$DATA" user add demo --password-stdin
  (umask 077; printf '%s\n' "$pw" > "$DATA/demo-password")
  echo "created user 'demo' with password: $pw   (also in $DATA/demo-password)"
fi
echo "starting holdfast serve (LMTP on 127.0.0.1:2424); Ctrl-C stops it"
exec "$HF" --data "$DATA" serve
