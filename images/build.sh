#!/usr/bin/env bash
# Builds every image under images/ (`make images`): images/<name>/Dockerfile -> sage/<name>:<version>,
# the version being pyproject.toml's, which is the chart's appVersion and so its default tag.
# The build context is the repository root; each Dockerfile.dockerignore keeps it small.
#
# Where no Docker engine answers, it says so in one line and exits 0.
#
# Usage: images/build.sh [NAME ...]   (default: every folder with a Dockerfile)
# Env:   SAGE_IMAGE_PREFIX (default "sage/"), SAGE_IMAGE_TAG (default: the project version)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
log() { printf '[images %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "make images: skipped: no Docker engine answers on this machine ('docker info' failed)"
  exit 0
fi

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml" | head -1)"
tag="${SAGE_IMAGE_TAG:-$version}"
prefix="${SAGE_IMAGE_PREFIX:-sage/}"
if [[ $# -gt 0 ]]; then
  names=("$@")
else
  names=()
  for dockerfile in "$root"/images/*/Dockerfile; do names+=("$(basename "$(dirname "$dockerfile")")"); done
fi

export DOCKER_BUILDKIT=1
start=$SECONDS
for name in "${names[@]}"; do
  dockerfile="$root/images/$name/Dockerfile"
  [[ -f "$dockerfile" ]] || { log "no $dockerfile"; exit 1; }
  log "building ${prefix}${name}:${tag}"
  step=$SECONDS
  docker build --file "$dockerfile" --tag "${prefix}${name}:${tag}" "$root"
  log "built ${prefix}${name}:${tag} in $((SECONDS - step))s"
done
log "${#names[@]} image(s) built in $((SECONDS - start))s: ${names[*]}"
