#!/usr/bin/env bash
# Makes sure a Chromium binary is available for the browser test
# (api/dashboard_browser_test.go, TestDashboardInBrowser).
#
# - If one is found (on PATH or at /usr/bin/chromium), prints its version.
# - Else, as root with apt-get, installs the Debian package "chromium".
# - Else, says what to install and exits 1.
set -euo pipefail

find_chromium() {
	if [[ -n "${CHROMIUM:-}" && -x "${CHROMIUM}" ]]; then
		echo "${CHROMIUM}"
		return 0
	fi
	if [[ -x /usr/bin/chromium ]]; then
		echo /usr/bin/chromium
		return 0
	fi
	local name
	for name in chromium chromium-browser google-chrome; do
		if command -v "${name}" >/dev/null 2>&1; then
			command -v "${name}"
			return 0
		fi
	done
	return 1
}

if bin="$(find_chromium)"; then
	echo "chromium: ${bin}"
	"${bin}" --version
	exit 0
fi

if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
	echo "chromium not found; installing the Debian package \"chromium\"..." >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
	bin="$(find_chromium)" || {
		echo "chromium was installed but no binary was found" >&2
		exit 1
	}
	echo "chromium: ${bin}"
	"${bin}" --version
	exit 0
fi

cat >&2 <<'MSG'
chromium not found. The browser test (go test -run TestDashboardInBrowser ./api/)
needs a Chromium or Chrome binary. Install it, for example:

  Debian/Ubuntu:  sudo apt-get update && sudo apt-get install -y chromium
                  (Ubuntu: chromium-browser, or the chromium snap)
  Fedora:         sudo dnf install -y chromium
  macOS:          brew install --cask chromium

or point CHROMIUM at an existing binary: CHROMIUM=/path/to/chrome go test ./api/
MSG
exit 1
