#!/usr/bin/env bash
# Builds every image under images/ (`make images`): images/<name>/Dockerfile -> sage/<name>:<version>,
# the version being pyproject.toml's, which is the chart's appVersion and so its default tag.
# The build context is the repository root; each Dockerfile.dockerignore keeps it small.
#
# Builders, in order:
#   1. Docker, when a Docker engine answers (`docker info`).
#   2. buildah (no daemon), when it is installed: `buildah bud --layers`, the same Dockerfiles, with
#      the base image given as the PYTHON_IMAGE build argument: SAGE_PYTHON_IMAGE when set (e.g.
#      the official python:3.11.x-slim-bookworm where a registry is reachable), else the local
#      stand-in that e2e/node/base-image.sh builds (debootstrap, no registry needed).
#      The vllm image derives from vLLM's published image and stays Docker-only: skipped, one line.
# Where neither answers, it says so in one line and exits 0.
#
# Usage: images/build.sh [NAME ...]   (default: every folder with a Dockerfile)
# Env:   SAGE_IMAGE_PREFIX (default "sage/"), SAGE_IMAGE_TAG (default: the project version),
#        SAGE_PYTHON_IMAGE (buildah only: the base image build argument)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
log() { printf '[images %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

builder=""
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  builder=docker
elif command -v buildah >/dev/null 2>&1 && buildah version >/dev/null 2>&1; then
  builder=buildah
else
  echo "make images: skipped: no Docker engine answers on this machine ('docker info' failed) and buildah is not installed"
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
for name in "${names[@]}"; do
  [[ -f "$root/images/$name/Dockerfile" ]] || { log "no $root/images/$name/Dockerfile"; exit 1; }
done

# Images that start from a third-party image rather than PYTHON_IMAGE: Docker only.
docker_only=(vllm)
is_docker_only() { local n; for n in "${docker_only[@]}"; do [[ "$n" == "$1" ]] && return 0; done; return 1; }

if [[ $builder == buildah ]]; then
  base="${SAGE_PYTHON_IMAGE:-}"
  needs_base=false
  for name in "${names[@]}"; do is_docker_only "$name" || needs_base=true; done
  if [[ -z "$base" ]] && $needs_base; then
    log "no Docker engine: building with buildah on the local base image (set SAGE_PYTHON_IMAGE to use another)"
    base="$("$root/e2e/node/base-image.sh")"
  fi
fi

export DOCKER_BUILDKIT=1
start=$SECONDS
built=()
for name in "${names[@]}"; do
  dockerfile="$root/images/$name/Dockerfile"
  image="${prefix}${name}:${tag}"
  if [[ $builder == buildah ]] && is_docker_only "$name"; then
    echo "make images: $image skipped: it derives from vLLM's published image, which only the Docker path builds"
    continue
  fi
  log "building $image with $builder"
  step=$SECONDS
  replaced=""
  [[ $builder == buildah ]] && replaced="$(buildah images --quiet --no-trunc "$image" 2>/dev/null | head -1 || true)"
  if [[ $builder == docker ]]; then
    docker build --file "$dockerfile" --tag "$image" "$root"
  else
    ignore=()
    [[ -f "$dockerfile.dockerignore" ]] && ignore=(--ignorefile "$dockerfile.dockerignore")
    buildah bud --layers --pull=false "${ignore[@]}" --build-arg "PYTHON_IMAGE=$base" \
      --file "$dockerfile" --tag "$image" "$root"
  fi
  built+=("$name")
  log "built $image in $((SECONDS - step))s"
  if [[ -n $replaced ]] && [[ "$(buildah images --quiet --no-trunc "$image" 2>/dev/null | head -1 || true)" != "$replaced" ]]; then
    # The image this build replaced (gigabytes for engine and fine-tune) goes, not every dangling
    # one: `rmi --prune` would take the wheel stage's cache too, and a rebuilt wheel is a new image.
    buildah rmi "$replaced" >/dev/null 2>&1 || log "kept the replaced $image ($replaced): still in use"
  fi
done
log "${#built[@]} image(s) built in $((SECONDS - start))s with $builder: ${built[*]}"
