#!/usr/bin/env bash
# User-space instructions per request, counted by valgrind's callgrind: HAProxy passthrough
# (no auth) and tokenreview-proxy with one cached token, same nginx upstream, same oha load.
# Unlike req/s on a shared machine, the count does not move with other tenants' load, so it
# shows the effect of a change on our own code exactly. It leaves out the kernel (socket I/O
# costs both proxies about the same) and cache misses, so it is a guide, not a replacement for
# compare.sh.
#
# Usage: loadtest/instructions.sh [BIN...]     (default: target/profiling/tokenreview-proxy,
#        the release build with debug info: `cargo build --profile profiling`)
#        N=3000 requests after a 500-request warm-up, 16 connections, one thread each.
#        MISS=1: every request a new token (a cache miss), against HAProxy jwt_verify instead:
#        N=2000 unique RS256 tokens (after 200 others as warm-up), pipelined over one
#        connection by send_tokens.py. TOKEN_POD=NAME: pod-bound tokens (cached: one bound to
#        pod NAME; MISS: a pod of its own per token).
#        CACHE=1: also valgrind's cache simulation, printed per request (data reads and writes,
#        and simulated L1 instruction, L1 data read and L1 data write misses), with 64
#        connections as in compare.sh, so that each connection's state is as far from the
#        cache as under load. Use N=20000 or more: new connections are set up while counting.
#        The simulation sees no kernel: bytes a recv copies in count as misses when read.
#        BOUND=1: the issuer has bound_objects = true, its watches served by
#        loadtest/fake_apiserver.py with the token's service account, pod and node (use with
#        TOKEN_POD=NAME for a pod-bound token): the cached path's cost with the epoch check.
#        AUTHZ=routes or AUTHZ=cel: with 20 authorization routes (lib.sh's authz_routes), the
#        request decided by the last one: an allow-list, or a CEL expression. Compare with a run
#        without AUTHZ to see what routing adds to the cached path. AUTHZ=sar: the 20th route
#        also asks for a SubjectAccessReview (loadtest/fake_apiserver.py answers; after the
#        warm-up every answer comes from the proxy's SAR cache).
#        TLS=h1 or TLS=h2: the cached case over TLS (HTTP/2: STREAMS streams on each
#        connection, 8 by default), against HAProxy terminating TLS; the upstream is nginx over
#        HTTP/1.1 either way. UPSTREAM_LINES adds lines to [upstream] (max_connections = N).
source "$(dirname "$0")/lib.sh"
need oha nginx haproxy valgrind callgrind_control python3 openssl curl
MISS=${MISS:-}
CACHE=${CACHE:-}
OHA_CONNS=$([ -n "$CACHE" ] && echo 64 || echo 16)
SIM=()
[ -n "$CACHE" ] && SIM=(--cache-sim=yes)
N=${N:-$([ -n "$MISS" ] && echo 2000 || echo 3000)}
[ $# -eq 0 ] && { build; set -- "$BIN"; }
mkdir -p "$WORK"
setup_keys
start_nginx
AUTH="Authorization: Bearer $TOKEN"
SCHEME=http OHA_FLAGS=() TLS_CFG=""
if [ -n "${TLS:-}" ]; then
  setup_tls
  SCHEME=https OHA_FLAGS=(--insecure)
  [ "$TLS" = h2 ] && OHA_FLAGS+=(--http2 -p "${STREAMS:-8}")
  TLS_CFG=$(printf 'tls_cert_file = "%s"\ntls_key_file = "%s"' "$WORK/tls.crt" "$WORK/tls.key")
fi

# Run "$@" under callgrind, load it on port $1... print instructions per request.
count() { # name port command...
  local name=$1 port=$2; shift 2
  local out="$WORK/callgrind.out"
  rm -f "$out" "$out".*
  valgrind --tool=callgrind "${SIM[@]}" --callgrind-out-file="$out" "$@" 2> "$WORK/callgrind.log" &
  local vp=$!
  for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  sleep 2
  local ok ir
  if [ -n "$MISS" ]; then
    python3 "$ROOT/loadtest/send_tokens.py" "$TOKENS" "$port" 0 200 > /dev/null
    callgrind_control --zero "$vp" > /dev/null
    ok=$(python3 "$ROOT/loadtest/send_tokens.py" "$TOKENS" "$port" 200 "$N")
    callgrind_control --dump "$vp" > /dev/null
  else
    oha --no-tui -n 500 -c "$OHA_CONNS" "${OHA_FLAGS[@]}" -H "$AUTH" "$SCHEME://127.0.0.1:$port/" > /dev/null 2>&1
    callgrind_control --zero "$vp" > /dev/null
    oha --no-tui --output-format json -n "$N" -c "$OHA_CONNS" "${OHA_FLAGS[@]}" -H "$AUTH" "$SCHEME://127.0.0.1:$port/" > "$WORK/oha.json" 2>/dev/null
    callgrind_control --dump "$vp" > /dev/null
    ok=$(python3 -c "import json; print(json.load(open('$WORK/oha.json'))['statusCodeDistribution'].get('200', 0))")
  fi
  sleep 1
  kill "$vp"; wait "$vp" 2>/dev/null || true
  ir=$(awk '/^summary:/ {print $2}' "$out".1)
  if [ "$ok" != "$N" ]; then echo "$name: only $ok of $N requests got 200" >&2; exit 1; fi
  printf '%-40s %8d instructions/request\n' "$name" $(( ir / N ))
  if [ -n "$CACHE" ]; then
    # The events line names the columns of the summary line: Ir Dr Dw I1mr D1mr D1mw ...
    awk -v n="$N" '/^events:/ {for (i = 2; i <= NF; i++) name[i] = $i}
      /^summary:/ {for (i = 3; i <= NF && i <= 7; i++) printf "  %s %.1f", name[i], $i / n; print "  per request"}' "$out".1
  fi
}

# HAProxy with one thread: lib.sh's passthrough frontend, or its jwt_verify one for MISS.
start_haproxy
pkill -f "haproxy -f $WORK/haproxy.cfg" || true
sleep 0.5
sed 's/nbthread 2/nbthread 1/' "$WORK/haproxy.cfg" > "$WORK/haproxy1.cfg"
if [ -n "$MISS" ]; then
  TOKENS=$(unique_tokens $((N + 200)) k1 ${TOKEN_POD:+distinct-pods})
  count "HAProxy jwt_verify, unique tokens" "$HAPROXY_JWT_PORT" haproxy -f "$WORK/haproxy1.cfg" -q
  kind="unique tokens"
elif [ -n "${TLS:-}" ]; then
  start_haproxy_tls 18444 "127.0.0.1:$NGINX_PORT"
  pkill -f "haproxy -f $WORK/haproxy-tls-18444.cfg" || true
  sleep 0.5
  sed 's/nbthread 2/nbthread 1/' "$WORK/haproxy-tls-18444.cfg" > "$WORK/haproxy1-tls.cfg"
  count "HAProxy TLS $TLS passthrough (no auth)" 18444 haproxy -f "$WORK/haproxy1-tls.cfg" -q
  kind="cached, TLS $TLS"
else
  count "HAProxy passthrough (no auth)" "$HAPROXY_PASS_PORT" haproxy -f "$WORK/haproxy1.cfg" -q
  kind=cached
fi

BOUND_CFG=""
if [ -n "${BOUND:-}" ] || [ "${AUTHZ:-}" = sar ]; then
  FAKE_API_PORT=18094
  python3 "$ROOT/loadtest/fake_apiserver.py" "$FAKE_API_PORT" "$TOKEN" &
  PIDS+=($!)
  cat > "$WORK/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: "http://127.0.0.1:$FAKE_API_PORT"}}]
users: [{name: u, user: {token: fake}}]
contexts: [{name: fake, context: {cluster: fake, user: u}}]
current-context: fake
KC
  BOUND_CFG=$(printf '%s[kubernetes]\nkubeconfig = "%s"\n' "${BOUND:+bound_objects = true
}" "$WORK/kubeconfig")
  [ -n "${BOUND:-}" ] && kind="$kind, bound_objects"
fi
# The routes go after the issuer's lines: [[authorization.routes]] tables end the issuer table.
proxy_config "$WORK/callgrind.toml" "workers = 1${TLS_CFG:+
$TLS_CFG}" "$BOUND_CFG${AUTHZ:+
$(authz_routes "$AUTHZ")}"
[ -n "${AUTHZ:-}" ] && kind="$kind, 20 routes ($AUTHZ)"
for b in "$@"; do
  RUST_LOG=warn count "tokenreview-proxy $kind: $(basename "$b")" "$PROXY_PORT" "$b" run --config "$WORK/callgrind.toml"
done
