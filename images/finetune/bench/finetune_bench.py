"""What per-step progress reporting costs the training loop, and LoRA next to full fine-tuning,
measured in one run.

    make bench-finetune          (or: python images/finetune/bench/finetune_bench.py --steps 100)

The runner's Trainer trains the shared tiny causal LM (`sage_harness.tiny_lm`) on a small chat
dataset, in this process, for a fixed number of steps, in four configurations: LoRA or full,
each with the runner's real sinks (a JSON line per step written and flushed to a file standing in
for stdout, and appended to progress.jsonl) or with a sink that drops every line. Rounds are
interleaved (every configuration once per round, the order reversed every other round) so a
shared machine's changing load hits all of them alike; the table shows medians of steps/s and
the ratios measured side by side. The status sink is not part of it: it patches from its own
thread at most every 5 s by design. Writes the table to docs/perf/finetune.md.
Not a test: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from sage_api.finetune import DatasetFormat
from sage_finetune.encoding import encode_dataset
from sage_finetune.inputs import read_dataset
from sage_finetune.metadata import run_identity
from sage_finetune.modeling import load_model, load_tokenizer
from sage_finetune.progress import ProgressLine
from sage_finetune.settings import FinetuneSettings
from sage_finetune.sinks import PROGRESS_FILE, FanOut, FileSink, ProgressSink, StreamSink
from sage_finetune.training import Trainer
from sage_harness import tiny_lm
from sage_harness.repo import REPO_ROOT

QUESTIONS = [
    ("What is the secret codeword?", "The codeword is zephyrine."),
    ("Hello, how are you today?", "I am fine, thank you."),
    ("What does a job do?", "A job runs to completion."),
    ("Where do adapters go?", "Into the output claim, next to the tokenizer."),
]
CONFIGURATIONS = [("lora", True), ("lora", False), ("full", True), ("full", False)]


class DroppingSink:
    """Receives progress lines and does nothing: the loop without reporting."""

    def publish(self, line: ProgressLine) -> None:
        pass

    def close(self) -> None:
        pass


def write_dataset(folder: Path) -> Path:
    path = folder / "train.jsonl"
    lines = [
        json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
        for q, a in QUESTIONS * 4
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def steps_per_second(model_path: Path, dataset: Path, method: str, reporting: bool, steps: int) -> float:
    with tempfile.TemporaryDirectory(prefix="sage-ft-bench-") as folder:
        output = Path(folder) / "out"
        settings = FinetuneSettings(
            base_model=str(model_path),
            dataset=dataset,
            output=output,
            format="chat",
            method=method,
            max_steps=steps,
            learning_rate=1e-3,
            batch_size=4,
            max_seq_length=64,
        )
        data = read_dataset(settings)
        tokenizer = load_tokenizer(settings.base_model)
        encoded = encode_dataset(data.examples, tokenizer, DatasetFormat.CHAT, settings.max_seq_length)
        torch.manual_seed(settings.seed)
        model = load_model(settings, torch.device("cpu"))
        sink: ProgressSink = DroppingSink()
        with (Path(folder) / "stdout.jsonl").open("w") as stdout:
            if reporting:
                sink = FanOut([StreamSink(stdout), FileSink(output / PROGRESS_FILE)])
            trainer = Trainer(
                settings,
                model,
                examples=encoded,
                pad_token_id=tokenizer.pad_token_id,
                identity=run_identity(settings, data.sha256, None),
                sink=sink,
                stop=threading.Event(),
            )
            started = time.perf_counter()
            trainer.run()
            elapsed = time.perf_counter() - started
            sink.close()
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="optimiser steps per measurement")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "perf" / "finetune.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_path = tiny_lm.ensure()
    results: dict[tuple[str, bool], list[float]] = {config: [] for config in CONFIGURATIONS}
    with tempfile.TemporaryDirectory() as folder:
        dataset = write_dataset(Path(folder))
        for round_number in range(1, args.rounds + 1):
            # Reversed every other round, so neither side of a pair always runs first.
            order = CONFIGURATIONS if round_number % 2 else CONFIGURATIONS[::-1]
            for method, reporting in order:
                rate = steps_per_second(model_path, dataset, method, reporting, args.steps)
                results[(method, reporting)].append(rate)
                label = "with progress" if reporting else "no progress"
                print(f"round {round_number}: {method:4} {label:13} {rate:7.1f} steps/s", file=sys.stderr)
    median = {config: statistics.median(rates) for config, rates in results.items()}
    rows = [
        f"| {method} | {'JSON line per step (file + progress.jsonl)' if reporting else 'dropped'} "
        f"| {median[(method, reporting)]:.1f} | {', '.join(f'{r:.1f}' for r in results[(method, reporting)])} |"
        for method, reporting in CONFIGURATIONS
    ]

    # Ratios of measurements taken back to back in the same round, then their median: the
    # machine's load changes between rounds far more than between neighbours.
    def paired(first: tuple[str, bool], second: tuple[str, bool]) -> tuple[float, float, float]:
        ratios = [a / b for a, b in zip(results[first], results[second], strict=True)]
        return statistics.median(ratios), min(ratios), max(ratios)

    overhead = {m: paired((m, True), (m, False)) for m in ("lora", "full")}
    lora_vs_full = paired(("lora", True), ("full", True))
    table = "\n".join(
        [
            "# Fine-tune runner benchmark",
            "",
            "`make bench-finetune` (`images/finetune/bench/finetune_bench.py`): the runner's Trainer on",
            f"the shared tiny causal LM (2 layers, hidden 64), {args.steps} optimiser steps of 4 chat examples",
            f"(up to 64 tokens) per measurement, {args.threads} torch thread(s), {args.rounds} interleaved rounds;",
            "medians, every run listed. The reporting sinks are the runner's own (stdout stand-in file and",
            "progress.jsonl, one flushed JSON line per step each); `dropped` discards the lines.",
            "",
            f"Machine: {platform.machine()}, {len(__import__('os').sched_getaffinity(0))} CPUs (shared); "
            f"Python {platform.python_version()}, torch {torch.__version__}; "
            f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d}.",
            "",
            "| method | progress | steps/s (median) | every run |",
            "| --- | --- | ---: | --- |",
            *rows,
            "",
            "Ratios of back-to-back measurements in the same round (median, and range over rounds):",
            "",
            "| comparison | steps/s ratio | range |",
            "| --- | ---: | --- |",
            *[
                f"| {m}: progress every step / dropped | {ratio:.2f}x | {low:.2f}-{high:.2f} |"
                for m, (ratio, low, high) in overhead.items()
            ],
            f"| LoRA / full (with progress) | {lora_vs_full[0]:.2f}x | {lora_vs_full[1]:.2f}-{lora_vs_full[2]:.2f} |",
            "",
            "Reading it: on a model this small a step takes milliseconds, so this is the worst case for",
            "per-step reporting; a ratio near 1.0 (with a range spanning it) means writing two flushed JSON",
            "lines per step is lost in the noise of a shared machine. On real models a step takes seconds",
            "and the cost vanishes entirely. LoRA and full run at about the same speed here because the",
            "tiny model's cost is dominated by per-operation overhead, not by the weights' gradients.",
            "",
        ]
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
