#!/usr/bin/env bash
# The intake benchmark (go run ./bench/intake) drives the intake with wrk.
# Install it when missing (Debian, as root), or say what to install.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then
  echo "wrk: $(command -v wrk)"
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing wrk (apt-get install wrk)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  exit 0
fi
echo "wrk is needed by the intake benchmark: install it (Debian/Ubuntu: sudo apt-get install wrk; macOS: brew install wrk), or run with -loadgen go" >&2
exit 1
