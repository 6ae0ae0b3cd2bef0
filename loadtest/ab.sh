#!/usr/bin/env bash
# Two builds of tokenreview-proxy side by side, with HAProxy passthrough as the yardstick, in
# alternating rounds of one run: whatever other tenants do to this shared machine hits all
# three alike within a round, so the per-round ratios are comparable where lone req/s figures
# are not. Each round runs HAProxy passthrough, build A and build B (cached token, oha, the
# order rotated every round), then prints the round's req/s and ratios; the last lines give
# the medians over the rounds. With RATE=N, every run is offered N req/s instead (oha -q, with
# latency correction) and the figure compared is the p99 latency, where lower is better.
#
# Usage: loadtest/ab.sh BIN_A BIN_B        (ROUNDS=5 DURATION=6s CONNS=64 by default)
#        RATE=35000 loadtest/ab.sh BIN_A BIN_B: p99 at a fixed offered load
# Needs: oha, haproxy, nginx, openssl, python3, curl.
source "$(dirname "$0")/lib.sh"
need oha haproxy nginx openssl python3 curl
[ $# -eq 2 ] || { echo "usage: $0 BIN_A BIN_B" >&2; exit 64; }
A=$1 B=$2
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-6s}
RATE=${RATE:-}
# What is compared: oha_run's result field, its name, and how it is printed.
if [ -n "$RATE" ]; then
  FIELD=3 WHAT="p99 ms at $RATE req/s" FMT=.3f
else
  FIELD=1 WHAT=req/s FMT=,.0f
fi
mkdir -p "$WORK"
BIN=$A setup_keys
start_nginx
start_haproxy
AUTH="Authorization: Bearer $TOKEN"

# Build B listens 10 ports above build A (main and admin).
start_build "$A" "$PROXY_PORT" "$PROXY_ADMIN_PORT" "$WORK/ab-a.log"
start_build "$B" $((PROXY_PORT + 10)) $((PROXY_ADMIN_PORT + 10)) "$WORK/ab-b.log"
sleep 1

declare -A URL=(
  [haproxy]="http://127.0.0.1:$HAPROXY_PASS_PORT/"
  [a]="http://127.0.0.1:$PROXY_PORT/"
  [b]="http://127.0.0.1:$((PROXY_PORT + 10))/"
)
ORDERS=("haproxy a b" "a b haproxy" "b haproxy a")
: > "$WORK/ab-rounds.txt"
for r in $(seq 1 "$ROUNDS"); do
  declare -A RPS=()
  for who in ${ORDERS[$(( (r - 1) % 3 ))]}; do
    res=$(OHA_RATE=$RATE oha_run "${URL[$who]}" -H "$AUTH")
    set -- $res
    if [ "$4" != 0 ]; then echo "round $r $who: $4 non-2xx or errors" >&2; exit 1; fi
    RPS[$who]=${!FIELD}
  done
  echo "${RPS[haproxy]} ${RPS[a]} ${RPS[b]}" >> "$WORK/ab-rounds.txt"
  python3 -c "h,a,b=map(float,'${RPS[haproxy]} ${RPS[a]} ${RPS[b]}'.split()); f='$FMT'; print(f'round $r ($WHAT): HAProxy {h:{f}}  A {a:{f}} ({a/h:.2f}x)  B {b:{f}} ({b/h:.2f}x)  B/A {b/a:.3f}')"
done
python3 - "$WORK/ab-rounds.txt" "$A" "$B" "$WHAT" <<'PY'
import sys, statistics as st
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
med = lambda xs: st.median(xs)
print(f"A = {sys.argv[2]}, B = {sys.argv[3]}, {len(rows)} rounds, comparing {sys.argv[4]}")
print(f"median A / HAProxy passthrough: {med([a/h for h,a,b in rows]):.3f}x")
print(f"median B / HAProxy passthrough: {med([b/h for h,a,b in rows]):.3f}x")
print(f"median B / A: {med([b/a for h,a,b in rows]):.3f}x")
PY
