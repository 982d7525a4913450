#!/usr/bin/env bash
# Installs, non-interactively, the Debian 12 packages holdfast needs to build
# and test -- only those that are missing. Safe to run again and again.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake pkg-config clang libclang-rt-14-dev
  # libraries (see docs/architecture.md for why each one is here)
  libssl-dev libcrypt-dev libcli11-dev libtomlplusplus-dev libfmt-dev
  libgtest-dev libgmock-dev libasio-dev nlohmann-json3-dev
  # real peers and clients used by the tests and benchmarks
  python3 dovecot-core dovecot-pop3d dovecot-lmtpd swaks util-linux postfix curl openssl fetchmail
  # the spam scanner of the rspamd filter step: only a test-time peer (tests/system/hfrspamd.py
  # runs private instances); holdfast itself talks to any rspamd over HTTP
  rspamd
  # promtool (from prometheus) checks /metrics in tests/system/test_metrics.py
  prometheus
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "bootstrap: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "bootstrap: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Dovecot's, rspamd's and prometheus's packaging start the daemon on install; the tests run
# their own private instances, so keep the system ones from starting
# (policy-rc.d 101: invoke-rc.d and deb-systemd-invoke ask it first).
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
# Postfix: no system configuration (the tests write private ones), no prompt.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
