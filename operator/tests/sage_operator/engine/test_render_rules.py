"""Renderer rules the golden files do not spell out: the spec hash, env merging, paths."""

from __future__ import annotations

from typing import Any

from sage_api.engine import LLMEngine
from sage_operator.core.metadata import covers
from sage_operator.engine.render import LORA_SLOTS, adapter_paths, render_engine_deployment, spec_hash, vllm_lora_flags
from sage_operator.finetune.serving import FinetuneAdapters
from sage_operator.settings import OperatorSettings


def engine(**spec: Any) -> LLMEngine:
    return LLMEngine.model_validate(
        {"metadata": {"name": "e", "namespace": "ns", "uid": "u"}, "spec": {"model": "m", **spec}}
    )


def template_hash(rendered: dict[str, Any]) -> str:
    annotations: dict[str, str] = rendered["spec"]["template"]["metadata"]["annotations"]
    return annotations["sage.ai/spec-hash"]


def test_scaling_does_not_change_the_spec_hash_but_args_do() -> None:
    base = engine(replicas=1)
    assert spec_hash(base.spec) == spec_hash(engine(replicas=5, maxReplicas=9).spec)
    assert spec_hash(base.spec) != spec_hash(engine(replicas=1, args=["--x"]).spec)
    settings = OperatorSettings()
    one, five = render_engine_deployment(base, settings), render_engine_deployment(engine(replicas=5), settings)
    assert one["spec"]["template"] == five["spec"]["template"]
    assert five["spec"]["replicas"] == 5
    assert template_hash(one) == spec_hash(base.spec)


def test_user_env_overrides_ours_by_name_without_duplicates() -> None:
    rendered = render_engine_deployment(
        engine(env=[{"name": "SAGE_ENGINE_PORT", "value": "9"}, {"name": "X", "value": "1"}]), OperatorSettings()
    )
    env = rendered["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [
        {"name": "SAGE_ENGINE_PORT", "value": "9"},
        {"name": "SAGE_ENGINE_DRAIN_SECONDS", "value": "120"},
        {"name": "SAGE_ENGINE_ADAPTERS_FILE", "value": "/etc/sage/adapters/adapters.json"},
        {"name": "X", "value": "1"},
    ]


