"""What `sage llm engine list` and `sage llm fine-tune` print."""

from __future__ import annotations

from sage_api.finetune import FinetuneProgress
from sage_cli.render import duration, progress_cell, progress_line, table
from sage_cli.targets import EngineRow


def test_durations_read_as_a_person_says_them() -> None:
    assert [duration(s) for s in (0, 59.4, 75, 3700)] == ["0s", "59s", "1m15s", "1h01m"]


def test_the_table_aligns_columns_and_puts_a_reason_under_its_row() -> None:
    rows = [
        EngineRow(
            "chat",
            "llm",
            "Qwen/Qwen2.5-0.5B-Instruct",
            "transformers",
            "0/1",
            "Failed",
            None,
            "model not found: Qwen/Qwen2.5-0.5B-Instruct\nsecond line",
        ),
        EngineRow(
            "support",
            "finetune",
            "tiny",
            "transformers",
            "-",
            "Running",
            FinetuneProgress(step=30, total_steps=120, loss=1.23456),
        ),
    ]
    lines = table(rows).splitlines()
    assert lines[0].split() == ["NAME", "KIND", "MODEL", "BACKEND", "READY", "PHASE", "PROGRESS"]
    assert lines[1].split()[:6] == ["chat", "llm", "Qwen/Qwen2.5-0.5B-Instruct", "transformers", "0/1", "Failed"]
    assert lines[2] == "    model not found: Qwen/Qwen2.5-0.5B-Instruct"
    assert lines[3].endswith("step 30/120 loss 1.235")
    assert lines[1].index("Failed") == lines[3].index("Running")


def test_progress_without_a_step_says_it_waits() -> None:
    assert progress_cell(None) == "-"
    assert progress_line(None, "Pending") == "Pending: waiting for the first step ..."


def test_the_progress_bar_fills_with_the_percentage() -> None:
    line = progress_line(FinetuneProgress(step=50, total_steps=100, loss=0.5, eta_seconds=125), "Running")
    assert line == "[############............]  50% step 50/100 loss 0.500 ETA 2m05s"
    derived = progress_line(FinetuneProgress(step=1, total_steps=4), "Running")
    assert derived.startswith("[######..................]  25% step 1/4")
