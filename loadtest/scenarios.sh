#!/usr/bin/env bash
# Load scenarios against tokenreview-proxy in front of nginx (a tiny 200):
#   a  one cached token (oha)
#   b  unique valid tokens, every request a cache miss (wrk + unique.lua)
#   c  a flood of invalid unique tokens (wrk) while valid traffic runs (oha): valid non-2xx must be 0
#   d  key rotation under load: publish k2, switch clients to k2 tokens, withdraw k1 (wrk): non-2xx must be 0
#   e  TokenReview requests per second, cached token (oha, POST)
#   m  memory: idle RSS, then RSS growth per cached entry after filling the cache
#      (MEM_ENTRIES=200000; MEM_PODS=distinct gives every token a pod of its own, the worst
#      case: per-token pod name and uid in every entry; POD_BASE=NAME sets the pod names'
#      prefix, e.g. a Deployment's "checkout-7d9f8c6b5d")
#   f  flood of unique valid tokens with max_entries = 10000: entries bounded, RSS flat
#   n  flood of distinct bad tokens (FLOOD=1000000, over two connections): RSS at idle, after
#      the flood (rejections bounded by cache.max_negative_entries) and once they have expired
#      (negative_ttl 10 s; EXPIRE_WAIT=15 seconds later)
# Usage: loadtest/scenarios.sh [a b c d e m f n]     (default: all; DURATION=10s CONNS=64)
source "$(dirname "$0")/lib.sh"
need oha wrk nginx openssl python3 curl
SCEN=${*:-a b c d e m f n}
build
mkdir -p "$WORK"
setup_keys
start_nginx
start_proxy
URL="http://127.0.0.1:$PROXY_PORT/"
AUTH="Authorization: Bearer $TOKEN"
report() { printf '%-46s req/s %-8s p50 %-7s ms  p99 %-7s ms  non-2xx/errors %s\n' "$1" $2; }

for s in $SCEN; do case $s in
a) report "a: cached token" "$(oha_run "$URL" -H "$AUTH")" ;;
b) f=$(unique_tokens "${UNIQUE:-200000}")
   report "b: unique tokens (cache misses)" "$(wrk_unique_run "$URL" "$f")" ;;
c) f=$(unique_tokens "${UNIQUE:-200000}")
   # Same shape, same issuer and kid, signature corrupted mid-segment: full RSA work each.
   bad="$WORK/invalid.txt"
   python3 - "$f" "$bad" <<'PY'
import sys
with open(sys.argv[1]) as src, open(sys.argv[2], "w") as dst:
    for line in src:
        t = line.strip(); k = len(t) - 20
        dst.write(t[:k] + ("A" if t[k] != "A" else "B") + t[k + 1:] + "\n")
PY
   TOKENS_FILE=$bad WRK_THREADS=1 wrk -t1 -c32 -d"$DURATION" -s "$ROOT/loadtest/unique.lua" "$URL" > "$WORK/flood.txt" 2>&1 &
   FLOOD=$!
   sleep 0.5
   report "c: valid cached traffic under invalid flood" "$(CONNS=32 oha_run "$URL" -H "$AUTH")"
   wait $FLOOD || true
   echo "   flood: $(grep -E 'Requests/sec' "$WORK/flood.txt") (all must be non-2xx: $(grep -Eo 'Non-2xx or 3xx responses: [0-9]+' "$WORK/flood.txt"))" ;;
d) old=$(unique_tokens 2000 k1); new=$(unique_tokens 2000 k2)
   marker="$WORK/rotated"; rm -f "$marker"
   # Replace the proxy's JWKS file in one rename, so it never reads half a file.
   publish() { cp "$1" "$WORK/jwks.tmp" && mv "$WORK/jwks.tmp" "$WORK/jwks.json"; }
   publish "$WORK/keys/k1.jwks.json"; sleep 1.5
   OLD_TOKENS=$old NEW_TOKENS=$new MARKER=$marker wrk -t2 -c"$CONNS" -d12s --latency -s "$ROOT/loadtest/rotate.lua" "$URL" > "$WORK/rotate.txt" 2>&1 &
   LOAD=$!
   merge() { python3 -c 'import json,sys; print(json.dumps({"keys": sum((json.load(open(f))["keys"] for f in sys.argv[1:]), [])}))' "$@"; }
   sleep 4; merge "$WORK/keys/k1.jwks.json" "$WORK/keys/k2.jwks.json" > "$WORK/jwks.both" && publish "$WORK/jwks.both"; touch "$marker"
   sleep 4; publish "$WORK/keys/k2.jwks.json"
   wait $LOAD || true
   echo "d: rotation under load: $(grep -E 'Requests/sec' "$WORK/rotate.txt"); non-2xx: $(grep -Eo 'Non-2xx or 3xx responses: [0-9]+' "$WORK/rotate.txt" || echo 'Non-2xx or 3xx responses: 0')"
   # Why, if any were refused (the proxy counts each rejection by reason).
   curl -s "http://127.0.0.1:$PROXY_ADMIN_PORT/metrics" | grep -E '^tokenreview_proxy_(token_rejections_total|jwks_refetch_suppressed_total)' | grep -v ' 0$' | sed 's/^/   /' || true
   # Back to k1 (what every other scenario's tokens are signed with), as at the start: a
   # scenario run after this one would otherwise send k1 tokens to a k2-only key set.
   publish "$WORK/keys/k1.jwks.json"; sleep 1.5 ;;
