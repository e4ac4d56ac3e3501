"""Golden files: for each backend an input LLMEngine and the exact Deployment and Service rendered
from it. Regenerate after an intended change with SAGE_UPDATE_GOLDEN=1 and review the diff."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from sage_api.engine import LLMEngine
from sage_operator.engine.render import render_engine_deployment, render_engine_service
from sage_operator.settings import OperatorSettings

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(path.name for path in GOLDEN.iterdir() if (path / "engine.yaml").exists())
UPDATE = os.environ.get("SAGE_UPDATE_GOLDEN") == "1"


def golden_settings() -> OperatorSettings:
    """Fixed settings, independent of the environment the tests run in."""
    return OperatorSettings.model_validate(
        {"engine_image": "sage/engine:golden", "vllm_image": "vllm/vllm-openai:golden", "engine_port": 8000}
    )


def _compare(path: Path, rendered: dict[str, Any]) -> None:
    text = yaml.safe_dump(rendered, sort_keys=False, width=120)
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"{path} is missing; run with SAGE_UPDATE_GOLDEN=1 to write it")
        path.write_text(text)
    assert yaml.safe_load(path.read_text()) == rendered, f"{path} differs; SAGE_UPDATE_GOLDEN=1 regenerates it"


def test_every_backend_has_a_golden_case() -> None:
    assert CASES == ["deterministic", "sentence-transformers", "transformers", "vllm"]


@pytest.mark.parametrize("case", CASES)
def test_rendered_manifests_match_golden_files(case: str) -> None:
    engine = LLMEngine.model_validate(yaml.safe_load((GOLDEN / case / "engine.yaml").read_text()))
    _compare(GOLDEN / case / "deployment.yaml", render_engine_deployment(engine, golden_settings()))
    _compare(GOLDEN / case / "service.yaml", render_engine_service(engine))
