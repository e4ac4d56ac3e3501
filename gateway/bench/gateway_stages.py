"""One client's request through SAGE's gateway, stage by stage: where the time of the added
latency goes (`make bench-gateway-stages`, which runs `bench_gateway_stages.py`).

The gateway runs as usual (`python -m bench.gateway_stages --host H --port P`, configured by the
same environment as `python -m sage_gateway`), with probes wrapped around a few of its methods:
each records, once per request, the moment the request reached it (`MARKS`). The stages are the
times between consecutive marks. The probes are installed here, never in the gateway's code,
which pays nothing for them; each costs a few tenths of a microsecond, so the stages add up to a
little more than the gateway alone takes.

SIGUSR1 forgets what was recorded (the warm-up); SIGUSR2 writes the medians, as JSON, to the file
named by SAGE_BENCH_STAGES_FILE. With one client the marks of one request never interleave with
another's.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import itertools
import json
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

STAGES_FILE = "SAGE_BENCH_STAGES_FILE"


@dataclass(frozen=True)
class Mark:
    name: str
    module: str
    owner: str
    method: str
    after: bool
    """Recorded when the method returns (else when it is called)."""


MARKS = (
    Mark("request in", "sage_runtime.http_server", "HttpServerProtocol", "data_received", after=False),
    Mark("request parsed", "sage_runtime.http_server", "HttpServerProtocol", "data_received", after=True),
    Mark("dispatched", "sage_gateway.dispatch", "Dispatcher", "_serve", after=False),
    Mark("forwarded", "sage_gateway.proxy", "Proxy", "forward", after=False),
    Mark("replica write", "sage_gateway.upstream.connection", "UpstreamConnection", "send", after=False),
    Mark("replica written", "sage_gateway.upstream.connection", "UpstreamConnection", "send", after=True),
    Mark("answer in", "sage_gateway.upstream.connection", "UpstreamConnection", "data_received", after=False),
    Mark("answer parsed", "sage_gateway.upstream.connection", "UpstreamConnection", "data_received", after=True),
    Mark("task woken", "sage_gateway.proxy", "Proxy", "_open", after=True),
    Mark("body read", "sage_gateway.proxy", "Proxy", "_close", after=False),
    Mark("answer made", "sage_wire.asgi", "CompleteAnswer", "__call__", after=False),
    Mark("head framed", "sage_runtime.http_response", "HttpExchange", "_start", after=True),
    Mark("client write", "sage_runtime.http_response", "HttpExchange", "_write", after=False),
    Mark("client written", "sage_runtime.http_response", "HttpExchange", "_write", after=True),
    Mark("finished", "sage_gateway.dispatch", "Dispatcher", "_serve", after=True),
)
"""In the order a proxied request passes them; `finished` ends a request's record."""

STAGES = (
    "the request read and parsed, its task made (HTTP server)",
    "the task's first step, to the dispatcher",
    "dispatch: headers, the body read, routing fields, the model checked (keys: the key, the prompt estimate, "
    "the admission)",
    "the replica picked, its request framed",
    "the write to the replica; on a CPU shared with the replica, the replica's turn when it runs at once",
    "back to the event loop until the answer is read",
    "the answer's first read parsed (its head, and its body when both came at once)",
    "the task woken with the answer's head",
    "the answer's headers (keys: the limit headers) and its body taken, waited for when the head came alone",
    "the answer made (keys: the usage read from the body)",
    "the answer's start sent: its head framed",
    "its body sent",
    "the write to the client",
    "after the last byte: metrics, budgets",
)
"""What happens between each mark and the next."""
IDLE = "from the end of one request to the next one's first bytes: the client's turn"


@dataclass
class StageClock:
    """The marks of the request under way, and the records of the finished ones."""

    clock: Callable[[], int] = time.perf_counter_ns
    current: dict[str, int] = field(default_factory=dict)
    records: list[dict[str, int]] = field(default_factory=list)

    def mark(self, name: str) -> None:
        self.current.setdefault(name, self.clock())
        if name == MARKS[-1].name:
            self.records.append(self.current)
            self.current = {}

    def forget(self) -> None:
        self.records.clear()
        self.current = {}


