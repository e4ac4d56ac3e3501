"""The cluster target against a real kube-apiserver (no operator): what it creates is read back
with kubectl, and the status the operator would write is set with a status patch. The API server is
the module's own, since the session's is reconciled by the shared operator once any test starts it."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sage_api.finetune import FinetuneProgress
from sage_api.finetune_request import FinetuneRequest
from sage_api.names import API_VERSION, ENGINE, FINETUNE, LABEL_ENGINE
from sage_cli.cluster_objects import MAX_UPLOADED_DATASET
from sage_cli.cluster_target import ClusterTarget, merge_lines
from sage_cli.requests import engine_manifest
from sage_cli.targets import EngineRow, TargetError
from sage_harness.controlplane import ControlPlane
from sage_harness.kubectl import Kubectl
from sage_harness.net import free_port
from sage_harness.waiting import wait_until
from sage_kube.paths import resource_path
from sage_testing.engine_objects import get, must_get
from sage_testing.plugin import own_control_plane


@pytest.fixture(scope="module")
def quiet_plane(kube_binaries: Path) -> Iterator[tuple[ControlPlane, Kubectl]]:
    """An API server no operator watches (it shadows the session's `control_plane` and `kubectl`)."""
    with own_control_plane(kube_binaries, "cli-target") as made:
        yield made


@pytest.fixture(scope="module")
def control_plane(quiet_plane: tuple[ControlPlane, Kubectl]) -> ControlPlane:
    return quiet_plane[0]


@pytest.fixture(scope="module")
def kubectl(quiet_plane: tuple[ControlPlane, Kubectl]) -> Kubectl:
    return quiet_plane[1]


@pytest.fixture
async def target(control_plane: ControlPlane, namespace: str) -> AsyncIterator[ClusterTarget]:
    async with await ClusterTarget.connect(kubeconfig=str(control_plane.kubeconfig), namespace=namespace) as target:
        yield target


def echo(name: str = "echo", replicas: int = 1) -> dict[str, Any]:
    return engine_manifest(model="deterministic", backend="deterministic", name=name, replicas=replicas)


def finetune(name: str = "tune", **changes: Any) -> FinetuneRequest:
    fields = {"name": name, "base_model": "Qwen/Qwen2.5-0.5B-Instruct", "dataset": "pvc://data/chat.jsonl"}
    return FinetuneRequest(**{"output": "pvc://models/adapters/tune", **fields, **changes})


async def set_status(target: ClusterTarget, kind: str, name: str, status: dict[str, Any]) -> None:
    plural = ENGINE.plural if kind == ENGINE.kind else FINETUNE.plural
    path = resource_path(API_VERSION, plural, target.namespace, name, "status")
    await target.kube.patch(path, {"status": status})


async def test_start_engine_creates_it_in_the_namespace(
    target: ClusterTarget, kubectl: Kubectl, namespace: str, control_plane: ControlPlane
) -> None:
    assert target.description == f"cluster: context envtest, namespace {namespace} ({control_plane.server})"
    said = await target.start_engine(echo(replicas=2))
    assert said == f"created LLMEngine echo in namespace {namespace}"
    spec = must_get(kubectl, namespace, "llmengine", "echo")["spec"]
    assert (spec["model"], spec["backend"], spec["engineKind"], spec["replicas"]) == (
        "deterministic",
        "deterministic",
        "llm",
        2,
    )
    with pytest.raises(TargetError, match=r"already exists .* running"):
        await target.start_engine(echo())


async def test_the_servers_validation_is_quoted_naming_the_field(target: ClusterTarget, kubectl: Kubectl) -> None:
    manifest = echo("bad")
    manifest["spec"]["replicas"] = -1  # past the local validation, as an older CLI might send
    with pytest.raises(TargetError, match=r"refused the LLMEngine bad: .*spec\.replicas") as refused:
        await target.start_engine(manifest)
    assert "\n" not in str(refused.value)
    assert get(kubectl, target.namespace, "llmengine", "bad") is None


async def test_stop_scales_to_zero_and_start_scales_back(target: ClusterTarget, kubectl: Kubectl) -> None:
    await target.start_engine(echo(replicas=3))
    assert await target.stop("echo", delete=False) == "stopped echo (scaled to 0; `--delete` removes it)"
    assert must_get(kubectl, target.namespace, "llmengine", "echo")["spec"]["replicas"] == 0
    assert "already stopped" in await target.stop("echo", delete=False)
    with pytest.raises(TargetError, match="serves deterministic, not other/model"):
        await target.start_engine(engine_manifest(model="other/model", backend="deterministic", name="echo"))
    assert await target.start_engine(echo(replicas=2)) == "started echo again (2 replicas)"
    assert must_get(kubectl, target.namespace, "llmengine", "echo")["spec"]["replicas"] == 2


async def test_an_engine_a_finetune_paused_is_not_started_again(target: ClusterTarget, kubectl: Kubectl) -> None:
    await target.start_engine(echo())
    kubectl("annotate", "llmengine", "echo", "-n", target.namespace, "sage.ai/paused-by=nightly")
    await target.stop("echo", delete=False)
    with pytest.raises(TargetError, match="paused while the fine-tune nightly trains"):
        await target.start_engine(echo())
    assert must_get(kubectl, target.namespace, "llmengine", "echo")["spec"]["replicas"] == 0


async def test_stop_delete_deletes_the_engine_and_a_finetune_is_deleted(
    target: ClusterTarget, kubectl: Kubectl
) -> None:
    await target.start_engine(echo())
    await target.start_finetune(finetune())
    assert await target.stop("echo", delete=True) == "deleted engine echo"
    assert await target.stop("tune", delete=False) == "deleted fine-tune tune"
    wait_until(lambda: get(kubectl, target.namespace, "llmengine", "echo") is None, "the engine gone")
    wait_until(lambda: get(kubectl, target.namespace, "finetunejob", "tune") is None, "the fine-tune gone")


async def test_unknown_names_are_errors_naming_the_namespace(target: ClusterTarget) -> None:
    expected = f"no engine or fine-tune named ghost in namespace {target.namespace}"
    with pytest.raises(TargetError, match=expected):
        await target.stop("ghost", delete=False)
    with pytest.raises(TargetError, match=expected):
        await anext(target.logs("ghost", follow=False))
    with pytest.raises(TargetError, match=f"no fine-tune named ghost in namespace {target.namespace}"):
        await target.finetune_state("ghost")


async def test_rows_show_engines_then_finetunes_with_progress(target: ClusterTarget) -> None:
    await target.start_engine(echo("zeta"))
    await target.start_engine(engine_manifest(model="minilm", kind="embedding", backend="deterministic", name="alpha"))
    await target.start_finetune(finetune("tune"))
    await set_status(target, ENGINE.kind, "zeta", {"phase": "Ready", "readyReplicas": 1, "backend": "deterministic"})
    failing = {"type": "Ready", "status": "False", "reason": "CrashLoop", "message": "the engine exited 1"}
    await set_status(target, ENGINE.kind, "alpha", {"phase": "Failed", "conditions": [failing]})
    progress = {"step": 30, "totalSteps": 120, "loss": 1.25, "percent": 25}
    await set_status(target, FINETUNE.kind, "tune", {"phase": "Running", "progress": progress})
    assert await target.rows() == [
        EngineRow("alpha", "embedding", "minilm", "deterministic", "0/1", "Failed", message="the engine exited 1"),
        EngineRow("zeta", "llm", "deterministic", "deterministic", "1/1", "Ready"),
        EngineRow(
            "tune",
            "finetune",
            "Qwen/Qwen2.5-0.5B-Instruct",
            "-",
            "-",
            "Running",
            progress=FinetuneProgress(step=30, total_steps=120, loss=1.25, percent=25),
        ),
    ]


async def test_finetune_manifest_and_state(target: ClusterTarget, kubectl: Kubectl) -> None:
    said = await target.start_finetune(finetune(max_steps=50, rank=8, alpha=16, serve="chat", format="text"))
    assert said == f"created FinetuneJob tune in namespace {target.namespace}"
    spec = must_get(kubectl, target.namespace, "finetunejob", "tune")["spec"]
    assert spec["dataset"] == {"source": "pvc://data/chat.jsonl", "format": "text"}
    assert spec["output"] == {"claimName": "models", "path": "adapters/tune"}
    assert (spec["lora"]["rank"], spec["lora"]["alpha"], spec["training"]["maxSteps"]) == (8, 16, 50)
    assert spec["serve"] == {"engine": "chat"}
    state = await target.finetune_state("tune")
    assert (state.phase, state.progress, state.result, state.finished) == ("Pending", None, None, False)
    result = {"uri": "pvc://models/adapters/tune"}
    await set_status(target, FINETUNE.kind, "tune", {"phase": "Succeeded", "output": result, "message": "done"})
    state = await target.finetune_state("tune")
    assert (state.phase, state.result, state.message, state.finished) == ("Succeeded", result["uri"], "done", True)
    with pytest.raises(TargetError, match="fine-tune named tune already exists"):
        await target.start_finetune(finetune())


async def test_a_local_dataset_becomes_a_configmap_the_job_owns(
    target: ClusterTarget, kubectl: Kubectl, tmp_path: Path
) -> None:
    dataset = tmp_path / "my chat.jsonl"
    text = "\n".join(json.dumps({"messages": [{"role": "user", "content": f"hi {i}"}]}) for i in range(50)) + "\n"
    dataset.write_text(text)
    said = await target.start_finetune(finetune(dataset=str(dataset)))
    assert said.endswith("(dataset uploaded as ConfigMap tune-dataset)")
    job = must_get(kubectl, target.namespace, "finetunejob", "tune")
    assert job["spec"]["dataset"]["source"] == "configmap://tune-dataset/my-chat.jsonl"
    config_map = must_get(kubectl, target.namespace, "configmap", "tune-dataset")
    assert config_map["data"] == {"my-chat.jsonl": text}
    (owner,) = config_map["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("FinetuneJob", "tune", job["metadata"]["uid"])
    await target.stop("tune", delete=True)  # the garbage collector takes the dataset with the job
    wait_until(lambda: get(kubectl, target.namespace, "configmap", "tune-dataset") is None, "the ConfigMap gone")


async def test_datasets_and_outputs_a_cluster_cannot_take(
    target: ClusterTarget, kubectl: Kubectl, tmp_path: Path
) -> None:
    big = tmp_path / "big.jsonl"
    big.write_text("x" * MAX_UPLOADED_DATASET)
    with pytest.raises(TargetError, match=r"--dataset: big\.jsonl is 900 KiB.*PersistentVolumeClaim"):
        await target.start_finetune(finetune(dataset=str(big)))
    with pytest.raises(TargetError, match=r"--dataset: .*missing\.jsonl is not a file"):
        await target.start_finetune(finetune(dataset=str(tmp_path / "missing.jsonl")))
    with pytest.raises(TargetError, match="--dataset: 'pvc://data' must be pvc://<name>/<path>"):
        await target.start_finetune(finetune(dataset="pvc://data"))
    with pytest.raises(TargetError, match=r"--output: .*PersistentVolumeClaim.*not '/tmp/out'"):
        await target.start_finetune(finetune(output="/tmp/out"))
    assert kubectl.json("get", "finetunejobs", "-n", target.namespace)["items"] == []
    assert get(kubectl, target.namespace, "configmap", "tune-dataset") is None


async def test_logs_without_pods_say_the_phase(target: ClusterTarget) -> None:
    await target.start_engine(echo())
    await set_status(target, ENGINE.kind, "echo", {"phase": "Deploying"})
    with pytest.raises(TargetError, match=r"no pods for echo yet \(phase Deploying\)"):
        await anext(target.logs("echo", follow=True))


async def test_logs_of_pods_that_cannot_give_one(target: ClusterTarget, kubectl: Kubectl) -> None:
    """No kubelet here: one pod is unscheduled (the server answers with nothing), the other is on a
    node that does not exist (the server answers with an error Status, read from the stream)."""
    await target.start_engine(echo())
    for pod, node in (("echo-a", None), ("echo-b", "ghost")):
        spec: dict[str, Any] = {"containers": [{"name": "engine", "image": "sage/engine:test"}]}
        if node:
            spec["nodeName"] = node
        manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "labels": {LABEL_ENGINE: "echo"}}}
        kubectl.apply(yaml.safe_dump(manifest | {"spec": spec}), target.namespace)
    lines = [line async for line in target.logs("echo", follow=True)]
    assert lines == [
        "echo-a | (no log yet: pod echo-a is Pending, not scheduled to a node)",
        'echo-b | (no log from echo-b: pods "ghost" not found)',
    ]


