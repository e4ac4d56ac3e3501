#!/usr/bin/env bash
# Creates (once per machine) a Python environment holding the vLLM release SAGE targets, and
# prints its folder. It lives in the user cache directory, keyed by the vLLM version, so every
# checkout on the machine shares it: vLLM pulls in its CUDA PyTorch (about 9 GB), paid once.
# The tests use it without a GPU, for vLLM's own `vllm serve` argument parser
# (e2e/sage_harness/vllm_args.py).
#
# The version is the tag of images/vllm/Dockerfile's `ARG VLLM_IMAGE=vllm/vllm-openai:v<version>`
# (the operator's default vllm image is the same one); SAGE_VLLM_VERSION overrides it.
# Usage: vllm-env.sh   (prints the folder; progress goes to stderr)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
log() { printf '[vllm-env %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

version="${SAGE_VLLM_VERSION:-}"
if [[ -z "$version" ]]; then
  version=$(sed -nE 's|^ARG VLLM_IMAGE=vllm/vllm-openai:v([0-9][0-9A-Za-z.+-]*)$|\1|p' "$root/images/vllm/Dockerfile")
fi
[[ -n "$version" ]] || { log "no vLLM version: images/vllm/Dockerfile has no ARG VLLM_IMAGE=vllm/vllm-openai:v<version>"; exit 1; }

python="${PYTHON:-python3}"
pyver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/sage"
venv="$cache_root/vllm/vllm-$version-py$pyver"

if [[ ! -e "$venv/.complete" ]]; then
  mkdir -p "$cache_root/vllm"
  # One build at a time per machine: parallel test runs share the environment.
  exec 9>"$cache_root/vllm/.lock"
  flock 9
  if [[ ! -e "$venv/.complete" ]]; then
    log "creating $venv (first run on this machine: vLLM $version and its CUDA PyTorch, about 9 GB, download once)"
    start=$SECONDS
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip >&2
    # No pip cache: the environment itself is the cache, and a second copy of the wheels would
    # double the disk it takes.
    "$venv/bin/pip" install --no-cache-dir --progress-bar off "vllm==$version" >&2
    "$venv/bin/python" -c 'import vllm, sys; print(vllm.__version__)' | grep -qx "$version" \
      || { log "the environment does not import vLLM $version"; exit 1; }
    touch "$venv/.complete"
    log "environment ready in $((SECONDS - start))s: $(du -sh "$venv" | cut -f1)"
  fi
fi
echo "$venv"
