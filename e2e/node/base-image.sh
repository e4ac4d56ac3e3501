#!/usr/bin/env bash
# The local stand-in for the Dockerfiles' base image (python:3.11.x-slim-bookworm), which cannot be
# pulled where no container registry is reachable (NODE.md, "Images"):
#   debootstrap --variant=minbase bookworm + the packages in base-image.packages,
#   `python` and `pip` in /usr/local/bin, the official image's PATH and LANG,
#   Debian's EXTERNALLY-MANAGED marker removed (pip installs system-wide, as in the official image),
#   the build machine's CA trust store copied in, named by SSL_CERT_FILE and PIP_CERT (so pip works
#   behind a TLS-intercepting proxy, as users behind one need too).
# Also a pause image for containerd's sandbox_image: the same base, `sleep infinity` as its command.
#
# Committed with buildah as local images named after a content hash of the inputs (this script, the
# package list, the CA store copied in): built once, skipped while the image exists in buildah's
# storage. Prints the base image's name (with --pause: the pause image's name).
#
# Usage: e2e/node/base-image.sh [--pause]
# Env:   SAGE_DEBIAN_MIRROR (default: the first bookworm mirror in this machine's apt sources)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
log() { printf '[base-image %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

packages_file="$here/base-image.packages"
ca_bundle="/etc/ssl/certs/ca-certificates.crt"
for tool in buildah debootstrap sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing (run e2e/node/install-prerequisites.sh)"
done
[[ -r "$ca_bundle" ]] || fail "no CA trust store at $ca_bundle"

key="$(cat "$0" "$packages_file" "$ca_bundle" | sha256sum | cut -c1-12)"
base="localhost/sage-base/python:3.11-bookworm-$key"
pause="localhost/sage-base/pause:$key"
wanted="$base"
[[ "${1:-}" == "--pause" ]] && wanted="$pause"

exists() { buildah inspect --type image "$1" >/dev/null 2>&1; }
if exists "$base" && exists "$pause"; then
  echo "$wanted"
  exit 0
fi

cache="${XDG_CACHE_HOME:-$HOME/.cache}/sage/node"
mkdir -p "$cache"
exec 9>"$cache/.base-image.lock"
flock 9
if exists "$base" && exists "$pause"; then  # built by a concurrent run while we waited
  echo "$wanted"
  exit 0
fi

mirror() {
  if [[ -n "${SAGE_DEBIAN_MIRROR:-}" ]]; then echo "$SAGE_DEBIAN_MIRROR"; return; fi
  # deb822 sources: the URIs of a stanza whose Suites include bookworm (not -security).
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -r "$f" ]] || continue
    awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm([ \n]|$)/ && !/debian-security/ {
           match($0, /URIs:[ \t]*[^ \t\n]+/); if (RSTART) { s = substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", s); print s; exit } }' "$f"
  done | head -1 | grep . && return
  # one-line sources.list
  awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null | grep . && return
  return 1
}

if ! exists "$base"; then
  url="$(mirror)" || fail "no Debian bookworm mirror found in the apt sources; set SAGE_DEBIAN_MIRROR"
  include="$(grep -vE '^\s*(#|$)' "$packages_file" | paste -sd, -)"
  rootfs="$(mktemp -d "$cache/rootfs-XXXXXX")"
  trap 'rm -rf "$rootfs"' EXIT
  start=$SECONDS
  log "debootstrap --variant=minbase bookworm (+ $include)"
  debootstrap --variant=minbase --include="$include" bookworm "$rootfs" "$url" >"$rootfs.log" 2>&1 \
    || fail "debootstrap failed: $(tail -3 "$rootfs.log")"
  rm -f "$rootfs.log"
  log "debootstrap done in $((SECONDS - start))s"

  ln -sfn /usr/bin/python3 "$rootfs/usr/local/bin/python"
  ln -sfn /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  cp "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  # What an image layer must not carry: package caches, device nodes, mount points' contents.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
         "$rootfs"/dev/* "$rootfs"/proc/* "$rootfs"/sys/* "$rootfs"/run/* "$rootfs"/tmp/* "$rootfs"/debootstrap
  python_version="$(chroot "$rootfs" python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"

  ctr="$(buildah from scratch)"
  mnt="$(buildah mount "$ctr")"
  cp -a "$rootfs/." "$mnt/"
  buildah umount "$ctr" >/dev/null
  buildah config \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 \
    --env PYTHON_VERSION="$python_version" \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    --cmd '["python3"]' \
    --label org.opencontainers.image.description="local stand-in for python:3.11-slim-bookworm (e2e/node/base-image.sh)" \
    --label sage.ai/base-image-key="$key" \
    "$ctr"
  buildah commit --quiet --rm "$ctr" "$base" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  log "built $base (python $python_version) in $((SECONDS - start))s"
fi

if ! exists "$pause"; then
  ctr="$(buildah from --pull=false "$base")"
  buildah config --entrypoint '[]' --cmd '["sleep", "infinity"]' --user 65535:65535 --workingdir / "$ctr"
  buildah commit --quiet --rm "$ctr" "$pause" >/dev/null
  log "built $pause"
fi
echo "$wanted"
