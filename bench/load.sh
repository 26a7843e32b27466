#!/usr/bin/env bash
# Load test of caddy two-factor against plain reverse_proxy and the
# forward_auth design, with wrk, on 127.0.0.1. Prints numbers; passes or
# fails only on broken setups (a wrong answer, a dead session), never on
# speed. See docs/benchmarks.md for what the figures mean.
#
#   bench/load.sh [compare|profile|pairs|headers|flood|memory|all]     (default: all)
#
# compare  one Caddy process, four sites, run interleaved A B C D A B C D ...:
#            A  reverse_proxy                                  :18081
#            B  two_factor + reverse_proxy, logged in          :18082
#            C  forward_auth to a cookie checker + reverse_proxy :18083
#            D  Caddy's basic_auth (bcrypt, its hash cache) + reverse_proxy :18085
#            E  two_factor with storage postgres + reverse_proxy, logged in :18086
#            F  two_factor with the signed assertion (assertion_header) and
#               auth_headers + reverse_proxy, logged in (B's session) :18087
#               (with PG=1, the default when PostgreSQL's programs are
#               installed: a throwaway cluster on 127.0.0.1:18432)
#          req/s, p50, p99 per setup, the paired ratios to A (median and
#          range of the rounds), and the CPU time of the Caddy process per
#          request; then the same over HTTPS and HTTP/2 with h2load for A,
#          B and D (:18091, :18092, :18095); then one long run of B under
#          Caddy's CPU profiler, for the share of Caddy's CPU spent in the
#          gate itself.
#
# CPU-bound by default: Caddy runs on its own CPU (taskset -c 0), the load
# generator, the upstream and the forward-auth checker on the others. Run
# unpinned on two CPUs, wrk and the upstream compete with Caddy for the same
# CPUs and the gate's share of the work is diluted: a setup that costs
# Caddy 8 µs more per request can then show the throughput of plain
# reverse_proxy. Pinned, Caddy is the bottleneck, so what it spends per
# request is what the throughput shows. PIN=0 runs unpinned.
# profile  only compare's profiled runs of B, D and F (the auth handlers'
#          own shares of Caddy's CPU), a few minutes.
# pairs    A against one other setup (PAIR_WITH: B, the default, D or F)
#          in short runs back to back (PAIR_DURATION, 2s), in the order
#          A X X A A X ..., PAIRS pairs (40): each pair's ratio is taken
#          within a few seconds, not up to a minute apart as in compare's
#          rounds. (On the VM of docs/benchmarks.md that did not narrow the
#          spread: its CPU's speed moves within seconds.)
# headers  what F costs beyond B, split in two: B, F and G interleaved,
#          where G is B with the very request headers F adds (the signed
#          assertion and auth_headers, copied from what F sent the
#          upstream) set by Caddy's request_header instead. G−B is what
#          Caddy pays to carry those headers to the upstream; F−G is the
#          gate's own work for them.
# flood    B alone, then B while wrong-password logins flood in (from many
#          addresses and user names, so throttling lets the hashes run),
#          interleaved; the ratio of B's throughput under flood to without.
# memory   RSS of plain Caddy idle, with the module idle, after 10,000
#          logins; with SCALE_STORE set, also with that store (see
#          bench/scale.sh), and the startup time.
#
# Settings (environment): ROUNDS (8), DURATION (8s), CONNS (32), PIN (1),
# CADDY_CPUS (0), LOAD_CPUS (the others), H2 (1: the HTTPS + HTTP/2 part
# of compare; needs h2load from Debian's nghttp2-client),
# THREADS (1), LOGINS (10000), HASHES (max_concurrent_hashes; default:
# the module's), HASH_CPU (hash_cpu, e.g. 100% for no CPU budget; default:
# the module's), OUT (bench/out: binaries and results),
# PAIRS (40), PAIR_WITH (B) and PAIR_DURATION (2s) for pairs,
# PROXY_LOG (1; 0 leaves reverse_proxy's logger out of the log),
# PROFILE (30: seconds of each profiled run of B, D and F; 0 skips them),
# PROFILE_ROUNDS (2: profiled runs of each, alternating), PROFILER (perf
# when it works, else go) and PERF_HZ (5000: perf's sampling rate),
# SCALE_STORE (a store folder made by bench/scale.sh), SETTLE (150: seconds
# to wait on it before measuring again), SCALE_KEY, CADDY (a
# Caddy binary to measure instead of building ./cmd/caddy).
#
# Needs: go, wrk (apt-get install wrk), curl, taskset; h2load for H2=1;
# PostgreSQL's programs for PG=1 (apt-get install postgresql); perf for
# the profiled runs, optional (apt-get install linux-perf; run as root, or
# with kernel.perf_event_paranoid low enough to profile Caddy's process).
# Ports: 127.0.0.1:18080-18088, 18091-18095, 18432 (PostgreSQL) and the admin API on
# 127.0.0.1:18019 (none of them used by the tests or the demo).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-all}
ROUNDS=${ROUNDS:-8}
DURATION=${DURATION:-8s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
LOGINS=${LOGINS:-10000}
HASHES=${HASHES:-}
HASHES_LINE=${HASHES:+max_concurrent_hashes $HASHES}
HASH_CPU=${HASH_CPU:-}
HASH_CPU_LINE=${HASH_CPU:+hash_cpu $HASH_CPU}
OUT=${OUT:-bench/out}
PASSWORD="correct horse battery staple"
# The key of the stores made by bench/scale.sh (a benchmark key, not a secret).
SCALE_KEY=${SCALE_KEY:-YmVuY2htYXJrIGtleSwgbm90IGEgc2VjcmV0ISEhISE=}

UP=127.0.0.1:18080
SITE_A=127.0.0.1:18081
SITE_B=127.0.0.1:18082
SITE_C=127.0.0.1:18083
FWD=127.0.0.1:18084
SITE_D=127.0.0.1:18085
SITE_E=127.0.0.1:18086
SITE_F=127.0.0.1:18087
SITE_G=127.0.0.1:18088
PG_PORT=18432
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -n $PG_BIN ]] || PG_BIN=$(dirname "$(command -v initdb 2>/dev/null || echo /none/initdb)")
if [[ -z ${PG:-} ]]; then
	PG=0
	[[ -x $PG_BIN/initdb ]] && PG=1
