"""Drill: the API server stopped for 20 s and started again, under constant load through the
gateway, with the operator reconciling.

Expected: no client sees an error, during the outage or after it (the gateway keeps routing to what
it last knew, and stays ready); neither the gateway nor the operator exits; and changes made as
soon as the API server is back, while both are still backing off before they watch again, take
effect (no lost update: they resume or relist, and do not sit on their old view).

A control plane of its own: stopping the shared one would stall every other test's watches."""

from __future__ import annotations

import time
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
from sage_testing.engine_objects import apply_engine, endpoint_slice, get, kubernetes_gateway_env
from sage_testing.plugin import operator_env, own_control_plane

pytestmark = [pytest.mark.engine, pytest.mark.integration]

OUTAGE_SECONDS = 20
NAMESPACE = "drill"

ENGINE = """\
apiVersion: sage.ai/v1alpha1
kind: LLMEngine
metadata: {{name: {name}}}
spec: {{model: deterministic, backend: deterministic, servedModelName: {name}}}
"""


@pytest.fixture
def plane(kube_binaries: Path) -> Iterator[tuple[ControlPlane, Kubectl]]:
    with own_control_plane(kube_binaries, NAMESPACE) as made:
        yield made


@pytest.fixture
def replica(engine_factory: Callable[..., EngineProcess], pod_network: PodNetwork) -> Callable[[str], tuple[str, int]]:
    """Starts a deterministic engine for a model in a stand-in pod; returns its pod address and port."""

    def start(model: str) -> tuple[str, int]:
        pod = pod_network.add_pod()
        engine = engine_factory("deterministic", model, host=pod.address, wrapper=pod.exec_prefix)
        return pod.address, engine.port

    return start


def serve(kubectl: Kubectl, engine: str, slice_name: str, address: str, port: int) -> None:
    """An LLMEngine and the EndpointSlice the EndpointSlice controller would write for its ready pod."""
    kubectl.apply(ENGINE.format(name=engine), NAMESPACE)
    kubectl.apply(endpoint_slice(engine, address, port, name=slice_name), NAMESPACE)


def answered_by(gateway: GatewayProcess, model: str, text: str = "who?") -> str | None:
    """The replica that answered (chat routes by prompt prefix: vary `text` to reach others)."""
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 2}
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, timeout=30)
    return response.headers.get("x-sage-replica") if response.status_code == 200 else None


def test_an_api_server_outage_loses_no_request_and_no_update(
    plane: tuple[ControlPlane, Kubectl],
    replica: Callable[[str], tuple[str, int]],
    engine_port: int,
    tmp_path: Path,
) -> None:
    control_plane, kubectl = plane
    gateway_env = kubernetes_gateway_env(control_plane.kubeconfig, NAMESPACE)
    operator_log = tmp_path / "operator.log"
    with (
        OperatorProcess(control_plane.kubeconfig, operator_log, env=operator_env(engine_port)) as operator,
        GatewayProcess(env=gateway_env) as gateway,
    ):
        first = replica("echo")
        serve(kubectl, "echo", "echo-a", *first)
        wait_until(lambda: answered_by(gateway, "echo"), "the gateway routes echo")
        apply_engine(kubectl, NAMESPACE, "steady")
        wait_until(lambda: get(kubectl, NAMESPACE, "deployment", "steady"), "the operator made steady's Deployment")

        with ConstantLoad(gateway.base_url, "echo", clients=2) as load:
            load.wait_for(20)
            down_at = time.monotonic()
            with control_plane.api_server_down():
                time.sleep(OUTAGE_SECONDS / 2)
                assert httpx.get(f"{gateway.base_url}/readyz").status_code == 200, "unready during the outage"
                time.sleep(OUTAGE_SECONDS / 2)
            up_at = time.monotonic()
            # At once, while the watches are still backing off: a scale, a new engine, a new replica.
            kubectl("patch", "llmengine", "steady", "-n", NAMESPACE, "--type=merge", "-p", '{"spec":{"replicas":3}}')
            apply_engine(kubectl, NAMESPACE, "late")
            second = replica("echo")
            serve(kubectl, "echo", "echo-b", *second)
            serve(kubectl, "fresh", "fresh-a", *replica("fresh"))

            def scaled() -> bool:
                deployment = get(kubectl, NAMESPACE, "deployment", "steady") or {}
                return bool(deployment.get("spec", {}).get("replicas") == 3)

            wait_until(scaled, "steady's Deployment scaled to 3 after the outage", timeout=90)
            wait_until(lambda: get(kubectl, NAMESPACE, "deployment", "late"), "late's Deployment", timeout=90)
            wait_until(lambda: answered_by(gateway, "fresh"), "the gateway routes the new model", timeout=90)
            second_url = f"{second[0]}:{second[1]}"
            wait_until(
                lambda: any(second_url in (answered_by(gateway, "echo", f"who {n}?") or "") for n in range(8)),
                "the gateway sends echo to the replica added after the outage",
                timeout=90,
            )
            converged = time.monotonic() - up_at
            load.wait_for(20)

        print(
            f"\noutage {OUTAGE_SECONDS}s: {len(load.outcomes(since=down_at, until=up_at))} requests during it, "
            f"{len(load.outcomes())} in all; changes after it took effect within {converged:.1f}s"
        )
        during = load.outcomes(since=down_at, until=up_at)
        assert len(during) >= 10, f"only {len(during)} requests were sent during the outage"
        assert load.failures() == [], f"clients saw errors: {load.failures()[:5]}"
        assert operator.running(), operator.log_tail(80)
        assert gateway.running(), gateway.log_tail(80)
