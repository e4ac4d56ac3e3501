"""The chart's RBAC is enough, not just small: the real operator and gateway run as processes with
the tokens of the chart's ServiceAccounts and the environment of the chart's Deployments, against
the real API server, and do their work without a single Forbidden.

Pods never run here (no kubelet), so the operator and the gateway run on loopback, as
`ServiceAccount` identities exactly as their pods would be."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sage_harness.controlplane import ControlPlane
from sage_harness.helm import CHART, Helm
from sage_harness.kubectl import Kubectl
from sage_harness.net import free_port
from sage_harness.operator_process import OperatorProcess
from sage_harness.repo import source_pythonpath
from sage_harness.waiting import wait_until

_counter = itertools.count(1)
ENGINE = """
apiVersion: sage.ai/v1alpha1
kind: LLMEngine
metadata: {name: echo}
spec: {model: deterministic, backend: deterministic, engineKind: llm, replicas: 1}
"""
# httpx logs "403 Forbidden", the API server's message says "forbidden", kopf warns "Not enough permissions".
FINETUNE = """
apiVersion: sage.ai/v1alpha1
kind: FinetuneJob
metadata: {name: ft}
spec:
  baseModel: tiny-lm
  dataset: {source: "pvc://data/train.jsonl", format: chat}
  output: {claimName: adapters}
