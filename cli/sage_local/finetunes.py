"""Local fine-tunes: the same runner a FinetuneJob's pod runs (`python -m sage_finetune`), as a
child process of the control plane, with its progress read from the runner's progress.jsonl."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sage_api.finetune import FinetunePhase, FinetuneProgress
from sage_api.finetune_request import FinetuneRequest
from sage_local.processes import ChildProcess
from sage_local.supervise import describe_exit

PROGRESS_FILE = "progress.jsonl"
PROGRESS_KEYS = {field.alias or name for name, field in FinetuneProgress.model_fields.items()}
"""The keys of a progress line that are status.progress (the lines are camelCase, as the status)."""


def runner_argv(request: FinetuneRequest, *, python: str, termination_log: Path) -> list[str]:
    """The runner's command line for `request` (its flags are the FinetuneJob's env vars)."""
    argv = [python, "-m", "sage_finetune", "--base-model", request.base_model, "--dataset", request.dataset]
    argv += ["--output", request.output, "--format", request.format, "--method", request.method]
    argv += ["--epochs", str(request.epochs), "--learning-rate", str(request.learning_rate)]
    argv += ["--batch-size", str(request.batch_size), "--termination-log", str(termination_log)]
    if request.method == "lora":
        argv += ["--rank", str(request.rank), "--alpha", str(request.alpha)]
    if request.max_steps is not None:
        argv += ["--max-steps", str(request.max_steps)]
    return argv


def last_progress(output: Path) -> FinetuneProgress | None:
    """The last complete line of progress.jsonl, as the FinetuneJob's status.progress."""
    path = output / PROGRESS_FILE
    with contextlib.suppress(OSError):
        for line in reversed(path.read_text().splitlines()):
            with contextlib.suppress(ValueError):
                fields = json.loads(line)
                known = {key: value for key, value in fields.items() if key in PROGRESS_KEYS}
                return FinetuneProgress.model_validate(known)
    return None


@dataclass
class LocalFinetune:
    request: FinetuneRequest
    child: ChildProcess
    termination_log: Path
    phase: FinetunePhase = FinetunePhase.RUNNING
    message: str = ""
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def progress(self) -> FinetuneProgress | None:
        return last_progress(Path(self.request.output))


OnSuccess = Callable[[FinetuneRequest], Awaitable[str]]
"""Hands a finished adapter to the engine named by `serve`; returns what was done."""


class FinetuneRunner:
    def __init__(self, *, python: str, log_dir: Path, on_success: OnSuccess, say: Callable[[str], None]) -> None:
        self.python = python
        self.log_dir = log_dir
        self.on_success = on_success
        self.say = say
        self.runs: dict[str, LocalFinetune] = {}

    def start(self, request: FinetuneRequest) -> LocalFinetune:
        """ValueError when one of that name is still running."""
        running = self.runs.get(request.name)
        if running is not None and running.phase is FinetunePhase.RUNNING:
            msg = f"a fine-tune named {request.name} is already running"
            raise ValueError(msg)
        termination_log = self.log_dir / f"{request.name}.termination"
        termination_log.unlink(missing_ok=True)
        argv = runner_argv(request, python=self.python, termination_log=termination_log)
        child = ChildProcess(request.name, argv, {}, self.log_dir / f"{request.name}.log", None)
        run = LocalFinetune(request, child, termination_log)
        self.runs[request.name] = run
        run.task = asyncio.create_task(self._follow(run), name=f"fine-tune {request.name}")
        return run

    async def _follow(self, run: LocalFinetune) -> None:
        await run.child.start()
        assert run.child.process is not None
        code = await run.child.process.wait()
        await run.child.stop()
        reason = None
        with contextlib.suppress(OSError):
            reason = run.termination_log.read_text().strip() or None
        if code == 0:
            run.phase, run.message = FinetunePhase.SUCCEEDED, reason or "completed"
            if run.request.serve:
                try:
                    run.message += "; " + await self.on_success(run.request)
                except (KeyError, RuntimeError) as error:
                    run.message += f"; not served: {error}"
        else:
            run.phase, run.message = FinetunePhase.FAILED, describe_exit(code, reason)
        self.say(f"fine-tune {run.request.name}: {run.phase.value}: {run.message}")

    async def delete(self, name: str) -> LocalFinetune:
        """Stops (SIGTERM: the runner checkpoints) and forgets it. KeyError if unknown."""
        run = self.runs.pop(name)
        await run.child.stop()
        if run.task is not None:
            run.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run.task
        return run

    async def close(self) -> None:
        await asyncio.gather(*(self.delete(name) for name in list(self.runs)))
