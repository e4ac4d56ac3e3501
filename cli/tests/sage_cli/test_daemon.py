"""sage_cli.daemon: detached processes recorded in pid files, with real processes (an HTTP server,
small scripts) and the record format and command-line check on their own."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sage_cli import daemon
from sage_cli.daemon import DaemonError, Record, cmdline_matches, decode_record, encode_record, last_error_line
from sage_harness.net import free_port


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SAGE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def _http_server(port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_dead(pid: int) -> bool:
    """Whether `pid` is gone or a zombie, polling until it is (pytest's timeout bounds it)."""
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            return True
        if state in {"Z", "X"}:
            return True
        time.sleep(0.05)


def _script(tmp_path: Path, name: str, text: str) -> list[str]:
    file = tmp_path / name
    file.write_text(text)
    return [sys.executable, str(file)]


def test_a_record_survives_encoding() -> None:
    record = Record("gateway", 4242, ("python", "-m", "sage_gateway"), Path("/l/gateway.log"), "http://h:1/v1", "t0")
    assert decode_record("gateway", encode_record(record)) == record
    document = json.loads(encode_record(record))
    assert set(document) == {"pid", "argv", "log_file", "url", "started"}


@pytest.mark.parametrize(
    "text",
    ["", "[]", '{"pid": "1", "argv": ["x"], "log_file": "l"}', '{"pid": 1, "argv": [], "log_file": "l"}',
     '{"pid": 1, "argv": ["x"]}', '{"pid": true, "argv": ["x"], "log_file": "l"}'],
)  # fmt: skip
def test_a_broken_record_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        decode_record("gateway", text)


def test_the_command_line_must_be_the_recorded_one() -> None:
    argv = ("/venv/bin/python", "-m", "sage_gateway", "--port", "1")
    assert cmdline_matches(argv, b"/venv/bin/python\0-m\0sage_gateway\0--port\0001\0")
    assert not cmdline_matches(argv, b"/venv/bin/python\0-m\0sage_gateway\0--port\0002\0")
    assert not cmdline_matches(argv, b"/usr/bin/vim\0notes.txt\0")
    assert not cmdline_matches(argv, b"")  # a zombie's
    # A script run through its #! line: the interpreter comes first.
    assert cmdline_matches(("/venv/bin/sage", "up"), b"/venv/bin/python3\0/venv/bin/sage\0up\0")
    assert not cmdline_matches(("/venv/bin/sage", "up"), b"/venv/bin/python3\0/venv/bin/other\0up\0")


def test_the_line_that_says_why_is_picked_from_the_log() -> None:
    log = "INFO starting\nERROR: [Errno 98] address already in use\nINFO Waiting for shutdown\n\n"
    assert last_error_line(log) == "ERROR: [Errno 98] address already in use"
    assert last_error_line("one\ntwo\n") == "two"
    assert last_error_line("") == ""


def test_start_find_refuse_a_second_start_and_stop(state: Path, tmp_path: Path) -> None:
    port = free_port()
    argv = _http_server(port)
    log_file = tmp_path / "logs" / "web.log"
    url = f"http://127.0.0.1:{port}/"
    started = daemon.start_detached("web", argv, log_file=log_file, ready_url=url, url=url)
    try:
        assert started.name == "web"
        assert started.log_file == log_file
        assert started.url == url
        assert httpx.get(url).status_code == 200
        assert daemon.run_dir() == state / "run"
        record = json.loads((state / "run" / "web.json").read_text())
        assert record["pid"] == started.pid
        assert record["argv"] == argv
        assert record["url"] == url
        assert daemon.find("web") == started
        assert os.getsid(started.pid) == started.pid  # a session of its own

        with pytest.raises(DaemonError, match=rf"already running \(pid {started.pid}\)"):
            daemon.start_detached("web", _http_server(free_port()), log_file=log_file)
        assert daemon.find("web") == started
    finally:
        stopped = daemon.stop("web")
    assert stopped == started
    assert _wait_dead(started.pid)
    assert not _accepts(port)
    assert not (state / "run" / "web.json").exists()
    assert daemon.find("web") is None
    assert daemon.stop("web") is None
    assert "GET /" in log_file.read_text()  # the server's own output went to the log


def test_the_environment_is_added_to_this_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGE_TEST_INHERITED", "from-parent")
    out = tmp_path / "env.txt"
    argv = _script(tmp_path, "env.py", f"""import os, time
open({str(out)!r}, "w").write(os.environ["SAGE_TEST_INHERITED"] + " " + os.environ["SAGE_TEST_GIVEN"])
time.sleep(600)
""")  # fmt: skip
    started = daemon.start_detached("env", argv, log_file=tmp_path / "env.log", env={"SAGE_TEST_GIVEN": "given"})
    try:
        while not out.exists() or not out.read_text():
            time.sleep(0.05)
        assert out.read_text() == "from-parent given"
    finally:
        daemon.stop("env")
    assert _wait_dead(started.pid)


def test_a_record_of_a_dead_process_is_removed(state: Path, tmp_path: Path) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    record = Record("web", int(gone.stdout), (sys.executable, "-c", "x"), tmp_path / "web.log", None, "t0")
    (state / "run").mkdir(parents=True)
    (state / "run" / "web.json").write_text(encode_record(record))
    assert daemon.find("web") is None
    assert not (state / "run" / "web.json").exists()


def test_a_reused_pid_is_not_taken_for_the_daemon(state: Path, tmp_path: Path) -> None:
    # This test's own process is alive but is not what the record says was started.
    record = Record("web", os.getpid(), (sys.executable, "-m", "http.server", "1"), tmp_path / "w.log", None, "t0")
    (state / "run").mkdir(parents=True)
    (state / "run" / "web.json").write_text(encode_record(record))
    assert daemon.find("web") is None
    assert daemon.stop("web") is None  # and nothing is signalled
    assert not (state / "run" / "web.json").exists()


def test_a_garbled_record_is_removed(state: Path) -> None:
    (state / "run").mkdir(parents=True)
    (state / "run" / "web.json").write_text("{not json")
    assert daemon.find("web") is None
    assert not (state / "run" / "web.json").exists()


def test_a_process_that_exits_before_it_is_ready_fails_with_its_output(state: Path, tmp_path: Path) -> None:
    log_file = tmp_path / "boom.log"
    log_file.write_text("an earlier run's line\n")
    argv = [sys.executable, "-c", "import sys; print('starting'); print('ERROR: cannot bind the port'); sys.exit(3)"]
    with pytest.raises(DaemonError) as caught:
        daemon.start_detached("boom", argv, log_file=log_file, ready_url=f"http://127.0.0.1:{free_port()}/")
    error = caught.value
    assert "exited with code 3 before it was ready" in error.reason
    assert "ERROR: cannot bind the port" in error.reason
    assert "\n" not in error.reason
    assert "starting" in str(error)
    assert "an earlier run's line" not in error.log_tail
    assert daemon.find("boom") is None
    assert not (state / "run" / "boom.json").exists()


def test_a_process_that_never_gets_ready_is_killed(state: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    argv = _script(tmp_path, "slow.py", f"""import os, time
open({str(pid_file)!r}, "w").write(str(os.getpid()))
print("loading forever", flush=True)
time.sleep(600)
""")  # fmt: skip
    url = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(DaemonError, match="did not answer") as caught:
        daemon.start_detached("slow", argv, log_file=tmp_path / "slow.log", ready_url=url, ready_timeout=1)
    assert "loading forever" in caught.value.reason
    assert _wait_dead(int(pid_file.read_text()))
    assert not (state / "run" / "slow.json").exists()


def test_stop_kills_the_whole_group_and_what_ignores_sigterm(tmp_path: Path) -> None:
    child_pid = tmp_path / "child"
    argv = _script(tmp_path, "stubborn.py", f"""import signal, subprocess, sys, time
deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", deaf])
open({str(child_pid)!r}, "w").write(str(child.pid))
time.sleep(600)
""")  # fmt: skip
    started = daemon.start_detached("stubborn", argv, log_file=tmp_path / "stubborn.log")
    while not child_pid.exists() or not child_pid.read_text():
        time.sleep(0.05)
    assert daemon.stop("stubborn", grace=0.5) == started
    assert _wait_dead(started.pid)
    assert _wait_dead(int(child_pid.read_text()))
    assert daemon.find("stubborn") is None


def test_a_program_that_cannot_be_run_is_a_daemon_error(state: Path, tmp_path: Path) -> None:
    with pytest.raises(DaemonError, match="cannot start the ghost"):
        daemon.start_detached("ghost", [str(tmp_path / "no-such-program")], log_file=tmp_path / "ghost.log")
    assert not (state / "run" / "ghost.json").exists()
