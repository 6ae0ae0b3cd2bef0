#!/usr/bin/env bash
# TLS side by side, in ONE run: HTTP/1.1 and HTTP/2 (ALPN) over TLS to
#   nginx direct (TLS, the ceiling), HAProxy (TLS termination, passthrough to nginx, no auth)
#   and tokenreview-proxy (TLS, one cached token), the same nginx upstream behind both,
# ROUNDS rounds (3 by default) in an order rotated every round, then the median ratio
# tokenreview-proxy / HAProxy per protocol. HTTP/2 runs `oha --http2 -p STREAMS` (8 streams
# on each of CONNS connections). HAProxy opens as many connections to nginx as requests are in
# flight; tokenreview-proxy gets as many with `upstream.max_connections` (per worker) set to
# UPSTREAM_MAX_CONNECTIONS, CONNS * STREAMS / 2 by default (UPSTREAM_MAX_CONNECTIONS=16: the
# shipped default, which makes HTTP/2 requests queue for 32 connections).
#
# Usage: loadtest/tls.sh      (DURATION=10s CONNS=64 STREAMS=8 ROUNDS=3 by default)
#        BIN=target/release/tokenreview-proxy NO_BUILD=1 loadtest/tls.sh: race the plain
#        release build, which is what users build.
source "$(dirname "$0")/lib.sh"
need oha haproxy nginx openssl python3 curl
ROUNDS=${ROUNDS:-3}
STREAMS=${STREAMS:-8}
UPSTREAM_MAX_CONNECTIONS=${UPSTREAM_MAX_CONNECTIONS:-$((CONNS * STREAMS / 2))}
UPSTREAM_LINES="max_connections = $UPSTREAM_MAX_CONNECTIONS"
NGINX_TLS_PORT=18443
HAPROXY_TLS_PORT=18444
build
mkdir -p "$WORK"
setup_keys

setup_tls
start_nginx
cat > "$WORK/nginx-tls.conf" <<NGX
worker_processes 2;
pid $WORK/nginx-tls.pid;
error_log $WORK/nginx-tls-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NGINX_TLS_PORT ssl http2 reuseport;
    ssl_certificate $WORK/tls.crt;
    ssl_certificate_key $WORK/tls.key;
    http2_max_concurrent_streams 128;
    keepalive_timeout 300s;
    location / { return 200 "ok\n"; }
  }
}
NGX
nginx -c "$WORK/nginx-tls.conf" 9>&-
trap 'kill "$(cat "$WORK/nginx-tls.pid")" 2>/dev/null || true; cleanup' EXIT
wait_port $NGINX_TLS_PORT

start_haproxy_tls $HAPROXY_TLS_PORT "127.0.0.1:$NGINX_PORT"

proxy_config "$WORK/proxy-tls.toml" "tls_cert_file = \"$WORK/tls.crt\"
tls_key_file = \"$WORK/tls.key\""
RUST_LOG=warn "$BIN" run --config "$WORK/proxy-tls.toml" 2> "$WORK/proxy-tls.log" 9>&- &
PIDS+=($!)
wait_port $PROXY_PORT
wait_ready $PROXY_ADMIN_PORT || { echo "proxy not ready" >&2; cat "$WORK/proxy-tls.log" >&2; exit 1; }
echo "tokenreview-proxy under test: $BIN (upstream.max_connections = $UPSTREAM_MAX_CONNECTIONS)" >&2
AUTH="Authorization: Bearer $TOKEN"

# Each server answers 200 over both protocols before anything is measured.
for port in $NGINX_TLS_PORT $HAPROXY_TLS_PORT $PROXY_PORT; do
  for v in --http1.1 --http2; do
    code=$(curl -sk $v -o /dev/null -w '%{http_code}' -H "$AUTH" "https://127.0.0.1:$port/")
    [ "$code" = 200 ] || { echo "port $port $v answered $code" >&2; exit 1; }
  done
done

run() { # name url proto
  local flags=(--insecure -H "$AUTH")
  [ "$3" = h2 ] && flags+=(--http2 -p "$STREAMS")
  echo "$1 $3 $(oha_run "$2" "${flags[@]}")" | tee -a "$WORK/tls-results.txt" >&2
}

: > "$WORK/tls-results.txt"
run nginx-direct "https://127.0.0.1:$NGINX_TLS_PORT/" h1
run nginx-direct "https://127.0.0.1:$NGINX_TLS_PORT/" h2
names=(haproxy proxy)
urls=("https://127.0.0.1:$HAPROXY_TLS_PORT/" "https://127.0.0.1:$PROXY_PORT/")
for r in $(seq 1 "$ROUNDS"); do
  for proto in h1 h2; do
    for k in 0 1; do
      i=$(( (k + r) % 2 ))
      run "${names[$i]}-r$r" "${urls[$i]}" "$proto"
    done
  done
done

python3 - "$WORK/tls-results.txt" <<'PY'
import re, statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
print(f'{"run":<20} {"proto":<5} {"req/s":>8} {"p50 ms":>8} {"p99 ms":>8} {"non-2xx":>8}')
for name, proto, rps, p50, p99, bad in rows:
    print(f"{name:<20} {proto:<5} {rps:>8} {p50:>8} {p99:>8} {bad:>8}")
by = {}
for name, proto, rps, *_ in rows:
    m = re.match(r"(haproxy|proxy)-r(\d+)", name)
    if m:
        by.setdefault((proto, m.group(2)), {})[m.group(1)] = float(rps)
for proto in ("h1", "h2"):
    ratios = [v["proxy"] / v["haproxy"] for (p, _), v in sorted(by.items()) if p == proto]
    print(f"{proto}: tokenreview-proxy / HAProxy per round " + " ".join(f"{x:.2f}" for x in ratios)
          + f"; median {statistics.median(ratios):.2f}")
PY
