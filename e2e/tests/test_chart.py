"""The Helm chart, rendered by the real `helm` binary: lint, every option, least-privilege RBAC,
security contexts, and agreement with the ports module. No API server needed."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sage_api.ports import PORTS
from sage_harness.helm import ALL_OPTIONS, CHART, Helm, Manifest, env_of, find, one

SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"


@pytest.fixture(scope="module")
def helm(kube_binaries: Path) -> Helm:
    return Helm(kube_binaries / "helm")


def kinds(objects: list[Manifest]) -> list[str]:
    return sorted(obj["kind"] for obj in objects)


# --- lint and schema ---------------------------------------------------------------------------


@pytest.mark.parametrize("values", [[], ["-f", str(ALL_OPTIONS)]], ids=["defaults", "all-options"])
def test_helm_lint_is_clean(helm: Helm, values: list[str]) -> None:
    result = helm.run("lint", "--strict", str(CHART), *values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


BAD_VALUES = {
    "unknown key": (["--set", "gateway.replica=3"], "replica"),
    "more operator standbys than useful": (["--set", "operator.replicas=4"], "/operator/replicas"),
    "unknown backend image": (["--set", "operator.engineImages.perBackend.tgi=x"], "perBackend"),
    "root pods": (["--set", "podSecurityContext.runAsNonRoot=false"], "/podSecurityContext/runAsNonRoot"),
    "port out of range": (["--set", "gateway.port=70000"], "/gateway/port"),
    "no resource requests": (["--set", "gateway.resources.requests=null"], "/gateway/resources"),
    "bad namespace name": (["--set", "watchNamespaces={Not_A_Namespace}"], "/watchNamespaces/0"),
    "unknown auth mode": (["--set", "gateway.auth.mode=basic"], "/gateway/auth/mode"),
    "not a Redis URL": (["--set", "gateway.redis.url=redis-host:6379"], "/gateway/redis/url"),
}


@pytest.mark.parametrize(("args", "field"), list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_schema_refuses_bad_values_naming_the_field(helm: Helm, args: list[str], field: str) -> None:
    result = helm.run("template", "sage", str(CHART), *args, check=False)
    assert result.returncode != 0, "the chart rendered invalid values"
    assert field in result.stderr, result.stderr


def _value_lines() -> list[str]:
    return (CHART / "values.yaml").read_text().splitlines()


def test_every_value_is_commented() -> None:
    """A key needs a comment right above it, unless a commented ancestor describes its block."""
    undocumented: list[str] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented) of the open ancestors
    previous = ""
    for line in _value_lines():
        match = re.match(r"^(\s*)([A-Za-z0-9_.-]+):", line)
        if match:
            indent, key = len(match.group(1)), match.group(2)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            documented = previous.strip().startswith("#") or any(doc for _, _, doc in stack)
            has_children = line.rstrip().endswith(":")
            if not documented and not has_children:
                undocumented.append(".".join([k for _, k, _ in stack] + [key]))
            stack.append((indent, key, previous.strip().startswith("#")))
        if line.strip():
            previous = line
    assert undocumented == []


def test_defaults_agree_with_the_ports_module() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["gateway"]["port"] == PORTS.GATEWAY


def test_schema_describes_every_default_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def missing(value: Any, node: dict[str, Any], path: str) -> Iterator[str]:
        if not isinstance(value, dict) or node.get("additionalProperties") is not False:
            return  # free-form blocks (security contexts, affinity) are Kubernetes' own types
        for key, sub in value.items():
            if key not in node["properties"]:
                yield f"{path}.{key}"
            else:
                yield from missing(sub, node["properties"][key], f"{path}.{key}")

    assert list(missing(values, schema, "")) == []


# --- rendering with each option ----------------------------------------------------------------


def test_defaults_render_operator_and_gateway_cluster_wide(helm: Helm) -> None:
    objects = helm.template()
    assert kinds(objects) == sorted(
        ["ServiceAccount"] * 2
        + ["ClusterRole"] * 2
        + ["ClusterRoleBinding"] * 2
        + ["Role", "RoleBinding"]  # the operator's leader-election Lease in the release namespace
        + ["Deployment"] * 2
        + ["Service"] * 2  # the gateway's, and a headless one naming its pods (the autoscaler reads them)
        + ["Secret"]  # the operator's admin key
        + ["NetworkPolicy"] * 2  # the gateway's and the operator's own pods
        + ["PodDisruptionBudget"]  # the gateway's
        + ["Pod"]  # the `helm test` hook
    )
    gateway = one(objects, "Deployment", "sage-gateway")
    assert env_of(gateway)["SAGE_GATEWAY_DISCOVERY"] == "kubernetes"
    assert env_of(gateway)["SAGE_GATEWAY_PORT"] == str(PORTS.GATEWAY)
    service = one(objects, "Service", "sage-gateway")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pod_labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert env_of(one(objects, "Deployment", "sage-operator"))["SAGE_OPERATOR_NAMESPACES"] == ""


def test_every_object_carries_the_standard_labels(helm: Helm) -> None:
    for obj in helm.template("-f", str(ALL_OPTIONS), "--api-versions", SERVICE_MONITOR_API):
        labels = obj["metadata"]["labels"]
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by"):
            assert labels.get(key), f"{obj['kind']}/{obj['metadata']['name']} lacks {key}"
        assert labels["app.kubernetes.io/instance"] == "sage"
        assert labels["team"] == "ml-platform"  # commonLabels


def test_each_component_can_be_turned_off(helm: Helm) -> None:
    no_gateway = helm.template("--set", "gateway.enabled=false")
    assert all("gateway" not in o["metadata"]["name"] for o in no_gateway)
    no_operator = helm.template("--set", "operator.enabled=false")
    assert all("operator" not in o["metadata"]["name"] for o in no_operator)
    assert find(helm.template("--set", "rbac.create=false"), "ClusterRole") == []


def test_ingress_routes_each_host_to_the_gateway_service(helm: Helm) -> None:
    objects = helm.template(
        "--set", "gateway.ingress.enabled=true", "--set", "gateway.ingress.className=nginx",
        "--set", "gateway.ingress.hosts={a.example.com,b.example.com}",
    )  # fmt: skip
    ingress = one(objects, "Ingress", "sage-gateway")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == ["a.example.com", "b.example.com"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "sage-gateway", "port": {"name": "http"}}
    assert [path["path"] for path in ingress["spec"]["rules"][0]["http"]["paths"]] == ["/v1"]  # not /metrics
    any_host = one(helm.template("--set", "gateway.ingress.enabled=true"), "Ingress", "sage-gateway")
    assert "host" not in any_host["spec"]["rules"][0]


def test_service_monitor_only_where_the_api_is_served(helm: Helm) -> None:
    assert find(helm.template("--set", "serviceMonitor.enabled=true"), "ServiceMonitor") == []
    objects = helm.template("--set", "serviceMonitor.enabled=true", "--api-versions", SERVICE_MONITOR_API)
    monitor = one(objects, "ServiceMonitor", "sage-gateway")
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    service_labels = one(objects, "Service", "sage-gateway")["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    assert find(helm.template("--api-versions", SERVICE_MONITOR_API), "ServiceMonitor") == []


def test_watched_namespaces_reach_both_components(helm: Helm) -> None:
    objects = helm.template("--set", "watchNamespaces={ml,research}")
    assert env_of(one(objects, "Deployment", "sage-operator"))["SAGE_OPERATOR_NAMESPACES"] == "ml,research"
    assert env_of(one(objects, "Deployment", "sage-gateway"))["SAGE_GATEWAY_NAMESPACES"] == "ml,research"


def test_a_stopping_gateway_pod_gets_its_prestop_and_drain(helm: Helm) -> None:
    """Endpoints drop the pod during the preStop sleep; SIGTERM then starts the gateway's drain,
    and the grace period covers both (past it, the kubelet would kill streams mid-sentence)."""
    pod = one(helm.template(), "Deployment", "sage-gateway")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert env_of({"spec": {"template": {"spec": pod}}})["SAGE_GATEWAY_DRAIN_SECONDS"] == "120"
    assert pod["terminationGracePeriodSeconds"] == 5 + 120 + 10
    short = one(
        helm.template("--set", "gateway.drainSeconds=30,gateway.preStopSeconds=0"), "Deployment", "sage-gateway"
    )
    assert "lifecycle" not in short["spec"]["template"]["spec"]["containers"][0]
    assert short["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 40


def test_engine_images_are_passed_to_the_operator_only_when_set(helm: Helm) -> None:
    default_env = env_of(one(helm.template(), "Deployment", "sage-operator"))
    assert "SAGE_OPERATOR_VLLM_IMAGE" not in default_env
    env = env_of(one(helm.template("-f", str(ALL_OPTIONS)), "Deployment", "sage-operator"))
    assert env["SAGE_OPERATOR_ENGINE_IMAGE"] == "sage/engine:0.1.0"
    assert env["SAGE_OPERATOR_VLLM_IMAGE"] == "vllm/vllm-openai:v0.11.0"
    assert env["SAGE_OPERATOR_FINETUNE_IMAGE"] == "sage/finetune:0.1.0"
    assert json.loads(env["SAGE_OPERATOR_ENGINE_IMAGES"]) == {"sentence-transformers": "sage/engine-st:0.1.0"}
    assert (env["SAGE_OPERATOR_DEFAULT_CPU"], env["SAGE_OPERATOR_DEFAULT_MEMORY"]) == ("2", "4Gi")
    assert env["SAGE_OPERATOR_WORKERS"] == "4"


def test_images_default_to_the_app_version(helm: Helm) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    for deployment in find(helm.template(), "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"].endswith(f":{app_version}")
    gateway = one(helm.template("--set", "gateway.image.tag=dev"), "Deployment", "sage-gateway")
    assert gateway["spec"]["template"]["spec"]["containers"][0]["image"] == "sage/gateway:dev"


# --- security ----------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [[], ["-f", str(ALL_OPTIONS)]], ids=["defaults", "all-options"])
def test_pods_run_non_root_with_requests(helm: Helm, values: list[str]) -> None:
    objects = helm.template(*values)
    pods = [d["spec"]["template"]["spec"] for d in find(objects, "Deployment")] + [
        p["spec"] for p in find(objects, "Pod")
    ]
    assert len(pods) == 3
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])


@pytest.mark.parametrize(
    ("args", "workers"),
    [
        ([], "1"),  # no CPU limit and a 100m request
        (["--set", "gateway.resources.limits.cpu=2500m"], "2"),
        (["--set", "gateway.resources.limits.cpu=4"], "4"),
        (["--set", "gateway.resources.requests.cpu=3"], "3"),  # no limit: the request
        (["--set", "gateway.resources.limits.cpu=4", "--set", "gateway.workers=2"], "2"),
    ],
)
def test_gateway_workers_follow_the_cpu_limit(helm: Helm, args: list[str], workers: str) -> None:
    gateway = one(helm.template(*args), "Deployment", "sage-gateway")
    assert env_of(gateway)["SAGE_GATEWAY_WORKERS"] == workers


def test_gateway_has_a_readiness_probe_on_readyz(helm: Helm) -> None:
    (container,) = one(helm.template(), "Deployment", "sage-gateway")["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": PORTS.GATEWAY, "protocol": "TCP"}]


@pytest.mark.parametrize("values", [[], ["-f", str(ALL_OPTIONS)]], ids=["defaults", "all-options"])
def test_gateway_reads_every_variable_the_chart_sets(
    helm: Helm, values: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rendered environment, loaded by the gateway's own settings class as the pod would."""
    from sage_gateway.settings import GatewaySettings  # noqa: PLC0415 - keeps collection free of the gateway

    env = env_of(one(helm.template(*values, "--set", "watchNamespaces={ml,research}"), "Deployment", "sage-gateway"))
    fields = {f"SAGE_GATEWAY_{name.upper()}" for name in GatewaySettings.model_fields}
    assert set(env) - fields == set(), "the chart sets variables the gateway ignores"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = GatewaySettings()
    assert settings.discovery == "kubernetes"
    assert settings.port == PORTS.GATEWAY
    assert settings.namespaces == ["ml", "research"]
    assert settings.expose_replica is False  # pod addresses stay inside the cluster