e) body="{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\",\"spec\":{\"token\":\"$TOKEN\"}}"
   report "e: TokenReview, cached token" "$(oha_run "http://127.0.0.1:$PROXY_PORT/apis/authentication.k8s.io/v1/tokenreviews" -m POST -T application/json -d "$body")" ;;
m) n=${MEM_ENTRIES:-200000}; f=$(unique_tokens "$n" k1 ${MEM_PODS:+distinct-pods})
   # Fresh proxy for a clean baseline.
   kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true; unset 'PIDS[-1]'; start_proxy
   sleep 1; idle=$(proxy_rss_kib)
   ok=$(python3 "$ROOT/loadtest/send_tokens.py" "$f" "$PROXY_PORT" 0 "$n")
   if [ "$ok" != "$n" ]; then echo "m: only $ok of $n tokens got a 200; no per-entry figure" >&2; exit 1; fi
   sleep 2
   entries=$(curl -s "http://127.0.0.1:$PROXY_ADMIN_PORT/metrics" | awk '/^tokenreview_proxy_verify_cache_entries / {print $2}')
   full=$(proxy_rss_kib)
   python3 -c "import sys; i,f,e=map(float,sys.argv[1:4]); w=' (a pod per token)' if 'distinct' in sys.argv[4] else ''; print(f'm{w}: idle RSS {i/1024:.1f} MiB; with {int(e)} cached entries {f/1024:.1f} MiB; {(f-i)*1024/e:.0f} bytes per entry')" "$idle" "$full" "$entries" "$f" ;;
f) # A flood of unique valid tokens against a small cache: entries stay at the bound, RSS flat.
   f=$(unique_tokens "${UNIQUE:-150000}")
   kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true; unset 'PIDS[-1]'
   CACHE_MAX_ENTRIES=10000 start_proxy
   sleep 1; echo "f: max_entries = 10000; idle RSS $(( $(proxy_rss_kib) / 1024 )) MiB"
   slices=${SLICES:-3}; total=$(wc -l < "$f"); third=$(( total / slices ))
   for k in $(seq 0 $(( slices - 1 ))); do
     ok=$(python3 "$ROOT/loadtest/send_tokens.py" "$f" "$PROXY_PORT" $(( k * third )) "$third")
     sleep 2
     entries=$(curl -s "http://127.0.0.1:$PROXY_ADMIN_PORT/metrics" | awk '/^tokenreview_proxy_verify_cache_entries / {print $2}')
     echo "   after $(( (k + 1) * third )) unique tokens ($ok x 200): cache entries $entries, RSS $(( $(proxy_rss_kib) / 1024 )) MiB"
   done ;;
n) total=${FLOOD:-1000000}; half=$(( total / 2 ))
   kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true; unset 'PIDS[-1]'; start_proxy
   entries() { curl -s "http://127.0.0.1:$PROXY_ADMIN_PORT/metrics" | awk '/^tokenreview_proxy_verify_cache_entries / {print $2}'; }
   sleep 1; idle=$(proxy_rss_kib); t0=$(date +%s.%N)
   python3 "$ROOT/loadtest/flood_bad_tokens.py" "$PROXY_PORT" 0 "$half" "$ISS" "$AUD" > "$WORK/flood-0.txt" &
   FLOOD0=$!
   python3 "$ROOT/loadtest/flood_bad_tokens.py" "$PROXY_PORT" "$half" $(( total - half )) "$ISS" "$AUD" > "$WORK/flood-1.txt"
   wait $FLOOD0
   t1=$(date +%s.%N); refused=$(( $(cat "$WORK/flood-0.txt") + $(cat "$WORK/flood-1.txt") ))
   sleep 1; full=$(proxy_rss_kib); held=$(entries)
   sleep "${EXPIRE_WAIT:-15}"; expired=$(proxy_rss_kib); left=$(entries)
   python3 -c "import sys; i,f,e=(float(x)/1024 for x in sys.argv[1:4]); r,t=int(sys.argv[4]),int(sys.argv[5]); s=float(sys.argv[10])-float(sys.argv[6]); print(f'n: {r} of {t} distinct bad tokens refused with 401 in {s:.1f} s ({r/s:.0f} req/s); RSS idle {i:.1f} MiB, after the flood {f:.1f} MiB ({sys.argv[7]} cache entries), {sys.argv[9]} s later {e:.1f} MiB ({sys.argv[8]} entries)')" \
     "$idle" "$full" "$expired" "$refused" "$total" "$t0" "$held" "$left" "${EXPIRE_WAIT:-15}" "$t1"
   if [ "$refused" != "$total" ]; then echo "n: only $refused of $total bad tokens got a 401" >&2; exit 1; fi ;;
*) echo "unknown scenario $s" >&2; exit 64 ;;
esac; done
