#!/usr/bin/env bash
# The gate's store work at several store sizes: fills (once) a store per
# size with that many enrolled users through the store API, then runs
# BenchmarkScale on it (store open, session read, account read, a login's
# store work, the proxied request, a whole login) and prints the store's
# size on disk. The stores stay in $SCALE_BASE-<users> for reuse, and for
#
#   SCALE_STORE=/tmp/tf-scale-1000000 bench/load.sh memory
#
# which measures Caddy's startup time and memory on the biggest one.
#
#   bench/scale.sh [users ...]        (default: 100 1000000)
#
# Settings: SCALE_BASE (/tmp/tf-scale), COUNT (3 runs of each benchmark),
# OUT (bench/out).
# A store of 1,000,000 users takes about 600 MB and a few minutes to fill.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${SCALE_BASE:-/tmp/tf-scale}
COUNT=${COUNT:-3}
[[ $# -gt 0 ]] || set -- 100 1000000
echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(go version | awk '{print $3}'), $(date -u +%Y-%m-%dT%H:%MZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
go test -c -o "$OUT/caddymodule.test" ./caddymodule
bin=$(realpath "$OUT/caddymodule.test")
for n in "$@"; do
	dir=$BASE-$n
	echo
	echo "== $n users: $dir"
	# The test binary logs the store's debug lines on stderr; the figures
	# are on stdout.
	(cd caddymodule && "$bin" -test.run '^$' -test.bench Scale -test.benchmem -test.count "$COUNT" \
		-test.timeout 2h -scale.users "$n" -scale.dir "$dir" 2>"/tmp/tf-scale-$n.log") |
		grep -E '^(Benchmark|PASS|FAIL)|filled|users in' || { echo "benchmark failed, see /tmp/tf-scale-$n.log" >&2; exit 1; }
	echo "on disk: $(du -sh "$dir" | cut -f1)"
done