fi
TLS_A=127.0.0.1:18091
TLS_B=127.0.0.1:18092
TLS_D=127.0.0.1:18095
H2=${H2:-1}
# PROXY_LOG=0 leaves reverse_proxy's logger out of Caddy's default log.
# Its "upstream roundtrip" debug line is built with logger.With on every
# request, which encodes the upstream request's headers as JSON even when
# debug is off; a logger no log takes is a no-op, and skips that.
PROXY_LOG=${PROXY_LOG:-1}
PROXY_LOG_LINES=
if [[ $PROXY_LOG == 0 ]]; then
	PROXY_LOG_LINES=$'log default {\n\t\texclude http.handlers.reverse_proxy\n\t}'
fi

# Pinning: Caddy on CADDY_CPUS, everything else on LOAD_CPUS.
PIN=${PIN:-1}
NCPU=$(nproc)
if [[ $PIN == 1 && $NCPU -lt 2 ]]; then
	echo "PIN=1 needs at least 2 CPUs; this machine has $NCPU (run with PIN=0)" >&2
	exit 2
fi
CADDY_CPUS=${CADDY_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1-$((NCPU - 1))}
# on_caddy_cpus / on_load_cpus CMD...: run CMD pinned, in place of the
# shell that calls them (exec), so that $! of "on_... cmd &" is cmd's PID.
# Call them only in a subshell: with & or inside $(...).
on_caddy_cpus() { if [[ $PIN == 1 ]]; then exec taskset -c "$CADDY_CPUS" "$@"; else exec "$@"; fi; }
on_load_cpus() { if [[ $PIN == 1 ]]; then exec taskset -c "$LOAD_CPUS" "$@"; else exec "$@"; fi; }
ADMIN=127.0.0.1:18019
# The profiler of the profiled runs: perf (Linux's, sampling Caddy's CPU
# clock at PERF_HZ, 5000 by default, fifty times Go's rate, so a handler's
# share rests on thousands of samples rather than about a hundred) when it
# works here, else Go's own through Caddy's admin API. PROFILER=go forces
# the latter.
PERF_HZ=${PERF_HZ:-5000}
if [[ -z ${PROFILER:-} ]]; then
	PROFILER=go
	perf record -q -e cpu-clock -F 100 -o /dev/null -- true >/dev/null 2>&1 && PROFILER=perf
fi

for tool in go wrk curl taskset; do
	command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install $tool)" >&2; exit 1; }
done
if [[ $H2 == 1 ]] && ! command -v h2load >/dev/null; then
	echo "missing: h2load (apt-get install nghttp2-client), or run with H2=0" >&2
	exit 1
fi
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/tf-bench.XXXXXX)
PIDS=()
PG_AS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	if [[ -d $WORK/pgrun/data ]]; then
		"${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pgrun/data" -m fast -w stop >/dev/null 2>&1 || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
export XDG_DATA_HOME=$WORK/data XDG_CONFIG_HOME=$WORK/config

log() { printf '%s\n' "$*" >&2; }

build() {
	log "building into $OUT"
	if [[ -n ${CADDY:-} ]]; then
		log "using the Caddy binary $CADDY"
		cp "$CADDY" "$OUT/caddy"
	else
		go build -o "$OUT/caddy" ./cmd/caddy
	fi
	go build -o "$OUT/upstream" ./bench/upstream
	go build -o "$OUT/fwdauth" ./bench/fwdauth
	go build -o "$OUT/login" ./bench/login
	go build -o "$OUT/perfshare" ./bench/perfshare
}

# wait_for URL: until it answers at all (bounded).
wait_for() {
	for _ in $(seq 1 500); do
		curl -s -o /dev/null "$1" && return 0
		sleep 0.01
	done
	log "no answer from $1"; return 1
}

# wait_port HOST:PORT: until nothing listens there any more (bounded).
wait_port_free() {
	for _ in $(seq 1 500); do
		curl -s -o /dev/null "http://$1/" || return 0
		sleep 0.01
	done
	log "$1 is still in use"; return 1
}

start_backends() {
	on_load_cpus "$OUT/upstream" -addr "$UP" 2>>"$WORK/upstream.log" &
	PIDS+=($!)
	TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
	on_load_cpus "$OUT/fwdauth" -addr "$FWD" -token "$TOKEN" 2>>"$WORK/fwdauth.log" &
	FWD_PID=$!
	PIDS+=($FWD_PID)
	wait_for "http://$UP/"
	wait_for "http://$FWD/"
}

# start_pg: a throwaway PostgreSQL cluster for site E, on the load CPUs
# (the proxied requests of a logged-in session do not reach it: sessions
# are cached; logins and code checks do).
start_pg() {
	local dir=$WORK/pgrun
	mkdir -p "$dir"
	if [[ $(id -u) == 0 ]]; then
		PG_AS=(runuser -u postgres --) # initdb refuses to run as root
		chmod 755 "$WORK"
		chown postgres "$dir"
	fi
	"${PG_AS[@]}" "$PG_BIN/initdb" -D "$dir/data" -U bench --auth=trust -E UTF8 --no-instructions >/dev/null
	(on_load_cpus "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
		-o "-p $PG_PORT -k $dir -c listen_addresses=127.0.0.1" start >/dev/null)
	PG_URL="postgres://bench@127.0.0.1:$PG_PORT/postgres?sslmode=disable"
}

hashes() {
	# alice: Caddy's default (bcrypt, cost 14), also the decoy that unknown
	# names are checked against, so a flood of logins costs what it would.
	# bob: the lowest bcrypt cost, for the 10,000 logins of the memory run.
	HASH_ALICE=$("$OUT/caddy" hash-password --plaintext "$PASSWORD")
	HASH_BOB=$("$OUT/caddy" hash-password --plaintext "$PASSWORD" --bcrypt-cost 4)
	BASIC=$(printf 'alice:%s' "$PASSWORD" | base64 -w0)
}

