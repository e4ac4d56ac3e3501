"""The runner interrupted as Kubernetes interrupts it: SIGTERM (preemption, suspend, drain) leaves
a checkpoint that the next run resumes from; SIGKILL (OOM kill, node loss) leaves only the periodic
checkpoints, and the next run resumes from the newest of them, not from step 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sage_finetune.exits import EXIT_COMPLETED, EXIT_STOPPED
from sage_testing.finetune_runner import LORA_ENV, read_lines, run_runner, steps_of

pytestmark = pytest.mark.slow

Lines = list[dict[str, Any]]


def _settings(output: Path, model: Path, dataset: Path, termination_log: Path) -> dict[str, str]:
    termination_log.touch()
    return LORA_ENV | {
        "SAGE_FT_TERMINATION_LOG": str(termination_log),
        "SAGE_FT_BASE_MODEL": str(model),
        "SAGE_FT_DATASET": str(dataset),
        "SAGE_FT_OUTPUT": str(output),
    }


@contextmanager
def _endless_runner(env: dict[str, str], stderr: Path) -> Iterator[subprocess.Popen[str]]:
    """A runner with more steps than it can finish; killed on the way out if it still runs."""
    with stderr.open("w") as errors:
        runner = subprocess.Popen(
            [sys.executable, "-m", "sage_finetune"],
            env=env | {"SAGE_FT_MAX_STEPS": "100000"},
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        try:
            yield runner
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()


def _read_until(runner: subprocess.Popen[str], stderr: Path, done: Callable[[Lines], bool]) -> Lines:
    """Progress lines, read until `done(lines)` holds; the runner is still training then."""
    assert runner.stdout is not None
    seen: Lines = []
    while not done(seen):
        line = runner.stdout.readline()
        assert line, f"runner exited early:\n{stderr.read_text()[-3000:]}"
        seen.append(json.loads(line))
    assert runner.poll() is None
    return seen


def test_sigterm_leaves_a_checkpoint_and_a_second_run_continues_the_step_count(
    trainable_tiny_lm_path: Path, codeword_chat_dataset: Path, tmp_path: Path, runner_env: dict[str, str]
) -> None:
    output, termination_log, stderr = tmp_path / "adapter", tmp_path / "termination-log", tmp_path / "stderr.log"
    settings = _settings(output, trainable_tiny_lm_path, codeword_chat_dataset, termination_log)
    with _endless_runner(runner_env | settings, stderr) as runner:
        seen = _read_until(runner, stderr, lambda s: bool(s) and s[-1]["event"] == "step" and s[-1]["step"] >= 5)
        runner.send_signal(signal.SIGTERM)
        assert runner.stdout is not None
        seen += [json.loads(line) for line in runner.stdout]
        assert runner.wait(timeout=120) == EXIT_STOPPED

    stopped = seen[-1]
    last_step = steps_of(seen)[-1]["step"]
    assert stopped["event"] == "stopped"
    assert stopped["step"] == last_step >= 5
    checkpoint = output / "checkpoints" / f"step-{last_step}"
    assert stopped["checkpoint"] == str(checkpoint)
    assert {p.name for p in checkpoint.iterdir()} == {
        "trainable.safetensors",
        "optimizer.pt",
        "scheduler.pt",
        "rng.pt",
        "trainer_state.json",
    }
    assert not (output / "sage-finetune.json").exists()
    assert termination_log.read_text() == f"stopped at step {last_step} of 100000; checkpoint {checkpoint}\n"

    resumed = run_runner(runner_env, settings | {"SAGE_FT_MAX_STEPS": str(last_step + 5)})

    assert resumed.returncode == EXIT_COMPLETED, resumed.stderr
    lines = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert lines[0]["event"] == "started"
    assert lines[0]["step"] == last_step
    assert f"resuming at step {last_step}" in lines[0]["message"]
    assert [line["step"] for line in steps_of(lines)] == list(range(last_step + 1, last_step + 6))
    assert json.loads((output / "sage-finetune.json").read_text())["steps"] == last_step + 5
    assert read_lines(output / "progress.jsonl") == seen + lines  # one file across both attempts


def test_sigkill_loses_only_the_steps_since_the_last_periodic_checkpoint(
    trainable_tiny_lm_path: Path, codeword_chat_dataset: Path, tmp_path: Path, runner_env: dict[str, str]
) -> None:
    output, stderr = tmp_path / "adapter", tmp_path / "stderr.log"
    settings = _settings(output, trainable_tiny_lm_path, codeword_chat_dataset, tmp_path / "termination-log")
    settings |= {"SAGE_FT_CHECKPOINT_EVERY_STEPS": "3"}

    def past_a_checkpoint(seen: Lines) -> bool:
        checkpoints = [line["step"] for line in seen if line["event"] == "checkpoint"]
        assert len(steps_of(seen)) < 30, "no periodic checkpoint in 30 steps"
        return bool(checkpoints) and seen[-1]["event"] == "step" and seen[-1]["step"] > checkpoints[-1]

    with _endless_runner(runner_env | settings, stderr) as runner:
        seen = _read_until(runner, stderr, past_a_checkpoint)
        runner.send_signal(signal.SIGKILL)  # no handler runs: nothing is written on the way out
        assert runner.wait(timeout=30) == -signal.SIGKILL

    last_checkpoint = [line["step"] for line in seen if line["event"] == "checkpoint"][-1]
    killed_at = steps_of(seen)[-1]["step"]
    assert killed_at > last_checkpoint >= 3
    resumed = run_runner(runner_env, settings | {"SAGE_FT_MAX_STEPS": str(killed_at + 2)})

    assert resumed.returncode == EXIT_COMPLETED, resumed.stderr
    lines = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert lines[0]["event"] == "started"
    assert f"resuming at step {last_checkpoint}" in lines[0]["message"]
    assert [line["step"] for line in steps_of(lines)] == list(range(last_checkpoint + 1, killed_at + 3))
    assert json.loads((output / "sage-finetune.json").read_text())["steps"] == killed_at + 2