def test_adapter_paths_match_the_mounts() -> None:
    eng = engine(adapters=[{"name": "a", "source": "pvc://claim/dir/a"}, {"name": "b", "source": "hf://org/b"}])
    assert adapter_paths(eng.spec) == {"a": "/adapters/claim/dir/a", "b": "org/b"}
    mounts = render_engine_deployment(eng, OperatorSettings())["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "pvc-0", "mountPath": "/adapters/claim", "readOnly": True} in mounts["volumeMounts"]


def test_images_per_backend() -> None:
    settings = OperatorSettings.model_validate({"engine_images": {"deterministic": "det:1"}, "engine_image": "eng:1"})
    det = render_engine_deployment(engine(backend="deterministic"), settings)
    tr = render_engine_deployment(engine(), settings)
    own = render_engine_deployment(engine(image="mine:2"), settings)
    images = [d["spec"]["template"]["spec"]["containers"][0]["image"] for d in (det, tr, own)]
    assert images == ["det:1", "eng:1", "mine:2"]


def test_covers_tells_when_an_apply_would_change_nothing() -> None:
    desired = {"metadata": {"labels": {"a": "1"}}, "spec": {"ports": [{"port": 1}], "replicas": 2}}
    observed = {
        "metadata": {"labels": {"a": "1", "extra": "x"}, "uid": "u"},
        "spec": {"ports": [{"port": 1, "protocol": "TCP"}], "replicas": 2},
        "status": {},
    }
    assert covers(observed, desired)
    assert not covers(None, desired)
    assert not covers({**observed, "spec": {"ports": [{"port": 1}], "replicas": 3}}, desired)
    assert not covers({**observed, "spec": {"ports": [], "replicas": 2}}, desired)
    assert not covers({**observed, "metadata": {"labels": {}}}, desired)


def vllm_container(eng: LLMEngine, finetuned: FinetuneAdapters | None = None) -> dict[str, Any]:
    container: dict[str, Any] = render_engine_deployment(eng, OperatorSettings(), finetuned)["spec"]["template"][
        "spec"
    ]["containers"][0]
    return container


def flag(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def test_vllm_runs_the_runner_of_the_engine_kind() -> None:
    chat = vllm_container(engine(backend="vllm"))["command"]
    embedding = vllm_container(engine(backend="vllm", engineKind="embedding"))["command"]
    assert (flag(chat, "--runner"), flag(embedding, "--runner")) == ("generate", "pooling")
    assert "--task" not in chat + embedding


def test_vllm_reserves_a_lora_slot_per_adapter_unless_spec_args_set_it() -> None:
    adapters = [{"name": n, "source": f"hf://org/{n}"} for n in "abcdef"]
    assert flag(vllm_container(engine(backend="vllm", adapters=adapters))["command"], "--max-loras") == "6"
    one = vllm_container(engine(backend="vllm", adapters=adapters[:1]))["command"]
    three = vllm_container(engine(backend="vllm", adapters=adapters[:3]))["command"]
    assert "--enable-lora" in one
    # Up to LORA_SLOTS adapters share one command line: adding them by hand rolls no pods.
    assert flag(one, "--max-loras") == flag(three, "--max-loras") == str(LORA_SLOTS)
    assert one == three
    pinned = vllm_container(engine(backend="vllm", adapters=adapters, args=["--max_loras=8"]))["command"]
    assert "--max-loras" not in pinned
    assert pinned[-1] == "--max_loras=8"


def test_vllm_lora_rank_room_follows_the_finetune_ranks() -> None:
    slots = ["--enable-lora", "--max-loras", str(LORA_SLOTS)]
    assert vllm_lora_flags({"a"}, [16]) == slots
    assert vllm_lora_flags({"a"}, [17]) == [*slots, "--max-lora-rank", "32"]
    assert vllm_lora_flags({"a", "b"}, [8, 300]) == [*slots, "--max-lora-rank", "320"]
    assert vllm_lora_flags({"a"}, [1024]) == [*slots, "--max-lora-rank", "512"]  # vLLM's largest
    assert vllm_lora_flags({"a"}, [64], ["--max-lora-rank", "128", "--max-loras", "2"]) == ["--enable-lora"]


def test_vllm_gets_the_runtime_adapter_api_when_a_finetunejob_will_hand_one_over() -> None:
    finetuned = FinetuneAdapters(claims=("out",), incoming=("ft",), ranks=(16,))
    container = vllm_container(engine(backend="vllm"), finetuned)
    assert "--enable-lora" in container["command"]
    assert {"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"} in container["env"]
    plain = vllm_container(engine(backend="vllm"))
    assert "--enable-lora" not in plain["command"]
    assert all(v["name"] != "VLLM_ALLOW_RUNTIME_LORA_UPDATING" for v in plain["env"])


def test_embedding_runtime_reaches_the_engine_command_only_when_set() -> None:
    settings = OperatorSettings()
    onnx = engine(engineKind="embedding", embedding={"runtime": "onnx"})
    command = render_engine_deployment(onnx, settings)["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--embedding-runtime") + 1] == "onnx"
    plain = render_engine_deployment(engine(engineKind="embedding"), settings)
    assert "--embedding-runtime" not in plain["spec"]["template"]["spec"]["containers"][0]["command"]
    assert spec_hash(onnx.spec) != spec_hash(engine(engineKind="embedding").spec)


def test_a_model_cache_keeps_the_engines_own_cache_too() -> None:
    settings = OperatorSettings()
    cache = {"claimName": "models", "subPath": "hub"}
    onnx = engine(engineKind="embedding", embedding={"runtime": "onnx"}, cache=cache)
    container = render_engine_deployment(onnx, settings)["spec"]["template"]["spec"]["containers"][0]
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    assert env["HF_HOME"] == "/cache"
    assert env["SAGE_CACHE_DIR"] == "/cache/sage"  # the ONNX export outlives the pod
    assert {"name": "cache", "mountPath": "/cache", "subPath": "hub"} in container["volumeMounts"]
    without = render_engine_deployment(engine(engineKind="embedding", embedding={"runtime": "onnx"}), settings)
    assert "SAGE_CACHE_DIR" not in str(without["spec"]["template"]["spec"]["containers"][0].get("env"))
    vllm = render_engine_deployment(engine(backend="vllm", cache=cache), settings)
    assert "SAGE_CACHE_DIR" not in str(vllm["spec"]["template"]["spec"]["containers"][0]["env"])
