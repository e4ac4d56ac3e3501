"""FinetuneJob -> Job and progress RBAC (pure), compared with golden files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from sage_api.finetune import FinetuneJob
from sage_harness.repo import REPO_ROOT
from sage_operator.finetune.render import render_finetune_job, render_progress_rbac
from sage_operator.finetune.volumes import SourceError, dataset_mount, output_uri

GOLDEN = Path(__file__).parent / "golden"
IMAGE = "sage/finetune:test"


def example_job(**spec_changes: Any) -> FinetuneJob:
    document = yaml.safe_load((REPO_ROOT / "examples" / "finetune-lora.yaml").read_text())
    document["metadata"] |= {"namespace": "ml", "uid": "uid-1", "generation": 1}
    document["spec"] |= spec_changes
    return FinetuneJob.model_validate(document)


def _golden(name: str, rendered: Any) -> None:
    path = GOLDEN / name
    text = yaml.safe_dump(rendered, sort_keys=False)
    if os.environ.get("SAGE_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with SAGE_UPDATE_GOLDEN=1 once and review it"
    assert yaml.safe_load(path.read_text()) == rendered, f"{name} differs (SAGE_UPDATE_GOLDEN=1 rewrites it)"


def test_job_matches_golden_file() -> None:
    _golden("finetune-lora.job.yaml", render_finetune_job(example_job(), image=IMAGE))


def test_progress_rbac_matches_golden_file() -> None:
    _golden("finetune-lora.rbac.yaml", render_progress_rbac(example_job()))


def _env(job: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_runner_is_told_everything_through_env() -> None:
    env = _env(render_finetune_job(example_job(), image=IMAGE))
    assert env["SAGE_FT_DATASET"] == "/data/train.jsonl"
    assert env["SAGE_FT_OUTPUT"] == "/output/support-bot"
    assert env["SAGE_FT_RANK"] == "16"
    assert env["SAGE_FT_TARGET_MODULES"] == "q_proj,v_proj"
    assert env["SAGE_FT_STATUS_TARGET"] == "ml/support-ft"
    assert env["SAGE_FT_BASE_MODEL"] == "Qwen/Qwen2.5-0.5B-Instruct"


def test_full_method_sends_no_lora_settings_and_pvc_sources_are_mounted() -> None:
    job = example_job(
        method="full", baseModel="pvc://models/qwen", dataset={"source": "pvc://data/sets/a.jsonl", "format": "text"}
    )
    rendered = render_finetune_job(job, image=IMAGE)
    env = _env(rendered)
    assert "SAGE_FT_RANK" not in env
    assert env["SAGE_FT_BASE_MODEL"] == "/models/qwen"
    assert env["SAGE_FT_DATASET"] == "/data/sets/a.jsonl"
    claims = {
        v["name"]: v.get("persistentVolumeClaim", {}).get("claimName")
        for v in rendered["spec"]["template"]["spec"]["volumes"]
    }
    assert claims == {"dataset": "data", "output": "adapters", "base-model": "models", "shm": None}


def test_suspend_and_limits_reach_the_job() -> None:
    rendered = render_finetune_job(example_job(suspend=True, backoffLimit=5), image=IMAGE)
    assert rendered["spec"]["suspend"] is True
    assert rendered["spec"]["backoffLimit"] == 5
    assert rendered["spec"]["activeDeadlineSeconds"] == 21600
    limits = rendered["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 1


def test_output_defaults_to_a_folder_named_after_the_job() -> None:
    job = example_job(output={"claimName": "out"})
    assert output_uri(job) == "pvc://out/finetune/support-ft"


def test_malformed_source_names_the_field() -> None:
    with pytest.raises(SourceError, match=r"spec\.dataset\.source"):
        dataset_mount(example_job(dataset={"source": "configmap://only-a-name"}))


def test_bad_input_fails_at_once_and_checkpointed_stops_are_not_failures() -> None:
    rules = render_finetune_job(example_job(), image=IMAGE)["spec"]["podFailurePolicy"]["rules"]
    by_code = {rule["onExitCodes"]["values"][0]: rule["action"] for rule in rules if "onExitCodes" in rule}
    assert by_code == {2: "FailJob", 75: "Ignore"}


def test_a_runner_without_resources_still_requests_some() -> None:
    """Never BestEffort (first evicted, placed anywhere): a spec without resources gets the default
    requests, and a spec that gives only some keeps the default for the rest."""
    bare = render_finetune_job(example_job(resources=None), image=IMAGE)
    assert bare["spec"]["template"]["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}}
    some = render_finetune_job(example_job(resources={"memory": "6Gi"}), image=IMAGE)
    assert some["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "1", "memory": "6Gi"},
        "limits": {"memory": "6Gi"},
    }
