"""Where progress lines go: stdout, `<output>/progress.jsonl`, and (see `kube_status`) the
FinetuneJob's status. Every sink has the same two methods, so the training loop does not know
or care which are active."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TextIO

from sage_finetune.progress import ProgressLine

PROGRESS_FILE = "progress.jsonl"


class ProgressSink(Protocol):
    """Receives every progress line of a run."""

    def publish(self, line: ProgressLine) -> None: ...

    def close(self) -> None: ...


def render_line(line: ProgressLine) -> str:
    """The JSON line: camelCase keys as in the FinetuneJob status, unset fields left out."""
    return json.dumps(line.to_wire(), separators=(",", ":"))


class StreamSink:
    """One JSON line per progress line on a text stream (stdout), flushed at once so a reader
    of the pod log or a pipe sees it while training runs."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def publish(self, line: ProgressLine) -> None:
        self._stream.write(render_line(line) + "\n")
        self._stream.flush()

    def close(self) -> None:
        self._stream.flush()


class FileSink:
    """Appends to `progress.jsonl` (a resumed run continues the same file)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def publish(self, line: ProgressLine) -> None:
        self._file.write(render_line(line) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class FanOut:
    """Publishes to several sinks in order."""

    def __init__(self, sinks: Sequence[ProgressSink]) -> None:
        self._sinks = list(sinks)

    def publish(self, line: ProgressLine) -> None:
        for sink in self._sinks:
            sink.publish(line)

    def close(self) -> None:
        for sink in self._sinks:
            sink.close()
