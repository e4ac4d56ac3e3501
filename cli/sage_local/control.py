"""The local control plane: the engines `sage up` runs, supervised as a kubelet would supervise
their pods, and the file that tells the gateway which of them can take requests.

An engine that never became ready is Failed (its manifest or model needs fixing; `sage llm engine
start` runs it again). One that exits after serving is reported with its exit reason and started
again with backoff; it stays Degraded, with that reason, until it serves again, and meanwhile the
gateway knows its model without an endpoint and answers 503 with Retry-After."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from sage_api.engine import EnginePhase
from sage_local.plan import LocalEngine
from sage_local.processes import ChildProcess
from sage_local.supervise import Backoff, describe_exit

TERMINATION_LOG_ENV = "SAGE_ENGINE_TERMINATION_LOG"
HEALTH_POLL_SECONDS = 0.25


@dataclass
class Supervised:
    """One engine and what its control plane knows about it."""

    engine: LocalEngine
    child: ChildProcess
    phase: EnginePhase = EnginePhase.LOADING
    message: str = ""
    restarts: int = 0
    started: float = field(default_factory=time.monotonic)
    ready_after: float | None = None
    task: asyncio.Task[None] | None = None
    adapters: dict[str, str] = field(default_factory=dict)
    """LoRA adapters loaded into it since it started (name -> folder), loaded again after a restart."""

    @property
    def settled(self) -> bool:
        """Done with its first start: ready, or failed before it ever was."""
        return self.phase is not EnginePhase.LOADING or self.restarts > 0

    @property
    def serving(self) -> bool:
        return self.phase is EnginePhase.READY


def termination_reason(path: Path) -> str | None:
    """The one-line reason an engine wrote before exiting, as it does for Kubernetes."""
    with contextlib.suppress(OSError):
        if reason := path.read_text().strip():
            return reason
    return None


async def wait_until_ok(client: httpx.AsyncClient, child: ChildProcess, url: str, limit_seconds: float) -> str | None:
    """Polls `url` until it answers 200 (local processes only). Returns why it never did, or None."""
    deadline = time.monotonic() + limit_seconds
    while time.monotonic() < deadline:
        if child.exited:
            code = child.process.returncode if child.process else None
            return f"{describe_exit(code)} before it was ready:\n{child.tail()}"
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get(url)).status_code == 200:
                return None
        await asyncio.sleep(HEALTH_POLL_SECONDS)
    return f"not ready after {limit_seconds:.0f}s:\n{child.tail()}"


def gateway_engines(engines: list[Supervised], host: str) -> dict[str, object]:
    """What the gateway's static discovery reads: every engine, with an endpoint only while it
    serves, so that a failed or restarting engine's model is known (503) rather than unknown (404)."""
    return {
        "engines": [
            {
                "name": s.engine.name,
                "servedModelName": s.engine.served_name,
                "aliases": list(s.engine.aliases),
                "adapters": list(s.adapters),
                "engineKind": s.engine.kind.value,
                "endpoints": [f"http://{host}:{s.engine.port}"] if s.serving else [],
            }
            for s in engines
        ]
    }


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


Say = Callable[[str], None]


