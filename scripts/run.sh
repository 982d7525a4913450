#!/usr/bin/env bash
# `make run`: on an empty data directory, create a user `demo` with a random
# password (printed once, kept in DATA/demo-password, mode 0600) and a
# self-signed certificate in DATA/tls/, then start holdfast on the embedded
# defaults (plus POP3S on 127.0.0.1:1995 in a first DATA/holdfast.toml).
set -euo pipefail
DATA=${1:-./data}
HF=build/holdfast
if [ ! -s "$DATA/users" ]; then
  pw=$(head -c 15 /dev/urandom | base64 | tr -d '/+=' | head -c 16)
  printf '%s\n' "$pw" | "$HF" --data "$DATA" user add demo --password-stdin
  (umask 077; printf '%s\n' "$pw" > "$DATA/demo-password")
  echo "created user 'demo' with password: $pw   (also in $DATA/demo-password)"
fi
# A self-signed certificate on first start, so STLS and POP3S work at once
# (replace data/tls/*.pem, or set tls.cert_file/key_file, for a real one).
if [ ! -s "$DATA/tls/cert.pem" ] || [ ! -s "$DATA/tls/key.pem" ]; then
  mkdir -p "$DATA/tls"
  (umask 077; openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=localhost" \
     -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
     -keyout "$DATA/tls/key.pem" -out "$DATA/tls/cert.pem" 2>/dev/null)
  echo "created a self-signed TLS certificate: $DATA/tls/cert.pem"
fi
if [ ! -f "$DATA/holdfast.toml" ]; then
  # POP3S only when no configuration file says otherwise.
  printf '[pop3]\ntls_listen = "127.0.0.1:1995"\n' > "$DATA/holdfast.toml"
fi
echo "starting holdfast serve (LMTP 127.0.0.1:2424, POP3 127.0.0.1:1110); Ctrl-C stops it"
exec "$HF" --data "$DATA" serve
