#!/usr/bin/env bash
# The nginx tests put a real nginx in front of the intake. Install it when
# missing (Debian, as root), or say what to install.
set -euo pipefail
for c in nginx /usr/sbin/nginx; do
  if command -v "$c" >/dev/null 2>&1; then
    echo "nginx: $(command -v "$c")"
    exit 0
  fi
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing nginx (apt-get install nginx)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
  # Only the binary is needed: the Debian package starts a server on :80.
  (nginx -s stop >/dev/null 2>&1 || true)
  exit 0
fi
echo "nginx is needed by the deploy tests: install it (Debian/Ubuntu: sudo apt-get install nginx; macOS: brew install nginx)" >&2
exit 1
