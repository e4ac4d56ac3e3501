"""`sage up`: start every engine of the manifests, wait for them, then the gateway in front."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sage_api.apikey import key_hash
from sage_local.plan import LocalEngine, example_request
from sage_local.processes import ChildProcess


@dataclass
class UpOptions:
    engines: list[LocalEngine]
    host: str
    gateway_port: int
    log_dir: Path
    echo_logs: bool
    python: str
    health_timeout: float = 900.0
    api_key: str | None = None
    """Required on every /v1 request when set (the gateway holds only its hash)."""


@dataclass
class EngineState:
    engine: LocalEngine
    child: ChildProcess
    started: float = field(default_factory=time.monotonic)
    ready_after: float | None = None
    failure: str | None = None


TERMINATION_LOG_ENV = "SAGE_ENGINE_TERMINATION_LOG"


def _echo(name: str, line: str) -> None:
    print(f"{name:>12} | {line}", flush=True)


def static_engines(states: list[EngineState], host: str) -> list[dict[str, object]]:
    """What the gateway's static discovery is told: every engine, with an endpoint only when ready,
    so a failed engine's model is known (503) rather than unknown (404)."""
    return [
        {
            "name": s.engine.name,
            "servedModelName": s.engine.served_name,
            "aliases": list(s.engine.aliases),
            "engineKind": s.engine.kind.value,
            "endpoints": [f"http://{host}:{s.engine.port}"] if s.failure is None else [],
        }
        for s in states
    ]


async def wait_until_ok(client: httpx.AsyncClient, child: ChildProcess, url: str, limit_seconds: float) -> str | None:
    """Polls `url` until it answers 200 (local processes only). Returns why it never did, or None."""
    deadline = time.monotonic() + limit_seconds
    while time.monotonic() < deadline:
        if child.exited:
            code = child.process.returncode if child.process else None
            return f"exited with code {code} before it was ready:\n{child.tail()}"
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get(url)).status_code == 200:
                return None
        await asyncio.sleep(0.25)
    return f"not ready after {limit_seconds:.0f}s:\n{child.tail()}"


def _termination_reason(path: Path) -> str | None:
    """The one-line reason an engine wrote before exiting, as it does for Kubernetes."""
    if path.exists() and (reason := path.read_text().strip()):
        return reason
    return None


async def _wait_engine(client: httpx.AsyncClient, state: EngineState, host: str, limit_seconds: float) -> None:
    url = f"http://{host}:{state.engine.port}/health"
    state.failure = await wait_until_ok(client, state.child, url, limit_seconds)
    if state.failure is None:
        state.ready_after = time.monotonic() - state.started
    elif reason := _termination_reason(Path(state.child.env[TERMINATION_LOG_ENV])):
        state.failure = f"{reason}\n  (full log: {state.child.log_file})"


async def _progress(states: list[EngineState]) -> None:
    """One status line, rewritten in place on a terminal, every few seconds otherwise."""
    interactive = sys.stdout.isatty()
    last_print = 0.0
    while True:
        now = time.monotonic()
        waiting = [f"{s.engine.name} {now - s.started:.0f}s" for s in states if s.ready_after is None and not s.failure]
        if not waiting:
            return
        line = "loading: " + ", ".join(waiting)
        if interactive:
            print(f"\r\033[K{line}", end="", flush=True)
        elif now - last_print >= 10:
            print(line, flush=True)
            last_print = now
        await asyncio.sleep(0.5)


async def _first_of(*awaitables: Awaitable[Any]) -> None:
    """Waits until one of `awaitables` is done and cancels the others."""
    futures = [asyncio.ensure_future(a) for a in awaitables]
    await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    for future in futures:
        future.cancel()