def test_operator_reads_every_variable_the_chart_sets(helm: Helm, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rendered environment, loaded by the operator's own settings class as the pod would."""
    from sage_operator.settings import OperatorSettings  # noqa: PLC0415 - keeps collection free of the operator

    objects = helm.template("-f", str(ALL_OPTIONS), "--set", "watchNamespaces={ml,research}")
    env = env_of(one(objects, "Deployment", "sage-operator"))
    fields = {f"SAGE_OPERATOR_{name.upper()}" for name in OperatorSettings.model_fields}
    assert set(env) - fields == set(), "the chart sets variables the operator ignores"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = OperatorSettings()
    assert settings.namespaces == ["ml", "research"]
    assert settings.engine_image == "sage/engine:0.1.0"
    assert settings.vllm_image == "vllm/vllm-openai:v0.11.0"
    assert settings.finetune_image == "sage/finetune:0.1.0"
    assert settings.engine_images == {"sentence-transformers": "sage/engine-st:0.1.0"}
    assert (settings.default_cpu, settings.default_memory, settings.workers) == ("2", "4Gi", 4)


def test_the_kind_suite_sets_only_values_the_chart_has(helm: Helm) -> None:
    """`make e2e-kind` runs only where Docker exists; its `helm install` flags are checked here."""
    script = (CHART.parents[1] / "e2e" / "kind" / "run.sh").read_text()
    flags = re.findall(r"--set\s+(\S+)", script)
    assert flags, "the kind suite no longer passes --set flags: update this test"
    # As bash would pass them: $tag expanded, quotes removed.
    args = [arg for flag in flags for arg in ("--set", shlex.split(flag.replace("$tag", "e2e"))[0])]
    objects = helm.template(*args)
    images = {c["image"] for d in find(objects, "Deployment") for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {"sage-operator:e2e", "sage-gateway:e2e"}
    assert env_of(one(objects, "Deployment", "sage-operator"))["SAGE_OPERATOR_ENGINE_IMAGE"] == "sage-engine:e2e"


def test_disruption_budget_keeps_gateway_pods(helm: Helm) -> None:
    """On by default with maxUnavailable (one replica never blocks a drain); minAvailable wins when set."""
    default = one(helm.template(), "PodDisruptionBudget", "sage-gateway")
    assert default["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in default["spec"]
    objects = helm.template("-f", str(ALL_OPTIONS))
    budget = one(objects, "PodDisruptionBudget", "sage-gateway")
    assert budget["spec"]["minAvailable"] == 2
    assert "maxUnavailable" not in budget["spec"]
    pod_labels = one(objects, "Deployment", "sage-gateway")["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    off = helm.template("--set", "gateway.podDisruptionBudget.enabled=false")
    assert find(off, "PodDisruptionBudget") == []


def test_gateway_replicas_prefer_different_nodes(helm: Helm) -> None:
    objects = helm.template()
    pod = one(objects, "Deployment", "sage-gateway")["spec"]["template"]
    (term,) = pod["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    mine: dict[str, Any] = {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}
    }
    custom = helm.template("--set-json", f"gateway.affinity={json.dumps(mine)}")
    assert one(custom, "Deployment", "sage-gateway")["spec"]["template"]["spec"]["affinity"] == mine


def test_the_operator_reads_every_gateway_pods_load_through_a_headless_service(helm: Helm) -> None:
    objects = helm.template("--set", "gateway.port=9090")
    pods = one(objects, "Service", "sage-gateway-pods")
    assert pods["spec"]["clusterIP"] == "None"
    gateway = one(objects, "Deployment", "sage-gateway")["spec"]["template"]["metadata"]["labels"]
    assert pods["spec"]["selector"].items() <= gateway.items()
    env = env_of(one(objects, "Deployment", "sage-operator"))
    assert env["SAGE_OPERATOR_GATEWAY_URLS"] == "dns+http://sage-gateway-pods.sage-system.svc:9090"
    assert (env["SAGE_OPERATOR_AUTOSCALE_SECONDS"], env["SAGE_OPERATOR_AUTOSCALE_WINDOW_SECONDS"]) == ("15", "60")
    off = env_of(one(helm.template("--set", "operator.autoscaling.enabled=false"), "Deployment", "sage-operator"))
    assert "SAGE_OPERATOR_GATEWAY_URLS" not in off
