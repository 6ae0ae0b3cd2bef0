#!/usr/bin/env bash
# CPU time per request, split into user and kernel (system) time, and context switches per
# request, read from /proc for HAProxy passthrough and each tokenreview-proxy build given, under
# the same oha load (cached token, N requests, 64 connections), in alternating rounds. Where
# instructions.sh counts user-space instructions only, this shows what a request costs in time,
# kernel included, and how the process is scheduled; like every timing here it moves with other
# tenants' load, so compare within a round. A second line per run gives what the rest of the
# machine spent per request (nginx's workers, oha, idle time): the three processes share two
# cores, so a proxy's req/s is bounded by the CPU the other two leave it.
#
# TLS=h1 or TLS=h2: over TLS instead, against HAProxy terminating TLS (HTTP/2: STREAMS streams
# on each connection, 8 by default), the upstream still nginx over HTTP/1.1.
#
# Usage: loadtest/cpu.sh BIN...        (N=150000 ROUNDS=2 by default)
# Needs: oha, haproxy, nginx, openssl, python3, curl.
source "$(dirname "$0")/lib.sh"
need oha haproxy nginx openssl python3 curl
[ $# -ge 1 ] || { echo "usage: $0 BIN..." >&2; exit 64; }
N=${N:-150000}
ROUNDS=${ROUNDS:-2}
mkdir -p "$WORK"
BIN=$1 setup_keys
start_nginx
SCHEME=http OHA_FLAGS=() SERVER_LINES=
if [ -n "${TLS:-}" ]; then
  setup_tls
  start_haproxy_tls 18444 "127.0.0.1:$NGINX_PORT"
  NAMES=(haproxy-tls) PORTS=(18444) PROCS=(${PIDS[-1]})
  SCHEME=https OHA_FLAGS=(--insecure)
  [ "$TLS" = h2 ] && OHA_FLAGS+=(--http2 -p "${STREAMS:-8}")
  SERVER_LINES="tls_cert_file = \"$WORK/tls.crt\"
tls_key_file = \"$WORK/tls.key\""
else
  start_haproxy
  NAMES=(haproxy) PORTS=($HAPROXY_PASS_PORT) PROCS=(${PIDS[-1]})
fi
i=1
for b in "$@"; do
  port=$((PROXY_PORT + i * 10))
  start_build "$b" "$port" $((PROXY_ADMIN_PORT + i * 10)) "$WORK/cpu-$i.log" "$SERVER_LINES"
  NAMES+=("$(basename "$b")") PORTS+=($port) PROCS+=(${PIDS[-1]})
  i=$((i + 1))
done
sleep 1

ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }               # utime stime (clock ticks)
switches() { cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt/ {v += $2} /^nonvoluntary_ctxt/ {n += $2} END {print v, n}'; }
# The other two processes on the machine's cores: nginx's workers, and oha (bash's `time`).
NGINX_WORKERS=$(pgrep -f "nginx: worker" | paste -sd' ')
nginx_ticks() { for p in $NGINX_WORKERS; do ticks "$p"; done | awk '{s += $1 + $2} END {print s}'; }
idle_ticks() { awk '/^cpu / {print $5}' /proc/stat; }
HZ=$(getconf CLK_TCK)
TIMEFORMAT='%U %S'
for r in $(seq 1 "$ROUNDS"); do
  for j in "${!NAMES[@]}"; do
    p=${PROCS[$j]}
    read -r u0 s0 < <(ticks "$p"); read -r v0 n0 < <(switches "$p"); g0=$(nginx_ticks); i0=$(idle_ticks)
    { time oha --no-tui --output-format json -n "$N" -c 64 "${OHA_FLAGS[@]}" \
      -H "Authorization: Bearer $TOKEN" "$SCHEME://127.0.0.1:${PORTS[$j]}/" > "$WORK/cpu-oha.json" 2>/dev/null; } 2> "$WORK/cpu-oha-time.txt"
    read -r u1 s1 < <(ticks "$p"); read -r v1 n1 < <(switches "$p"); g1=$(nginx_ticks); i1=$(idle_ticks)
    read -r ou os < "$WORK/cpu-oha-time.txt"
    python3 - "$WORK/cpu-oha.json" "$r" "${NAMES[$j]}" "$N" "$HZ" $u0 $u1 $s0 $s1 $v0 $v1 $n0 $n1 $g0 $g1 $i0 $i1 $ou $os <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); r, name = sys.argv[2], sys.argv[3]
n, hz = int(sys.argv[4]), float(sys.argv[5])
u0, u1, s0, s1, v0, v1, n0, n1, g0, g1, i0, i1 = map(int, sys.argv[6:18])
ou, os_ = map(float, sys.argv[18:20])
ok = d["statusCodeDistribution"].get("200", 0)
us = lambda a, b: (b - a) / hz * 1e6 / n
print(f"round {r} {name:<24} {d['summary']['requestsPerSec']:>8,.0f} req/s  user {us(u0, u1):5.1f} us  "
      f"sys {us(s0, s1):5.1f} us per request  switches per request: voluntary {(v1 - v0) / n:.3f}, "
      f"involuntary {(n1 - n0) / n:.3f}  ({ok} of {n} got 200)")
print(f"        {'':<24} the rest, per request: nginx {us(g0, g1):5.1f} us  oha {(ou + os_) * 1e6 / n:5.1f} us  "
      f"idle (both cores) {us(i0, i1):4.1f} us")
PY
  done
done
