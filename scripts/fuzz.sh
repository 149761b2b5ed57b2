#!/usr/bin/env bash
# scripts/fuzz.sh [duration] — fuzz every Fuzz target of the packages that
# decode requests, one target at a time (go test allows one -fuzz target per
# run), each for duration (default 30s). Fails when any target fails; the
# input that failed is written under <package>/testdata/fuzz/<target>/, where
# plain `go test` (and so `make test`) runs it from then on.
#
# Needs what `make test` needs: the api package's tests run against the real
# PostgreSQL and Redis (TEST_DATABASE_URL, TEST_REDIS_ADDR).
# Minimizing is bounded to 10s an input (Go's default is 60s, during which
# nothing else is fuzzed). FUZZ_FLAGS adds flags to each run (e.g. FUZZ_FLAGS=-parallel=1).
set -uo pipefail
cd "$(dirname "$0")/.."

duration="${1:-30s}"
packages=(./api/)
GO="${GO:-go}"

failed=()
for pkg in "${packages[@]}"; do
	targets=$($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz') || { echo "fuzz: cannot list the targets of $pkg" >&2; exit 1; }
	for t in $targets; do
		echo "=== fuzz $pkg $t for $duration"
		# shellcheck disable=SC2086
		if ! $GO test -run "^${t}\$" -fuzz "^${t}\$" -fuzztime "$duration" -fuzzminimizetime 10s ${FUZZ_FLAGS:-} "$pkg"; then
			failed+=("$pkg $t")
		fi
	done
done

if ((${#failed[@]})); then
	echo "fuzz: FAILED: ${failed[*]} (failing inputs under <package>/testdata/fuzz/<target>/)" >&2
	exit 1
fi
echo "fuzz: every target ran $duration without a failure"
