# Shared setup for the load scripts: tools, a work directory with keys and tokens, nginx as the
# fast upstream, HAProxy, and tokenreview-proxy. Everything listens on 127.0.0.1 only, every
# load run is bounded in time, and everything started here is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${WORK:-$ROOT/target/loadtest}
BIN=${BIN:-$ROOT/target/profiling/tokenreview-proxy}
ISS=https://issuer.loadtest.local
AUD=loadtest
NGINX_PORT=18080
HAPROXY_PASS_PORT=18001
HAPROXY_JWT_PORT=18002
PROXY_PORT=18003
PROXY_ADMIN_PORT=18093
CONNS=${CONNS:-64}
DURATION=${DURATION:-10s}
PIDS=()

# One load script at a time: they share the ports, the work directory (keys, the JWKS the
# rotation scenario rewrites) and the CPU. A second run beside the first measures nothing
# (its proxy fails to bind and its load reaches the first run's proxy), so it stops here.
mkdir -p "$WORK"
exec 9> "$WORK/.lock"
if ! flock -n 9; then
  echo "another load script is running (it holds $WORK/.lock); wait for it to finish" >&2
  exit 1
fi

need() {
  local missing=()
  for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing tools: ${missing[*]}" >&2
    echo "install: cargo install oha --version 1.16.0 --locked; apt-get install -y haproxy nginx-light wrk openssl valgrind" >&2
    exit 1
  fi
}

cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

# NO_BUILD=1: use $BIN as it is (pgo.sh trains an instrumented build through scenarios.sh).
build() {
  [ -n "${NO_BUILD:-}" ] && return 0
  (cd "$ROOT" && cargo build --profile profiling --quiet)
}

# keys/k1.pem (RS256) + JWKS + HAProxy's PEM public key; one cached token.
setup_keys() {
  mkdir -p "$WORK/keys"
  if [ ! -f "$WORK/keys/k1.pem" ]; then
    "$BIN" keygen --alg RS256 --kid k1 --out "$WORK/keys/k1.pem" --jwks-out "$WORK/keys/k1.jwks.json"
    "$BIN" keygen --alg RS256 --kid k2 --out "$WORK/keys/k2.pem" --jwks-out "$WORK/keys/k2.jwks.json"
    openssl pkey -in "$WORK/keys/k1.pem" -pubout -out "$WORK/keys/k1.pub.pem" 2>/dev/null
  fi
  cp "$WORK/keys/k1.jwks.json" "$WORK/jwks.json"
  # TOKEN_POD=NAME binds it to a pod NAME on node-1, as a projected token in a pod is.
  TOKEN=$("$BIN" mint --key "$WORK/keys/k1.pem" --kid k1 --issuer "$ISS" --audience "$AUD" --ttl 24h \
    ${TOKEN_POD:+--pod "$TOKEN_POD" --node node-1})
  export TOKEN
}

# N unique RS256 tokens in $WORK/unique-N-KEY[-distinct-pods[-POD_BASE]].txt (reused across
# runs; minting is ~1 ms/token/core). A third argument "distinct-pods" binds each token to a pod
# of its own, named POD_BASE-<thread>-<n> (POD_BASE defaults to "pod").
unique_tokens() {
  local n=$1 key=${2:-k1} pods=${3:-}
  local f="$WORK/unique-$1-${2:-k1}${3:+-$3}${3:+${POD_BASE:+-$POD_BASE}}.txt"
  local extra=()
  [ "$pods" = distinct-pods ] && extra=(--distinct-pods ${POD_BASE:+--pod "$POD_BASE"})
  if [ ! -s "$f" ] || [ "$(find "$f" -mmin +1200 2>/dev/null)" ]; then
    echo "minting $n unique $key tokens ${pods}..." >&2
    "$BIN" mint --key "$WORK/keys/$key.pem" --kid "$key" --issuer "$ISS" --audience "$AUD" --ttl 24h --count "$n" "${extra[@]}" > "$f.tmp"
    mv "$f.tmp" "$f"
  fi
  echo "$f"
}

wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 did not open" >&2
  exit 1
}

start_nginx() {
  cat > "$WORK/nginx.conf" <<NGX
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NGINX_PORT reuseport;
    location / { return 200 "ok\n"; }
  }
}
NGX
  nginx -c "$WORK/nginx.conf" 9>&-
  wait_port $NGINX_PORT
}

