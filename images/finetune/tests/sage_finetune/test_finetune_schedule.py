"""Step arithmetic: total steps, deterministic data order, learning-rate factor."""

from __future__ import annotations

import pytest

from sage_finetune.schedule import TrainingPlan, learning_rate_factor


def plan(**overrides: object) -> TrainingPlan:
    values: dict[str, object] = {
        "num_examples": 10,
        "batch_size": 3,
        "gradient_accumulation_steps": 2,
        "epochs": 2.0,
        "max_steps": None,
        "seed": 7,
    }
    return TrainingPlan(**(values | overrides))  # type: ignore[arg-type]


def test_steps_follow_batches_accumulation_and_epochs() -> None:
    # 10 examples / 3 per micro-batch = 4 micro-batches; 2 per step = 2 steps per epoch.
    assert plan().micro_batches_per_epoch == 4
    assert plan().steps_per_epoch == 2
    assert plan().total_steps == 4
    assert plan(epochs=0.5).total_steps == 1
    assert plan(max_steps=9).total_steps == 9
    assert plan().epoch_at(3) == 1.5


def test_every_example_is_seen_once_per_epoch() -> None:
    schedule = plan(max_steps=6)

    for epoch in range(3):
        seen = [
            index
            for step in range(epoch * 2, epoch * 2 + 2)
            for batch in schedule.micro_batches(step)
            for index in batch
        ]
        assert sorted(seen) == list(range(10))


def test_data_order_depends_only_on_seed_and_epoch() -> None:
    assert plan().micro_batches(3) == plan(max_steps=100).micro_batches(3)
    assert plan().example_order(0) != plan().example_order(1)
    assert plan().example_order(0) != plan(seed=8).example_order(0)


def test_a_bad_plan_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one example"):
        plan(num_examples=0)


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    factors = [learning_rate_factor(step, total_steps=6, warmup_steps=2) for step in range(6)]

    assert factors == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25])
    assert learning_rate_factor(0, total_steps=4, warmup_steps=0) == 1.0
