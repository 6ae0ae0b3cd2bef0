#!/usr/bin/env bash
# Builds the container image from a binary built on this machine, with the repository's
# Containerfile (FROM scratch: nothing is pulled, nothing runs inside the build).
#
#   deploy/image/build.sh [BINARY] [IMAGE]
#     BINARY  default target/release/tokenreview-proxy (`cargo build --release` first)
#     IMAGE   default localhost/tokenreview-proxy:<version in Cargo.toml>
#   BUILDER=buildah|docker   default: buildah if installed, else docker
#   CONTEXT_DIR=DIR          stage the build context there and keep it (default: a temp dir)
#
# It stages rootfs/ with the binary, the shared libraries and dynamic loader `ldd` names (a
# static binary needs none), the CA roots (/etc/ssl/certs/ca-certificates.crt, from Debian's
# ca-certificates) and passwd/group entries for uid/gid 65532. The libraries come from this
# machine, so the image carries the same glibc the binary was linked against. Any missing
# piece stops the script with an error.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$repo/target/release/tokenreview-proxy}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)
image=${2:-localhost/tokenreview-proxy:$version}
certs=/etc/ssl/certs/ca-certificates.crt

die() { echo "build.sh: $*" >&2; exit 1; }
[ -x "$bin" ] || die "no executable at $bin (cargo build --release, or pass the binary)"
[ -s "$certs" ] || die "$certs is missing (apt-get install ca-certificates)"
command -v ldd >/dev/null || die "ldd is missing (apt-get install libc-bin)"

if [ -z "${BUILDER:-}" ]; then
  if command -v buildah >/dev/null; then BUILDER=buildah
  elif command -v docker >/dev/null; then BUILDER=docker
  else die "neither buildah nor docker is installed (apt-get install buildah)"
  fi
fi
command -v "$BUILDER" >/dev/null || die "$BUILDER is not installed"

if [ -n "${CONTEXT_DIR:-}" ]; then
  ctx=$CONTEXT_DIR
  rm -rf "$ctx/rootfs"
else
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
fi
root=$ctx/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs"

install -m 0755 "$bin" "$root/usr/local/bin/tokenreview-proxy"
install -m 0644 "$certs" "$root/etc/ssl/certs/ca-certificates.crt"

# Every absolute path ldd prints (`libc.so.6 => /lib/... (0x...)`, and the loader
# `/lib64/ld-linux-x86-64.so.2 (0x...)`), copied to the same path with symlinks resolved.
# ldd exits non-zero for a static binary; anything else it cannot resolve is an error.
if ldd_out=$(ldd "$bin" 2>&1); then
  if grep -q 'not found' <<<"$ldd_out"; then die "unresolved libraries: $ldd_out"; fi
  libs=$(grep -o '/[^ ]*' <<<"$ldd_out" | sort -u)
  [ -n "$libs" ] || die "ldd listed no libraries for a dynamic binary: $ldd_out"
  for lib in $libs; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
    chmod 0755 "$root$lib"
  done
else
  grep -qE 'not a dynamic executable|statically linked' <<<"$ldd_out" || die "ldd failed: $ldd_out"
fi

# nonroot (65532) as in distroless images; root for tools that look up uid 0.
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
# glibc reads /etc/hosts before DNS (kubelet writes the pod's /etc/hosts and resolv.conf).
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"

cp "$repo/Containerfile" "$ctx/Containerfile"
echo "== building $image with $BUILDER from $(du -sh "$root" | cut -f1) of files"
case "$BUILDER" in
  buildah) buildah bud --layers=false -f "$ctx/Containerfile" -t "$image" "$ctx" ;;
  *) "$BUILDER" build -f "$ctx/Containerfile" -t "$image" "$ctx" ;;
esac
echo "== built $image"