# The global and defaults sections of every HAProxy here: two threads, HTTP mode, keep-alive.
haproxy_head() {
  cat <<HAP
global
  nbthread 2
  maxconn 9000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
HAP
}

# A self-signed certificate for 127.0.0.1: $WORK/tls.crt and tls.key, both in tls.pem (HAProxy).
setup_tls() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
    -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
  cat "$WORK/tls.crt" "$WORK/tls.key" > "$WORK/tls.pem"
}

# start_haproxy_tls PORT SERVER: HAProxy terminating TLS (ALPN h2 and http/1.1) on PORT, no
# auth, in front of SERVER (a `server` line's address and options); its pid is ${PIDS[-1]}.
start_haproxy_tls() {
  { haproxy_head; cat <<HAP
frontend tls
  bind 127.0.0.1:$1 ssl crt $WORK/tls.pem alpn h2,http/1.1
  default_backend upstream
backend upstream
  http-reuse always
  server u1 $2
HAP
  } > "$WORK/haproxy-tls-$1.cfg"
  haproxy -f "$WORK/haproxy-tls-$1.cfg" -q 9>&- &
  PIDS+=($!)
  wait_port "$1"
}

start_haproxy() {
  { haproxy_head; cat <<HAP
frontend passthrough
  bind 127.0.0.1:$HAPROXY_PASS_PORT
  default_backend nginx
frontend jwt
  bind 127.0.0.1:$HAPROXY_JWT_PORT
  # RS256 signature against the public key, then iss and exp: what a hand-written
  # HAProxy JWT setup does (no JWKS, no kid, no cache).
  http-request deny status 401 unless { req.hdr(authorization) -m found }
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request deny status 401 unless { var(txn.alg) -m str RS256 }
  http-request deny status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$WORK/keys/k1.pub.pem") -m int 1 }
  http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('\$.iss')
  http-request deny status 401 unless { var(txn.iss) -m str $ISS }
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
  default_backend nginx
backend nginx
  http-reuse always
  server n1 127.0.0.1:$NGINX_PORT
HAP
  } > "$WORK/haproxy.cfg"
  haproxy -f "$WORK/haproxy.cfg" -q 9>&- &
  PIDS+=($!)
  wait_port $HAPROXY_PASS_PORT
  wait_port $HAPROXY_JWT_PORT
}

# proxy_config FILE [SERVER_LINES] [ISSUER_LINES]: the load-test config (nginx upstream, the
# loadtest issuer from jwks.json), with extra lines for [server] and for the issuer, and
# $UPSTREAM_LINES for [upstream].
proxy_config() {
  cat > "$1" <<TOML
[server]
listen = "127.0.0.1:$PROXY_PORT"
max_connections = 20000
${2:-}
[admin]
listen = "127.0.0.1:$PROXY_ADMIN_PORT"
[upstream]
url = "http://127.0.0.1:$NGINX_PORT"
${UPSTREAM_LINES:-}
[cache]
max_entries = ${CACHE_MAX_ENTRIES:-1000000}
[[issuers]]
name = "loadtest"
issuer = "$ISS"
jwks_file = "$WORK/jwks.json"
audiences = ["$AUD"]
algorithms = ["RS256"]
${3:-}
TOML
}

# authz_routes KIND: an [authorization] table of 20 routes for measuring what routing costs
# on the cached path (loadtest/instructions.sh with AUTHZ=routes or AUTHZ=cel). The load's
# request, GET / with the default:default token, passes the first 19 (other paths; one has a
# CEL expression) and is decided by the 20th: an allow-list (routes), a CEL expression (cel),
# or an allow-list and a SubjectAccessReview answered from the proxy's cache (sar).
authz_routes() {
  echo '[authorization]'
  echo 'default = "deny"'
  for i in $(seq 1 18); do
    printf '[[authorization.routes]]\nname = "svc-%s"\npath_prefix = "/api/svc-%s"\nmethods = ["GET", "POST"]\nservice_accounts = ["team-%s:*"]\n' "$i" "$i" "$i"
  done
  printf '[[authorization.routes]]\nname = "reports"\npath_prefix = "/reports"\nexpression = %s\n' \
    "'request.method == \"GET\" && \"system:serviceaccounts:ops\" in user.groups'"
  if [ "$1" = sar ]; then
    printf '[[authorization.routes]]\nname = "rest"\npath_prefix = "/"\nservice_accounts = ["default:*"]\nsubject_access_review = { non_resource = true }\n'
  elif [ "$1" = cel ]; then
    printf '[[authorization.routes]]\nname = "rest"\npath_prefix = "/"\nexpression = %s\n' \
      "'request.method == \"GET\" && \"system:serviceaccounts:default\" in user.groups'"
  else
    printf '[[authorization.routes]]\nname = "rest"\npath_prefix = "/"\nservice_accounts = ["default:*"]\n'
  fi
}