# caddyfile SITES STORE: a config with the given sites (letters A, B, C).
caddyfile() {
	local sites=$1 store=$2
	cat <<-EOF
	{
		admin $ADMIN
		auto_https disable_redirects
		skip_install_trust
		persist_config off
		servers {
			trusted_proxies static 127.0.0.1/32
		}
		$PROXY_LOG_LINES
	}
	EOF
	if [[ $sites == *A* ]]; then
		cat <<-EOF
		http://$SITE_A {
			reverse_proxy $UP
		}
		EOF
	fi
	if [[ $sites == *B* ]]; then
		gate_site "http://$SITE_B" "storage_dir $store"
	fi
	if [[ $sites == *C* ]]; then
		cat <<-EOF
		http://$SITE_C {
			forward_auth $FWD {
				uri /check
				copy_headers Remote-User
			}
			reverse_proxy $UP
		}
		EOF
	fi
	if [[ $sites == *D* ]]; then
		basic_site "http://$SITE_D"
	fi
	if [[ $sites == *E* ]]; then
		gate_site "http://$SITE_E" "storage postgres $PG_URL"
	fi
	if [[ $sites == *F* ]]; then
		gate_site "http://$SITE_F" "storage_dir $store" "" "assertion_header X-Two-Factor-Assertion
			auth_headers"
	fi
	if [[ $sites == *G* ]]; then
		gate_site "http://$SITE_G" "storage_dir $store" "$G_HEADERS"
	fi
	if [[ $sites == *T* ]]; then
		cat <<-EOF
		https://$TLS_A {
			tls internal
			reverse_proxy $UP
		}
		EOF
		gate_site "https://$TLS_B" "storage_dir $store" "tls internal"
		basic_site "https://$TLS_D" "tls internal"
	fi
}

# gate_site ADDRESS STORAGE_LINE [SITE_LINES [MORE_LINES]]: a two_factor site
# (SITE_LINES go in the site's block, such as tls; MORE_LINES in
# two_factor's). Every such site of
# a config names the realm bench, so that they share the store's users and
# sessions (one login serves them all).
gate_site() {
	cat <<-EOF
	$1 {
		${3:-}
		two_factor {
			realm bench
			user alice $HASH_ALICE
			user bob $HASH_BOB
			$2
			encryption_key $SCALE_KEY
			free_failures 50
			$HASHES_LINE
			$HASH_CPU_LINE
			${4:-}
		}
		reverse_proxy $UP
	}
	EOF
}

# basic_site ADDRESS [TLS_LINE]: Caddy's own basic_auth, with alice's
# bcrypt hash (Caddy keeps a cache of the checked passwords, so a request
# costs a lookup, not a bcrypt).
basic_site() {
	cat <<-EOF
	$1 {
		${2:-}
		basic_auth {
			alice $HASH_ALICE
		}
		reverse_proxy $UP
	}
	EOF
}

# start_caddy SITES STORE: starts Caddy; sets CADDY_PID and STARTUP_MS
# (from exec to the first answer of the last site).
start_caddy() {
	local sites=$1 store=$2
	caddyfile "$sites" "$store" >"$WORK/Caddyfile"
	local t0 probe
	t0=$(date +%s%N)
	on_caddy_cpus "$OUT/caddy" run --config "$WORK/Caddyfile" --adapter caddyfile 2>>"$WORK/caddy.log" &
	CADDY_PID=$!
	PIDS+=($CADDY_PID)
	case $sites in
	*D*) probe=$SITE_D ;; *C*) probe=$SITE_C ;; *B*) probe=$SITE_B ;; *) probe=$SITE_A ;;
	esac
	wait_for "http://$probe/" || { tail -20 "$WORK/caddy.log" >&2; return 1; }
	STARTUP_MS=$((($(date +%s%N) - t0) / 1000000))
}

