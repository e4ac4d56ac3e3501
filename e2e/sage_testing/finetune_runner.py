"""Running the fine-tune runner (`python -m sage_finetune`) as a subprocess in tests, and reading
the JSON progress lines it prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

# Tiny model, short sequences, high learning rate: a few dozen steps are enough.
LORA_ENV = {
    "SAGE_FT_FORMAT": "chat",
    "SAGE_FT_METHOD": "lora",
    "SAGE_FT_RANK": "8",
    "SAGE_FT_ALPHA": "16",
    "SAGE_FT_LEARNING_RATE": "0.02",
    "SAGE_FT_BATCH_SIZE": "4",
    "SAGE_FT_MAX_SEQ_LENGTH": "64",
}


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def steps_of(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["event"] == "step"]


def run_runner(env: dict[str, str], extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sage_finetune"],
        env=env | extra,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