class LocalRun:
    """One `sage up`: engines, then the gateway; everything stopped on the way out."""

    def __init__(self, options: UpOptions) -> None:
        self.options = options
        self.stop = asyncio.Event()
        self.echo = _echo if options.echo_logs else None
        self.states = [self._engine_state(engine) for engine in options.engines]
        self.gateway: ChildProcess | None = None

    def _engine_state(self, engine: LocalEngine) -> EngineState:
        termination_log = self.options.log_dir / f"{engine.name}.termination"
        termination_log.unlink(missing_ok=True)
        env = {**engine.env, TERMINATION_LOG_ENV: str(termination_log)}
        log_file = self.options.log_dir / f"{engine.name}.log"
        return EngineState(engine, ChildProcess(engine.name, list(engine.argv), env, log_file, self.echo))

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop.set)
        try:
            return await self._serve()
        finally:
            children = [s.child for s in self.states] + ([self.gateway] if self.gateway else [])
            await asyncio.gather(*(child.stop() for child in children))
            print("stopped.", flush=True)

    async def _serve(self) -> int:
        if not await self._start_engines():
            print("\ninterrupted; stopping", flush=True)
            return 130
        self._report_engines()
        if all(state.failure for state in self.states):
            print("no engine started; see the reasons above", file=sys.stderr)
            return 1
        gateway_url = await self._start_gateway()
        if gateway_url is None:
            return 1
        print(f"\nSAGE is serving at {gateway_url}/v1  (Ctrl-C stops everything)\n", flush=True)
        ready = [s.engine for s in self.states if not s.failure]
        print("  " + example_request(gateway_url, ready, keyed=self.options.api_key is not None) + "\n", flush=True)
        assert self.gateway is not None
        await _first_of(self.stop.wait(), _exit_of(self.gateway))
        if not self.stop.is_set():
            print(f"the gateway exited:\n{self.gateway.tail()}", file=sys.stderr)
            return 1
        print("\nstopping ...", flush=True)
        return 0

    async def _start_engines(self) -> bool:
        """Starts every engine and waits until each is healthy or failed; False if interrupted."""
        options = self.options
        for state in self.states:
            engine = state.engine
            print(f"starting {engine.name}: {engine.backend.value} {engine.model} on port {engine.port} "
                  f"(log: {state.child.log_file})", flush=True)  # fmt: skip
            await state.child.start()
        async with httpx.AsyncClient(timeout=2) as client:
            progress = asyncio.create_task(_progress(self.states))
            waits = (_wait_engine(client, s, options.host, options.health_timeout) for s in self.states)
            await _first_of(asyncio.gather(*waits), self.stop.wait())
            progress.cancel()
        return not self.stop.is_set()

    def _report_engines(self) -> None:
        print("\r\033[K" if sys.stdout.isatty() else "", end="")
        for state in self.states:
            if state.failure:
                print(f"FAILED  {state.engine.name}: {state.failure}", flush=True)
            else:
                served = ", ".join(state.engine.names)
                print(f"ready   {state.engine.name} in {state.ready_after:.1f}s (serves {served})", flush=True)

    async def _start_gateway(self) -> str | None:
        options = self.options
        self.gateway = ChildProcess(
            "gateway",
            [options.python, "-m", "sage_gateway", "--host", options.host, "--port", str(options.gateway_port)],
            {
                "SAGE_GATEWAY_DISCOVERY": "static",
                "SAGE_GATEWAY_STATIC_ENGINES": json.dumps(static_engines(self.states, options.host)),
                **gateway_auth_env(options.api_key),
            },
            options.log_dir / "gateway.log",
            self.echo,
        )
        await self.gateway.start()
        url = f"http://{options.host}:{options.gateway_port}"
        async with httpx.AsyncClient(timeout=2) as client:
            failure = await wait_until_ok(client, self.gateway, f"{url}/readyz", 60)
        if failure:
            print(f"FAILED  gateway: {failure}", file=sys.stderr)
            return None
        return url


def gateway_auth_env(api_key: str | None) -> dict[str, str]:
    """The gateway's settings for `--api-key`: the key's hash, never the key, crosses to it."""
    if api_key is None:
        return {}
    return {"SAGE_GATEWAY_AUTH": "api-keys", "SAGE_GATEWAY_API_KEYS": key_hash(api_key)}


async def run_up(options: UpOptions) -> int:
    return await LocalRun(options).run()


async def _exit_of(child: ChildProcess) -> None:
    if child.process is not None:
        await child.process.wait()
