"""`sage gateway start|stop` and `sage edge start|stop`, run as a user does: the installed `sage`
console script in a subprocess, real gateway and edge processes on free ports, static discovery."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from sage_harness.net import free_port
from sage_harness.sage_script import SAGE, run_sage


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def environment(state: Path) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith(("SAGE_GATEWAY_", "SAGE_EDGE_"))}
    return {**base, "SAGE_STATE_DIR": str(state)}


@pytest.fixture
def engines_file(tmp_path: Path) -> Path:
    """One engine whose only URL answers nothing: listed by /v1/models, 503 when called."""
    file = tmp_path / "engines.yaml"
    file.write_text(f'engines:\n  - name: chat\n    urls: ["http://127.0.0.1:{free_port()}"]\n')
    return file


def sage(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_sage(environment, *args, timeout=120)


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def model_ids(url: str) -> list[str]:
    response = httpx.get(url, trust_env=False)
    assert response.status_code == 200, response.text
    return [model["id"] for model in response.json()["data"]]


def test_the_gateway_starts_detached_serves_and_stops(
    environment: dict[str, str], state: Path, engines_file: Path
) -> None:
    port = free_port()
    start = [
        "gateway",
        "start",
        "--port",
        str(port),
        "--discovery",
        "static",
        "--static-engines-file",
        str(engines_file),
    ]
    started = sage(environment, *start, "--detach")
    assert started.returncode == 0, started.stderr
    log_file = state / "logs" / "gateway.log"
    match = re.fullmatch(
        rf"gateway started \(pid (\d+)\) at http://127\.0\.0\.1:{port}/v1, log: (.+)\n", started.stdout
    )
    assert match, started.stdout
    assert match[2] == str(log_file)
    try:
        assert model_ids(f"http://127.0.0.1:{port}/v1/models") == ["chat"]
        again = sage(environment, *start, "--detach")
        assert again.returncode == 1
        assert again.stderr.startswith(f"sage gateway start: a gateway is already running (pid {match[1]})")
        assert model_ids(f"http://127.0.0.1:{port}/v1/models") == ["chat"]
    finally:
        stopped = sage(environment, "gateway", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == f"gateway stopped (pid {match[1]})\n"
    assert not accepts(port)
    assert "Uvicorn running" in log_file.read_text()

    second = sage(environment, "gateway", "stop")
    assert second.returncode == 1
    assert second.stderr == "no gateway started by sage gateway start --detach is running\n"


def test_the_edge_serves_the_gateway_under_its_prefix(
    environment: dict[str, str], state: Path, engines_file: Path
) -> None:
    port = free_port()
    started = sage(environment, "edge", "start", "--port", str(port), "--llm-prefix", "/llm", "--discovery", "static",
                   "--static-engines-file", str(engines_file), "--detach")  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("edge started (pid ")
    assert f" at http://127.0.0.1:{port}/llm/v1, log: {state / 'logs' / 'edge.log'}\n" in started.stdout
    try:
        assert model_ids(f"http://127.0.0.1:{port}/llm/v1/models") == ["chat"]
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", trust_env=False).status_code == 200
    finally:
        stopped = sage(environment, "edge", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith("edge stopped (pid ")
    assert not accepts(port)
    second = sage(environment, "edge", "stop")
    assert second.returncode == 1
    assert second.stderr == "no edge started by sage edge start --detach is running\n"


def test_a_port_in_use_is_one_line_and_exit_1(environment: dict[str, str], engines_file: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = sage(environment, "gateway", "start", "--port", str(port), "--discovery", "static",
                      "--static-engines-file", str(engines_file), "--detach")  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("sage gateway start: the gateway exited with code ")
    assert "address already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert sage(environment, "gateway", "stop").returncode == 1  # nothing was left recorded


def test_a_bad_static_list_is_reported_from_the_gateway(environment: dict[str, str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("engines: [{urls: 3}]\n")
    result = sage(environment, "gateway", "start", "--port", str(free_port()), "--discovery", "static",
                  "--static-engines-file", str(broken), "--detach")  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("sage gateway start: the gateway exited with code 2 before it was ready: ")
    assert str(broken) in result.stderr
    assert result.stderr.count("\n") == 1


def test_the_foreground_gateway_stops_on_ctrl_c(environment: dict[str, str], engines_file: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [str(SAGE), "gateway", "start", "--port", str(port), "--discovery", "static",
         "--static-engines-file", str(engines_file)],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        with httpx.Client(trust_env=False) as client:
            while True:
                assert process.poll() is None, process.communicate()[0]
                try:
                    if client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
        assert model_ids(f"http://127.0.0.1:{port}/v1/models") == ["chat"]
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "Uvicorn running" in output  # the gateway's output is the terminal's
    assert not accepts(port)


@pytest.mark.parametrize(
    ("args", "shown"),
    [(["gateway", "--help"], "sage gateway stop"), (["gateway", "start", "--help"], "--static-engines-file"),
     (["edge", "start", "--help"], "--llm-prefix"), (["edge", "stop", "--help"], "--grace")],
)  # fmt: skip
def test_each_level_explains_itself(environment: dict[str, str], args: list[str], shown: str) -> None:
    result = sage(environment, *args)
    assert result.returncode == 0, result.stderr
    assert shown in result.stdout
    assert "  sage " in result.stdout  # an example


@pytest.mark.parametrize("args", [["gateway"], ["gateway", "start", "--port", "http"], ["edge", "restart"]])
def test_bad_arguments_exit_2(environment: dict[str, str], args: list[str]) -> None:
    result = sage(environment, *args)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: sage ")
