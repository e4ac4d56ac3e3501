"""Which fine-tuned adapters an engine serves, and the claims its pods mount for them (pure)."""

from __future__ import annotations

from typing import Any

from sage_api.engine import LLMEngine, LLMEngineSpec
from sage_operator.engine.render import adapter_paths, render_engine_deployment
from sage_operator.finetune.serving import finetune_adapters
from sage_operator.settings import OperatorSettings


def ftj(name: str, claim: str, *, phase: str | None = None, serve: str | None = None) -> dict[str, Any]:
    job: dict[str, Any] = {"metadata": {"name": name}, "spec": {"output": {"claimName": claim}}}
    if serve:
        job["spec"]["serve"] = {"engine": serve}
    if phase:
        job["status"] = {"phase": phase, "output": {"uri": f"pvc://{claim}/finetune/{name}"}}
    return job


def spec(*adapters: dict[str, str]) -> LLMEngineSpec:
    return LLMEngineSpec.model_validate({"model": "m", "adapters": list(adapters) or None})


def test_succeeded_jobs_are_served_from_their_output() -> None:
    result = finetune_adapters(
        "qwen", spec({"name": "bot", "finetuneJob": "ft"}), [ftj("ft", "out", phase="Succeeded")]
    )
    assert result.sources == {"bot": "pvc://out/finetune/ft"}
    assert result.claims == ("out",)
    assert result.waiting == {}
    assert adapter_paths(spec(), result.sources) == {"bot": "/adapters/out/finetune/ft"}


def test_unfinished_or_missing_jobs_wait_with_a_reason() -> None:
    adapters = spec({"name": "a", "finetuneJob": "running"}, {"name": "b", "finetuneJob": "nope"})
    result = finetune_adapters("qwen", adapters, [ftj("running", "out", phase="Running")])
    assert result.sources == {}
    assert result.waiting == {"a": "FinetuneJob running is Running", "b": "FinetuneJob nope does not exist"}


def test_claims_of_jobs_that_will_serve_the_engine_are_mounted_from_the_start() -> None:
    jobs = [ftj("ft", "out", serve="qwen"), ftj("other", "elsewhere", serve="another-engine")]
    result = finetune_adapters("qwen", spec(), jobs)
    assert result.claims == ("out",)
    engine = LLMEngine.model_validate(
        {"metadata": {"name": "qwen", "namespace": "ml", "uid": "u"}, "spec": {"model": "m"}}
    )
    deployment = render_engine_deployment(engine, OperatorSettings(), result)
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert [v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v] == ["out"]
    before = render_engine_deployment(engine, OperatorSettings(), result)["spec"]["template"]
    engine.spec.adapters = spec({"name": "ft", "finetuneJob": "ft"}).adapters
    after = render_engine_deployment(engine, OperatorSettings(), result)["spec"]["template"]
    assert before == after, "adding the handed-over adapter must not change the pod template"


def test_vllm_has_room_for_handed_over_adapters_and_their_ranks_before_the_hand_off() -> None:
    wide = ftj("wide", "out", serve="qwen")
    wide["spec"] |= {"lora": {"rank": 64}}
    jobs = [wide, ftj("narrow", "out", serve="qwen"), ftj("full", "other", serve="qwen")]
    jobs[2]["spec"]["method"] = "full"
    engine = LLMEngine.model_validate(
        {
            "metadata": {"name": "qwen", "namespace": "ml", "uid": "u"},
            "spec": {"model": "m", "backend": "vllm", "adapters": [{"name": "static", "source": "hf://org/a"}]},
        }
    )
    before = finetune_adapters("qwen", engine.spec, jobs)
    assert (before.incoming, before.ranks) == (("full", "narrow", "wide"), (16, 64))
    template = render_engine_deployment(engine, OperatorSettings(), before)["spec"]["template"]
    command = template["spec"]["containers"][0]["command"]
    assert command[command.index("--max-loras") + 1] == "4"
    assert command[command.index("--max-lora-rank") + 1] == "64"
    handed_over = spec({"name": "wide", "finetuneJob": "wide"}, {"name": "narrow", "finetuneJob": "narrow"})
    engine.spec.adapters = [*(engine.spec.adapters or []), *(handed_over.adapters or [])]
    jobs[0]["status"] = {"phase": "Succeeded", "output": {"uri": "pvc://out/finetune/wide"}}
    after = finetune_adapters("qwen", engine.spec, jobs)
    assert render_engine_deployment(engine, OperatorSettings(), after)["spec"]["template"] == template
