"""Several gateway workers on one port: the supervisor binds a listening socket per worker, makes
the shared counts, forks the workers (each its own event loop, app, discovery and connection pool,
accepting on its own socket), passes SIGTERM/SIGINT on to them, restarts a worker that dies (on
the same socket, so the connections the kernel queued for it are served), and exits once every
worker has stopped (with 1 when any had failed).

The sockets share the port with SO_REUSEPORT, and the kernel spreads new connections over them
evenly. With one socket shared by every worker, whichever worker woke first took the connection:
the benchmark saw 64 connections split 54 + 10 and once 64 + 0, which leaves a core idle under
load that keeps its connections open (docs/gateway.md, Workers).

Only Linux-like systems fork; the gateway runs there in its image. Local mode keeps one worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

from sage_gateway.workers.shared import SharedCounts, WorkerCounts

log = logging.getLogger(__name__)

RESTART_PAUSE_SECONDS = 1.0
"""A worker that dies at once is not restarted in a tight loop."""

STOPPED_CLEANLY = frozenset({0, -signal.SIGTERM, -signal.SIGINT})
"""Exit codes of a worker that stopped when told (uvicorn re-raises the signal once it is done)."""

Serve = Callable[[WorkerCounts, socket.socket], None]
"""Runs one worker's server on the socket until it is told to stop."""


def bind(host: str, port: int, *, share_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if share_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def bind_each(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on one port (port 0: the port the first one got)."""
    first = bind(host, port, share_port=True)
    port = int(first.getsockname()[1])
    return [first, *(bind(host, port, share_port=True) for _ in range(count - 1))]


class Supervisor:
    def __init__(self, workers: int, host: str, port: int, serve: Serve, metrics_dir: str) -> None:
        self.workers = workers
        self.serve = serve
        self.sockets = bind_each(host, port, workers)
        self.counts = SharedCounts(workers)
        self.children: dict[int, int] = {}
        """pid -> worker index."""
        self.stopping = False
        self.failed = False
        self.metrics_dir = metrics_dir
        """The workers' metric files (MULTIPROCESS_DIR, set before anything imported the metrics)."""

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; the exit code."""
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index in range(self.workers):
                self._spawn(index)
            log.info("gateway: %d workers on %s", self.workers, self.sockets[0].getsockname())
            while self.children:
                pid, status = os.wait()
                if pid not in self.children:
                    continue
                index = self.children.pop(pid)
                self._forget_metrics_of(pid)
                code = os.waitstatus_to_exitcode(status)
                if self.stopping:
                    self.failed |= code not in STOPPED_CLEANLY
                    continue
                log.error("gateway worker %d (pid %d) exited with %d; starting it again", index, pid, code)
                time.sleep(RESTART_PAUSE_SECONDS)
                if not self.stopping:
                    self._spawn(index)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for sock in self.sockets:
                sock.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        return 1 if self.failed else 0

    def _spawn(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)  # the worker's server installs its own
                counts = self.counts.for_worker(index)
                counts.reset()
                for other in self.sockets:
                    if other is not self.sockets[index]:
                        other.close()  # each worker accepts on its own socket only
                self.serve(counts, self.sockets[index])
            except BaseException:
                logging.getLogger(__name__).exception("gateway worker %d failed", index)
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = index

    def _stop(self, sig: int, frame: FrameType | None) -> None:
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _forget_metrics_of(self, pid: int) -> None:
        from prometheus_client import multiprocess  # noqa: PLC0415

        multiprocess.mark_process_dead(pid, self.metrics_dir)  # type: ignore[no-untyped-call]