async def _lines(*lines: str, error: Exception | None = None) -> AsyncGenerator[str, None]:
    for line in lines:
        yield line
    if error:
        raise error


async def test_merged_lines_are_prefixed_only_when_several_pods_speak() -> None:
    assert [line async for line in merge_lines({"only": _lines("a", "b")})] == ["a", "b"]
    merged = [line async for line in merge_lines({"p-0": _lines("a", "b"), "p-1": _lines("c")})]
    assert sorted(merged) == ["p-0 | a", "p-0 | b", "p-1 | c"]
    assert merged.index("p-0 | a") < merged.index("p-0 | b")  # each pod's lines in order


async def test_a_failing_source_raises_after_its_lines_and_closing_stops_the_others() -> None:
    got: list[str] = []

    async def read_into(lines: AsyncIterator[str]) -> None:
        async for line in lines:
            got.append(line)

    with pytest.raises(RuntimeError, match="cut"):
        await read_into(merge_lines({"p": _lines("a", error=RuntimeError("cut"))}))
    assert got == ["a"]
    closed: list[str] = []

    async def endless() -> AsyncGenerator[str, None]:
        try:
            while True:
                yield "tick"
        finally:
            closed.append("endless")

    merged = merge_lines({"p-0": endless(), "p-1": _lines("x")})
    assert (await anext(merged)).endswith(("| tick", "| x"))
    await merged.aclose()
    assert closed == ["endless"]


