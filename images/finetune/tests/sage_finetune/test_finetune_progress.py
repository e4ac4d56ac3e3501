"""Progress arithmetic (percent, throughput, ETA) and the progress line's two views."""

from __future__ import annotations

import json

from sage_api.finetune import FinetuneProgress
from sage_finetune.progress import ETA_WINDOW_STEPS, ProgressEvent, ProgressMeter, percent_done
from sage_finetune.sinks import render_line


def test_percent_rounds_down_and_stays_in_range() -> None:
    assert percent_done(0, 40) == 0
    assert percent_done(15, 40) == 37
    assert percent_done(39, 40) == 97
    assert percent_done(40, 40) == 100
    assert percent_done(50, 40) == 100
    assert percent_done(1, 0) == 0


def test_eta_and_throughput_come_from_recent_steps() -> None:
    meter = ProgressMeter(total_steps=100, start_step=0, started_at=1000.0)
    for step in range(1, 11):  # one step every 0.5 s, 200 tokens each
        meter.record_step(step, loss=2.0, learning_rate=1e-3, epoch=step / 50, tokens=200, at=1000.0 + step * 0.5)

    line = meter.line(ProgressEvent.STEP, now_epoch_seconds=0)

    assert line.steps_per_second == 2.0
    assert line.tokens_per_second == 400.0
    assert line.eta_seconds == 45  # 90 steps left at 2 steps/s
    assert line.percent == 10


def test_eta_follows_a_slowdown_within_the_window() -> None:
    meter = ProgressMeter(total_steps=1000, start_step=0, started_at=0.0)
    clock = 0.0
    for step in range(1, 101):
        clock += 0.1 if step <= 50 else 1.0
        meter.record_step(step, loss=1.0, learning_rate=1e-3, epoch=0.0, tokens=1, at=clock)

    assert meter.eta_seconds() == 900  # the last ETA_WINDOW_STEPS steps took 1 s each
    assert ETA_WINDOW_STEPS < 50


def test_a_resumed_run_counts_from_its_start_step() -> None:
    meter = ProgressMeter(total_steps=20, start_step=12, started_at=0.0)
    meter.record_step(13, loss=1.0, learning_rate=1e-3, epoch=1.3, tokens=10, at=1.0)

    line = meter.line(ProgressEvent.STEP, now_epoch_seconds=0)

    assert (line.step, line.percent, line.eta_seconds) == (13, 65, 7)


def test_status_progress_is_exactly_the_crd_model_and_the_line_is_camel_case() -> None:
    meter = ProgressMeter(total_steps=40, start_step=0, started_at=0.0)
    meter.record_step(10, loss=1.25, learning_rate=2e-4, epoch=0.5, tokens=64, at=2.0)
    line = meter.line(ProgressEvent.STEP, now_epoch_seconds=1_800_000_000, gpu_memory_bytes=123)

    status = line.status_progress()
    wire = json.loads(render_line(line))

    assert type(status) is FinetuneProgress
    assert status.to_wire() == {
        "step": 10,
        "totalSteps": 40,
        "epoch": 0.5,
        "loss": 1.25,
        "learningRate": 0.0002,
        "etaSeconds": 6,  # 10 steps in 2 s, 30 left
        "percent": 25,
    }
    assert wire["event"] == "step"
    assert wire["time"] == "2027-01-15T08:00:00Z"
    assert wire["gpuMemoryBytes"] == 123
    assert wire["stepsPerSecond"] == 5.0
    assert wire.items() >= status.to_wire().items()