"""
FORBIDDEN_MARKS = ("Forbidden", "forbidden", "Not enough permissions")


def chart_env(objects: list[dict[str, Any]], deployment: str) -> dict[str, str]:
    """The literal environment variables of a rendered Deployment's container."""
    (found,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == deployment]
    (container,) = found["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def service_account_kubeconfig(
    kubectl: Kubectl, control_plane: ControlPlane, namespace: str, account: str, path: Path
) -> Path:
    """A kubeconfig holding a token of `namespace/account`, as a pod's projected token would."""
    token = kubectl("create", "token", account, "-n", namespace, "--duration=1h").strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "envtest",
                "cluster": {
                    "server": control_plane.server,
                    "certificate-authority": str(control_plane.certs / "ca.crt"),
                },
            }
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "envtest", "user": account, "namespace": namespace}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def gateway_process(kubeconfig: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """`python -m sage_gateway` on a free loopback port; yields its base URL."""
    port = free_port()
    environment = {
        **os.environ,
        **env,
        "KUBECONFIG": str(kubeconfig),
        "PYTHONPATH": source_pythonpath(),
        "SAGE_GATEWAY_HOST": "127.0.0.1",
        "SAGE_GATEWAY_PORT": str(port),
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "sage_gateway"],
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def run_helm_test_script(objects: list[dict[str, Any]], gateway: str) -> None:
    """The `helm test` pod's script, run against the gateway process instead of its Service."""
    (pod,) = [o for o in objects if o["kind"] == "Pod"]
    (container,) = pod["spec"]["containers"]
    program, flag, script = container["command"]
    assert (program, flag) == ("python", "-c")
    service_port = yaml.safe_load((CHART / "values.yaml").read_text())["gateway"]["service"]["port"]
    service_url = f"http://sage-gateway:{service_port}"
    assert service_url in script
    result = subprocess.run(
        [sys.executable, "-c", script.replace(service_url, gateway)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/readyz 200" in result.stdout


def create_key(kubectl: Kubectl, namespace: str) -> str:
    """An APIKey for every model, made the way NOTES tell users: `sage key create | kubectl apply`."""
    made = subprocess.run(
        [sys.executable, "-m", "sage_cli", "key", "create", "rbac-live"],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": source_pythonpath()},
    )  # fmt: skip
    kubectl.apply(made.stdout, namespace)
    (key,) = [line.split()[-1] for line in made.stderr.splitlines() if line.strip().startswith("sk-sage-")]
    return key


# Not the RBAC's doing: the API server refuses new objects (Events) in a namespace being deleted,
# such as another test's, which this cluster-wide operator sees too.
TERMINATING = "because it is being terminated"


def no_forbidden(log: Path) -> list[str]:
    lines = log.read_text(errors="replace").splitlines()
    return [line for line in lines if any(m in line for m in FORBIDDEN_MARKS) and TERMINATING not in line]


@pytest.fixture
def installed(
    helm_live: Helm, kubectl: Kubectl, request: pytest.FixtureRequest
) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    """(release namespace, engine namespace, rendered objects) of a fresh install."""
    number = next(_counter)
    release_ns, engine_ns = f"sage-live-{number}", f"engines-live-{number}"
    kubectl("create", "namespace", engine_ns)
    values: list[str] = request.param
    values = [v.replace("ENGINE_NS", engine_ns) for v in values]
    helm_live.install("sage", release_ns, "--wait=false", *values)
    rendered = helm_live.manifest("sage", release_ns) + helm_live.hooks("sage", release_ns)
    yield release_ns, engine_ns, rendered
    helm_live.run("uninstall", "sage", "--namespace", release_ns, check=False)
    for namespace in (release_ns, engine_ns):
        kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def helm_live(kube_binaries: Path, control_plane: ControlPlane) -> Helm:
    return Helm(kube_binaries / "helm", kubeconfig=control_plane.kubeconfig)


INSTALLS = {
    "cluster-wide-with-ingress": ["--set", "gateway.ingress.enabled=true"],  # API keys required
    "cluster-rbac-one-namespace": ["--set", "watchNamespaces={ENGINE_NS}"],
    "namespaced": ["--set", "rbac.namespaced=true", "--set", "watchNamespaces={ENGINE_NS}"],
}


SLEEPY = """
apiVersion: sage.ai/v1alpha1
kind: LLMEngine
metadata: {name: sleepy}
spec: {model: deterministic, backend: deterministic, replicas: 0, minReplicas: 0, maxReplicas: 1}
"""


@pytest.mark.parametrize("installed", list(INSTALLS.values()), ids=list(INSTALLS), indirect=True)
def test_operator_and_gateway_work_with_exactly_the_chart_rbac(
    installed: tuple[str, str, list[dict[str, Any]]],
    kubectl: Kubectl,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    release_ns, engine_ns, objects = installed
    operator_config = service_account_kubeconfig(
        kubectl, control_plane, release_ns, "sage-operator", tmp_path / "operator.kubeconfig"
    )
    gateway_config = service_account_kubeconfig(
        kubectl, control_plane, release_ns, "sage-gateway", tmp_path / "gateway.kubeconfig"
    )
    operator_log, gateway_log = tmp_path / "operator.log", tmp_path / "gateway.log"

    with (
        OperatorProcess(operator_config, operator_log, env=chart_env(objects, "sage-operator")) as operator,
        gateway_process(gateway_config, chart_env(objects, "sage-gateway"), gateway_log) as gateway,
    ):
        kubectl.apply(ENGINE, engine_ns)

        def reconciled() -> bool:
            status = kubectl.json("get", "llmengine", "echo", "-n", engine_ns).get("status") or {}
            deployments = kubectl.json("get", "deployments", "-n", engine_ns, "-l", "sage.ai/engine=echo")["items"]
            services = kubectl.json("get", "services", "-n", engine_ns, "-l", "sage.ai/engine=echo")["items"]
            return bool(status.get("phase")) and len(deployments) == 1 and len(services) == 1

        wait_until(reconciled, f"the operator to render echo and write its status\n{operator.log_tail()}", 90)
        # Scaling goes through the operator's patch of the Deployment.
        kubectl("scale", "llmengine/echo", "-n", engine_ns, "--replicas=2")
        wait_until(
            lambda: kubectl.json("get", "deployment", "echo", "-n", engine_ns)["spec"]["replicas"] == 2,
            "the Deployment to follow the scale",
            60,
        )

        def gateway_ready() -> bool:
            return httpx.get(f"{gateway}/readyz", timeout=2).status_code == 200

        wait_until(gateway_ready, f"the gateway's discovery to sync\n{gateway_log.read_text(errors='replace')}", 60)
        headers = {}
        if chart_env(objects, "sage-gateway")["SAGE_GATEWAY_AUTH"] == "api-keys":
            headers = {"authorization": f"Bearer {create_key(kubectl, release_ns)}"}
            assert httpx.get(f"{gateway}/v1/models", timeout=5).status_code == 401
            wait_until(lambda: httpx.get(f"{gateway}/v1/models", headers=headers).status_code == 200, "the key")
            gateway_account = f"system:serviceaccount:{release_ns}:sage-gateway"
            for namespace in (release_ns, engine_ns):
                can = kubectl.run(
                    "auth", "can-i", "get", "secrets", "-n", namespace, "--as", gateway_account, check=False
                )
                assert can.stdout.strip() == "no", f"the gateway may read Secrets in {namespace}"
        models = httpx.get(f"{gateway}/v1/models", headers=headers, timeout=5)
        assert models.status_code == 200, models.text
        run_helm_test_script(objects, gateway)
        # Scale from zero: the gateway's one write, through llmengines/scale with its own account.
        kubectl.apply(SLEEPY, engine_ns)
        wait_until(lambda: "sleepy" in gateway_log.read_text(errors="replace"), "the gateway to see sleepy")
        body = {"model": "sleepy", "messages": [{"role": "user", "content": "wake up"}]}
        with contextlib.suppress(httpx.TimeoutException):  # held until a replica is ready: none will be
            httpx.post(f"{gateway}/v1/chat/completions", json=body, headers=headers, timeout=3)
        wait_until(
            lambda: kubectl.json("get", "llmengine", "sleepy", "-n", engine_ns)["spec"]["replicas"] == 1,
            f"the gateway to scale sleepy to one replica\n{gateway_log.read_text(errors='replace')[-2000:]}",
        )
        # A FinetuneJob: its Job, and the runner's ServiceAccount + Role + RoleBinding, which the
        # operator may create only because it holds every permission that Role grants.
        kubectl.apply(FINETUNE, engine_ns)

        def trained() -> bool:
            status = kubectl.json("get", "finetunejob", "ft", "-n", engine_ns).get("status") or {}
            jobs = kubectl.json("get", "jobs", "-n", engine_ns, "-l", "sage.ai/finetunejob=ft")["items"]
            roles = kubectl.json("get", "roles,rolebindings", "-n", engine_ns, "-l", "sage.ai/finetunejob=ft")
            return bool(status.get("phase")) and len(jobs) == 1 and len(roles["items"]) == 2

        wait_until(trained, f"the operator to start the fine-tune\n{operator.log_tail()}", 90)
        events = kubectl.json("get", "events", "-n", engine_ns, "--field-selector", "involvedObject.name=echo")
        assert events["items"], "the operator posted no Event"
        assert operator.running(), operator.log_tail()

    assert no_forbidden(operator_log) == [], operator_log.read_text(errors="replace")[-4000:]
    assert no_forbidden(gateway_log) == [], gateway_log.read_text(errors="replace")[-4000:]
    print(json.dumps({"release": release_ns, "engines": engine_ns}))
