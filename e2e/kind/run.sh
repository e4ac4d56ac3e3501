#!/usr/bin/env bash
# The kind end-to-end suite (`make e2e-kind`): a real cluster in Docker, our images built and
# loaded, `helm install`, a CPU engine applied, and an OpenAI request through the gateway.
#
# Where no Docker engine answers, it says so in one line and exits 0: this suite needs a machine
# with Docker; the always-run suites (`make test`) cover everything that runs without one.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cluster="${SAGE_KIND_CLUSTER:-sage-e2e}"
namespace=sage-system
log() { printf '[e2e-kind %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
  echo "e2e-kind: skipped: no Docker engine answers on this machine (kind needs one)"
  exit 0
fi

bins="$("$root/e2e/envtest/build-binaries.sh")"
export PATH="$bins:$PATH"
if ! command -v kind >/dev/null; then
  log "building kind from Go modules"
  GOBIN="$bins" go install "sigs.k8s.io/kind@${SAGE_KIND_VERSION:-v0.33.0}"
fi

dump_logs() {
  log "failure: dumping state and logs"
  kubectl get all,llmengines -A -o wide || true
  kubectl -n "$namespace" logs deploy/sage-operator --tail=200 || true
  kubectl -n "$namespace" logs deploy/sage-gateway --tail=200 || true
  kubectl -n default logs -l sage.ai/engine --tail=200 --all-containers || true
  kind export logs "${TMPDIR:-/tmp}/sage-kind-logs" --name "$cluster" || true
}
cleanup() {
  status=$?
  [[ $status -ne 0 ]] && dump_logs
  [[ -n "${port_forward:-}" ]] && kill "$port_forward" 2>/dev/null || true
  [[ -z "${SAGE_KIND_KEEP:-}" ]] && kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
  exit $status
}
trap cleanup EXIT

log "creating cluster $cluster"
kind create cluster --name "$cluster" --wait 120s

tag="e2e-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo local)"
for image in operator gateway engine; do
  log "building sage-$image:$tag"
  docker build -q -t "sage-$image:$tag" -f "$root/images/$image/Dockerfile" "$root"
  kind load docker-image "sage-$image:$tag" --name "$cluster"
done

log "helm install"
helm install sage "$root/charts/sage" -n "$namespace" --create-namespace --wait --timeout 5m \
  --set operator.image.repository=sage-operator --set operator.image.tag="$tag" \
  --set gateway.image.repository=sage-gateway --set gateway.image.tag="$tag" \
  --set operator.engineImages.engine="sage-engine:$tag"

log "applying a deterministic engine"
kubectl apply -f "$root/examples/deterministic-test.yaml"
kubectl wait --for=jsonpath='{.status.phase}'=Ready llmengine/echo --timeout=300s

log "calling the gateway through a port-forward"
local_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
kubectl -n "$namespace" port-forward svc/sage-gateway "$local_port:http" >/dev/null 2>&1 &
port_forward=$!
for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$local_port/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "http://127.0.0.1:$local_port/v1/models" | tee /dev/stderr | grep -q '"echo"'
curl -fsS "http://127.0.0.1:$local_port/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model": "echo", "messages": [{"role": "user", "content": "hello kind"}]}' | tee /dev/stderr | grep -q 'hello kind'
log "kind e2e passed"
