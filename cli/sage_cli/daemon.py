"""Detached processes with pid files: `sage gateway start --detach`, `sage edge start --detach`,
`sage up --detach`.

Each daemon is started in a session of its own (so that stopping it signals its whole process
group, children included, and a Ctrl-C in the terminal that started it does not reach it), with
stdout and stderr appended to a log file, and recorded as `run_dir()/<name>.json`. A record whose
pid is gone, or whose pid now belongs to another program (checked against /proc/<pid>/cmdline
where /proc exists), is stale: it is removed and the daemon counts as not running.

The record format and the command-line comparison are pure functions; the rest is the I/O."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from sage_api.paths import state_dir

POLL_SECONDS = 0.1
"""How often readiness and exits are checked."""

LOG_TAIL_LINES = 20
"""Lines of a failed start's log that DaemonError carries."""


class DaemonError(RuntimeError):
    """A daemon that could not be started. `reason` is one line for the user; `str()` adds the
    tail of the process's log when there is one."""

    def __init__(self, reason: str, log_tail: str = "") -> None:
        super().__init__(f"{reason}\n{log_tail}" if log_tail else reason)
        self.reason = reason
        self.log_tail = log_tail


@dataclass(frozen=True)
class Daemon:
    name: str
    """"gateway", "edge", "up"."""
    pid: int
    log_file: Path
    url: str | None
    """What it serves, as recorded at start."""


@dataclass(frozen=True)
class Record:
    """What `run_dir()/<name>.json` holds."""

    name: str
    pid: int
    argv: tuple[str, ...]
    log_file: Path
    url: str | None
    started: str
    """When it was started, RFC 3339 (UTC)."""

    def daemon(self) -> Daemon:
        return Daemon(name=self.name, pid=self.pid, log_file=self.log_file, url=self.url)


def encode_record(record: Record) -> str:
    document = {
        "pid": record.pid,
        "argv": list(record.argv),
        "log_file": str(record.log_file),
        "url": record.url,
        "started": record.started,
    }
    return json.dumps(document, indent=2) + "\n"


def decode_record(name: str, text: str) -> Record:
    """The record of daemon `name`; ValueError when `text` is not one."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        msg = f"not JSON: {error}"
        raise ValueError(msg) from None
    if not isinstance(document, dict):
        msg = "not a JSON object"
        raise ValueError(msg)
    pid, argv, log_file, url = document.get("pid"), document.get("argv"), document.get("log_file"), document.get("url")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        msg = f"pid {pid!r} is not a process id"
        raise ValueError(msg)
    if not isinstance(argv, list) or not argv or not all(isinstance(arg, str) for arg in argv):
        msg = "argv is not a non-empty list of strings"
        raise ValueError(msg)
    if not isinstance(log_file, str) or not log_file:
        msg = "log_file is not a path"
        raise ValueError(msg)
    if url is not None and not isinstance(url, str):
        msg = "url is neither a string nor null"
        raise ValueError(msg)
    started = document.get("started")
    return Record(name, pid, tuple(argv), Path(log_file), url, started if isinstance(started, str) else "")


def cmdline_matches(argv: tuple[str, ...], cmdline: bytes) -> bool:
    """Whether /proc/<pid>/cmdline (NUL-separated) is the process started with `argv`. A script
    started through its #! line shows the interpreter first, so the arguments must end the command
    line and the program's file name must appear in it."""
    parts = [part.decode(errors="replace") for part in cmdline.split(b"\0")]
    if parts and parts[-1] == "":
        parts.pop()
    if list(argv) == parts:
        return True
    arguments = list(argv[1:])
    if len(parts) <= len(arguments) or (arguments and parts[-len(arguments) :] != arguments):
        return False
    program = Path(argv[0]).name
    return any(Path(part).name == program for part in parts[: len(parts) - len(arguments)])