# wait_ready ADMIN_PORT: wait (5 s at most) for a proxy's /readyz to answer 200.
wait_ready() {
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0
    sleep 0.05
  done
  return 1
}

start_proxy() {
  proxy_config "$WORK/proxy.toml" "" "${1:-}"
  RUST_LOG=warn "$BIN" run --config "$WORK/proxy.toml" 2> "$WORK/proxy.log" 9>&- &
  PIDS+=($!)
  wait_port $PROXY_PORT
  wait_ready $PROXY_ADMIN_PORT && return 0
  echo "proxy not ready" >&2; cat "$WORK/proxy.log" >&2; exit 1
}

# start_build BIN PORT ADMIN_PORT LOG [SERVER_LINES]: one more proxy, possibly another build,
# with the load-test config on other ports (for side-by-side runs); its pid is ${PIDS[-1]}.
start_build() {
  PROXY_PORT=$2 PROXY_ADMIN_PORT=$3 proxy_config "$WORK/proxy-$2.toml" "${5:-}"
  RUST_LOG=warn "$1" run --config "$WORK/proxy-$2.toml" 2> "$4" 9>&- &
  PIDS+=($!)
  wait_ready "$3" && return 0
  echo "proxy $1 not ready" >&2; cat "$4" >&2; exit 1
}

proxy_rss_kib() {
  local pid=${PIDS[-1]}
  awk '/VmRSS/ {print $2}' "/proc/$pid/status"
}

# oha run → "rps p50_ms p99_ms non2xx". OHA_RATE=N limits the offered load to N req/s in
# total, with latency measured from each request's scheduled start (no coordinated omission).
oha_run() {
  local url=$1; shift
  local rate=()
  [ -n "${OHA_RATE:-}" ] && rate=(-q "$OHA_RATE" --latency-correction)
  oha --no-tui --output-format json -z "$DURATION" -c "$CONNS" "${rate[@]}" "$@" "$url" > "$WORK/oha.json" 2>/dev/null
  python3 - "$WORK/oha.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s = d["summary"]; p = d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
non2xx = sum(v for k, v in codes.items() if not k.startswith("2"))
# Requests still in flight when the duration ends are reported as aborted: not failures.
errors = sum(v for k, v in d.get("errorDistribution", {}).items() if "aborted due to deadline" not in k)
print(f'{s["requestsPerSec"]:.0f} {p["p50"]*1000:.3f} {p["p99"]*1000:.3f} {non2xx + errors}')
PY
}

# wrk run with one token per request from a file → "rps p50_ms p99_ms non2xx"
wrk_unique_run() {
  local url=$1 tokens=$2
  TOKENS_FILE=$tokens wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$ROOT/loadtest/unique.lua" "$url" > "$WORK/wrk.txt" 2>&1
  python3 - "$WORK/wrk.txt" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def ms(v):
    n, u = float(v[:-2] if v.endswith(("ms","us")) else v[:-1]), v[-2:] if v.endswith(("ms","us")) else v[-1:]
    return n * {"us": 0.001, "ms": 1.0, "s": 1000.0}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
# Anchored to the line start: the thread-stats lines end in percentages too (e.g. "68.50%").
p50 = ms(re.search(r"^\s*50%\s+(\S+)", t, re.M).group(1))
p99 = ms(re.search(r"^\s*99%\s+(\S+)", t, re.M).group(1))
m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
e = re.search(r"Socket errors:.*?(\d+), write (\d+), timeout (\d+)", t)
bad = (int(m.group(1)) if m else 0) + (sum(int(x) for x in e.groups()) if e else 0)
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {bad}")
PY
}
