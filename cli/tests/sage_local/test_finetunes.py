"""Local fine-tunes: the runner's command line and its progress file, read as status.progress."""

from __future__ import annotations

import json
from pathlib import Path

from sage_api.finetune_request import FinetuneRequest
from sage_local.finetunes import last_progress, runner_argv


def test_the_last_complete_progress_line_is_the_progress(tmp_path: Path) -> None:
    assert last_progress(tmp_path) is None
    lines = [
        {"step": 1, "totalSteps": 3, "loss": 2.5, "etaSeconds": 4, "percent": 33, "event": "step", "time": "t"},
        {"step": 2, "totalSteps": 3, "loss": 2.0, "learningRate": 1e-4, "percent": 66, "event": "step", "time": "t"},
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines) + '{"step": 3, "tot'
    (tmp_path / "progress.jsonl").write_text(text)
    progress = last_progress(tmp_path)
    assert progress is not None
    assert (progress.step, progress.total_steps, progress.loss, progress.learning_rate) == (2, 3, 2.0, 1e-4)
    assert progress.percent == 66


def test_the_runner_gets_every_option_as_its_flag(tmp_path: Path) -> None:
    request = FinetuneRequest(name="support", base_model="/m", dataset="/d.jsonl", output="/o", max_steps=5, rank=8)
    argv = runner_argv(request, python="python", termination_log=tmp_path / "t")
    flags = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert argv[:3] == ["python", "-m", "sage_finetune"]
    assert flags["--base-model"] == "/m"
    assert flags["--max-steps"] == "5"
    assert flags["--rank"] == "8"
    full = runner_argv(FinetuneRequest("f", "/m", "/d", "/o", method="full"), python="p", termination_log=tmp_path)
    assert "--rank" not in full
    assert "--max-steps" not in full
