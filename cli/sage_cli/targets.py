"""What `sage llm ...` acts on: a local control plane or a cluster, behind one interface.

Both targets take the same requests (an LLMEngine manifest, or a FinetuneRequest, built from the
command line by `sage_cli.requests`) and answer with the same rows, so the commands never ask
which target they talk to except to say it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from sage_api.finetune import FinetuneProgress
from sage_api.finetune_request import FinetuneRequest


class TargetError(RuntimeError):
    """An expected failure a user can act on (unreachable target, unknown name, refused manifest):
    printed as one message, never as a traceback."""


@dataclass(frozen=True)
class EngineRow:
    """One line of `sage llm engine list`: an engine or a fine-tune."""

    name: str
    kind: str
    """llm, embedding or finetune."""
    model: str
    backend: str
    ready: str
    """Ready replicas over desired ("1/1"); "-" for a fine-tune."""
    phase: str
    progress: FinetuneProgress | None = None
    """A fine-tune's last progress report."""
    message: str = ""
    """Why, when the phase needs explaining (a failure's reason, a restart's exit)."""


@dataclass(frozen=True)
class FinetuneState:
    """Where a fine-tune is, as `sage llm fine-tune` follows it."""

    phase: str
    """Pending, Running, Succeeded, Failed (the FinetuneJob's phases)."""
    progress: FinetuneProgress | None
    message: str = ""
    result: str | None = None
    """Where the adapter or weights are, once Succeeded."""

    @property
    def finished(self) -> bool:
        return self.phase in {"Succeeded", "Failed"}


class Target(Protocol):
    """A place engines and fine-tunes run."""

    @property
    def description(self) -> str:
        """Said on every command: "local control plane at http://127.0.0.1:8089" or
        "cluster: context kind-sage, namespace ml"."""
        ...

    async def start_engine(self, manifest: dict[str, Any]) -> str:
        """Creates the LLMEngine of `manifest` (or starts a stopped one of that name again);
        returns what was done, in one line. Raises TargetError."""
        ...

    async def start_finetune(self, request: FinetuneRequest) -> str:
        """Starts a fine-tune: locally the runner as a process, on a cluster a FinetuneJob.
        Returns what was done, in one line. Raises TargetError."""
        ...

    async def rows(self) -> list[EngineRow]:
        """Every engine and fine-tune, engines first, each sorted by name."""
        ...

    async def stop(self, name: str, *, delete: bool) -> str:
        """Stops an engine (to zero replicas, kept) or deletes it (`delete`); a fine-tune is
        always deleted. Returns what was done. Raises TargetError for an unknown name."""
        ...

    def logs(self, name: str, *, follow: bool) -> AsyncIterator[str]:
        """Log lines of every replica (or the fine-tune), each prefixed with its replica's name
        when there is more than one source."""
        ...

    async def finetune_state(self, name: str) -> FinetuneState:
        """A fine-tune's phase and progress. Raises TargetError for an unknown name."""
        ...
