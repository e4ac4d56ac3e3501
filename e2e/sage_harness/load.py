"""Constant load through a gateway, from client threads that record what each request got: the
fault drills count these, and the soak reports them.

A request is complete when it answered 200 and, for a stream, ended with `data: [DONE]` and no
error event on the way; anything else is recorded with what went wrong."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx
import orjson

from sage_harness.waiting import wait_until

TRUNCATED = "stream ended without [DONE] or an error event"


@dataclass(frozen=True)
class Request:
    """One kind of request in the mix: a POST to `path` with `body` (streamed when it says so)."""

    kind: str
    path: str
    body: dict[str, Any]

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


def chat(model: str, *, stream: bool, max_tokens: int = 8) -> Request:
    body = {"model": model, "messages": [{"role": "user", "content": "hello there"}], "max_tokens": max_tokens}
    return Request("chat-stream" if stream else "chat", "/v1/chat/completions", body | {"stream": stream})


def embeddings(model: str) -> Request:
    return Request("embeddings", "/v1/embeddings", {"model": model, "input": "a sentence to embed"})


@dataclass(frozen=True)
class Outcome:
    kind: str
    started: float
    """time.monotonic() when the request was sent."""
    finished: float
    status: int
    """The HTTP status; 0 when no answer came (refused, reset, timed out)."""
    error: str = ""
    """Empty for a complete answer, else what went wrong."""

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def lost(self) -> bool:
        """Neither an answer nor an error the client could read: no response, or a stream cut off
        without an error event."""
        return self.status == 0 or self.error.startswith(TRUNCATED)

    @property
    def seconds(self) -> float:
        return self.finished - self.started


def _stream_error(response: httpx.Response) -> str:
    done = False
    for line in response.iter_lines():
        if line.startswith("event: error") or (line.startswith("data: {") and '"error"' in line[:40]):
            return f"error event: {line[:200]}"
        done = done or line == "data: [DONE]"
    return "" if done else TRUNCATED


@dataclass
class ConstantLoad:
    """`clients` threads sending the requests of `mix` in turn, back to back, until the block ends
    (default mix: chat completions for `model`, every other one streamed)."""

    base_url: str
    model: str = ""
    clients: int = 2
    mix: Sequence[Request] = ()
    timeout: float = 60.0
    _outcomes: list[Outcome] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.mix:
            self.mix = (chat(self.model, stream=True), chat(self.model, stream=False))

    def _one(self, client: httpx.Client, request: Request) -> Outcome:
        started = time.monotonic()
        status, error = 0, ""
        try:
            with client.stream("POST", request.path, content=orjson.dumps(request.body)) as response:
                status = response.status_code
                if status != 200:
                    error = f"HTTP {status}: {response.read()[:200]!r}"
                elif request.stream:
                    error = _stream_error(response)
                else:
                    response.read()
                    error = "" if response.json().get("choices") or response.json().get("data") else "empty answer"
        except httpx.HTTPError as failure:  # no answer at all, or an answer cut off on the way
            error = (f"{TRUNCATED}: " if status else "") + f"{type(failure).__name__}: {failure}"
        return Outcome(request.kind, started, time.monotonic(), status, error)

    def _client_loop(self, index: int) -> None:
        headers = {"content-type": "application/json"}
        with httpx.Client(base_url=self.base_url, timeout=self.timeout, headers=headers) as client:
            for n in itertools.count(index):
                if self._stop.is_set():
                    return
                outcome = self._one(client, self.mix[n % len(self.mix)])
                with self._lock:
                    self._outcomes.append(outcome)

    def __enter__(self) -> Self:
        for index in range(self.clients):
            thread = threading.Thread(target=self._client_loop, args=(index,), name=f"load-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    def outcomes(self, *, since: float = 0.0, until: float = float("inf")) -> list[Outcome]:
        """The requests sent in [since, until) (monotonic seconds), in the order they finished."""
        with self._lock:
            return [o for o in self._outcomes if since <= o.started < until]

    def failures(self, *, since: float = 0.0, until: float = float("inf")) -> list[Outcome]:
        return [o for o in self.outcomes(since=since, until=until) if not o.ok]

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        """Until `count` more requests than now have finished."""
        target = len(self.outcomes()) + count
        wait_until(lambda: len(self.outcomes()) >= target, f"{count} more requests of the load", timeout)
