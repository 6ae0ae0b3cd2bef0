#!/usr/bin/env bash
# A profile-guided (PGO) release build of tokenreview-proxy, for deployment and for the load
# tests: rustc builds an instrumented binary, that binary serves a training load, and rustc
# builds again with the recorded profile, so LLVM lays out and inlines code for the paths that
# ran. On this project's hot path it cuts instructions per cached request by about a quarter
# (BENCHMARKS.md); the code is the same code `cargo build --release` builds.
#
# Training load (loadtest/scenarios.sh a b c e, DURATION each, against nginx): one cached
# token, unique tokens (cache misses), a flood of invalid tokens mixed with valid ones, and
# TokenReview requests: the mix a proxy in front of a service sees, not one benchmark alone.
#
# Usage: loadtest/pgo.sh        -> target/pgo/release/tokenreview-proxy
#        (DURATION=4s UNIQUE=50000 by default)
# Needs: llvm-profdata of rustc's LLVM major version (rustc -vV; Debian: apt-get install
#        llvm-22 for LLVM 22), and what scenarios.sh needs: oha, wrk, nginx, openssl, python3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

version=$(rustc -vV)
major=$(sed -n 's/^LLVM version: \([0-9]*\).*/\1/p' <<< "$version")
host=$(sed -n 's/^host: //p' <<< "$version")
profdata=
for c in "llvm-profdata-$major" "$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata" llvm-profdata; do
  if command -v "$c" >/dev/null 2>&1 && "$c" --version 2>/dev/null | grep -q "LLVM version $major\."; then
    profdata=$c
    break
  fi
done
if [ -z "$profdata" ]; then
  echo "pgo.sh: no llvm-profdata for LLVM $major (rustc's); install it: apt-get install llvm-$major," >&2
  echo "        or rustup component add llvm-tools" >&2
  exit 1
fi

DATA=$ROOT/target/pgo/profiles
rm -rf "$DATA"
mkdir -p "$DATA"
echo "pgo.sh: instrumented build (target/pgo-gen)..." >&2
CARGO_TARGET_DIR=$ROOT/target/pgo-gen RUSTFLAGS="-Cprofile-generate=$DATA" cargo build --release --quiet
echo "pgo.sh: training..." >&2
NO_BUILD=1 BIN=$ROOT/target/pgo-gen/release/tokenreview-proxy DURATION=${DURATION:-4s} \
  UNIQUE=${UNIQUE:-50000} "$ROOT/loadtest/scenarios.sh" a b c e >&2
"$profdata" merge -o "$ROOT/target/pgo/merged.profdata" "$DATA"
echo "pgo.sh: optimized build (target/pgo)..." >&2
CARGO_TARGET_DIR=$ROOT/target/pgo RUSTFLAGS="-Cprofile-use=$ROOT/target/pgo/merged.profdata" \
  cargo build --release --quiet
echo "$ROOT/target/pgo/release/tokenreview-proxy"
