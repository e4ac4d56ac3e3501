"""How the local control plane describes an engine's exit and spaces its restarts."""

from __future__ import annotations

from sage_local.supervise import MAX_DELAY_SECONDS, STABLE_AFTER_SECONDS, Backoff, describe_exit


def test_exits_are_described_by_code_or_signal_with_the_engines_reason() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert (
        describe_exit(1, "the model folder /m does not exist")
        == "exited with code 1: the model folder /m does not exist"
    )
    assert describe_exit(0) == "exited with code 0"


def test_quick_crashes_double_the_wait_up_to_the_cap() -> None:
    backoff, delays = Backoff(), []
    for _ in range(8):
        backoff = backoff.after_exit(served_seconds=1)
        delays.append(backoff.delay_seconds)
    assert delays[:4] == [1, 2, 4, 8]
    assert delays[-1] == MAX_DELAY_SECONDS
    assert Backoff().delay_seconds == 0


def test_a_process_that_served_stably_starts_again_at_the_first_step() -> None:
    crashed_often = Backoff(6)
    assert crashed_often.after_exit(served_seconds=STABLE_AFTER_SECONDS).delay_seconds == 1
