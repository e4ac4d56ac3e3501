"""Real training on CPU with the tiny random-weight LM: LoRA teaches a codeword it cannot guess,
progress arrives while it runs, a resumed run trains exactly like an uninterrupted one, full
fine-tuning works, and a malformed dataset fails before any model is loaded (SIGTERM and SIGKILL:
test_finetune_interruptions.py)."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from statistics import mean
from typing import Any

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from sage_api.finetune import DatasetFormat, FinetuneMethod
from sage_finetune.checkpoint import CheckpointMismatchError, list_checkpoints
from sage_finetune.dataset import parse_dataset
from sage_finetune.encoding import encode_dataset
from sage_finetune.exits import EXIT_COMPLETED, EXIT_INVALID_INPUT
from sage_finetune.metadata import run_identity
from sage_finetune.modeling import load_model, load_tokenizer
from sage_finetune.progress import ProgressLine
from sage_finetune.run import train
from sage_finetune.settings import FinetuneSettings
from sage_finetune.training import Outcome, Trainer
from sage_testing.finetune_runner import LORA_ENV, read_lines, run_runner, steps_of

pytestmark = pytest.mark.slow


def greedy_answer(model: Any, tokenizer: Any, prompt: str, *, add_special_tokens: bool) -> str:
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=add_special_tokens)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=32, do_sample=False)
    return str(tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))


def chat_prompt(tokenizer: Any, question: str) -> str:
    messages = [{"role": "user", "content": question}]
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


def test_lora_teaches_the_codeword_configured_by_environment_variables(
    *,
    trainable_tiny_lm_path: Path,
    codeword_chat_dataset: Path,
    tmp_path: Path,
    runner_env: dict[str, str],
    codeword: str,
    codeword_question: str,
) -> None:
    output = tmp_path / "adapter"
    termination_log = tmp_path / "termination-log"
    termination_log.touch()  # the kubelet creates it; the runner only fills it

    result = run_runner(
        runner_env,
        LORA_ENV
        | {
            "SAGE_FT_TERMINATION_LOG": str(termination_log),
            "SAGE_FT_BASE_MODEL": str(trainable_tiny_lm_path),
            "SAGE_FT_DATASET": str(codeword_chat_dataset),
            "SAGE_FT_OUTPUT": str(output),
            "SAGE_FT_MAX_STEPS": "40",
        },
    )

    assert result.returncode == EXIT_COMPLETED, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == read_lines(output / "progress.jsonl")
    assert [line["event"] for line in lines] == ["started"] + ["step"] * 40 + ["completed"]
    steps = steps_of(lines)
    assert [line["step"] for line in steps] == list(range(1, 41))
    assert all(ProgressLine.model_validate(line).total_steps == 40 for line in lines)
    first_loss, last_loss = mean(s["loss"] for s in steps[:5]), mean(s["loss"] for s in steps[-5:])
    assert last_loss < 0.75 * first_loss, (first_loss, last_loss)
    print(f"\nLoRA 40 steps: loss {first_loss:.3f} -> {last_loss:.3f}, {steps[-1]['stepsPerSecond']} steps/s")

    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "sage-finetune.json"} <= {
        path.name for path in output.iterdir()
    }
    assert not (output / "checkpoints").exists()
    metadata = json.loads((output / "sage-finetune.json").read_text())
    assert metadata["method"] == "lora"
    assert (metadata["rank"], metadata["alpha"], metadata["steps"]) == (8, 16, 40)
    assert metadata["baseModel"] == str(trainable_tiny_lm_path)
    assert metadata["finalLoss"] == pytest.approx(steps[-1]["loss"], rel=1e-4)
    assert metadata["datasetSha256"] == hashlib.sha256(codeword_chat_dataset.read_bytes()).hexdigest()

    tokenizer = AutoTokenizer.from_pretrained(str(output))
    base = AutoModelForCausalLM.from_pretrained(str(trainable_tiny_lm_path))
    prompt = chat_prompt(tokenizer, codeword_question)
    base_answer = greedy_answer(base, tokenizer, prompt, add_special_tokens=False)
    tuned_answer = greedy_answer(
        PeftModel.from_pretrained(base, str(output)), tokenizer, prompt, add_special_tokens=False
    )
    assert termination_log.read_text() == (
        f"completed: 40 steps, final loss {metadata['finalLoss']:.4f}, wrote {output}\n"
    )
    assert codeword not in base_answer
    assert codeword in tuned_answer, tuned_answer


def _settings(trainable_tiny_lm_path: Path, dataset: Path, output: Path, **overrides: Any) -> FinetuneSettings:
    values: dict[str, Any] = {
        "base_model": str(trainable_tiny_lm_path),
        "dataset": dataset,
        "output": output,
        "format": DatasetFormat.CHAT,
        "rank": 8,
        "alpha": 16,
        "learning_rate": 0.02,
        "batch_size": 4,
        "max_seq_length": 64,
        "max_steps": 8,
        "dropout": 0.1,  # dropout makes the RNG state part of what a checkpoint must restore
    }
    return FinetuneSettings(**(values | overrides))


class _Recorder:
    """A progress sink that keeps the losses and can stop the run after a given step."""

    def __init__(self, stop: threading.Event, stop_after: int | None = None) -> None:
        self.stop, self.stop_after = stop, stop_after
        self.losses: dict[int, float] = {}
        self.checkpoints: list[int] = []

    def publish(self, line: ProgressLine) -> None:
        if line.event == "checkpoint" and line.step is not None:
            self.checkpoints.append(line.step)
        if line.event == "step" and line.step is not None and line.loss is not None:
            self.losses[line.step] = line.loss
            if line.step == self.stop_after:
                self.stop.set()

    def close(self) -> None:
        pass


def _attempt(settings: FinetuneSettings, stop_after: int | None = None) -> tuple[Outcome, _Recorder]:
    tokenizer = load_tokenizer(settings.base_model)
    examples = encode_dataset(
        parse_dataset(settings.dataset.read_text().splitlines(), settings.dataset_format),
        tokenizer,
        settings.dataset_format,
        settings.max_seq_length,
    )
    torch.manual_seed(settings.seed)
    model = load_model(settings, torch.device("cpu"))
    sha = hashlib.sha256(settings.dataset.read_bytes()).hexdigest()
    stop = threading.Event()
    recorder = _Recorder(stop, stop_after)
    trainer = Trainer(
        settings,
        model,
        examples=examples,
        pad_token_id=tokenizer.pad_token_id,
        identity=run_identity(settings, sha, settings.target_modules),
        sink=recorder,
        stop=stop,
    )
    return trainer.run().outcome, recorder


def test_a_resumed_run_trains_exactly_like_an_uninterrupted_one(
    trainable_tiny_lm_path: Path, codeword_chat_dataset: Path, tmp_path: Path
) -> None:
    uninterrupted = _settings(trainable_tiny_lm_path, codeword_chat_dataset, tmp_path / "straight")
    interrupted = _settings(trainable_tiny_lm_path, codeword_chat_dataset, tmp_path / "stopped")

    outcome, straight = _attempt(uninterrupted)
    first_outcome, first = _attempt(interrupted, stop_after=3)
    second_outcome, second = _attempt(interrupted)
    expected, before, after = straight.losses, first.losses, second.losses

    assert (outcome, first_outcome, second_outcome) == (Outcome.COMPLETED, Outcome.STOPPED, Outcome.COMPLETED)
    assert sorted(before) == [1, 2, 3]
    assert sorted(after) == [4, 5, 6, 7, 8]
    assert before | after == pytest.approx(expected, rel=1e-5)

    with pytest.raises(CheckpointMismatchError, match="differs in: seed"):
        _attempt(_settings(trainable_tiny_lm_path, codeword_chat_dataset, tmp_path / "stopped", seed=1, max_steps=2))


def test_periodic_checkpoints_keep_the_newest_complete_ones(
    trainable_tiny_lm_path: Path, codeword_chat_dataset: Path, tmp_path: Path
) -> None:
    output = tmp_path / "periodic"
    settings = _settings(
        trainable_tiny_lm_path, codeword_chat_dataset, output, max_steps=7, checkpoint_every_steps=2, keep_checkpoints=2
    )

    outcome, recorder = _attempt(settings)

    assert outcome is Outcome.COMPLETED
    assert recorder.checkpoints == [2, 4, 6]
    assert [step for step, _ in list_checkpoints(output)] == [4, 6]
    # A checkpoint being written when the pod died is a hidden partial folder: never resumed from.
    (output / "checkpoints" / ".step-8.partial").mkdir()
    _, resumed = _attempt(_settings(trainable_tiny_lm_path, codeword_chat_dataset, output, max_steps=8))
    assert sorted(resumed.losses) == [7, 8]


def test_full_fine_tuning_on_instructions_writes_a_complete_model(
    *,
    trainable_tiny_lm_path: Path,
    codeword_instruction_dataset: Path,
    tmp_path: Path,
    codeword: str,
    codeword_question: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = tmp_path / "full"
    settings = _settings(
        trainable_tiny_lm_path,
        codeword_instruction_dataset,
        output,
        format=DatasetFormat.INSTRUCTION,
        method=FinetuneMethod.FULL,
        learning_rate=0.003,
        max_steps=30,
    )

    assert train(settings, threading.Event()).code == EXIT_COMPLETED

    steps = steps_of([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    first_loss, last_loss = mean(s["loss"] for s in steps[:5]), mean(s["loss"] for s in steps[-5:])
    assert last_loss < 0.5 * first_loss, (first_loss, last_loss)
    print(f"\nfull 30 steps: loss {first_loss:.3f} -> {last_loss:.3f}, {steps[-1]['stepsPerSecond']} steps/s")
    names = {path.name for path in output.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "sage-finetune.json"} <= names
    assert "adapter_config.json" not in names
    metadata = json.loads((output / "sage-finetune.json").read_text())
    assert (metadata["method"], metadata.get("rank"), metadata["steps"]) == ("full", None, 30)

    tokenizer = AutoTokenizer.from_pretrained(str(output))
    prompt = f"Q: {codeword_question}\nA:"
    base = AutoModelForCausalLM.from_pretrained(str(trainable_tiny_lm_path))
    tuned = AutoModelForCausalLM.from_pretrained(str(output))
    assert codeword not in greedy_answer(base, tokenizer, prompt, add_special_tokens=True)
    assert codeword in greedy_answer(tuned, tokenizer, prompt, add_special_tokens=True)

    # The same run again finds its result and does not train a second time.
    capsys.readouterr()
    assert train(settings, threading.Event()).code == EXIT_COMPLETED
    assert capsys.readouterr().out == ""


def test_a_malformed_line_fails_fast_naming_it(
    trainable_tiny_lm_path: Path, tmp_path: Path, runner_env: dict[str, str]
) -> None:
    dataset = tmp_path / "bad.jsonl"
    good = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}'
    dataset.write_text(f"{good}\n{good}\n{{'messages': 'single quotes'}}\n{good}\n")
    output = tmp_path / "never"
    termination_log = tmp_path / "termination-log"
    termination_log.touch()

    result = run_runner(
        runner_env,
        {
            "SAGE_FT_BASE_MODEL": str(trainable_tiny_lm_path),
            "SAGE_FT_DATASET": str(dataset),
            "SAGE_FT_OUTPUT": str(output),
            "SAGE_FT_TERMINATION_LOG": str(termination_log),
        },
    )

    assert result.returncode == EXIT_INVALID_INPUT
    assert "error: line 3: not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert termination_log.read_text().startswith("error: line 3: not valid JSON")
    assert not output.exists()  # failed before loading the model or writing anything