def _pairs() -> Iterator[tuple[str, str]]:
    return itertools.pairwise(mark.name for mark in MARKS)


def stage_medians(records: list[dict[str, int]]) -> dict[str, Any]:
    """Median microseconds of each stage (and of the idle time between requests) over the
    requests that passed every mark; `requests` says how many did."""
    whole = [record for record in records if all(mark.name in record for mark in MARKS)]
    medians = [
        statistics.median((record[end] - record[start]) / 1000 for record in whole) if whole else 0.0
        for start, end in _pairs()
    ]
    gaps = [(later[MARKS[0].name] - earlier[MARKS[-1].name]) / 1000 for earlier, later in itertools.pairwise(whole)]
    return {"requests": len(whole), "stages": medians, "idle": statistics.median(gaps) if gaps else 0.0}


def stages_table(columns: dict[str, dict[str, Any]]) -> str:
    """The stages as a markdown table: a column of medians per gateway measured (`stage_medians`),
    and with two, how much the second adds to each stage. The path's total leaves out the
    bookkeeping after the last byte, which the client does not wait for."""
    names = list(columns)
    stages = [columns[name]["stages"] for name in names]
    totals = [sum(column[:-1]) for column in stages]
    idle = [columns[name]["idle"] for name in names]
    added = len(names) == 2
    header = ["stage", "from", "to", *(f"{name}, median µs" for name in names)]
    if added:
        header.append(f"added by {names[1]}")

    def row(cells: list[str], values: list[float], bold: bool = False) -> str:
        shown = [f"{value:.1f}" for value in values]
        if added:
            shown.append(f"{values[1] - values[0]:+.1f}")
        if bold:
            shown = [f"**{value}**" for value in shown]
        return "| " + " | ".join([*cells, *shown]) + " |"

    rows = ["| " + " | ".join(header) + " |", "| --- | --- | --- |" + " ---: |" * (len(header) - 3)]
    for index, ((start, end), what) in enumerate(zip(_pairs(), STAGES, strict=True)):
        rows.append(row([what, start, end], [column[index] for column in stages]))
    rows.append(row(["**request in to client written**", "", ""], totals, bold=True))
    rows.append(row([IDLE, MARKS[-1].name, MARKS[0].name], idle))
    return "\n".join(rows)


def install_probes(clock: StageClock) -> None:
    """Wraps each mark's method (async ones too) so that it records its mark."""
    for mark in MARKS:
        owner = getattr(importlib.import_module(mark.module), mark.owner)
        setattr(owner, mark.method, _probed(getattr(owner, mark.method), mark, clock))


def _probed(method: Callable[..., Any], mark: Mark, clock: StageClock) -> Callable[..., Any]:
    if _is_async(method):
        if not mark.after:  # the coroutine is made right where it is awaited

            @functools.wraps(method)
            def called(*args: Any) -> Any:
                clock.mark(mark.name)
                return method(*args)

            return called

        @functools.wraps(method)
        async def awaited(*args: Any) -> Any:
            try:
                return await method(*args)
            finally:
                clock.mark(mark.name)

        return awaited

    @functools.wraps(method)
    def plain(*args: Any) -> Any:
        if not mark.after:
            clock.mark(mark.name)
            return method(*args)
        try:
            return method(*args)
        finally:
            clock.mark(mark.name)

    return plain


def _is_async(method: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(inspect.unwrap(method))


def serve(argv: list[str]) -> int:
    """`python -m sage_gateway` with the probes in (see the module docstring)."""
    clock = StageClock()
    install_probes(clock)
    output = Path(os.environ[STAGES_FILE])

    def forget(signum: int, frame: FrameType | None) -> None:
        clock.forget()

    def write(signum: int, frame: FrameType | None) -> None:
        output.write_text(json.dumps(stage_medians(clock.records)))

    signal.signal(signal.SIGUSR1, forget)
    signal.signal(signal.SIGUSR2, write)
    from sage_gateway.__main__ import main  # noqa: PLC0415 - after the probes, like any caller of it

    return main(argv)


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:]))
