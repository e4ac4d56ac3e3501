"""Real gateway (and sage-edge) processes on a free loopback port, and a gated upstream.

    with GatewayProcess(env={"SAGE_GATEWAY_DISCOVERY": "static", ...}) as gateway:
        httpx.get(f"{gateway.base_url}/v1/models")

`start()` waits until `/readyz` answers 200 (discovery synced) and raises with the log when the
process exits or never turns ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from aiohttp import web

from sage_harness.net import free_port
from sage_harness.process import ManagedProcess
from sage_harness.repo import source_pythonpath


class GatewayProcess(ManagedProcess):
    """`python -m sage_gateway` (or any module taking `--host`/`--port`), configured through `env`."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        module: str = "sage_gateway",
        args: Sequence[str] = (),
        ready_path: str = "/readyz",
        startup_timeout: float = 60.0,
        port: int = 0,
        log_path: Path | None = None,
    ) -> None:
        super().__init__(module.replace(".", "-"), log_path=log_path)
        self.module, self.args, self.ready_path, self.startup_timeout = module, tuple(args), ready_path, startup_timeout
        self.port = port or free_port()
        self.env = {"PYTHONPATH": source_pythonpath(), "HF_HUB_OFFLINE": "1", **(env or {})}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", self.module, "--host", "127.0.0.1", "--port", str(self.port), *self.args]

    def ready(self) -> None:
        self.wait_ready()

    def wait_ready(self, timeout: float | None = None) -> None:
        self.wait_http_ok(f"{self.base_url}{self.ready_path}", timeout or self.startup_timeout)


TRUNCATE = "end this stream early"


class GatedUpstream:
    """A tiny real OpenAI-shaped upstream for the proxy's streaming tests, run in the test's event
    loop (aiohttp.web on a loopback port).

    A streaming chat request gets its first chunk at once; the second only after the test sets
    `release`. Meanwhile SSE comments keep the connection busy, so that when the gateway drops
    the upstream connection (its client went away) a write fails and `disconnected` is set.
    A request with `"hold": true` is answered only after `release` (or noted in `disconnected`
    when the caller hangs up first); a stream whose message is TRUNCATE ends (cleanly, chunked)
    after its first chunk, without [DONE] or a finish_reason. Every request's headers are kept in `seen_headers`.
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
        contents = [str(message.get("content")) for message in body.get("messages") or [] if isinstance(message, dict)]
        if TRUNCATE in contents:  # a replica that ends the stream cleanly before finishing it
            await response.write(self.chunk("first"))
            await response.write_eof()
            return response
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
