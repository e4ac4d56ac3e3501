"""Settings come from SAGE_FT_* variables (as the operator renders them) or flags (which win)."""

from __future__ import annotations

import subprocess
import sys
from typing import get_args

import pytest
from pydantic import ValidationError
from pydantic_settings import CliApp

from sage_api.finetune import DatasetFormat, FinetuneMethod, TrainingConfig
from sage_finetune.settings import FinetuneSettings

REQUIRED = ["--base-model", "/models/base", "--dataset", "/data/train.jsonl", "--output", "/out"]


def test_environment_variables_configure_every_field(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "BASE_MODEL": "/models/base",
        "DATASET": "/data/train.jsonl",
        "OUTPUT": "/out",
        "FORMAT": "instruction",
        "METHOD": "full",
        "TARGET_MODULES": "q_proj, v_proj",
        "MAX_STEPS": "30",
        "LEARNING_RATE": "0.01",
        "STATUS_TARGET": "ml/support-ft",
    }.items():
        monkeypatch.setenv(f"SAGE_FT_{name}", value)

    settings = CliApp.run(FinetuneSettings, cli_args=[])

    assert settings.base_model == "/models/base"
    assert settings.dataset_format is DatasetFormat.INSTRUCTION
    assert settings.finetune_method is FinetuneMethod.FULL
    assert settings.target_modules == ["q_proj", "v_proj"]
    assert (settings.max_steps, settings.learning_rate) == (30, 0.01)
    assert settings.status_target == "ml/support-ft"


def test_a_flag_wins_over_its_variable_and_defaults_are_the_crds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGE_FT_RANK", "4")

    settings = CliApp.run(FinetuneSettings, cli_args=[*REQUIRED, "--rank", "8", "--target-modules", "a,b"])

    assert settings.rank == 8
    assert settings.target_modules == ["a", "b"]
    assert settings.batch_size == TrainingConfig().batch_size
    assert settings.learning_rate == TrainingConfig().learning_rate


def test_the_choices_are_the_crds() -> None:
    assert set(get_args(FinetuneSettings.model_fields["format"].annotation)) == {f.value for f in DatasetFormat}
    assert set(get_args(FinetuneSettings.model_fields["method"].annotation)) == {m.value for m in FinetuneMethod}


@pytest.mark.parametrize("target", ["no-slash", "/name", "ns/", "a/b/c"])
def test_status_target_must_be_namespace_slash_name(target: str) -> None:
    with pytest.raises(ValidationError, match="must be <namespace>/<name>"):
        CliApp.run(FinetuneSettings, cli_args=[*REQUIRED, "--status-target", target])


def test_help_explains_options_and_their_variables() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sage_finetune", "--help"], capture_output=True, text=True, check=True, timeout=120
    )

    assert "SAGE_FT_" in result.stdout
    assert "{chat,instruction,text}" in result.stdout
    assert "{lora,full}" in result.stdout
    for flag in ("--base-model", "--format", "--method", "--target-modules", "--max-steps", "--status-target"):
        assert flag in result.stdout
