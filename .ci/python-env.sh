#!/usr/bin/env bash
# Creates (once per machine) the Python environment the project runs in, and
# prints its folder. The environment lives in the user cache directory, keyed
# by a hash of pyproject.toml's dependency lists (.ci/requirements.lock pins them), so a fresh
# clone reuses it and PyTorch's multi-GB download is paid once per machine.
# The project itself is installed editable on every call (seconds).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
log() { printf '[python-env %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

python="${PYTHON:-python3}"
key=$(cd "$root" && "$python" - <<'PY'
import hashlib, pathlib, tomllib
project = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]
deps = sorted(set(project["dependencies"]).union(*project["optional-dependencies"].values()))
blob = "\n".join(deps)
print(hashlib.sha256(blob.encode()).hexdigest()[:16])
PY
)
venv="${XDG_CACHE_HOME:-$HOME/.cache}/sage/venv-$key"

if [[ ! -x "$venv/.complete" ]]; then
  log "creating $venv (first run on this machine: PyTorch and friends download once)"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip setuptools wheel
  reqs="$venv/requirements.in"
  (cd "$root" && "$python" -c 'import tomllib; p=tomllib.load(open("pyproject.toml","rb"))["project"]; print("\n".join(sorted(set(p["dependencies"]).union(*p["optional-dependencies"].values()))))') >"$reqs"
  constraint=()
  [[ -f "$root/.ci/requirements.lock" ]] && constraint=(-c "$root/.ci/requirements.lock")
  "$venv/bin/pip" install --progress-bar off "${constraint[@]}" -r "$reqs" >&2
  touch "$venv/.complete" && chmod +x "$venv/.complete"
  log "environment ready"
fi
# Quiet unless it fails: setuptools is chatty about editable installs.
if ! out=$("$venv/bin/pip" install --quiet --no-deps --no-build-isolation -e "$root" 2>&1); then
  echo "$out" >&2
  exit 1
fi
echo "$venv"
