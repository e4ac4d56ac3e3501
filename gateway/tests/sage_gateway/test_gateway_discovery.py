"""Kubernetes discovery on a real API server: LLMEngines and EndpointSlices that point at engine
processes on this machine (no kubelet here, so the slices are written the way the EndpointSlice
controller would write them for ready or unready pods).

The API server refuses loopback addresses in EndpointSlices, so each engine runs in a stand-in
pod: a network namespace of its own with a non-loopback address (sage_harness.podnet), which the
slices carry as a pod IP.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest

from sage_harness.controlplane import ControlPlane
from sage_harness.engines import EngineProcess
from sage_harness.gateway import GatewayProcess
from sage_harness.kubectl import Kubectl
from sage_harness.podnet import PodNetwork
from sage_harness.waiting import wait_until

pytestmark = pytest.mark.engine

ENGINE = """\
apiVersion: sage.ai/v1alpha1
kind: LLMEngine
metadata: {{name: {name}}}
spec: {{model: deterministic, backend: deterministic, servedModelName: {served}, aliases: [{alias}]}}
"""

SLICE = """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}
  labels:
    kubernetes.io/service-name: {engine}
    sage.ai/engine: {engine}
    endpointslice.kubernetes.io/managed-by: sage-tests
addressType: IPv4
ports: [{{name: http, port: {port}, protocol: TCP}}]
endpoints:
- addresses: ["{address}"]
  conditions: {{ready: {ready}}}
