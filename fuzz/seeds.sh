#!/usr/bin/env bash
# Regenerates the seed corpora (fuzz/seeds/<target>/) and the token target's fixed key set
# (fuzz/fixtures/jwks.json). The private keys live only in a temporary directory; the tokens
# are valid for an hour from their `iat` (the token target also checks times at `iat`).
# Run from anywhere after `cargo build`; BIN overrides the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-target/debug/tokenreview-proxy}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
s=fuzz/seeds
rm -rf "$s"
mkdir -p "$s"/{token,jwks,tokenreview,config,headers} fuzz/fixtures

for alg in RS256 PS384 ES256 ES384 EdDSA; do
  "$bin" keygen --alg "$alg" --kid "fuzz-$alg" --out "$tmp/$alg.pem" --jwks-out "$tmp/$alg.json"
  "$bin" mint --key "$tmp/$alg.pem" --alg "$alg" --kid "fuzz-$alg" --issuer https://fuzz.test \
    --audience fuzz-aud --pod pod-1 --node node-1 | tr -d '\n' >"$s/token/$alg"
done
python3 - "$tmp" >fuzz/fixtures/jwks.json <<'EOF'
import json, sys
keys = [json.load(open(f"{sys.argv[1]}/{a}.json"))["keys"][0]
        for a in ["RS256", "PS384", "ES256", "ES384", "EdDSA"]]
print(json.dumps({"keys": keys}, indent=2))
EOF

cp fuzz/fixtures/jwks.json "$s/jwks/fixture.json"
cp config/example-jwks.json "$s/jwks/example.json"
printf '%s' '{"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"},{"kty":"EC","crv":"P-521","x":"AA","y":"AA"},{"kty":"OKP","crv":"Ed25519","alg":"ES256","x":"AA"}]}' >"$s/jwks/dropped.json"

token=$(cat "$s/token/ES256")
printf '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","metadata":{"name":"r"},"spec":{"token":"%s","audiences":["fuzz-aud"]}}' "$token" >"$s/tokenreview/v1"
printf '{"kind":"TokenReview","spec":{"token":"%s"}}' "$token" >"$s/tokenreview/minimal"
printf '%s' '{"apiVersion":"authentication.k8s.io/v1beta1","kind":"SubjectAccessReview","spec":{}}' >"$s/tokenreview/wrong-kind"

for f in config/*.toml; do cp "$f" "$s/config/"; done

printf '\001Host: example\nAuthorization: Bearer x\nX-Remote-User: root\nX_Remote_Group: system:masters\nImpersonate-Extra-Scopes: all\nAccept: */*\n' >"$s/headers/spoofed"
printf '\001Connection: keep-alive, X-Secret\nConnection: close\nX-Secret: 1\nKeep-Alive: timeout=5\nTE: trailers\nUpgrade: websocket\nTransfer-Encoding: chunked\nX-Keep: 1\n' >"$s/headers/hop-by-hop"
printf '\001Proxy-Authorization: Basic eA==\nProxy-Connection: keep-alive\nTrailer: X-Checksum\nX-Forwarded-For: 192.0.2.1\nConnection: Authorization , x-remote-uid\nAuthorization: Bearer y\n' >"$s/headers/proxy"
printf '\001X-Forwarded-For: 203.0.113.7\nX_Forwarded_Proto: https\nx.forwarded.host: admin\nForwarded: for=203.0.113.8\nX-Forwarded-Port: 443\nAccept: */*\n' >"$s/headers/forwarded-untrusted"
printf '\000X-Forwarded-For: 203.0.113.7\nX_Forwarded_Proto: https\nForwarded: for=203.0.113.8\nX-Remote-User: root\n' >"$s/headers/forwarded-trusted"
echo "seeds written to $s, key set to fuzz/fixtures/jwks.json"
