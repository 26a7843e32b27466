#!/usr/bin/env bash
# Load test of caddy two-factor against plain reverse_proxy and the
# forward_auth design, with wrk, on 127.0.0.1. Prints numbers; passes or
# fails only on broken setups (a wrong answer, a dead session), never on
# speed. See docs/benchmarks.md for what the figures mean.
#
#   bench/load.sh [compare|flood|memory|all]     (default: all)
#
# compare  one Caddy process, three sites, run interleaved A B C A B C ...:
#            A  reverse_proxy                                  :18081
#            B  two_factor + reverse_proxy, logged in          :18082
#            C  forward_auth to a cookie checker + reverse_proxy :18083
#          req/s, p50, p99 per setup, the paired ratios to A (median of
#          the rounds), and the CPU time of the Caddy process per request;
#          then one long run of B under Caddy's CPU profiler, for the share
#          of Caddy's CPU spent in the gate itself.
# flood    B alone, then B while wrong-password logins flood in (from many
#          addresses and user names, so throttling lets the hashes run),
#          interleaved; the ratio of B's throughput under flood to without.
# memory   RSS of plain Caddy idle, with the module idle, after 10,000
#          logins; with SCALE_STORE set, also with that store (see
#          bench/scale.sh), and the startup time.
#
# Settings (environment): ROUNDS (5), DURATION (10s), CONNS (32),
# THREADS (1), LOGINS (10000), HASHES (max_concurrent_hashes; default:
# the module's), HASH_CPU (hash_cpu, e.g. 100% for no CPU budget; default:
# the module's), OUT (bench/out: binaries and results),
# PROFILE (30: seconds of the profiled run of B; 0 skips it),
# SCALE_STORE (a store folder made by bench/scale.sh), SETTLE (150: seconds
# to wait on it before measuring again), SCALE_KEY, CADDY (a
# Caddy binary to measure instead of building ./cmd/caddy).
#
# Needs: go, wrk (apt-get install wrk), curl. Ports: 127.0.0.1:18080-18084
# and the admin API on 127.0.0.1:18019 (none of them used by the tests or
# the demo).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-all}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
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
ADMIN=127.0.0.1:18019

for tool in go wrk curl; do
	command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install $tool)" >&2; exit 1; }
done
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/tf-bench.XXXXXX)
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
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
	"$OUT/upstream" -addr "$UP" 2>>"$WORK/upstream.log" &
	PIDS+=($!)
	TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
	"$OUT/fwdauth" -addr "$FWD" -token "$TOKEN" 2>>"$WORK/fwdauth.log" &
	FWD_PID=$!
	PIDS+=($FWD_PID)
	wait_for "http://$UP/"
	wait_for "http://$FWD/"
}

hashes() {
	# alice: Caddy's default (bcrypt, cost 14), also the decoy that unknown
	# names are checked against, so a flood of logins costs what it would.
	# bob: the lowest bcrypt cost, for the 10,000 logins of the memory run.
	HASH_ALICE=$("$OUT/caddy" hash-password --plaintext "$PASSWORD")
	HASH_BOB=$("$OUT/caddy" hash-password --plaintext "$PASSWORD" --bcrypt-cost 4)
}

# caddyfile SITES STORE: a config with the given sites (letters A, B, C).
caddyfile() {
	local sites=$1 store=$2
	cat <<-EOF
	{
		admin $ADMIN
		auto_https off
		persist_config off
		servers {
			trusted_proxies static 127.0.0.1/32
		}
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
		cat <<-EOF
		http://$SITE_B {
			two_factor {
				user alice $HASH_ALICE
				user bob $HASH_BOB
				storage_dir $store
				encryption_key $SCALE_KEY
				free_failures 50
				$HASHES_LINE
				$HASH_CPU_LINE
			}
			reverse_proxy $UP
		}
		EOF
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
}

# start_caddy SITES STORE: starts Caddy; sets CADDY_PID and STARTUP_MS
# (from exec to the first answer of the last site).
start_caddy() {
	local sites=$1 store=$2
	caddyfile "$sites" "$store" >"$WORK/Caddyfile"
	local t0 probe
	t0=$(date +%s%N)
	"$OUT/caddy" run --config "$WORK/Caddyfile" --adapter caddyfile 2>>"$WORK/caddy.log" &
	CADDY_PID=$!
	PIDS+=($CADDY_PID)
	case $sites in
	*C*) probe=$SITE_C ;; *B*) probe=$SITE_B ;; *) probe=$SITE_A ;;
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
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Cookie: $COOKIE" "$@" "$url")
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
}

