"""Drive a backend's token stream: stop sequences, max_tokens, finish_reason, cancellation.

A backend yields one decoded text piece per generated token (synchronously, in a worker thread).
`run_generation` consumes it, applies stop sequences, counts tokens and hands each piece of safe
text to `emit`; it is independent of any web framework so it is unit-tested with plain iterators.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sage_engine.stops import StopMatcher


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationResult:
    text: str
    completion_tokens: int
    finish_reason: str  # "stop" | "length"


def run_generation(
    pieces: Iterator[str],
    params: SamplingParams,
    emit: Callable[[str], None] | None = None,
    cancelled: threading.Event | None = None,
) -> GenerationResult:
    """Consume `pieces` until EOS, a stop sequence, `max_tokens` or cancellation."""
    matcher = StopMatcher(list(params.stop))
    tokens = 0
    try:
        for piece in pieces:
            tokens += 1
            safe = matcher.feed(piece)
            if safe and emit is not None:
                emit(safe)
            if matcher.stopped or tokens >= params.max_tokens:
                break
            if cancelled is not None and cancelled.is_set():
                break
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()
    rest = matcher.flush()
    if rest and emit is not None:
        emit(rest)
    length_hit = tokens >= params.max_tokens and not matcher.stopped
    return GenerationResult(matcher.text(), tokens, "length" if length_hit else "stop")
