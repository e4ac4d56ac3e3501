"""Real gateway (and sage-edge) processes for tests, on a free loopback port.

    with GatewayProcess(env={"SAGE_GATEWAY_DISCOVERY": "static", ...}) as gateway:
        httpx.get(f"{gateway.base_url}/v1/models")

`start()` waits until `/readyz` answers 200 (discovery synced) and raises with the log when the
process exits or never turns ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from aiohttp import web

from sage_testing.children import terminate, wait_http_ok
from sage_testing.envtest import free_port, source_pythonpath


class GatewayStartError(RuntimeError):
    """The gateway exited or did not become ready; the message ends with its log."""


@dataclass
class GatewayProcess:
    """`python -m sage_gateway` (or any module taking `--port`), configured through `env`."""

    env: Mapping[str, str] = field(default_factory=dict)
    module: str = "sage_gateway"
    args: Sequence[str] = ()
    ready_path: str = "/readyz"
    startup_timeout: float = 60.0
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _log_file: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", self.module, "--host", "127.0.0.1", "--port", str(self.port), *self.args]

    def launch(self) -> Self:
        if self.port == 0:
            self.port = free_port()
        handle, name = tempfile.mkstemp(prefix=f"sage-{self.module.replace('.', '-')}-{self.port}-", suffix=".log")
        os.close(handle)
        self.log_path = Path(name)
        self._log_file = self.log_path.open("wb")
        environment = {**os.environ, "PYTHONPATH": source_pythonpath(), "HF_HUB_OFFLINE": "1", **self.env}
        self.process = subprocess.Popen(
            self.command(), stdout=self._log_file, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
        return self

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def _fail(self, why: str) -> GatewayStartError:
        return GatewayStartError(f"{' '.join(self.command()[1:])}: {why}\n--- log ---\n{self.log()[-6000:]}")

    def wait_ready(self, timeout: float | None = None) -> None:
        assert self.process is not None, "launch() first"
        failure = wait_http_ok(self.process, f"{self.base_url}{self.ready_path}", timeout or self.startup_timeout)
        if failure is not None:
            raise self._fail(f"never ready: {failure}")

    def start(self) -> Self:
        self.launch()
        self.wait_ready()
        return self

    def stop(self) -> None:
        terminate(self.process)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


class GatedUpstream:
    """A tiny real OpenAI-shaped upstream for the proxy's streaming tests, run in the test's event
    loop (aiohttp.web on a loopback port).

    A streaming chat request gets its first chunk at once; the second only after the test sets
    `release`. Meanwhile SSE comments keep the connection busy, so that when the gateway drops
    the upstream connection (its client went away) a write fails and `disconnected` is set.
    A request with `"hold": true` is answered only after `release` (or noted in `disconnected`
    when the caller hangs up first). Every request's headers are kept in `seen_headers`.
    `/v1/completions` always fails with a plain-text 500.
    """

    def __init__(self, model: str = "gated") -> None:
        self.model = model
        self.release = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.received = asyncio.Event()
        self.seen_headers: list[dict[str, str]] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Fresh events and records, for the next test."""
        self.release.set()  # whatever still waits from an earlier test finishes
        self.release = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.received = asyncio.Event()
        self.seen_headers = []

    def chunk(self, text: str) -> bytes:
        choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
        payload = {"id": "g", "object": "chat.completion.chunk", "model": self.model, "choices": [choice]}
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        # This request's events: a later test's reset() must not see this handler's outcome.
        release, disconnected = self.release, self.disconnected
        self.seen_headers.append(dict(request.headers))
        self.received.set()
        body = await request.json()
        if body.get("hold"):  # answer only after `release`, unless the caller hangs up first
            while not release.is_set():
                if request.transport is None or request.transport.is_closing():
                    disconnected.set()
                    return web.Response(status=499)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(release.wait(), 0.05)
        if not body.get("stream"):
            message = {"role": "assistant", "content": "gated"}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return web.json_response({"id": "g", "object": "chat.completion", "model": self.model, "choices": [choice]})
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(self.chunk("first"))
            while not release.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(release.wait(), 0.05)
                await response.write(b": waiting\n\n")
            await response.write(self.chunk("second"))
            await response.write(b"data: [DONE]\n\n")
        except (ConnectionError, RuntimeError):
            disconnected.set()
            return response
        await response.write_eof()
        return response

    async def _crash(self, request: web.Request) -> web.Response:
        """What a crashing server behind a plain proxy answers: a 500 that is not JSON."""
        return web.Response(status=500, text="boom: out of memory", content_type="text/plain")

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def start(self) -> GatedUpstream:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._crash)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