compare() {
	start_caddy ABC "$WORK/store"
	login_alice
	# Each setup works, and the gate lets nothing through without a session.
	expect "http://$SITE_A/" "$COOKIE" 200
	expect "http://$SITE_B/" "$COOKIE" 200
	expect "http://$SITE_C/" "$COOKIE" 200
	expect "http://$SITE_B/" "" 401
	expect "http://$SITE_C/" "" 401
	log "warming up"
	DURATION=3s run_wrk warm "http://$SITE_A/" >/dev/null || exit 1
	DURATION=3s run_wrk warm "http://$SITE_B/" >/dev/null || exit 1
	DURATION=3s run_wrk warm "http://$SITE_C/" >/dev/null || exit 1
	local res=$WORK/compare.txt
	: >"$res"
	for r in $(seq 1 "$ROUNDS"); do
		for s in A B C; do
			local site=SITE_$s
			log "round $r: $s"
			line=$(run_wrk "$s" "http://${!site}/") || exit 1
			echo "$r $line" >>"$res"
		done
	done
	cp "$res" "$OUT/compare-raw.txt"

	echo
	echo "== compare: A reverse_proxy, B two_factor + reverse_proxy, C forward_auth + reverse_proxy"
	machine
	echo "round setup req/s p50_us p99_us requests caddy_cpu_us/req checker_cpu_us/req"
	cat "$res"
	echo
	printf '%-6s %10s %10s %10s %16s\n' setup "req/s" "p50 µs" "p99 µs" "Caddy CPU µs/req"
	for s in A B C; do
		printf '%-6s %10s %10s %10s %16s\n' "$s" \
			"$(awk -v s=$s '$2 == s {print $3}' "$res" | median)" \
			"$(awk -v s=$s '$2 == s {print $4}' "$res" | median)" \
			"$(awk -v s=$s '$2 == s {print $5}' "$res" | median)" \
			"$(awk -v s=$s '$2 == s {print $7}' "$res" | median)"
	done
	# Paired per round: each B and C against the A of the same round.
	pair() { # field op setups -> per-round values
		awk -v f="$1" -v x="$2" -v y="$3" -v op="$4" '
			$2 == x {a[$1] = $f} $2 == y {b[$1] = $f}
			END { for (r in a) if (r in b) { if (op == "ratio") print b[r] / a[r]; else print b[r] - a[r] } }' "$res"
	}
	echo
	echo "paired, median of $ROUNDS rounds:"
	echo "  B/A throughput:          $(pair 3 A B ratio | median)   (target >= 0.97)"
	echo "  B/A p99:                 $(pair 5 A B ratio | median)   (target <= 1.10)"
	echo "  B-A Caddy CPU µs/req:    $(pair 7 A B diff | median)   (target <= 5)"
	echo "  C/A throughput:          $(pair 3 A C ratio | median)"
	echo "  B/C throughput:          $(pair 3 C B ratio | median)   (target >= 1.8)"
	echo "  C checker CPU µs/req:    $(awk '$2 == "C" {print $8}' "$res" | median)   (the forward-auth server, besides Caddy's)"
	gate_profile
	stop_caddy
}

# gate_profile: one more run of B with Caddy's CPU profile, to tell the
# gate's own CPU apart from the proxy's. Unlike throughput, a profile's
# shares barely move when other processes load the machine.
gate_profile() {
	local secs=${PROFILE:-30} prof=$WORK/b.pprof out own
	[[ $secs -ge 6 ]] || return 0
	(sleep 1 && curl -s -o "$prof" "http://$ADMIN/debug/pprof/profile?seconds=$((secs - 2))") &
	local cpid=$!
	out=$(DURATION=${secs}s run_wrk B "http://$SITE_B/") || exit 1
	wait "$cpid"
	# Samples in the gate's ServeHTTP but not in the proxy it calls.
	own=$(go tool pprof -top -cum -focus 'caddymodule\.\(\*Handler\)\.ServeHTTP' -ignore 'reverseproxy' \
		"$OUT/caddy" "$prof" 2>/dev/null | awk '/caddymodule\.\(\*Handler\)\.ServeHTTP$/ {print $5; exit}' | tr -d '%')
	echo
	echo "B profiled ($((secs - 2)) s of a run at $(cut -d' ' -f2 <<<"$out") req/s, Caddy CPU $(cut -d' ' -f6 <<<"$out") µs/req):"
	awk -v own="${own:-0}" -v cpu="$(cut -d' ' -f6 <<<"$out")" \
		'BEGIN { printf "  the gate'"'"'s own share of Caddy'"'"'s CPU: %.2f%%, about %.1f µs per request (target <= 5)\n", own, own / 100 * cpu }'
	cp "$prof" "$OUT/b.pprof"
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
		wrk -t1 -c16 -d$((secs + 4))s --timeout 120s -s "$WORK/flood.lua" "http://$SITE_B/" >"$WORK/flood-wrk-$r.txt" 2>&1 &
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
flood) flood ;;
memory) memory ;;
all) compare; flood; memory ;;
*) echo "usage: $0 [compare|flood|memory|all]" >&2; exit 2 ;;
esac
