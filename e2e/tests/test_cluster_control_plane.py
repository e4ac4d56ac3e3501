"""The cluster control plane end to end, on the real API server: the chart installed with helm;
the operator and the gateway run as processes with the chart's settings and as the chart's
ServiceAccounts (so its RBAC is what they really get); an LLMEngine applied; an engine process on
its own network namespace stands in for the pod no kubelet can start here, published through the EndpointSlice the
Service would have; then OpenAI requests through the gateway, and deleting the engine makes the
gateway answer 404."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from sage_harness.controlplane import ControlPlane
from sage_harness.engines import EngineProcess
from sage_harness.gateway import GatewayProcess
from sage_harness.helm import CHART, Helm, parse_manifests
from sage_harness.kubectl import Kubectl
from sage_harness.operator_process import OperatorProcess
from sage_harness.podnet import PodNetwork
from sage_harness.waiting import wait_until

RELEASE_NAMESPACE = "sage-e2e"
ENGINE = """
apiVersion: sage.ai/v1alpha1
kind: LLMEngine
metadata: {name: e2e-echo}
spec: {model: deterministic, backend: deterministic, engineKind: llm, replicas: 1}
"""


def container_env(deployment: dict[str, Any]) -> dict[str, str]:
    return container_env_of(deployment["spec"]["template"]["spec"]["containers"][0])


def service_account_kubeconfig(kubectl: Kubectl, plane: ControlPlane, account: str, folder: Path) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount (a TokenRequest token)."""
    token = kubectl("create", "token", account, "-n", RELEASE_NAMESPACE, "--duration=2h").strip()
    ca = base64.b64encode((plane.certs / "ca.crt").read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "envtest", "cluster": {"server": plane.server, "certificate-authority-data": ca}}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "envtest", "user": account}}],
        "current-context": account,
    }
    path = folder / f"{account}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def installed(objects: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    return next(
        o
        for o in objects
        if o["kind"] == kind and o["metadata"]["labels"].get("app.kubernetes.io/component") == component
    )


@pytest.fixture(scope="module")
def chart_objects(kube_binaries: Path, control_plane: ControlPlane, kubectl: Kubectl) -> Iterator[list[dict[str, Any]]]:
    helm = Helm(kube_binaries / "helm", kubeconfig=control_plane.kubeconfig)
    helm.run("install", "sage", str(CHART), "-n", RELEASE_NAMESPACE, "--create-namespace", "--wait=false")
    yield parse_manifests(helm.run("get", "manifest", "sage", "-n", RELEASE_NAMESPACE).stdout)
    helm.run("uninstall", "sage", "-n", RELEASE_NAMESPACE, check=False)
    kubectl.run("delete", "namespace", RELEASE_NAMESPACE, "--wait=false", check=False)


@pytest.fixture(scope="module")
def control_plane_processes(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    chart_objects: list[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[OperatorProcess, GatewayProcess]]:
    folder = tmp_path_factory.mktemp("cluster-e2e")
    operator_deployment = installed(chart_objects, "Deployment", "operator")
    gateway_deployment = installed(chart_objects, "Deployment", "gateway")
    operator_account = operator_deployment["spec"]["template"]["spec"]["serviceAccountName"]
    gateway_account = gateway_deployment["spec"]["template"]["spec"]["serviceAccountName"]
    operator_config = service_account_kubeconfig(kubectl, control_plane, operator_account, folder)
    gateway_config = service_account_kubeconfig(kubectl, control_plane, gateway_account, folder)
    gateway_env = {
        **{
            k: v
            for k, v in container_env(gateway_deployment).items()
            if k not in {"SAGE_GATEWAY_HOST", "SAGE_GATEWAY_PORT"}
        },
        "KUBECONFIG": str(gateway_config),
    }
    operator = OperatorProcess(operator_config, folder / "operator.log", env=container_env(operator_deployment))
    gateway = GatewayProcess(env=gateway_env)
    with operator, gateway:
        yield operator, gateway
        print("--- operator ---\n" + operator.log_tail(80) + "\n--- gateway ---\n" + gateway.log()[-6000:])


@pytest.fixture(scope="module")
def echo_engine(pod_network: PodNetwork) -> Iterator[EngineProcess]:
    """The engine in a stand-in pod: its own network namespace and address."""
    pod = pod_network.add_pod()
    engine = EngineProcess(
        "deterministic", "echo", served_model_name="e2e-echo", host=pod.address, wrapper=pod.exec_prefix
    )
    with engine:
        yield engine


def publish_endpoint(kubectl: Kubectl, namespace: str, engine: EngineProcess) -> None:
    """The EndpointSlice the Service would get once its pod is ready, pointing at the stand-in pod."""
    service = kubectl.json("get", "service", "e2e-echo", "-n", namespace)
    endpoint_slice = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "e2e-echo-loopback",
            "labels": {**service["metadata"]["labels"], "kubernetes.io/service-name": "e2e-echo"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [engine.host], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": engine.port, "protocol": "TCP"}],
    }
    kubectl.apply(yaml.safe_dump(endpoint_slice), namespace)


def test_the_operator_answers_the_charts_liveness_probe(
    control_plane_processes: tuple[OperatorProcess, GatewayProcess], chart_objects: list[dict[str, Any]]
) -> None:
    container = installed(chart_objects, "Deployment", "operator")["spec"]["template"]["spec"]["containers"][0]
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    assert {"name": probe["port"], "containerPort": int(container_env_of(container)["SAGE_OPERATOR_HEALTH_PORT"])} in [
        {"name": port["name"], "containerPort": port["containerPort"]} for port in container["ports"]
    ]
    operator, _ = control_plane_processes
    url = f"http://127.0.0.1:{operator.health_port}{probe['path']}"
    wait_until(lambda: httpx.get(url, timeout=2).status_code == 200, "the operator's liveness endpoint")


def container_env_of(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env") or [] if "value" in item}


def test_a_request_through_the_installed_control_plane(
    control_plane_processes: tuple[OperatorProcess, GatewayProcess],
    echo_engine: EngineProcess,
    kubectl: Kubectl,
    namespace: str,
) -> None:
    _, gateway = control_plane_processes
    kubectl.apply(ENGINE, namespace)
    deployment = wait_until(
        lambda: kubectl.run("get", "deployment", "e2e-echo", "-n", namespace, "-o", "name", check=False).stdout,
        "the operator (as the chart's ServiceAccount) to create the engine Deployment",
    )
    assert deployment.strip() == "deployment.apps/e2e-echo"
    wait_until(lambda: kubectl.json("get", "service", "e2e-echo", "-n", namespace), "the engine Service")
    publish_endpoint(kubectl, namespace, echo_engine)

    client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key="unused", max_retries=0)
    wait_until(lambda: "e2e-echo" in {m.id for m in client.models.list()}, "the gateway to list the engine")
    reply = client.chat.completions.create(model="e2e-echo", messages=[{"role": "user", "content": "hello cluster"}])
    assert "hello cluster" in (reply.choices[0].message.content or "")

    kubectl("delete", "llmengine", "e2e-echo", "-n", namespace, "--wait=false")
    deleted = time.monotonic()

    def gone() -> bool:
        body = {"model": "e2e-echo", "messages": [{"role": "user", "content": "x"}]}
        return httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, timeout=5).status_code == 404

    wait_until(gone, "the gateway to answer 404 for the deleted engine", timeout=30, interval=0.02)
    print(f"deleted engine unroutable after {time.monotonic() - deleted:.3f}s")
