#!/usr/bin/env bash
# gRPC unary over TLS HTTP/2, side by side in ONE run: HAProxy (TLS termination, `proto h2` to
# the backend, no auth) and tokenreview-proxy (TLS, one cached token, `upstream.protocol =
# "http2"`), both in front of the same HTTP/2 cleartext (h2c) nginx that answers every call as
# a gRPC server does: a length-prefixed message, `content-type: application/grpc` and the
# `grpc-status: 0` trailer. The load is oha over HTTP/2 (STREAMS streams on each of CONNS
# connections) POSTing a framed request with `te: trailers`: the shape of a unary call. ROUNDS
# rounds in an order rotated every round, then the median ratio tokenreview-proxy / HAProxy.
# With PROTO=h1 the backends are nginx over HTTP/1.1 and the load is plain GETs instead (the
# same comparison as tls.sh's HTTP/2 case, for reference).
#
# Usage: loadtest/grpc.sh      (DURATION=10s CONNS=64 STREAMS=8 ROUNDS=3 by default)
#        BIN=target/release/tokenreview-proxy NO_BUILD=1 loadtest/grpc.sh
source "$(dirname "$0")/lib.sh"
need oha haproxy nginx openssl python3 curl
ROUNDS=${ROUNDS:-3}
STREAMS=${STREAMS:-8}
H2C_PORT=18082
HAPROXY_TLS_PORT=18445
build
mkdir -p "$WORK"
setup_keys

setup_tls

# A gRPC message `{1: "ok"}` behind its 5-byte prefix (not compressed, length 4): the body of
# every request and, from nginx's `return` (raw bytes in its config), of every response.
MESSAGE='\x00\x00\x00\x00\x04\x0a\x02ok'
printf "$MESSAGE" > "$WORK/grpc-message.bin"

start_nginx
{
  cat <<NGX
worker_processes 2;
pid $WORK/nginx-h2c.pid;
error_log $WORK/nginx-h2c-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$H2C_PORT http2 reuseport;
    http2_max_concurrent_streams 1024;
    keepalive_timeout 300s;
    location / {
      default_type application/grpc;
      add_trailer grpc-status 0;
NGX
  printf '      return 200 "%b";\n    }\n  }\n}\n' "$MESSAGE"
} > "$WORK/nginx-h2c.conf"
nginx -c "$WORK/nginx-h2c.conf" 9>&-
trap 'kill "$(cat "$WORK/nginx-h2c.pid")" 2>/dev/null || true; cleanup' EXIT
wait_port $H2C_PORT

if [ "${PROTO:-grpc}" = h1 ]; then
  BACKEND="127.0.0.1:$NGINX_PORT"
  UPSTREAM="http://127.0.0.1:$NGINX_PORT"
  PROTOCOL=http1
  # As many upstream connections as calls in flight, as HAProxy opens (tls.sh says why).
  UPSTREAM_LINES="max_connections = ${UPSTREAM_MAX_CONNECTIONS:-$((CONNS * STREAMS / 2))}"
else
  BACKEND="127.0.0.1:$H2C_PORT proto h2"
  UPSTREAM="http://127.0.0.1:$H2C_PORT"
  PROTOCOL=http2
fi
start_haproxy_tls $HAPROXY_TLS_PORT "$BACKEND"

proxy_config "$WORK/proxy-grpc.toml" "tls_cert_file = \"$WORK/tls.crt\"
tls_key_file = \"$WORK/tls.key\""
sed -i "s|^url = .*|url = \"$UPSTREAM\"\nprotocol = \"$PROTOCOL\"|" "$WORK/proxy-grpc.toml"
RUST_LOG=warn "$BIN" run --config "$WORK/proxy-grpc.toml" 2> "$WORK/proxy-grpc.log" 9>&- &
PIDS+=($!)
wait_port $PROXY_PORT
wait_ready $PROXY_ADMIN_PORT || { echo "proxy not ready" >&2; cat "$WORK/proxy-grpc.log" >&2; exit 1; }
echo "tokenreview-proxy under test: $BIN" >&2
AUTH="Authorization: Bearer $TOKEN"
HEADERS=(-H "content-type: application/grpc" -H "te: trailers")
CALL=(-m POST "${HEADERS[@]}" -D "$WORK/grpc-message.bin")
CURL_CALL=("${HEADERS[@]}" --data-binary "@$WORK/grpc-message.bin")
[ "${PROTO:-grpc}" = h1 ] && CALL=() && CURL_CALL=()
URL_PATH=/bench.Echo/Unary

# Both answer a call with 200 and the gRPC message before anything is measured. (curl does
# not show HTTP/2 trailers; that grpc-status reaches the client is tests/grpc.rs's part.)
for port in $HAPROXY_TLS_PORT $PROXY_PORT; do
  out=$(curl -sk --http2 -o "$WORK/grpc-answer.bin" -w '%{http_code} %{content_type}' \
    "${CURL_CALL[@]}" -H "$AUTH" "https://127.0.0.1:$port$URL_PATH")
  [ "${PROTO:-grpc}" = h1 ] && { [ "$out" = "200 text/plain" ] && continue; }
  [ "$out" = "200 application/grpc" ] && cmp -s "$WORK/grpc-answer.bin" "$WORK/grpc-message.bin" \
    || { echo "port $port answered: $out" >&2; exit 1; }
done

: > "$WORK/grpc-results.txt"
names=(haproxy proxy)
urls=("https://127.0.0.1:$HAPROXY_TLS_PORT$URL_PATH" "https://127.0.0.1:$PROXY_PORT$URL_PATH")
for r in $(seq 1 "$ROUNDS"); do
  for k in 0 1; do
    i=$(( (k + r) % 2 ))
    echo "${names[$i]}-r$r $(oha_run "${urls[$i]}" --insecure --http2 -p "$STREAMS" -H "$AUTH" "${CALL[@]}")" \
      | tee -a "$WORK/grpc-results.txt" >&2
  done
done

python3 - "$WORK/grpc-results.txt" <<'PY'
import re, statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
print(f'{"run":<14} {"req/s":>8} {"p50 ms":>8} {"p99 ms":>8} {"non-2xx":>8}')
for name, rps, p50, p99, bad in rows:
    print(f"{name:<14} {rps:>8} {p50:>8} {p99:>8} {bad:>8}")
by = {}
for name, rps, *_ in rows:
    m = re.match(r"(haproxy|proxy)-r(\d+)", name)
    by.setdefault(m.group(2), {})[m.group(1)] = float(rps)
ratios = [v["proxy"] / v["haproxy"] for _, v in sorted(by.items())]
print("tokenreview-proxy / HAProxy per round " + " ".join(f"{x:.2f}" for x in ratios)
      + f"; median {statistics.median(ratios):.2f}")
PY
