#!/usr/bin/env bash
# The side-by-side race, in ONE run on this machine: the same nginx upstream (a tiny 200), the
# same load settings, in turn:
#   1. nginx direct                      (oha, one token header, ignored)
#   2. HAProxy passthrough, no auth      (oha)
#   3. HAProxy jwt_verify RS256 + iss/exp (oha, one token: HAProxy verifies every request)
#   4. tokenreview-proxy, one cached token (oha)
#   5. HAProxy jwt_verify, unique tokens  (wrk + unique.lua)
#   6. tokenreview-proxy, unique tokens   (wrk + unique.lua: every request a cache miss)
#   7. latency at equal, moderate load: HAProxy passthrough and tokenreview-proxy (cached token)
#      both offered half of tokenreview-proxy's max cached throughput from run 4 (oha -q, with
#      latency correction), nginx direct too for reference
# then prints req/s, p50/p99 and non-2xx for each, and our/peer ratios.
#
# Usage: loadtest/compare.sh          (DURATION=10s CONNS=64 UNIQUE=200000 by default)
#        BIN=target/pgo/release/tokenreview-proxy NO_BUILD=1 loadtest/compare.sh: race the
#        profile-guided build (loadtest/pgo.sh) instead of `cargo build --release`'s.
# Needs: oha (cargo install oha), haproxy, nginx, wrk, openssl, python3.
source "$(dirname "$0")/lib.sh"
need oha haproxy nginx wrk openssl python3 curl
UNIQUE=${UNIQUE:-200000}
build
mkdir -p "$WORK"
setup_keys
UNIQ_FILE=$(unique_tokens "$UNIQUE")
start_nginx
start_haproxy
start_proxy
echo "tokenreview-proxy under test: $BIN" >&2
AUTH="Authorization: Bearer $TOKEN"

declare -A R
run() { # name, result-line
  R[$1]=$2
  printf '%-34s %s\n' "$1" "$2" >&2
}
sleep 1
run nginx_direct      "$(oha_run "http://127.0.0.1:$NGINX_PORT/" -H "$AUTH")"
run haproxy_pass      "$(oha_run "http://127.0.0.1:$HAPROXY_PASS_PORT/" -H "$AUTH")"
run haproxy_jwt       "$(oha_run "http://127.0.0.1:$HAPROXY_JWT_PORT/" -H "$AUTH")"
run ours_cached       "$(oha_run "http://127.0.0.1:$PROXY_PORT/" -H "$AUTH")"
run haproxy_jwt_uniq  "$(wrk_unique_run "http://127.0.0.1:$HAPROXY_JWT_PORT/" "$UNIQ_FILE")"
run ours_uniq         "$(wrk_unique_run "http://127.0.0.1:$PROXY_PORT/" "$UNIQ_FILE")"
HALF=$(( ${R[ours_cached]%% *} / 2 ))
run nginx_half        "$(OHA_RATE=$HALF oha_run "http://127.0.0.1:$NGINX_PORT/" -H "$AUTH")"
run haproxy_pass_half "$(OHA_RATE=$HALF oha_run "http://127.0.0.1:$HAPROXY_PASS_PORT/" -H "$AUTH")"
run ours_cached_half  "$(OHA_RATE=$HALF oha_run "http://127.0.0.1:$PROXY_PORT/" -H "$AUTH")"
RSS=$(proxy_rss_kib)

python3 - "$RSS" "$(nproc)" "$(lscpu | sed -n 's/Model name: *//p')" \
  "${R[nginx_direct]}" "${R[haproxy_pass]}" "${R[haproxy_jwt]}" "${R[ours_cached]}" \
  "${R[haproxy_jwt_uniq]}" "${R[ours_uniq]}" "$DURATION" "$CONNS" \
  "${R[nginx_half]}" "${R[haproxy_pass_half]}" "${R[ours_cached_half]}" "$HALF" <<'PY'
import sys, datetime
rss, cores, cpu = sys.argv[1], sys.argv[2], sys.argv[3]
names = ["nginx direct", "HAProxy passthrough (no auth)", "HAProxy jwt_verify RS256 + iss/exp",
         "tokenreview-proxy, cached token", "HAProxy jwt_verify, unique tokens (wrk)",
         "tokenreview-proxy, unique tokens (wrk)"]
rows = [a.split() for a in sys.argv[4:10]]
dur, conns = sys.argv[10], sys.argv[11]
half = [a.split() for a in sys.argv[12:15]]
rate = sys.argv[15]
print(f"\n{datetime.date.today()} · {cores} cores · {cpu} · {dur} per run · {conns} connections · all on loopback\n")
print("| scenario | req/s | p50 ms | p99 ms | non-2xx/errors |")
print("|---|---:|---:|---:|---:|")
for n, r in zip(names, rows):
    print(f"| {n} | {int(r[0]):,} | {r[1]} | {r[2]} | {r[3]} |")
print(f"\nAt equal load: {int(rate):,} req/s offered to each (half of the cached max above; oha -q, latency-corrected)\n")
print("| scenario | req/s | p50 ms | p99 ms | non-2xx/errors |")
print("|---|---:|---:|---:|---:|")
for n, r in zip(["nginx direct", "HAProxy passthrough (no auth)", "tokenreview-proxy, cached token"], half):
    print(f"| {n} | {int(r[0]):,} | {r[1]} | {r[2]} | {r[3]} |")
v = lambda i: float(rows[i][0])
print("\n| ratio | value | target |")
print("|---|---:|---:|")
print(f"| cached / HAProxy passthrough | {v(3)/v(1):.2f}x | >= 0.9x |")
print(f"| cached / HAProxy jwt_verify | {v(3)/v(2):.2f}x | >= 2.5x |")
print(f"| unique / HAProxy jwt_verify unique | {v(5)/v(4):.2f}x | >= 1.0x |")
print(f"| p99 at half max: cached / HAProxy passthrough | {float(half[2][2])/float(half[1][2]):.2f}x | <= 1.2x |")
print(f"\nproxy RSS after the runs: {int(rss)/1024:.1f} MiB")
PY
