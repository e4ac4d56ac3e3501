"""Scale from zero on a real API server: a request for an engine at zero replicas that scales
from zero (minReplicas: 0, maxReplicas set) is held while the gateway asks for one replica through
the scale subresource; the test then plays the kubelet (a real engine process in a stand-in pod,
and the EndpointSlice the controller would write) and the held requests are answered. Concurrent
requests share one scale-up; a hold that runs out, a paused engine, and an engine scaled to zero by
hand are answered with 503 at once or at the end, in the OpenAI shape."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest

from sage_harness.controlplane import ControlPlane
from sage_harness.engines import EngineProcess
from sage_harness.gateway import GatewayProcess
from sage_harness.kubectl import Kubectl
from sage_harness.podnet import PodNetwork
from sage_harness.waiting import wait_until
from sage_testing.engine_objects import endpoint_slice, kubernetes_gateway_env

pytestmark = pytest.mark.engine

ENGINE = """\
apiVersion: sage.ai/v1alpha1
kind: LLMEngine
metadata: {{name: {name}, annotations: {annotations}}}
spec: {{model: deterministic, backend: deterministic, servedModelName: {name}, replicas: 0, {bounds}}}
"""
AUTOSCALED = "minReplicas: 0, maxReplicas: 2"


def gateway_for(control_plane: ControlPlane, namespace: str, hold_seconds: float) -> GatewayProcess:
    env = kubernetes_gateway_env(control_plane.kubeconfig, namespace) | {
        "SAGE_GATEWAY_HOLD_SECONDS": str(hold_seconds),
        "SAGE_GATEWAY_RETRY_AFTER_SECONDS": "7",
    }
    return GatewayProcess(env=env)


@pytest.fixture
def gateway(control_plane: ControlPlane, namespace: str) -> Iterator[GatewayProcess]:
    with gateway_for(control_plane, namespace, hold_seconds=120) as process:
        yield process


def apply_engine(
    kubectl: Kubectl, namespace: str, name: str, bounds: str = AUTOSCALED, annotations: str = "{}"
) -> None:
    kubectl.apply(ENGINE.format(name=name, bounds=bounds, annotations=annotations), namespace)


def wait_known(gateway: GatewayProcess, namespace: str, *names: str) -> None:
    for name in names:
        line = f"engine {namespace}/{name} serves"
        wait_until(lambda: line in gateway.log(), f"the gateway to know {name}")  # noqa: B023 (used at once)


def replicas(kubectl: Kubectl, namespace: str, name: str) -> int:
    return int(kubectl.json("get", "llmengine", name, "-n", namespace)["spec"]["replicas"])


def ask(gateway: GatewayProcess, model: str, stream: bool = False) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "wake up"}], "max_tokens": 4, "stream": stream}
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, timeout=180)
    return response


def metric(gateway: GatewayProcess, pattern: str) -> float:
    found = re.search(pattern, httpx.get(f"{gateway.base_url}/metrics").text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_held_requests_are_answered_once_one_replica_is_up_after_one_scale_up(
    gateway: GatewayProcess,
    kubectl: Kubectl,
    namespace: str,
    engine_factory: Callable[..., EngineProcess],
    pod_network: PodNetwork,
) -> None:
    apply_engine(kubectl, namespace, "sleepy")
    wait_known(gateway, namespace, "sleepy")
    answers: list[httpx.Response] = []

    def send(stream: bool) -> None:
        answers.append(ask(gateway, "sleepy", stream))

    clients = [threading.Thread(target=send, args=(n % 2 == 0,)) for n in range(5)]
    for client in clients:
        client.start()
    wait_until(lambda: replicas(kubectl, namespace, "sleepy") == 1, f"one replica asked for\n{gateway.log_tail(30)}")
    wait_until(lambda: metric(gateway, r'^sage_gateway_held_requests\{model="sleepy"\} (\S+)$') == 5, "5 held")
    assert answers == [], "a request was answered before any replica was ready"

    pod = pod_network.add_pod()  # the kubelet's part: the pod runs, and its slice says ready
    engine = engine_factory("deterministic", "sleepy", host=pod.address, wrapper=pod.exec_prefix)
    kubectl.apply(endpoint_slice("sleepy", pod.address, engine.port), namespace)
    for client in clients:
        client.join(60)

    assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
    assert sum("data: [DONE]" in a.text for a in answers) == 3  # the streams, whole
    assert metric(gateway, r'^sage_gateway_scale_ups_total\{model="sleepy"\} (\S+)$') == 1
    assert metric(gateway, r'^sage_gateway_hold_duration_seconds_count\{model="sleepy"\} (\S+)$') == 5
    assert metric(gateway, r'^sage_gateway_held_requests\{model="sleepy"\} (\S+)$') == 0


def test_a_hold_that_runs_out_answers_503_with_retry_after(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str
) -> None:
    apply_engine(kubectl, namespace, "slow")
    with gateway_for(control_plane, namespace, hold_seconds=2) as gateway:
        refused = ask(gateway, "slow")
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "7"
    error = refused.json()["error"]
    assert (error["code"], error["type"]) == ("model_not_ready", "server_error")
    assert "starting from zero replicas and none was ready within 2s" in error["message"]
    assert replicas(kubectl, namespace, "slow") == 1  # it did ask


PAUSED = "{sage.ai/paused-by: nightly-ft}"
PAUSING_JOB = """\
apiVersion: sage.ai/v1alpha1
kind: FinetuneJob
metadata: {name: nightly-ft}
spec:
  baseModel: tiny-lm
  dataset: {source: "configmap://data/train.jsonl", format: chat}
  output: {claimName: adapters}
  suspend: true
"""
"""The job the paused engine names. It exists (suspended, preempting nothing), so the session's
operator leaves the engine paused: for a job that does not exist it gives the engine back at once,
and a request asked after that would be held for a replica, not refused."""


def test_paused_and_hand_scaled_engines_are_not_woken(
    gateway: GatewayProcess, kubectl: Kubectl, namespace: str
) -> None:
    kubectl.apply(PAUSING_JOB, namespace)
    apply_engine(kubectl, namespace, "paused", annotations=PAUSED)
    apply_engine(kubectl, namespace, "manual", bounds="aliases: [by-hand]")  # scaled to 0, no autoscaling
    wait_known(gateway, namespace, "paused", "manual")

    paused, manual = ask(gateway, "paused"), ask(gateway, "manual")
    assert (paused.status_code, manual.status_code) == (503, 503)
    assert paused.json()["error"]["code"] == "model_paused"
    assert "FinetuneJob 'nightly-ft'" in paused.json()["error"]["message"]
    assert manual.json()["error"]["code"] == "model_not_ready"
    # The gateway asked for no replica.
    scale_ups = [
        metric(gateway, rf'^sage_gateway_scale_ups_total\{{model="{name}"\}} (\S+)$') for name in ("paused", "manual")
    ]
    assert scale_ups == [0, 0]
    assert replicas(kubectl, namespace, "manual") == 0
