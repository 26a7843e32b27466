#!/usr/bin/env bash
# Three Caddy instances with two_factor on one PostgreSQL, and a Caddy load
# balancer in front of them, all on localhost: see docs/multi-instance.md.
#
#   docs/multi-instance/run.sh          start everything; Ctrl-C stops it
#   docs/multi-instance/run.sh --check  start, log in through the load
#                                       balancer once (each step on another
#                                       instance), stop; exit 0 if it worked
#
# Needs Go and PostgreSQL's programs (Debian: apt-get install postgresql).
# Ports: 8080 (the load balancer), 8081-8083 (the instances), 2031-2034
# (their admin endpoints), 15432 (PostgreSQL). Everything lives in a
# temporary folder, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
check=false
[[ ${1:-} == --check ]] && check=true

work=$(mktemp -d /tmp/two-factor-multi.XXXXXX)
chmod 755 "$work"
pids=()
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -n $pgbin ]] || pgbin=$(dirname "$(command -v initdb)")
as=()
if [[ $(id -u) == 0 ]]; then
	as=(runuser -u postgres --) # initdb refuses to run as root
	chown postgres "$work"
fi
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	"${as[@]}" "$pgbin/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

echo "building Caddy with two_factor"
go build -o "$work/caddy" ./cmd/caddy

echo "starting PostgreSQL on 127.0.0.1:15432"
"${as[@]}" "$pgbin/initdb" -D "$work/pg" -U caddy --auth=trust -E UTF8 --no-instructions >/dev/null
"${as[@]}" "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
	-o "-p 15432 -k $work -c listen_addresses=127.0.0.1" start >/dev/null
export TWO_FACTOR_DATABASE_URL="postgres://caddy@127.0.0.1:15432/postgres?sslmode=disable"
# One key for every instance: they share the secrets it encrypts.
export TWO_FACTOR_KEY=$(head -c 32 /dev/urandom | base64)
hash=$("$work/caddy" hash-password --plaintext 'correct horse battery staple')

for n in 1 2 3; do
	mkdir -p "$work/i$n"
	cat >"$work/i$n/Caddyfile" <<CADDY
{
	admin 127.0.0.1:203$n
	auto_https off
	persist_config off
	storage file_system $work/i$n/data
}
http://:808$n {
	two_factor {
		user alice $hash
		storage postgres {env.TWO_FACTOR_DATABASE_URL}
		encryption_key {env.TWO_FACTOR_KEY}
	}
	respond "Hello {http.auth.user.id}, from instance $n"
}
CADDY
	"$work/caddy" run --config "$work/i$n/Caddyfile" --adapter caddyfile >"$work/i$n/log" 2>&1 &
	pids+=($!)
done
cat >"$work/lb.Caddyfile" <<CADDY
{
	admin 127.0.0.1:2034
	auto_https off
	persist_config off
	storage file_system $work/lb-data
}
http://localhost:8080 {
	reverse_proxy 127.0.0.1:8081 127.0.0.1:8082 127.0.0.1:8083 {
		lb_policy round_robin
	}
}
CADDY
"$work/caddy" run --config "$work/lb.Caddyfile" --adapter caddyfile >"$work/lb.log" 2>&1 &
pids+=($!)

up() { curl -fs -o /dev/null "http://127.0.0.1:$1/.auth/assets/style.css"; }
for port in 8081 8082 8083 8080; do
	for i in $(seq 300); do
		up "$port" && break
		if ((i == 300)); then
			echo "nothing answers on port $port; the logs:"
			tail -n 3 "$work"/i*/log "$work"/lb.log
			exit 1
		fi
		sleep 0.05
	done
done
echo "ready: http://localhost:8080 (alice / correct horse battery staple); each request goes to the next instance"

if $check; then
	# The session cookie is Secure, so curl's cookie jar keeps it off plain
	# HTTP: carry it by hand. Each request goes to the next instance.
	cookie=$(curl -s -o /dev/null -D - -X POST -H 'Sec-Fetch-Site: same-origin' \
		--data-urlencode username=alice --data-urlencode 'password=correct horse battery staple' \
		http://localhost:8080/.auth/login | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \(__Host-two_factor=[^;]*\).*/\1/p')
	[[ -n $cookie ]] || { echo "check: the login set no cookie"; exit 1; }
	seen=""
	for _ in 1 2 3; do
		body=$(curl -fs -H "Cookie: $cookie" http://localhost:8080/)
		echo "check: $body"
		[[ $body == "Hello alice, from instance "* ]] || { echo "check: unexpected answer"; exit 1; }
		seen+="${body: -1}"
	done
	[[ $(echo "$seen" | fold -w1 | sort -u | wc -l) == 3 ]] || { echo "check: not every instance answered ($seen)"; exit 1; }
	curl -fs -o /dev/null -X POST -H 'Sec-Fetch-Site: same-origin' -H "Cookie: $cookie" http://localhost:8080/.auth/logout
	for _ in 1 2 3; do
		code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/json' -H "Cookie: $cookie" http://localhost:8080/)
		[[ $code == 401 ]] || { echo "check: after the logout an instance answered $code"; exit 1; }
	done
	echo "check: logged in once, served by all three instances; logged out once, refused by all three"
	exit 0
fi
echo "Ctrl-C stops everything"
wait
