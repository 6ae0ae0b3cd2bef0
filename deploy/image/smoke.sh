#!/usr/bin/env bash
# Builds the image with build.sh and runs it the way a container runtime would, without one:
# `tokenreview-proxy dev` is started from the image's root filesystem (buildah from + mount)
# in a chroot, as the image's user, with the image's entrypoint and PATH, and a token it prints
# must get 200 through its proxy. Needs root, buildah and curl. CI runs it (.ci/run).
#
#   deploy/image/smoke.sh [BINARY]      default target/debug/tokenreview-proxy
#
# The image goes into a private containers-storage (vfs driver: no overlay mounts, nothing
# left behind) under a temp dir, removed at exit. The binary is copied with its debug info
# stripped (strip --strip-debug), as the release profile builds it, to keep the copies small.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$repo/target/debug/tokenreview-proxy}
die() { echo "smoke.sh: FAILED: $*" >&2; exit 1; }
for tool in buildah curl chroot strip; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
[ "$(id -u)" = 0 ] || die "needs root (chroot)"
[ -x "$bin" ] || die "no executable at $bin"

work=$(mktemp -d "${TMPDIR:-/tmp}/tokenreview-proxy-smoke.XXXXXX")
pid="" ctr=""
image=localhost/tokenreview-proxy:smoke
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  if [ -n "$ctr" ]; then buildah umount "$ctr" >/dev/null 2>&1 || true; buildah rm "$ctr" >/dev/null 2>&1 || true; fi
  buildah rmi -f "$image" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
printf '[storage]\ndriver = "vfs"\nrunroot = "%s/run"\ngraphroot = "%s/root"\n' "$work" "$work" \
  >"$work/storage.conf"
export CONTAINERS_STORAGE_CONF=$work/storage.conf

cp "$bin" "$work/tokenreview-proxy"
strip --strip-debug "$work/tokenreview-proxy"
BUILDER=buildah "$repo/deploy/image/build.sh" "$work/tokenreview-proxy" "$image" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log" >&2; die "image build"; }
echo "image: $image, $(buildah images --format '{{.Size}}' "$image")"

user=$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$image")
entry=$(buildah inspect --type image --format '{{index .OCIv1.Config.Entrypoint 0}}' "$image")
path=$(buildah inspect --type image --format '{{range .OCIv1.Config.Env}}{{println .}}{{end}}' "$image" \
  | sed -n 's/^PATH=//p')
[ "$user" = 65532:65532 ] || die "image user is '$user', not 65532:65532"
[ "$entry" = tokenreview-proxy ] || die "image entrypoint is '$entry'"
[ -n "$path" ] || die "image sets no PATH"

ctr=$(buildah from "$image")
mnt=$(buildah mount "$ctr")
# Only what the image holds: a clean environment with the image's PATH, the image's user.
env -i PATH="$path" "$(command -v chroot)" --userspec="$user" "$mnt" "$entry" dev \
  --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --upstream-listen 127.0.0.1:0 \
  >"$work/dev.out" 2>"$work/dev.err" &
pid=$!
for _ in $(seq 1 300); do
  grep -q '^export TOKEN=' "$work/dev.out" && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/dev.err" >&2; die "dev exited before printing a token"; }
  sleep 0.1
done
token=$(sed -n 's/^export TOKEN=//p' "$work/dev.out")
proxy=$(sed -n 's/^ *proxy *\(http:[^ ]*\).*/\1/p' "$work/dev.out")
admin=$(sed -n 's/^ *admin *\(http:[^ ]*\).*/\1/p' "$work/dev.out")
[ -n "$token" ] && [ -n "$proxy" ] && [ -n "$admin" ] \
  || { cat "$work/dev.out" "$work/dev.err" >&2; die "dev printed no token or addresses in 30s"; }

code=$(curl -sS -o "$work/body" -w '%{http_code}' -H "Authorization: Bearer $token" "$proxy/hello") \
  || die "curl $proxy/hello"
[ "$code" = 200 ] || { cat "$work/body" "$work/dev.err" >&2; die "$proxy/hello answered $code, not 200"; }
grep -q 'system:serviceaccount:demo:hello' "$work/body" \
  || { cat "$work/body" >&2; die "the upstream did not receive the caller's identity"; }
code=$(curl -sS -o /dev/null -w '%{http_code}' "$proxy/hello") || die "curl without a token"
[ "$code" = 401 ] || die "a request without a token got $code, not 401"
code=$(curl -sS -o /dev/null -w '%{http_code}' "$admin/readyz") || die "curl $admin/readyz"
[ "$code" = 200 ] || die "$admin/readyz answered $code"

kill -TERM "$pid"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then die "dev did not exit within 10s of SIGTERM"; fi
wait "$pid" || die "dev exited with status $? after SIGTERM"
pid=""
echo "ok: dev from the image's root filesystem as $user: 200 with a token, 401 without, /readyz 200"
