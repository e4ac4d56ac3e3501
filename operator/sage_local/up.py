"""`sage up`: start every engine of the manifests, wait for them, then the gateway in front."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

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


@dataclass
class EngineState:
    engine: LocalEngine
    child: ChildProcess
    started: float = field(default_factory=time.monotonic)
    ready_after: float | None = None
    failure: str | None = None


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


async def _wait_engine(client: httpx.AsyncClient, state: EngineState, host: str, limit_seconds: float) -> None:
    url = f"http://{host}:{state.engine.port}/health"
    state.failure = await wait_until_ok(client, state.child, url, limit_seconds)
    if state.failure is None:
        state.ready_after = time.monotonic() - state.started


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


async def run_up(options: UpOptions) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    echo = _echo if options.echo_logs else None
    states = [
        EngineState(
            engine,
            ChildProcess(engine.name, list(engine.argv), engine.env, options.log_dir / f"{engine.name}.log", echo),
        )
        for engine in options.engines
    ]
    gateway: ChildProcess | None = None
    try:
        for state in states:
            print(f"starting {state.engine.name}: {state.engine.backend.value} {state.engine.model} "
                  f"on port {state.engine.port} (log: {state.child.log_file})", flush=True)  # fmt: skip
            await state.child.start()
        async with httpx.AsyncClient(timeout=2) as client:
            progress = asyncio.create_task(_progress(states))
            race: list[asyncio.Future[Any]] = [
                asyncio.ensure_future(
                    asyncio.gather(*(_wait_engine(client, s, options.host, options.health_timeout) for s in states))
                ),
                asyncio.ensure_future(stop.wait()),
            ]
            await asyncio.wait(race, return_when=asyncio.FIRST_COMPLETED)
            for future in race:
                future.cancel()
            progress.cancel()
            if stop.is_set():
                print("\ninterrupted; stopping", flush=True)
                return 130
        print("\r\033[K" if sys.stdout.isatty() else "", end="")
        for state in states:
            if state.failure:
                print(f"FAILED  {state.engine.name}: {state.failure}", flush=True)
            else:
                print(f"ready   {state.engine.name} in {state.ready_after:.1f}s "
                      f"(serves {', '.join(state.engine.names)})", flush=True)  # fmt: skip
        if all(state.failure for state in states):
            print("no engine started; see the logs above", file=sys.stderr)
            return 1
        gateway = ChildProcess(
            "gateway",
            [options.python, "-m", "sage_gateway", "--host", options.host, "--port", str(options.gateway_port)],
            {
                "SAGE_GATEWAY_DISCOVERY": "static",
                "SAGE_GATEWAY_STATIC_ENGINES": json.dumps(static_engines(states, options.host)),
            },
            options.log_dir / "gateway.log",
            echo,
        )
        await gateway.start()
        gateway_url = f"http://{options.host}:{options.gateway_port}"
        async with httpx.AsyncClient(timeout=2) as client:
            failure = await wait_until_ok(client, gateway, f"{gateway_url}/readyz", 60)
        if failure:
            print(f"FAILED  gateway: {failure}", file=sys.stderr)
            return 1
        print(f"\nSAGE is serving at {gateway_url}/v1  (Ctrl-C stops everything)\n", flush=True)
        print("  " + example_request(gateway_url, [s.engine for s in states if not s.failure]) + "\n", flush=True)
        watchers: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(_exit_of(gateway)),
        ]
        await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
        for watcher in watchers:
            watcher.cancel()
        if not stop.is_set():
            print(f"the gateway exited:\n{gateway.tail()}", file=sys.stderr)
            return 1
        print("\nstopping ...", flush=True)
        return 0
    finally:
        children = [s.child for s in states] + ([gateway] if gateway else [])
        await asyncio.gather(*(child.stop() for child in children))
        print("stopped.", flush=True)


async def _exit_of(child: ChildProcess) -> None:
    if child.process is not None:
        await child.process.wait()
