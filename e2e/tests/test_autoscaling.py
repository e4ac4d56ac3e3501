"""Autoscaling on load, end to end on a real API server: the operator reads GET /load from the
gateway, and under constant load an engine (minReplicas 0, maxReplicas 3, target 1 in flight per
replica) goes to its maximum; when the load stops it falls to zero after its scale-down delay,
with an Event for each change and the reason in its condition Scaled (`kubectl get -o wide`:
SCALING); the next request is held and wakes it again, and the condition says how many wait. An
engine without maxReplicas, scaled by hand as an HPA would, is never touched. The test plays the
kubelet: one real engine process in a stand-in pod, and the EndpointSlice the controller would
write for it.

A control plane of its own: the session's operator (which does not autoscale) must not
reconcile these engines too."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from sage_harness.controlplane import ControlPlane
from sage_harness.engines import EngineProcess
from sage_harness.gateway import GatewayProcess
from sage_harness.kubectl import Kubectl
from sage_harness.load import ConstantLoad
from sage_harness.operator_process import OperatorProcess
from sage_harness.podnet import PodNetwork
from sage_harness.waiting import wait_until
from sage_testing.engine_objects import endpoint_slice, kubernetes_gateway_env
from sage_testing.plugin import operator_env, own_control_plane

pytestmark = [pytest.mark.engine, pytest.mark.integration]

NAMESPACE = "scaling"
ENGINES = """\
apiVersion: sage.ai/v1alpha1
kind: LLMEngine
metadata: {name: busy}
spec: {model: deterministic, backend: deterministic, replicas: 1, minReplicas: 0, maxReplicas: 3,
       targetInflightRequests: 1, scaleDownDelaySeconds: 4}
---
apiVersion: sage.ai/v1alpha1
kind: LLMEngine
metadata: {name: manual}
spec: {model: deterministic, backend: deterministic, replicas: 1, minReplicas: 0, scaleDownDelaySeconds: 4}
"""


@pytest.fixture
def plane(kube_binaries: Path) -> Iterator[tuple[ControlPlane, Kubectl]]:
    with own_control_plane(kube_binaries, NAMESPACE) as made:
        yield made


def replicas(kubectl: Kubectl, name: str) -> int:
    return int(kubectl.json("get", "llmengine", name, "-n", NAMESPACE)["spec"]["replicas"])


def reasons(kubectl: Kubectl, name: str) -> list[str]:
    selector = f"involvedObject.name={name},involvedObject.kind=LLMEngine"
    events = kubectl.json("get", "events", "-n", NAMESPACE, "--field-selector", selector)["items"]
    return [e["reason"] for e in sorted(events, key=lambda e: e["metadata"]["creationTimestamp"])]


def scaled(kubectl: Kubectl, name: str) -> dict[str, str]:
    """The engine's condition Scaled ({} before the autoscaler changed it)."""
    conditions = (kubectl.json("get", "llmengine", name, "-n", NAMESPACE).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Scaled"), {})


def test_load_scales_an_engine_up_to_its_max_then_idle_takes_it_to_zero_and_a_request_wakes_it(
    plane: tuple[ControlPlane, Kubectl],
    engine_factory: Callable[..., EngineProcess],
    pod_network: PodNetwork,
    engine_port: int,
    tmp_path: Path,
) -> None:
    control_plane, kubectl = plane
    with GatewayProcess(env=kubernetes_gateway_env(control_plane.kubeconfig, NAMESPACE)) as gateway:
        scaling = {
            "SAGE_OPERATOR_GATEWAY_URLS": gateway.base_url,
            "SAGE_OPERATOR_AUTOSCALE_SECONDS": "0.5",
            "SAGE_OPERATOR_AUTOSCALE_WINDOW_SECONDS": "2",
        }
        env = operator_env(engine_port) | scaling
        with OperatorProcess(control_plane.kubeconfig, tmp_path / "operator.log", env=env) as operator:
            kubectl.apply(ENGINES, NAMESPACE)
            kubectl("scale", "llmengine/manual", "--replicas=2", "-n", NAMESPACE)  # as an HPA would
            pod = pod_network.add_pod()
            engine = engine_factory(
                "deterministic",
                "busy",
                host=pod.address,
                wrapper=pod.exec_prefix,
                extra_args=("--token-seconds", "0.05"),
            )
            kubectl.apply(endpoint_slice("busy", pod.address, engine.port), NAMESPACE)

            with ConstantLoad(gateway.base_url, "busy", clients=4) as load:
                wait_until(lambda: replicas(kubectl, "busy") == 3, f"busy at its max\n{operator.log_tail(20)}")
                load.wait_for(20)
            assert load.failures() == [], load.failures()[:3]
            assert scaled(kubectl, "busy")["reason"] == "ScaledUp"

            # Idle: down after the delay, to zero (minReplicas). The pod goes away with it.
            wait_until(lambda: replicas(kubectl, "busy") == 0, f"busy at zero\n{operator.log_tail(20)}", timeout=60)
            kubectl.apply(endpoint_slice("busy", pod.address, engine.port, ready=False), NAMESPACE)
            assert reasons(kubectl, "busy").count("ScaledUp") >= 1
            assert "ScaledDown" in reasons(kubectl, "busy")
            wait_until(lambda: scaled(kubectl, "busy").get("reason") == "ScaledToZero", "the Scaled condition")
            message = scaled(kubectl, "busy")["message"]
            assert message.startswith("ScaledToZero: idle for 4s: "), message
            assert message.endswith(" -> 0 replicas"), message
            wide = kubectl.run("get", "llmengine", "busy", "-n", NAMESPACE, "-o", "wide").stdout
            assert "ScaledToZero: idle for 4s" in wide

            # From zero: the request is held, the gateway asks for a replica, the "pod" turns ready.
            answers: list[httpx.Response] = []
            body = {"model": "busy", "messages": [{"role": "user", "content": "again"}], "max_tokens": 2}
            held = threading.Thread(
                target=lambda: answers.append(
                    httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, timeout=120)
                )
            )
            held.start()
            wait_until(lambda: replicas(kubectl, "busy") >= 1, "the held request to wake busy")
            wait_until(lambda: scaled(kubectl, "busy").get("reason") == "ScalingUp", "the wake to be told")
            assert scaled(kubectl, "busy")["message"] == "ScalingUp: 1 request waiting for a replica to be ready"
            kubectl.apply(endpoint_slice("busy", pod.address, engine.port), NAMESPACE)
            held.join(60)
            assert [a.status_code for a in answers] == [200]
            # Scaled by hand (or an HPA) and without maxReplicas: never touched, though idle past its delay.
            assert replicas(kubectl, "manual") == 2
            assert scaled(kubectl, "manual") == {}
