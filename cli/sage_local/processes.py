"""Child processes of local mode: started in their own process group, logs to a file or to the
console prefixed by name, stopped as a group so nothing is left behind."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if `sage up` itself dies (even by SIGKILL): no orphans."""
    os.setsid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildProcess:
    """One child: a name, its command, and where its output goes."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log_file: Path, echo: Callable[[str, str], None] | None
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_file = log_file
        self.echo = echo
        self.process: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            env={**os.environ, **self.env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        self._pump = asyncio.create_task(self._copy_output())

    async def _copy_output(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        with self.log_file.open("a", encoding="utf-8") as log:
            async for raw in self.process.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                _write(log, line)
                if self.echo is not None:
                    self.echo(self.name, line)

    @property
    def exited(self) -> bool:
        return self.process is not None and self.process.returncode is not None

    def tail(self, lines: int = 15) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    async def stop(self, grace: float = 10.0) -> None:
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                _signal_group(process.pid, signal.SIGKILL)
                await process.wait()
        else:
            # The leader is gone; make sure nothing it spawned lingers in its group.
            _signal_group(process.pid, signal.SIGKILL)
        if self._pump is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._pump, 5)


def _write(log: TextIO, line: str) -> None:
    log.write(line + "\n")
    log.flush()


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