stop_caddy() {
	kill "$CADDY_PID"
	wait "$CADDY_PID" 2>/dev/null || true
	wait_port_free "$ADMIN"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# rss_split PID: the resident memory that is the process's own (anonymous:
# heap, stacks) and the part that maps files (the binary, badger's tables).
rss_split() { awk '/^RssAnon:/ {a = $2} /^RssFile:/ {f = $2} END {printf "anon %d MiB, file %d MiB", a / 1024, f / 1024}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

# expect URL COOKIE STATUS: one request's status must be STATUS.
expect() {
	local got
	got=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $2" -H 'Accept: application/json' "$1")
	if [[ $got != "$3" ]]; then
		log "GET $1 gave $got, want $3"; exit 1
	fi
}

# to_us VALUE: wrk's latency (e.g. 512.00us, 1.23ms, 1.02s) in microseconds.
to_us() {
	awk -v v="$1" 'BEGIN {
		n = v + 0
		if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
		else if (v ~ /m$/) print n * 60e6; else if (v ~ /s$/) print n * 1e6; else print n }'
}

# run_wrk NAME URL [extra wrk args...]: one run; prints
# "NAME req/s p50_us p99_us requests cpu_us_per_req [checker_cpu_us_per_req]".
run_wrk() {
	local name=$1 url=$2
	shift 2
	local c0 f0 c1 f1 out
	c0=$(cpu_ticks "$CADDY_PID")
	f0=$(cpu_ticks "$FWD_PID")
	out=$(on_load_cpus wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Cookie: $COOKIE" "$@" "$url")
	c1=$(cpu_ticks "$CADDY_PID")
	f1=$(cpu_ticks "$FWD_PID")
	if grep -q -e 'Non-2xx' -e 'Socket errors' <<<"$out"; then
		log "$name: wrk saw errors:"; log "$out"; exit 1
	fi
	local rps p50 p99 reqs
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
	p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	awk -v n="$name" -v r="$rps" -v a="$p50" -v b="$p99" -v q="$reqs" -v c=$((c1 - c0)) -v f=$((f1 - f0)) -v t="$TICK" \
		'BEGIN { printf "%s %.0f %.0f %.0f %d %.2f %.2f\n", n, r, a, b, q, c * 1e6 / t / q, f * 1e6 / t / q }'
}

# median: of the numbers on stdin.
median() { sort -g | awk '{v[NR] = $1} END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

login_alice() {
	SESSION=$("$OUT/login" -base "http://$SITE_B" -user alice -password "$PASSWORD" -enrol)
	COOKIE="__Host-two_factor=$SESSION; fwd_session=$TOKEN"
}

machine() {
	echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(go version | awk '{print $3}'), $(date -u +%Y-%m-%dT%H:%MZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "wrk: -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds"
	if [[ $PROXY_LOG == 0 ]]; then
		echo "PROXY_LOG=0: reverse_proxy's logger is left out of Caddy's log"
	fi
	if [[ $PIN == 1 ]]; then
		echo "pinned: Caddy on CPU $CADDY_CPUS; wrk, h2load, the upstream and the checker on CPUs $LOAD_CPUS"
	else
		echo "not pinned (PIN=0): Caddy, the load generator and the upstream share the CPUs"
	fi
}

# range: "min–max" of the numbers on stdin.
range() { sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%s–%s", lo, hi}'; }

compare() {
	local sites=ABCDF setups=(A B C D F)
	if [[ $PG == 1 ]]; then
		start_pg
		sites+=E setups+=(E)
	fi
	[[ $H2 == 1 ]] && sites+=T
	start_caddy "$sites" "$WORK/store"
	login_alice
	if [[ $PG == 1 ]]; then
		COOKIE_E="__Host-two_factor=$("$OUT/login" -base "http://$SITE_E" -user alice -password "$PASSWORD" -enrol)"
		expect "http://$SITE_E/" "$COOKIE_E" 200
		expect "http://$SITE_E/" "" 401
	fi
	# Each setup works, and the gate and basic_auth let nothing through
	# without their credentials.
	expect "http://$SITE_A/" "$COOKIE" 200
	expect "http://$SITE_B/" "$COOKIE" 200
	expect "http://$SITE_C/" "$COOKIE" 200
	expect "http://$SITE_B/" "" 401
	expect "http://$SITE_C/" "" 401
	expect "http://$SITE_D/" "" 401
	expect "http://$SITE_F/" "$COOKIE" 200
	expect "http://$SITE_F/" "" 401
	local got
	got=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Basic $BASIC" "http://$SITE_D/")
	[[ $got == 200 ]] || { log "basic_auth with alice's password gave $got"; exit 1; }
	log "warming up"
	DURATION=3s run_wrk warm "http://$SITE_A/" >/dev/null || exit 1
	DURATION=3s run_wrk warm "http://$SITE_B/" >/dev/null || exit 1
	DURATION=3s run_wrk warm "http://$SITE_C/" >/dev/null || exit 1
	DURATION=3s run_wrk warm "http://$SITE_D/" -H "Authorization: Basic $BASIC" >/dev/null || exit 1
	DURATION=3s run_wrk warm "http://$SITE_F/" >/dev/null || exit 1
	if [[ $PG == 1 ]]; then
		COOKIE=$COOKIE_E DURATION=3s run_wrk warm "http://$SITE_E/" >/dev/null || exit 1
	fi
	local res=$WORK/compare.txt
	: >"$res"
	for r in $(seq 1 "$ROUNDS"); do
		for s in $(order "$r" "${setups[@]}"); do
			local site=SITE_$s extra=() cookie=$COOKIE
			[[ $s == D ]] && extra=(-H "Authorization: Basic $BASIC")
			[[ $s == E ]] && cookie=$COOKIE_E
			log "round $r: $s"
			line=$(COOKIE=$cookie run_wrk "$s" "http://${!site}/" "${extra[@]}") || exit 1
			echo "$r $line" >>"$res"
		done
	done
	cp "$res" "$OUT/compare-raw.txt"

	echo
	echo "== compare: A reverse_proxy, B two_factor + reverse_proxy, C forward_auth + reverse_proxy, D basic_auth + reverse_proxy, E two_factor on PostgreSQL + reverse_proxy, F two_factor with the signed assertion + reverse_proxy (HTTP/1.1)"
	machine
	echo "round setup req/s p50_us p99_us requests caddy_cpu_us/req checker_cpu_us/req"
	cat "$res"
	summary "$res" "${setups[@]}"
	echo "  F/B throughput (the signed assertion on, against off): $(pair "$res" 3 B F ratio | median) ($(pair "$res" 3 B F ratio | range)), Caddy CPU µs/req F-B: $(pair "$res" 7 B F diff | median)"
	if [[ $PG == 1 ]]; then
		echo "  E/B throughput (PostgreSQL vs badger, both logged in): $(pair "$res" 3 B E ratio | median) ($(pair "$res" 3 B E ratio | range)), Caddy CPU µs/req E-B: $(pair "$res" 7 B E diff | median)   (target >= 0.95)"
	fi
	echo "  C checker CPU µs/req:      $(awk '$2 == "C" {print $8}' "$res" | median)   (the forward-auth server, besides Caddy's)"
	echo "  B-D Caddy CPU µs/req:      $(pair "$res" 7 D B diff | median)   (target < 0: the gate cheaper than basic_auth)"
	if [[ $H2 == 1 ]]; then
		compare_h2
	fi
	gate_profile
	stop_caddy
}

# order R SETUP...: the setups in the order round R (from 1) runs them.
# Rounds go in pairs: the same turn of the list forwards, then backwards,
# and the next pair turns it by one more. So each setup runs first, last
# and in between equally often over 2×N rounds, and follows each of the
# others: none always runs right after a heavy one (forward_auth leaves the
# caches and the CPU's clock to whatever runs next), and drift over the
# run does not favour any.
order() {
	local r=$1; shift
	local all=("$@") n=$# i out=()
	local turn=$((((r - 1) / 2) % n))
	for ((i = 0; i < n; i++)); do
		out+=("${all[(i + turn) % n]}")
	done
	if ((r % 2 == 0)); then
		for ((i = n - 1; i >= 0; i--)); do echo -n "${out[i]} "; done
		echo
	else
		echo "${out[@]}"
	fi
}

# pair FILE FIELD X Y OP: per round, Y's field against X's (ratio or diff).
pair() {
	awk -v f="$2" -v x="$3" -v y="$4" -v op="$5" '
		$2 == x {a[$1] = $f} $2 == y {b[$1] = $f}
		END { for (r in a) if (r in b) { if (op == "ratio") print b[r] / a[r]; else print b[r] - a[r] } }' "$1"
}

# summary FILE SETUPS...: medians per setup, and each setup paired with
# the first (median and range of the rounds).
summary() {
	local res=$1 base=$2
	shift
	echo
	printf '%-6s %10s %10s %10s %16s\n' setup "req/s" "p50 µs" "p99 µs" "Caddy CPU µs/req"
	for s in "$@"; do
		printf '%-6s %10s %10s %10s %16s\n' "$s" \
			"$(awk -v s="$s" '$2 == s {print $3}' "$res" | median)" \
			"$(awk -v s="$s" '$2 == s {print $4}' "$res" | median)" \
			"$(awk -v s="$s" '$2 == s {print $5}' "$res" | median)" \
			"$(awk -v s="$s" '$2 == s {print $7}' "$res" | median)"
	done
	echo
	echo "paired with $base, median (range) of $ROUNDS rounds:"
	shift
	for s in "$@"; do
		echo "  $s/$base throughput: $(pair "$res" 3 "$base" "$s" ratio | median) ($(pair "$res" 3 "$base" "$s" ratio | range))" \
			" p99: $(pair "$res" 5 "$base" "$s" ratio | median)  Caddy CPU µs/req added: $(pair "$res" 7 "$base" "$s" diff | median) ($(pair "$res" 7 "$base" "$s" diff | range))"
	done
	if [[ $base == A ]]; then
		echo "  targets for B: throughput >= 0.97, p99 <= 1.10, CPU added <= 3 µs"
	fi
}

# run_h2 NAME URL [extra h2load args...]: one h2load run over HTTPS and
# HTTP/2; prints the same fields as run_wrk.
run_h2() {
	local name=$1 url=$2
	shift 2
	local c0 c1 out secs=${DURATION%s} log=$WORK/h2-$name.log
	c0=$(cpu_ticks "$CADDY_PID")
	out=$(on_load_cpus h2load -c"$CONNS" -m 10 -t"$THREADS" -D "$secs" --log-file="$log" -H "Cookie: $COOKIE" "$@" "$url")
	c1=$(cpu_ticks "$CADDY_PID")
	local reqs bad rps p50 p99
	reqs=$(awk '/^requests:/ {print $8}' <<<"$out") # succeeded
	bad=$(awk '/^requests:/ {n += $10 + $12 + $14} /^status codes:/ {n += $5 + $7 + $9} END {print n + 0}' <<<"$out")
	if [[ -z $reqs || $reqs == 0 || $bad != 0 ]]; then
		log "$name: h2load saw failures (or answers other than 2xx):"; log "$out"; exit 1
	fi
	rps=$(awk '/^finished in/ {print $4}' <<<"$out")
	# The log has one line per request: start (µs), status, duration (µs).
	p50=$(awk '{print $3}' "$log" | sort -n | awk '{v[NR] = $1} END {print v[int(NR * 0.5) + 1]}')
	p99=$(awk '{print $3}' "$log" | sort -n | awk '{v[NR] = $1} END {print v[int(NR * 0.99) + 1]}')
	awk -v n="$name" -v r="$rps" -v a="$p50" -v b="$p99" -v q="$reqs" -v c=$((c1 - c0)) -v t="$TICK" \
		'BEGIN { printf "%s %.0f %.0f %.0f %d %.2f 0\n", n, r, a, b, q, c * 1e6 / t / q }'
}

# compare_h2: A, B and D again over HTTPS and HTTP/2 (Caddy's internal CA;
# h2load does not check certificates), interleaved.
compare_h2() {
	expect_tls() {
		local got
		got=$(curl -sk --http2 -o /dev/null -w '%{http_code}' -H "Cookie: $2" -H 'Accept: application/json' "$1")
		[[ $got == "$3" ]] || { log "GET $1 gave $got, want $3"; exit 1; }
	}
	wait_for_tls() {
		for _ in $(seq 1 500); do
			curl -sk -o /dev/null "$1" && return 0
			sleep 0.02
		done
		log "no answer from $1"; return 1
	}
	wait_for_tls "https://$TLS_A/"
	expect_tls "https://$TLS_A/" "$COOKIE" 200
	expect_tls "https://$TLS_B/" "$COOKIE" 200
	expect_tls "https://$TLS_B/" "" 401
	expect_tls "https://$TLS_D/" "" 401
	log "warming up (HTTP/2)"
	DURATION=3s run_h2 warm "https://$TLS_A/" >/dev/null || exit 1
	DURATION=3s run_h2 warm "https://$TLS_B/" >/dev/null || exit 1
	DURATION=3s run_h2 warm "https://$TLS_D/" -H "Authorization: Basic $BASIC" >/dev/null || exit 1
	local res=$WORK/compare-h2.txt
	: >"$res"
	for r in $(seq 1 "$ROUNDS"); do
		for s in $(order "$r" A B D); do
			local site=TLS_$s extra=()
			[[ $s == D ]] && extra=(-H "Authorization: Basic $BASIC")
			log "round $r: $s (HTTP/2)"
			line=$(run_h2 "$s" "https://${!site}/" "${extra[@]}") || exit 1
			echo "$r $line" >>"$res"
		done
	done
	cp "$res" "$OUT/compare-h2-raw.txt"
	echo
	echo "== compare over HTTPS + HTTP/2 (h2load -c$CONNS -m 10 -D ${DURATION%s}): A reverse_proxy, B two_factor, D basic_auth"
	echo "round setup req/s p50_us p99_us requests caddy_cpu_us/req -"
	cat "$res"
	summary "$res" A B D
}

# gate_profile: runs of B, D and F under Caddy's CPU profile, to tell each
# auth handler's own CPU apart from the proxy's: the gate's, Caddy's
# basic_auth's, and the gate's with the signed assertion, measured the same
# way. Unlike throughput, a profile's shares
# barely move when the machine as a whole runs faster or slower, which on
# this kind of VM it does by ±20% from one run to the next. With
# PROFILE_ROUNDS (2) of each, alternating B D F B D F.
gate_profile() {
	local secs=${PROFILE:-30} rounds=${PROFILE_ROUNDS:-2} r
	[[ $secs -ge 6 ]] || return 0
	echo
	echo "== the auth handlers' own share of Caddy's CPU ($rounds profiled runs of $((secs - 2)) s each, alternating; the proxy they call left out)"
	for r in $(seq 1 "$rounds"); do
		profile_run B "http://$SITE_B/" 'caddymodule.(*Handler).ServeHTTP' "the gate (B)" "$r"
		profile_run D "http://$SITE_D/" 'caddyauth.Authentication.ServeHTTP' "basic_auth (D)" "$r" -H "Authorization: Basic $BASIC"
		profile_run F "http://$SITE_F/" 'caddymodule.(*Handler).ServeHTTP' "assertion (F)" "$r"
	done
	# Where the gate's share goes: the functions under its ServeHTTP (the
	# proxy it calls left out), by their cumulative share, in µs per
	# request, from B's last profile.
	if [[ $PROFILER == perf ]]; then
		echo "  the gate's time by function (cumulative and self, µs per request; last profile of B, $(awk 'NR == 1 {print $4}' "$OUT/b.share") samples of $(awk 'NR == 1 {print $6}' "$OUT/b.share")):"
		tail -n +2 "$OUT/b.share" | sed 's/^/  /'
		return 0
	fi
	echo "  the gate's time by function (cumulative, µs per request; last profile of B):"
	go tool pprof -top -cum -focus 'caddymodule\.\(\*Handler\)\.ServeHTTP' -ignore 'reverseproxy' -nodecount 40 \
		"$OUT/caddy" "$OUT/b.pprof" 2>/dev/null |
		awk -v cpu="$PROFILE_CPU_B" '
			/^ *[0-9.]+(m?s)? / && NF >= 6 && $5 ~ /%$/ {
				pct = $5; sub("%", "", pct)
				name = $6; for (i = 7; i <= NF; i++) name = name " " $i
				if (name ~ /two-factor|caddyhttp\.(SetVar|GetVar)|Replacer\)\.Set|sha256|Header\)\.Set|mallocgc$/)
					printf "    %6.2f µs  %s\n", pct / 100 * cpu, name
			}' | head -25
}

# profile_run NAME URL HANDLER LABEL ROUND [wrk args...]: one run of NAME
# under Caddy's CPU profile; prints the share of Caddy's CPU spent in
# HANDLER (a function name as pprof prints it) outside the proxy it calls,
# and that share in µs per request. Keeps the profile as
# $OUT/<name>.pprof.
profile_run() {
	local name=$1 url=$2 handler=$3 label=$4 round=$5
	shift 5
	local secs=${PROFILE:-30} lower prof out own us cpu focus reqs
	lower=$(tr '[:upper:]' '[:lower:]' <<<"$name")
	if [[ $PROFILER == perf ]]; then
		prof=$WORK/$lower.perf
		(sleep 1 && on_load_cpus perf record -q -e cpu-clock -F "$PERF_HZ" -g -p "$CADDY_PID" -o "$prof" -- sleep $((secs - 2)) >/dev/null 2>&1) &
	else
		prof=$WORK/$lower.pprof
		(sleep 1 && curl -s -o "$prof" "http://$ADMIN/debug/pprof/profile?seconds=$((secs - 2))") &
	fi
	local cpid=$!
	out=$(DURATION=${secs}s run_wrk "$name" "$url" "$@") || exit 1
	wait "$cpid"
	cpu=$(cut -d' ' -f6 <<<"$out")
	if [[ $PROFILER == perf ]]; then
		# The requests served while perf sampled (it started 1 s in and
		# ran secs - 2 of the run's secs seconds).
		reqs=$(awk -v q="$(cut -d' ' -f5 <<<"$out")" -v s="$secs" 'BEGIN { printf "%.0f", q * (s - 2) / s }')
		perf script -i "$prof" -F ip,sym 2>/dev/null |
			"$OUT/perfshare" -focus "$handler" -ignore reverseproxy -hz "$PERF_HZ" -requests "$reqs" >"$WORK/$lower.share"
		own=$(awk 'NR == 1 {sub("%", "", $2); print $2}' "$WORK/$lower.share")
		us=$(awk 'NR == 1 {print $8}' "$WORK/$lower.share")
		cp "$WORK/$lower.share" "$OUT/$lower.share"
	else
		focus=$(sed 's/[.()*]/\\&/g' <<<"$handler")
		own=$(go tool pprof -top -cum -focus "$focus" -ignore 'reverseproxy' "$OUT/caddy" "$prof" 2>/dev/null |
			awk -v h="$handler" 'NF >= 6 && substr($6, length($6) - length(h) + 1) == h {print $5; exit}' | tr -d '%')
		us=$(awk -v own="${own:-0}" -v cpu="$cpu" 'BEGIN { printf "%.2f", own / 100 * cpu }')
	fi
	awk -v own="${own:-0}" -v us="${us:-0}" -v cpu="$cpu" -v label="$label" -v r="$round" -v rps="$(cut -d' ' -f2 <<<"$out")" \
		'BEGIN { printf "  round %d, %-15s %5.2f%% of Caddy'"'"'s CPU, %5.1f µs per request (run at %s req/s, %s µs of Caddy CPU per request)\n", r, label ":", own, us, rps, cpu }'
	cp "$prof" "$OUT/${prof##*/}"
	[[ $name == B ]] && PROFILE_CPU_B=$cpu
	return 0
}

# profile: only the profiled runs of compare, B and D, for the handlers'
# own shares of Caddy's CPU without the rounds (a few minutes).
profile() {
	start_caddy ABDF "$WORK/store"
	login_alice
	expect "http://$SITE_B/" "$COOKIE" 200
	expect "http://$SITE_F/" "$COOKIE" 200
	expect "http://$SITE_B/" "" 401
	expect "http://$SITE_D/" "" 401
	log "warming up"
	DURATION=3s run_wrk warm "http://$SITE_B/" >/dev/null || exit 1
	DURATION=3s run_wrk warm "http://$SITE_D/" -H "Authorization: Basic $BASIC" >/dev/null || exit 1
	DURATION=3s run_wrk warm "http://$SITE_F/" >/dev/null || exit 1
	echo
	machine
	gate_profile
	stop_caddy
}

# quantiles: "p25–p75" of the numbers on stdin (nearest rank).
quantiles() {
	sort -g | awk '{v[NR] = $1} END {
		lo = int(NR * 0.25 + 0.5); hi = int(NR * 0.75 + 0.5)
		if (lo < 1) lo = 1; if (hi < 1) hi = 1
		printf "%s–%s", v[lo], v[hi] }'
}

# pairs: A against PAIR_WITH in short runs back to back; see the top of
# this file.
pairs() {
	local with=${PAIR_WITH:-B} n=${PAIRS:-40}
	[[ $with == [BDF] ]] || { log "PAIR_WITH must be B, D or F"; exit 2; }
	start_caddy "AB$with" "$WORK/store"
	login_alice
	expect "http://$SITE_A/" "$COOKIE" 200
	expect "http://$SITE_B/" "$COOKIE" 200
	expect "http://$SITE_B/" "" 401
	local extra=()
	if [[ $with == D ]]; then
		extra=(-H "Authorization: Basic $BASIC")
		expect "http://$SITE_D/" "" 401
	fi
	local site_x=SITE_$with
	log "warming up"
	DURATION=3s run_wrk warm "http://$SITE_A/" >/dev/null || exit 1
	DURATION=3s run_wrk warm "http://${!site_x}/" "${extra[@]}" >/dev/null || exit 1
	local res=$WORK/pairs.txt r s
	: >"$res"
	for r in $(seq 1 "$n"); do
		local turn=(A "$with")
		((r % 2 == 0)) && turn=("$with" A)
		for s in "${turn[@]}"; do
			local site=SITE_$s args=()
			[[ $s == "$with" ]] && args=("${extra[@]}")
			line=$(DURATION=${PAIR_DURATION:-2s} run_wrk "$s" "http://${!site}/" "${args[@]}") || exit 1
			echo "$r $line" >>"$res"
		done
		((r % 10 == 0)) && log "pair $r of $n"
	done
	cp "$res" "$OUT/pairs-raw.txt"
	echo
	echo "== pairs: A reverse_proxy against $with, $n pairs of ${PAIR_DURATION:-2s} runs back to back (A $with $with A ...), HTTP/1.1"
	ROUNDS=$n DURATION=${PAIR_DURATION:-2s} machine
	echo "pair setup req/s p50_us p99_us requests caddy_cpu_us/req -"
	cat "$res"
	ROUNDS=$n summary "$res" A "$with"
	echo "  $with/A throughput, middle half of the pairs: $(pair "$res" 3 A "$with" ratio | quantiles); Caddy CPU µs/req added: $(pair "$res" 7 A "$with" diff | quantiles)"
	stop_caddy
}

# headers: F against B, split by G (B plus F's extra request headers, set
# by Caddy's request_header): see the top of this file.
headers() {
	start_caddy BF "$WORK/store"
	login_alice
	expect "http://$SITE_F/" "$COOKIE" 200
	# The headers F adds: what the upstream gets from F and not from B.
	local b f name value
	b=$(curl -s -H "Cookie: $COOKIE" "http://$SITE_B/headers" | tr -d '\r')
	f=$(curl -s -H "Cookie: $COOKIE" "http://$SITE_F/headers" | tr -d '\r')
	G_HEADERS=
	while IFS= read -r line; do
		name=${line%%:*} value=${line#*: }
		grep -qi "^$name:" <<<"$b" && continue
		[[ $value == *'"'* || $value == *'{'* ]] && { log "unexpected header value from F: $line"; exit 1; }
		G_HEADERS+="request_header $name \"$value\""$'\n'
		log "F adds $name (${#value} bytes)"
	done <<<"$f"
	[[ -n $G_HEADERS ]] || { log "F sent no header that B does not"; exit 1; }
	stop_caddy
	start_caddy BFG "$WORK/store"
	expect "http://$SITE_B/" "$COOKIE" 200
	expect "http://$SITE_F/" "$COOKIE" 200
	expect "http://$SITE_G/" "$COOKIE" 200
	expect "http://$SITE_G/" "" 401
	local g
	g=$(curl -s -H "Cookie: $COOKIE" "http://$SITE_G/headers" | tr -d '\r')
	while IFS= read -r line; do
		[[ $line == Remote-Auth-Time:* || $line == X-Forwarded-* ]] && continue
		grep -qxF "$line" <<<"$g" || { log "G does not send what F sends: $line"; exit 1; }
	done <<<"$f"
	log "warming up"
	for s in B F G; do
		local site=SITE_$s
		DURATION=3s run_wrk warm "http://${!site}/" >/dev/null || exit 1
	done
	local res=$WORK/headers.txt
	: >"$res"
	for r in $(seq 1 "$ROUNDS"); do
		for s in $(order "$r" B F G); do
			local site=SITE_$s
			log "round $r: $s"
			line=$(run_wrk "$s" "http://${!site}/") || exit 1
			echo "$r $line" >>"$res"
		done
	done
	echo
	echo "== headers: B two_factor, F with the signed assertion and auth_headers, G = B + F's extra headers by request_header (HTTP/1.1)"
	machine
	echo "round setup req/s p50_us p99_us requests caddy_cpu_us/req -"
	cat "$res"
	summary "$res" B F G
	echo "  F/G throughput (the gate's own work for the headers): $(pair "$res" 3 G F ratio | median) ($(pair "$res" 3 G F ratio | range)), Caddy CPU µs/req F-G: $(pair "$res" 7 G F diff | median) ($(pair "$res" 7 G F diff | range))"
	stop_caddy
}

flood() {
	start_caddy B "$WORK/store-flood"
	login_alice
	expect "http://$SITE_B/" "$COOKIE" 200
	cat >"$WORK/flood.lua" <<-'EOF'
	-- Wrong-password logins from many addresses (X-Forwarded-For, trusted
	-- from 127.0.0.1 in this config) and many user names, so that the
	-- throttle lets each one through to a password hash.
	counts = {}
	math.randomseed(os.time())
	request = function()
		local ip = string.format("10.%d.%d.%d", math.random(0, 255), math.random(0, 255), math.random(1, 254))
		local body = "username=flood" .. math.random(1, 10000000) .. "&password=wrong"
		return wrk.format("POST", "/.auth/login", {
			["Content-Type"] = "application/x-www-form-urlencoded",
			["X-Forwarded-For"] = ip,
		}, body)
	end
	response = function(status, headers, body)
		counts[status] = (counts[status] or 0) + 1
	end
	local threads = {}
	setup = function(thread) table.insert(threads, thread) end
	done = function(summary, latency, requests)
		local total = {}
		for _, t in ipairs(threads) do
			for s, n in pairs(t:get("counts")) do total[s] = (total[s] or 0) + n end
		end
		for s, n in pairs(total) do io.write(string.format("status %d: %d\n", s, n)) end
	end
	EOF
	DURATION=3s run_wrk warm "http://$SITE_B/" >/dev/null || exit 1
	local res=$WORK/flood.txt
	: >"$res"
	local secs=${DURATION%s}
	for r in $(seq 1 "$ROUNDS"); do
		log "round $r: normal"
		line=$(run_wrk normal "http://$SITE_B/") || exit 1
		echo "$r $line" >>"$res"
		log "round $r: flood"
		# The flood starts first and outlasts the measured run.
		on_load_cpus wrk -t1 -c16 -d$((secs + 4))s --timeout 120s -s "$WORK/flood.lua" "http://$SITE_B/" >"$WORK/flood-wrk-$r.txt" 2>&1 &
		local fpid=$!
		sleep 2
		line=$(run_wrk flood "http://$SITE_B/") || exit 1
		echo "$r $line" >>"$res"
		wait "$fpid" || true
		grep -e '^status' -e 'requests in' "$WORK/flood-wrk-$r.txt" | tr '\n' ' ' | sed "s/^/  flood round $r: /" >>"$WORK/flood-logins.txt"
		echo >>"$WORK/flood-logins.txt"
	done
	cp "$res" "$OUT/flood-raw.txt"
	echo
	echo "== flood: B alone vs B during a wrong-password flood (max_concurrent_hashes: ${HASHES:-the default}; hash_cpu: ${HASH_CPU:-the default})"
	machine
	echo "round phase req/s p50_us p99_us requests caddy_cpu_us/req"
	cut -d' ' -f1-7 "$res"
	cat "$WORK/flood-logins.txt"
	echo "paired, median of $ROUNDS rounds:"
	echo "  flood/normal throughput: $(awk '$2 == "normal" {a[$1] = $3} $2 == "flood" {b[$1] = $3} END {for (r in a) print b[r] / a[r]}' "$res" | median)   (target >= 0.80)"
	echo "  flood/normal p99:        $(awk '$2 == "normal" {a[$1] = $5} $2 == "flood" {b[$1] = $5} END {for (r in a) print b[r] / a[r]}' "$res" | median)"
	stop_caddy
}

# mem_line LABEL PID [PLAIN_KB]: one line of the memory table.
mem_line() {
	local rss
	rss=$(rss_kb "$2")
	if [[ -n ${3:-} ]]; then
		printf '%-52s %5d MiB  %+5d MiB  (%s)\n' "$1" $((rss / 1024)) $(((rss - $3) / 1024)) "$(rss_split "$2")"
	else
		printf '%-52s %5d MiB  %9s  (%s)\n' "$1" $((rss / 1024)) "" "$(rss_split "$2")"
	fi
}

memory() {
	echo
	echo "== memory: VmRSS of the Caddy process, and its difference to plain Caddy"
	machine
	start_caddy A "$WORK/unused"
	sleep 5
	local plain
	plain=$(rss_kb "$CADDY_PID")
	mem_line "plain Caddy (reverse_proxy only), idle" "$CADDY_PID"
	echo "  startup: ${STARTUP_MS} ms"
	stop_caddy

	rm -rf "$WORK/store-mem"
	start_caddy AB "$WORK/store-mem"
	sleep 5
	mem_line "with two_factor, new store, idle" "$CADDY_PID" "$plain"
	echo "  startup: ${STARTUP_MS} ms"
	"$OUT/login" -base "http://$SITE_B" -user bob -password "$PASSWORD" -logins "$LOGINS" -concurrency 8 >"$WORK/logins.txt"
	sleep 5
	mem_line "after $LOGINS logins" "$CADDY_PID" "$plain"
	echo "  $(cat "$WORK/logins.txt"); peak $(($(hwm_kb "$CADDY_PID") / 1024)) MiB; store on disk $(du -sh "$WORK/store-mem" | cut -f1)"
	stop_caddy

	if [[ -n ${SCALE_STORE:-} ]]; then
		local users settle=${SETTLE:-150}
		users=$(cat "$SCALE_STORE.users" 2>/dev/null || echo "?")
		echo "store of $users enrolled users: $SCALE_STORE, $(du -sh "$SCALE_STORE" | cut -f1) on disk"
		start_caddy AB "$SCALE_STORE"
		echo "  startup: ${STARTUP_MS} ms"
		sleep 5
		mem_line "with $users users, 5 s after start" "$CADDY_PID" "$plain"
		# Badger may be compacting (after a bulk import it rewrites much
		# of the store), and Go returns freed memory after its periodic GC
		# (every 2 minutes when idle): wait, then measure again.
		sleep "$settle"
		mem_line "with $users users, $((settle + 5)) s after start" "$CADDY_PID" "$plain"
		echo "  peak so far: $(($(hwm_kb "$CADDY_PID") / 1024)) MiB; on disk now $(du -sh "$SCALE_STORE" | cut -f1)"
		"$OUT/login" -base "http://$SITE_B" -user bob -password "$PASSWORD" -logins 1000 -concurrency 8 >"$WORK/logins.txt"
		sleep 5
		mem_line "with $users users, after 1000 logins" "$CADDY_PID" "$plain"
		echo "  $(cat "$WORK/logins.txt"); peak $(($(hwm_kb "$CADDY_PID") / 1024)) MiB"
		stop_caddy
	fi
}

build
hashes
start_backends
case $MODE in
compare) compare ;;
profile) profile ;;
pairs) pairs ;;
headers) headers ;;
flood) flood ;;
memory) memory ;;
all) compare; flood; memory ;;
*) echo "usage: $0 [compare|profile|pairs|headers|flood|memory|all]" >&2; exit 2 ;;
esac