"""


class Replica:
    """An engine process as the gateway sees it through an EndpointSlice."""

    def __init__(self, engine: EngineProcess, address: str) -> None:
        self.engine = engine
        self.address = address

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.engine.port}"


@pytest.fixture
def start_replica(engine_factory: Callable[..., EngineProcess], pod_network: PodNetwork) -> Callable[[], Replica]:
    def start() -> Replica:
        pod = pod_network.add_pod()
        engine = engine_factory(
            "deterministic", "echo", aliases=("echo-alias",), host=pod.address, wrapper=pod.exec_prefix
        )
        return Replica(engine, pod.address)

    return start


@pytest.fixture
def gateway(control_plane: ControlPlane, namespace: str) -> Iterator[GatewayProcess]:
    env = {
        "SAGE_GATEWAY_DISCOVERY": "kubernetes",
        "SAGE_GATEWAY_KUBECONFIG": str(control_plane.kubeconfig),
        "SAGE_GATEWAY_NAMESPACES": namespace,
    }
    with GatewayProcess(env=env) as process:
        yield process


def apply_slice(kubectl: Kubectl, namespace: str, name: str, replica: Replica, *, ready: bool = True) -> None:
    ready_value = "true" if ready else "false"
    manifest = SLICE.format(
        name=name, engine="echo", port=replica.engine.port, address=replica.address, ready=ready_value
    )
    kubectl.apply(manifest, namespace)


def replica_of(gateway: GatewayProcess, route: str = "embeddings", text: str = "x") -> str:
    if route == "embeddings":
        response = httpx.post(f"{gateway.base_url}/v1/embeddings", json={"model": "echo", "input": text})
    else:
        body = {"model": "echo", "messages": [{"role": "user", "content": text}]}
        response = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.headers["x-sage-replica"]


def status_of(gateway: GatewayProcess, model: str) -> int:
    body = {"model": model, "input": "x"}
    return httpx.post(f"{gateway.base_url}/v1/embeddings", json=body).status_code


def listed(gateway: GatewayProcess) -> set[str]:
    return {model["id"] for model in httpx.get(f"{gateway.base_url}/v1/models").json()["data"]}


@pytest.fixture
def two_replicas(start_replica: Callable[[], Replica]) -> tuple[Replica, Replica]:
    return start_replica(), start_replica()


def test_engine_with_a_ready_endpoint_is_listed_and_routable(
    gateway: GatewayProcess, kubectl: Kubectl, namespace: str, start_replica: Callable[[], Replica]
) -> None:
    replica = start_replica()
    assert status_of(gateway, "echo") == 404
    kubectl.apply(ENGINE.format(name="echo", served="echo", alias="echo-alias"), namespace)
    wait_until(lambda: status_of(gateway, "echo") == 503, "the engine known, without a ready replica")
    assert "echo" not in listed(gateway)
    applied = time.monotonic()
    apply_slice(kubectl, namespace, "echo-a", replica)
    wait_until(lambda: "echo" in listed(gateway), "the model listed")
    # Informational only (no timing assertions): how soon a ready replica became routable.
    print(f"routable {time.monotonic() - applied:.3f}s after kubectl apply of the slice returned")
    assert {"echo", "echo-alias"} <= listed(gateway)
    assert replica_of(gateway, "chat") == replica.url
    body = {"model": "echo-alias", "messages": [{"role": "user", "content": "via k8s"}]}
    reply = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body).json()
    assert reply["choices"][0]["message"]["content"] == "echo: via k8s"
    kubectl("delete", "llmengine", "echo", "-n", namespace)
    wait_until(lambda: status_of(gateway, "echo") == 404, "the deleted engine unknown")


def test_unready_or_deleted_endpoints_get_no_new_requests(
    gateway: GatewayProcess, kubectl: Kubectl, namespace: str, two_replicas: tuple[Replica, Replica]
) -> None:
    first, second = two_replicas
    kubectl.apply(ENGINE.format(name="echo", served="echo", alias="echo-alias"), namespace)
    apply_slice(kubectl, namespace, "echo-a", first)
    apply_slice(kubectl, namespace, "echo-b", second)
    # Idle replicas take turns, so two answers in a row from one replica mean the other is out.
    wait_until(lambda: len({replica_of(gateway), replica_of(gateway)}) == 2, "both replicas in rotation")

    apply_slice(kubectl, namespace, "echo-b", second, ready=False)
    wait_until(lambda: {replica_of(gateway), replica_of(gateway)} == {first.url}, "the unready one out")
    assert {replica_of(gateway) for _ in range(20)} == {first.url}

    apply_slice(kubectl, namespace, "echo-b", second, ready=True)
    wait_until(lambda: len({replica_of(gateway), replica_of(gateway)}) == 2, "the ready one back")

    kubectl("delete", "endpointslice", "echo-a", "-n", namespace)
    wait_until(lambda: {replica_of(gateway), replica_of(gateway)} == {second.url}, "the deleted one out")
    assert {replica_of(gateway) for _ in range(20)} == {second.url}

    kubectl("delete", "endpointslice", "echo-b", "-n", namespace)
    wait_until(lambda: status_of(gateway, "echo") == 503, "no replica left: 503")


def test_load_spreads_over_two_replicas(
    gateway: GatewayProcess, kubectl: Kubectl, namespace: str, two_replicas: tuple[Replica, Replica]
) -> None:
    first, second = two_replicas
    kubectl.apply(ENGINE.format(name="echo", served="echo", alias="echo-alias"), namespace)
    apply_slice(kubectl, namespace, "echo-a", first)
    apply_slice(kubectl, namespace, "echo-b", second)
    wait_until(lambda: len({replica_of(gateway), replica_of(gateway)}) == 2, "both replicas in rotation")
    embeddings = Counter(replica_of(gateway) for _ in range(20))
    assert embeddings == {first.url: 10, second.url: 10}
    # Chat uses prefix affinity: one prompt sticks to one replica, different prompts spread.
    assert len({replica_of(gateway, "chat", "the same question") for _ in range(6)}) == 1
    chats = Counter(replica_of(gateway, "chat", f"question number {n}") for n in range(40))
    assert set(chats) == {first.url, second.url}


def test_a_killed_replica_does_not_fail_requests(
    gateway: GatewayProcess, kubectl: Kubectl, namespace: str, two_replicas: tuple[Replica, Replica]
) -> None:
    survivor, victim = two_replicas
    kubectl.apply(ENGINE.format(name="echo", served="echo", alias="echo-alias"), namespace)
    apply_slice(kubectl, namespace, "echo-a", survivor)
    apply_slice(kubectl, namespace, "echo-b", victim)
    wait_until(lambda: len({replica_of(gateway), replica_of(gateway)}) == 2, "both replicas in rotation")
    assert victim.engine.process is not None
    victim.engine.process.kill()
    victim.engine.process.wait(10)
    # The slice still lists the dead replica (no kubelet to notice): connect failures move on.
    routes = ("embeddings", "chat")
    answered = {replica_of(gateway, route, f"after the kill {n}") for n in range(10) for route in routes}
    assert answered == {survivor.url}
    metrics = httpx.get(f"{gateway.base_url}/metrics").text
    assert 'sage_gateway_retries_total{model="echo"}' in metrics


def test_the_endpointslice_controller_copies_the_engine_label(kubectl: Kubectl, namespace: str) -> None:
    """Discovery selects slices by `sage.ai/engine`; the controller must carry it over from the
    engine's Service (this is what the operator's Services rely on)."""
    kubectl.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: echo, labels: {sage.ai/engine: echo}}\n"
        "spec: {selector: {sage.ai/engine: echo}, ports: [{name: http, port: 8000}]}\n",
        namespace,
    )

    def labelled() -> bool:
        slices = kubectl.json("get", "endpointslices", "-n", namespace, "-l", "sage.ai/engine=echo")["items"]
        return any(item["metadata"]["labels"].get("kubernetes.io/service-name") == "echo" for item in slices)

    wait_until(labelled, "a controller-made slice labelled sage.ai/engine=echo")


def test_a_name_claimed_in_two_namespaces_routes_only_to_the_older_engine(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str, start_replica: Callable[[], Replica]
) -> None:
    """Another tenant's engine never gets the owner's traffic, not even while the owner has no
    ready replica: the request gets the owner's 503 instead."""
    other = f"{namespace}-b"
    kubectl("create", "namespace", other)
    env = {
        "SAGE_GATEWAY_DISCOVERY": "kubernetes",
        "SAGE_GATEWAY_KUBECONFIG": str(control_plane.kubeconfig),
        "SAGE_GATEWAY_NAMESPACES": f"{namespace},{other}",
    }
    owner_replica, intruder_replica = start_replica(), start_replica()
    try:
        with GatewayProcess(env=env) as gateway:
            kubectl.apply(ENGINE.format(name="echo", served="echo", alias="echo-alias"), namespace)
            wait_until(lambda: status_of(gateway, "echo") == 503, "the owner known, without a ready replica")
            time.sleep(1.1)  # creationTimestamp has one-second resolution: the second engine is newer
            kubectl.apply(ENGINE.format(name="echo", served="echo", alias="intruder-alias"), other)
            apply_slice(kubectl, other, "echo-b", intruder_replica)
            wait_until(lambda: "intruder-alias" in listed(gateway), "the newer engine's own alias routable")
            assert status_of(gateway, "echo") == 503  # not the other namespace's ready replica
            assert "echo" not in listed(gateway)

            apply_slice(kubectl, namespace, "echo-a", owner_replica)
            wait_until(lambda: status_of(gateway, "echo") == 200, "the owner routable")
            assert {replica_of(gateway) for _ in range(6)} == {owner_replica.url}
    finally:
        kubectl.run("delete", "namespace", other, "--wait=false", check=False)