async def test_unknown_context_unreachable_server_and_missing_kubeconfig(
    control_plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = str(control_plane.kubeconfig)
    with pytest.raises(TargetError, match="has no context 'kind-elsewhere'"):
        await ClusterTarget.connect(context="kind-elsewhere", kubeconfig=kubeconfig)
    document = yaml.safe_load(control_plane.kubeconfig.read_text())
    server = f"https://127.0.0.1:{free_port()}"
    document["clusters"][0]["cluster"]["server"] = server
    (tmp_path / "down").write_text(yaml.safe_dump(document))
    with pytest.raises(TargetError, match=f"cannot reach the API server of context envtest at {server}"):
        await ClusterTarget.connect(kubeconfig=str(tmp_path / "down"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nowhere"))
    with pytest.raises(TargetError, match=re.escape(f"no kubeconfig found (tried $KUBECONFIG={tmp_path}/nowhere)")):
        await ClusterTarget.connect()
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(TargetError, match=re.escape(f"tried {tmp_path}/.kube/config")):
        await ClusterTarget.connect()
    monkeypatch.setenv("KUBECONFIG", kubeconfig)  # $KUBECONFIG and the context's namespace
    async with await ClusterTarget.connect() as target:
        assert target.description == f"cluster: context envtest, namespace default ({control_plane.server})"
