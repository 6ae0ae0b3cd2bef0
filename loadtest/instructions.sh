#!/usr/bin/env bash
# User-space instructions per request, counted by valgrind's callgrind: HAProxy passthrough
# (no auth) and tokenreview-proxy with one cached token, same nginx upstream, same oha load.
# Unlike req/s on a shared machine, the count does not move with other tenants' load, so it
# shows the effect of a change on our own code exactly. It leaves out the kernel (socket I/O
# costs both proxies about the same) and cache misses, so it is a guide, not a replacement for
# compare.sh.
#
# Usage: loadtest/instructions.sh [BIN...]     (default: target/release/tokenreview-proxy)
#        N=3000 requests after a 500-request warm-up, 16 connections, one thread each.
source "$(dirname "$0")/lib.sh"
need oha nginx haproxy valgrind callgrind_control python3 openssl curl
N=${N:-3000}
[ $# -eq 0 ] && { build; set -- "$BIN"; }
mkdir -p "$WORK"
setup_keys
start_nginx
AUTH="Authorization: Bearer $TOKEN"

# Run "$@" under callgrind, load it on port $1... print instructions per request.
count() { # name port command...
  local name=$1 port=$2; shift 2
  local out="$WORK/callgrind.out"
  rm -f "$out" "$out".*
  valgrind --tool=callgrind --callgrind-out-file="$out" "$@" 2> "$WORK/callgrind.log" &
  local vp=$!
  for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  sleep 2
  oha --no-tui -n 500 -c 16 -H "$AUTH" "http://127.0.0.1:$port/" > /dev/null 2>&1
  callgrind_control --zero "$vp" > /dev/null
  oha --no-tui --output-format json -n "$N" -c 16 -H "$AUTH" "http://127.0.0.1:$port/" > "$WORK/oha.json" 2>/dev/null
  callgrind_control --dump "$vp" > /dev/null
  sleep 1
  kill "$vp"; wait "$vp" 2>/dev/null || true
  local ok ir
  ok=$(python3 -c "import json; print(json.load(open('$WORK/oha.json'))['statusCodeDistribution'].get('200', 0))")
  ir=$(awk '/^summary:/ {print $2}' "$out".1)
  if [ "$ok" != "$N" ]; then echo "$name: only $ok of $N requests got 200" >&2; exit 1; fi
  printf '%-40s %8d instructions/request\n' "$name" $(( ir / N ))
}

# HAProxy with one thread, the passthrough frontend of lib.sh's config.
start_haproxy
pkill -f "haproxy -f $WORK/haproxy.cfg" || true
sleep 0.5
sed 's/nbthread 2/nbthread 1/' "$WORK/haproxy.cfg" > "$WORK/haproxy1.cfg"
count "HAProxy passthrough (no auth)" "$HAPROXY_PASS_PORT" haproxy -f "$WORK/haproxy1.cfg" -q

proxy_config "$WORK/callgrind.toml" "workers = 1"
for b in "$@"; do
  RUST_LOG=warn count "tokenreview-proxy cached: $(basename "$b")" "$PROXY_PORT" "$b" run --config "$WORK/callgrind.toml"
done