class EngineSupervisor:
    """Starts, watches, restarts and stops engine processes; publishes who serves."""

    def __init__(
        self,
        *,
        host: str,
        log_dir: Path,
        engines_file: Path,
        health_timeout: float,
        echo: Callable[[str, str], None] | None,
        say: Say,
    ) -> None:
        self.host = host
        self.log_dir = log_dir
        self.engines_file = engines_file
        self.health_timeout = health_timeout
        self.echo = echo
        self.say = say
        self.engines: dict[str, Supervised] = {}
        self._http = httpx.AsyncClient(timeout=2)
        self.changed = asyncio.Event()
        self.publish()

    def publish(self) -> None:
        write_atomically(self.engines_file, json.dumps(gateway_engines(list(self.engines.values()), self.host)))
        self.changed.set()

    def _child(self, engine: LocalEngine) -> ChildProcess:
        termination_log = self.log_dir / f"{engine.name}.termination"
        env = {**engine.env, TERMINATION_LOG_ENV: str(termination_log)}
        return ChildProcess(engine.name, list(engine.argv), env, self.log_dir / f"{engine.name}.log", self.echo)

    def add(self, engine: LocalEngine) -> Supervised:
        """Runs `engine` (replacing a stopped or failed one of that name) unless it asks for 0 replicas."""
        state = Supervised(engine, self._child(engine))
        self.engines[engine.name] = state
        if engine.replicas == 0:
            state.phase, state.message = EnginePhase.PAUSED, "stopped (replicas: 0)"
        else:
            state.task = asyncio.create_task(self._supervise(state), name=f"supervise {engine.name}")
        self.publish()
        return state

    async def _supervise(self, state: Supervised) -> None:
        backoff = Backoff()
        while True:
            termination_log = Path(state.child.env[TERMINATION_LOG_ENV])
            await asyncio.to_thread(termination_log.unlink, missing_ok=True)
            state.started = time.monotonic()
            await state.child.start()
            url = f"http://{self.host}:{state.engine.port}/health"
            failure = await wait_until_ok(self._http, state.child, url, self.health_timeout)
            if failure is not None and state.restarts == 0:
                await state.child.stop()
                reason = termination_reason(termination_log)
                state.phase = EnginePhase.FAILED
                state.message = f"{reason}\n  (full log: {state.child.log_file})" if reason else failure
                self.publish()
                return
            served_seconds = 0.0
            if failure is None:
                try:
                    await self._load_adapters(state)
                except (RuntimeError, httpx.HTTPError) as error:
                    self.say(f"WARNING {state.engine.name}: {error}")
                state.phase, state.message = EnginePhase.READY, ""
                state.ready_after = time.monotonic() - state.started
                self.publish()
                if state.restarts:
                    self.say(f"ready   {state.engine.name} again after restart {state.restarts}")
                assert state.child.process is not None
                await state.child.process.wait()
                served_seconds = time.monotonic() - state.started
            await state.child.stop()
            backoff = backoff.after_exit(served_seconds)
            exit_code = state.child.process.returncode if state.child.process else None
            why = describe_exit(exit_code, termination_reason(termination_log))
            state.restarts += 1
            state.phase = EnginePhase.DEGRADED
            state.message = f"{why}; restart {state.restarts} in {backoff.delay_seconds:.0f}s"
            self.publish()
            self.say(f"EXITED  {state.engine.name}: {state.message} (log: {state.child.log_file})")
            await asyncio.sleep(backoff.delay_seconds)
            state.child = self._child(state.engine)

    async def load_adapter(self, name: str, adapter: str, path: str) -> str:
        """Loads a LoRA adapter into a running engine without restarting it. KeyError if unknown;
        RuntimeError if the engine refuses."""
        state = self.engines[name]
        state.adapters[adapter] = path
        if state.serving:
            await self._load_adapters(state, only=adapter)
            self.publish()
        return f"{state.engine.name} serves it as model {adapter!r}"

    async def _load_adapters(self, state: Supervised, only: str | None = None) -> None:
        for adapter, path in state.adapters.items():
            if only is not None and adapter != only:
                continue
            url = f"http://{self.host}:{state.engine.port}/v1/load_lora_adapter"
            response = await self._http.post(url, json={"lora_name": adapter, "lora_path": path}, timeout=300)
            if response.status_code >= 400:
                msg = f"{state.engine.name} did not load adapter {adapter}: {response.text[:300]}"
                raise RuntimeError(msg)

    async def stop(self, name: str, *, delete: bool) -> Supervised:
        """Stops the engine's process (kept as Paused, or forgotten with `delete`). KeyError if unknown."""
        state = self.engines[name]
        if state.task is not None:
            state.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await state.task
            state.task = None
        await state.child.stop()
        state.phase, state.message = EnginePhase.PAUSED, "stopped"
        if delete:
            del self.engines[name]
        self.publish()
        return state

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(name, delete=False) for name in list(self.engines)))
        await self._http.aclose()
