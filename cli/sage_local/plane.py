"""What the local control plane does when asked (by `sage llm ...` through its management API):
start an engine from an LLMEngine manifest, run a fine-tune, list, stop, and read logs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from sage_api.engine import EnginePhase
from sage_api.finetune_request import FinetuneRequest, check_finetune
from sage_local.control import EngineSupervisor, Supervised
from sage_local.finetunes import FinetuneRunner, LocalFinetune
from sage_local.manifests import ManifestError, parse_engines
from sage_local.plan import free_port, plan_engine

LOG_FOLLOW_POLL_SECONDS = 0.2
REQUEST_SOURCE = Path("sage-llm-engine-start.yaml")
"""Where an engine started by `sage llm engine start` says it came from in messages."""


class Conflict(ValueError):
    """The name is in use by something running."""


def engine_row(state: Supervised) -> dict[str, Any]:
    running = 0 if state.phase is EnginePhase.PAUSED else 1
    return {
        "name": state.engine.name,
        "kind": state.engine.kind.value,
        "model": state.engine.model,
        "backend": state.engine.backend.value,
        "ready": f"{1 if state.serving else 0}/{running}",
        "phase": state.phase.value,
        "message": state.message,
        "port": state.engine.port,
        "restarts": state.restarts,
        "adapters": list(state.adapters),
    }


def finetune_row(run: LocalFinetune) -> dict[str, Any]:
    progress = run.progress
    return {
        "name": run.request.name,
        "kind": "finetune",
        "model": run.request.base_model,
        "backend": "transformers",
        "ready": "-",
        "phase": run.phase.value,
        "message": run.message,
        "progress": progress.to_wire() if progress else None,
        "result": run.request.output if run.phase.value == "Succeeded" else None,
    }


class LocalPlane:
    """The engines and fine-tunes of one `sage up`."""

    def __init__(self, supervisor: EngineSupervisor, *, base_port: int, python: str, log_dir: Path) -> None:
        self.supervisor = supervisor
        self.base_port = base_port
        self.python = python
        self.log_dir = log_dir
        self.finetunes = FinetuneRunner(python=python, log_dir=log_dir, on_success=self._serve, say=supervisor.say)

    def start_engine(self, manifest: dict[str, Any]) -> Supervised:
        """ManifestError for a manifest local mode cannot run; Conflict when the name runs."""
        loaded, _ = parse_engines(yaml.safe_dump(manifest), REQUEST_SOURCE)
        if len(loaded) != 1:
            msg = "expected one LLMEngine manifest"
            raise ManifestError(msg)
        name = loaded[0].name
        existing = self.supervisor.engines.get(name)
        if existing is not None and existing.phase not in {EnginePhase.PAUSED, EnginePhase.FAILED}:
            msg = f"an engine named {name} is already {existing.phase.value.lower()}; stop it first"
            raise Conflict(msg)
        taken = {s.engine.port for s in self.supervisor.engines.values() if s.engine.name != name}
        port = existing.engine.port if existing is not None else free_port(taken, self.base_port)
        engine = plan_engine(loaded[0], port=port, host=self.supervisor.host, python=self.python)
        return self.supervisor.add(engine)

    def start_finetune(self, request: FinetuneRequest) -> LocalFinetune:
        """RequestError for bad options, ValueError when one of that name runs."""
        check_finetune(request)
        if not Path(request.dataset).is_file():
            msg = f"--dataset {request.dataset}: no such file"
            raise ManifestError(msg)
        if request.serve and request.serve not in self.supervisor.engines:
            msg = f"--serve {request.serve}: no engine of that name in this control plane"
            raise ManifestError(msg)
        return self.finetunes.start(request)

    async def _serve(self, request: FinetuneRequest) -> str:
        assert request.serve is not None
        return await self.supervisor.load_adapter(request.serve, request.name, request.output)

    def rows(self) -> list[dict[str, Any]]:
        engines = [engine_row(s) for _, s in sorted(self.supervisor.engines.items())]
        return engines + [finetune_row(r) for _, r in sorted(self.finetunes.runs.items())]

    async def stop(self, name: str, *, delete: bool) -> str:
        """KeyError when nothing has that name."""
        if name in self.finetunes.runs:
            await self.finetunes.delete(name)
            return f"fine-tune {name} stopped and deleted (its output folder is kept)"
        await self.supervisor.stop(name, delete=delete)
        return f"engine {name} deleted" if delete else f"engine {name} stopped (`--delete` forgets it)"

    def log_file(self, name: str) -> Path:
        """KeyError when nothing has that name."""
        if name in self.finetunes.runs:
            return self.finetunes.runs[name].child.log_file
        return self.supervisor.engines[name].child.log_file

    async def log_lines(self, name: str, *, follow: bool) -> AsyncIterator[str]:
        """The log so far; with `follow`, then every line as it is written, until the engine or
        fine-tune is deleted (restarts append to the same file)."""
        path = self.log_file(name)
        position = 0
        while True:
            if path.exists():
                with path.open("rb") as log:
                    log.seek(position)
                    chunk = log.read()
                complete = chunk[: chunk.rfind(b"\n") + 1]
                position += len(complete)
                for line in complete.decode(errors="replace").splitlines():
                    yield line
            if not follow or (name not in self.supervisor.engines and name not in self.finetunes.runs):
                return
            await asyncio.sleep(LOG_FOLLOW_POLL_SECONDS)

    async def close(self) -> None:
        await self.finetunes.close()
        await self.supervisor.close()
