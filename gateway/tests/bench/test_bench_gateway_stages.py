"""The stage probes of `make bench-gateway-stages`: where they attach in the gateway, what they
record for one request, and the table made of it."""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Iterator

import pytest
from bench.gateway_stages import IDLE, MARKS, STAGES, Mark, StageClock, _probed, stage_medians, stages_table


def test_every_mark_names_a_method_the_gateway_has() -> None:
    """A renamed method would leave a stage unrecorded: each mark must still find its method."""
    for mark in MARKS:
        owner = getattr(importlib.import_module(mark.module), mark.owner)
        assert callable(getattr(owner, mark.method)), mark
    assert len(STAGES) == len(MARKS) - 1


def ticking(start: int = 0, step: int = 1000) -> Iterator[int]:
    now = start
    while True:
        yield now
        now += step


def test_a_request_is_recorded_once_per_mark_and_ends_at_finished() -> None:
    ticks = ticking()
    clock = StageClock(clock=lambda: next(ticks))
    for mark in MARKS[:3]:
        clock.mark(mark.name)
    clock.mark(MARKS[0].name)  # a later pass (the next read, a stream's next chunk) keeps the first time
    for mark in MARKS[3:]:
        clock.mark(mark.name)
    assert len(clock.records) == 1
    record = clock.records[0]
    assert [record[mark.name] for mark in MARKS] == [0, 1000, 2000] + [1000 * n for n in range(4, len(MARKS) + 1)]
    assert clock.current == {}


def test_medians_take_only_whole_requests_and_measure_the_idle_time_between_them() -> None:
    def record(start: int, steps: list[int]) -> dict[str, int]:
        times = [start]
        for step in steps:
            times.append(times[-1] + step)
        return {mark.name: moment for mark, moment in zip(MARKS, times, strict=True)}

    stages = len(MARKS) - 1
    first = record(0, [1000] * stages)
    second = record(50_000, [3000] * stages)
    third = record(200_000, [2000] * stages)
    partial = {MARKS[0].name: 90_000}
    medians = stage_medians([first, second, third, partial])
    assert medians["requests"] == 3
    assert medians["stages"] == [2.0] * stages
    assert medians["idle"] == ((50 - stages) + (200 - (50 + 3 * stages))) / 2  # from each end to the next start


def test_the_table_sets_gateways_side_by_side_with_what_the_second_adds() -> None:
    stages = len(STAGES)
    plain = {"requests": 3, "stages": [10.0] * (stages - 1) + [9.0], "idle": 12.5}
    keyed = {"requests": 3, "stages": [11.0, 25.0] + [10.0] * (stages - 3) + [14.0], "idle": 12.0}
    lines = stages_table({"SAGE": plain, "SAGE keys+limits": keyed}).splitlines()
    assert (
        lines[0] == "| stage | from | to | SAGE, median µs | SAGE keys+limits, median µs | added by SAGE keys+limits |"
    )
    assert lines[2] == f"| {STAGES[0]} | request in | request parsed | 10.0 | 11.0 | +1.0 |"
    assert lines[3] == f"| {STAGES[1]} | {MARKS[1].name} | {MARKS[2].name} | 10.0 | 25.0 | +15.0 |"
    assert lines[1 + stages] == f"| {STAGES[-1]} | client written | finished | 9.0 | 14.0 | +5.0 |"
    # the path leaves out the bookkeeping after the last byte
    path = 10.0 * (stages - 1)
    assert lines[2 + stages] == f"| **request in to client written** |  |  | **{path}** | **{path + 16}** | **+16.0** |"
    assert lines[3 + stages] == f"| {IDLE} | finished | request in | 12.5 | 12.0 | -0.5 |"


def test_one_gateway_alone_has_no_difference_column() -> None:
    alone = {"requests": 1, "stages": [1.0] * len(STAGES), "idle": 2.0}
    lines = stages_table({"SAGE": alone}).splitlines()
    assert lines[0] == "| stage | from | to | SAGE, median µs |"
    assert lines[1] == "| --- | --- | --- | ---: |"
    assert lines[2 + len(STAGES)] == f"| **request in to client written** |  |  | **{len(STAGES) - 1.0}** |"


def test_probes_record_around_plain_and_async_methods_and_keep_what_they_return() -> None:
    ticks = ticking()
    clock = StageClock(clock=lambda: next(ticks))
    seen: list[str] = []

    class Probed:
        def parse(self, data: bytes) -> int:
            seen.append("parse")
            return len(data)

        async def send(self, data: bytes) -> bytes:
            seen.append("send")
            await asyncio.sleep(0)
            return data * 2

    before = Mark("in", __name__, "Probed", "parse", after=False)
    after = Mark("out", __name__, "Probed", "parse", after=True)
    Probed.parse = _probed(_probed(Probed.parse, before, clock), after, clock)  # type: ignore[method-assign]
    sent = Mark("sent", __name__, "Probed", "send", after=True)
    Probed.send = _probed(Probed.send, sent, clock)  # type: ignore[method-assign]
    assert inspect.iscoroutinefunction(inspect.unwrap(Probed.send))

    assert Probed().parse(b"abc") == 3
    assert clock.current == {"in": 0, "out": 1000}
    assert asyncio.run(Probed().send(b"x")) == b"xx"
    assert clock.current["sent"] == 2000
    assert seen == ["parse", "send"]


def test_a_failing_method_still_records_its_mark_and_raises() -> None:
    clock = StageClock(clock=lambda: 7)

    def broken(self: object) -> None:
        raise ValueError("no")

    probed = _probed(broken, Mark("out", __name__, "x", "broken", after=True), clock)
    with pytest.raises(ValueError, match="no"):
        probed(object())
    assert clock.current == {"out": 7}
