"""`sage up`: the local control plane. It starts every engine of the manifests, waits for them,
starts the gateway in front, and then keeps serving: engines are supervised (restarted with
backoff when they die) and `sage llm engine start|stop|list|logs` reach it through its
management API on the loopback address."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from sage_api.apikey import key_hash
from sage_api.engine import EnginePhase
from sage_local.control import EngineSupervisor, Supervised, wait_until_ok
from sage_local.control_api import control_app
from sage_local.plan import LocalEngine, example_request
from sage_local.plane import LocalPlane
from sage_local.processes import ChildProcess

CONTROL_HOST = "127.0.0.1"


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
    control_port: int = 0
    engine_base_port: int = 0


def _echo(name: str, line: str) -> None:
    print(f"{name:>12} | {line}", flush=True)


def _say(line: str) -> None:
    print(line, flush=True)


async def _progress(states: list[Supervised]) -> None:
    """One status line, rewritten in place on a terminal, every few seconds otherwise."""
    interactive = sys.stdout.isatty()
    last_print = 0.0
    while True:
        now = time.monotonic()
        waiting = [f"{s.engine.name} {now - s.started:.0f}s" for s in states if not s.settled]
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


async def _all_settled(states: list[Supervised], supervisor: EngineSupervisor) -> None:
    while True:
        supervisor.changed.clear()
        if all(s.settled for s in states):
            return
        await supervisor.changed.wait()


class _ControlServer(uvicorn.Server):
    """The management API's server; Ctrl-C and SIGTERM belong to `sage up`, which stops it last."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


class LocalRun:
    """One `sage up`: control API, engines, then the gateway; everything stopped on the way out."""

    def __init__(self, options: UpOptions) -> None:
        self.options = options
        self.stop = asyncio.Event()
        self.echo = _echo if options.echo_logs else None
        self.gateway: ChildProcess | None = None
        self.ready = False
        self.gateway_url = f"http://{options.host}:{options.gateway_port}"
        self.supervisor = EngineSupervisor(
            host=options.host,
            log_dir=options.log_dir,
            engines_file=options.log_dir / "gateway-engines.json",
            health_timeout=options.health_timeout,
            echo=self.echo,
            say=_say,
        )
        self.plane = LocalPlane(
            self.supervisor, base_port=options.engine_base_port, python=options.python, log_dir=options.log_dir
        )

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop.set)
        control_url = f"http://{CONTROL_HOST}:{self.options.control_port}"
        if port_in_use(CONTROL_HOST, self.options.control_port):
            print(f"sage up: a local control plane already answers at {control_url} (`sage down` stops it)",
                  file=sys.stderr)  # fmt: skip
            return 1
        config = uvicorn.Config(
            control_app(self.plane, gateway_url=self.gateway_url, is_ready=lambda: self.ready),
            host=CONTROL_HOST,
            port=self.options.control_port,
            log_level="warning",
            lifespan="off",
        )
        server = _ControlServer(config)
        serving = asyncio.create_task(server.serve())
        try:
            return await self._serve()
        finally:
            await self.plane.close()
            if self.gateway is not None:
                await self.gateway.stop()
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await serving
            print("stopped.", flush=True)

    async def _serve(self) -> int:
        states = [self.supervisor.add(engine) for engine in self.options.engines]
        for state in states:
            engine = state.engine
            print(f"starting {engine.name}: {engine.backend.value} {engine.model} on port {engine.port} "
                  f"(log: {state.child.log_file})", flush=True)  # fmt: skip
        progress = asyncio.create_task(_progress(states))
        await _first_of(_all_settled(states, self.supervisor), self.stop.wait())
        progress.cancel()
        if self.stop.is_set():
            print("\ninterrupted; stopping", flush=True)
            return 130
        self._report(states)
        if states and all(state.phase is EnginePhase.FAILED for state in states):
            print("no engine started; see the reasons above", file=sys.stderr)
            return 1
        if not await self._start_gateway():
            return 1
        self.ready = True
        print(f"\nSAGE is serving at {self.gateway_url}/v1  (Ctrl-C stops everything)\n", flush=True)
        ready = [s.engine for s in states if s.phase is not EnginePhase.FAILED]
        if ready:
            print("  " + example_request(self.gateway_url, ready, keyed=self.options.api_key is not None) + "\n",
                  flush=True)  # fmt: skip
        else:
            print("  no engines yet: start one with `sage llm engine start MODEL`\n", flush=True)
        assert self.gateway is not None
        await _first_of(self.stop.wait(), _exit_of(self.gateway))
        if not self.stop.is_set():
            print(f"the gateway exited:\n{self.gateway.tail()}", file=sys.stderr)
            return 1
        print("\nstopping ...", flush=True)
        return 0

    def _report(self, states: list[Supervised]) -> None:
        print("\r\033[K" if sys.stdout.isatty() else "", end="")
        for state in states:
            if state.phase is EnginePhase.FAILED:
                print(f"FAILED  {state.engine.name}: {state.message}", flush=True)
            elif state.phase is EnginePhase.PAUSED:
                print(f"stopped {state.engine.name}: replicas is 0", flush=True)
            else:
                served = ", ".join(state.engine.names)
                print(f"ready   {state.engine.name} in {state.ready_after or 0:.1f}s (serves {served})", flush=True)

    async def _start_gateway(self) -> bool:
        options = self.options
        self.gateway = ChildProcess(
            "gateway",
            [options.python, "-m", "sage_gateway", "--host", options.host, "--port", str(options.gateway_port)],
            {
                "SAGE_GATEWAY_DISCOVERY": "static",
                "SAGE_GATEWAY_STATIC_ENGINES_FILE": str(self.supervisor.engines_file),
                **gateway_auth_env(options.api_key),
            },
            options.log_dir / "gateway.log",
            self.echo,
        )
        await self.gateway.start()
        async with httpx.AsyncClient(timeout=2) as client:
            failure = await wait_until_ok(client, self.gateway, f"{self.gateway_url}/readyz", 60)
        if failure:
            print(f"FAILED  gateway: {failure}", file=sys.stderr)
            return False
        return True


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