def last_error_line(log_tail: str) -> str:
    """The line of a log tail most likely to say why the process stopped: the last one that
    mentions an error, else the last non-empty one."""
    lines = [line.strip() for line in log_tail.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower():
            return line
    return lines[-1] if lines else ""


# --- I/O ----------------------------------------------------------------------------------------

_children: dict[int, subprocess.Popen[bytes]] = {}
"""Daemons this process started, kept so that they are reaped (and no ResourceWarning is raised
for them) when this process outlives them, as tests do."""


def run_dir() -> Path:
    return state_dir() / "run"


def _record_file(name: str) -> Path:
    return run_dir() / f"{name}.json"


def _write_record(record: Record) -> None:
    file = _record_file(record.name)
    file.parent.mkdir(parents=True, exist_ok=True)
    scratch = file.with_name(f".{file.name}.{os.getpid()}")
    scratch.write_text(encode_record(record))
    scratch.replace(file)


def _remove_record(name: str, pid: int) -> None:
    """Remove the record of `name` if it still names `pid` (a newer start keeps its own)."""
    file = _record_file(name)
    with contextlib.suppress(OSError, ValueError):
        if decode_record(name, file.read_text()).pid == pid:
            file.unlink()


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _children[pid]
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from the state on (state, ppid, pgrp, ...); None without it. The fields
    follow the parenthesised program name, which may itself hold spaces."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat_fields(pid)
    return fields is None or fields[0] not in {"Z", "X"}


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group `pgid` runs (zombies waiting for a reaper do not count)."""
    _reap(pgid)
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in proc.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and fields[2] == str(pgid) and fields[0] not in {"Z", "X"}:
                return True
    return False


def _is_recorded_process(record: Record) -> bool:
    if not _alive(record.pid):
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    try:
        cmdline = (proc / str(record.pid) / "cmdline").read_bytes()
    except OSError:
        return False
    return cmdline_matches(record.argv, cmdline)


def _find_record(name: str) -> Record | None:
    file = _record_file(name)
    try:
        text = file.read_text()
    except FileNotFoundError:
        return None
    try:
        record = decode_record(name, text)
    except ValueError:
        file.unlink(missing_ok=True)
        return None
    if not _is_recorded_process(record):
        _remove_record(name, record.pid)
        return None
    return record


def find(name: str) -> Daemon | None:
    """The daemon `name` if the process recorded for it still runs; a stale record is removed."""
    record = _find_record(name)
    return record.daemon() if record else None


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _terminate(pid: int, grace: float) -> None:
    """SIGTERM to the process group, SIGKILL to what is left of it after `grace` seconds."""
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _group_alive(pid) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    if _group_alive(pid):
        _signal_group(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(POLL_SECONDS)


def stop(name: str, *, grace: float = 10.0) -> Daemon | None:
    """Stop the daemon `name` and remove its record; None when none was running."""
    record = _find_record(name)
    if record is None:
        return None
    _terminate(record.pid, grace)
    _remove_record(name, record.pid)
    return record.daemon()


def _log_since(log_file: Path, offset: int) -> str:
    """The last lines written to `log_file` from `offset` on."""
    try:
        with log_file.open("rb") as stream:
            stream.seek(offset)
            text = stream.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-LOG_TAIL_LINES:])


def _answers_200(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_ready(child: subprocess.Popen[bytes], name: str, ready_url: str, timeout: float) -> str | None:
    """None once `ready_url` answers 200, else why not."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=httpx.Timeout(2.0), trust_env=False) as client:
        while True:
            code = child.poll()
            if code is not None:
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                return f"the {name} {how} before it was ready"
            if _answers_200(client, ready_url):
                return None
            if time.monotonic() >= deadline:
                return f"the {name} did not answer {ready_url} within {timeout:g}s"
            time.sleep(POLL_SECONDS)


def start_detached(
    name: str,
    argv: list[str],
    *,
    log_file: Path,
    env: dict[str, str] | None = None,
    ready_url: str | None = None,
    ready_timeout: float = 60.0,
    url: str | None = None,
) -> Daemon:
    """Start `argv` as the daemon `name`. `env` is added to (and overrides) this process's
    environment. With `ready_url`, returns once GET ready_url answers 200; DaemonError (with the
    log's tail) if the process exits first or `ready_timeout` passes, and then nothing is left
    running or recorded."""
    running = find(name)
    if running is not None:
        where = f" at {running.url}" if running.url else ""
        msg = f"a {name} is already running (pid {running.pid}){where}; stop it first"
        raise DaemonError(msg)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        offset = log.tell()
        try:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        except OSError as error:
            msg = f"cannot start the {name} ({argv[0]}): {error.strerror or error}"
            raise DaemonError(msg) from None
    _children[child.pid] = child
    started = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    record = Record(name, child.pid, tuple(argv), log_file, url, started)
    _write_record(record)
    problem = _wait_ready(child, name, ready_url, ready_timeout) if ready_url else None
    if problem is not None:
        _terminate(child.pid, grace=5.0)
        _remove_record(name, child.pid)
        tail = _log_since(log_file, offset)
        cause = last_error_line(tail)
        reason = f"{problem}: {cause} (log: {log_file})" if cause else f"{problem} (log: {log_file})"
        raise DaemonError(reason, tail)
    return record.daemon()
