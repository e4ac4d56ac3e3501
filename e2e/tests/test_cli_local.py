"""`sage llm ...` on the local control plane, run as a user runs it: the installed `sage` script in
a subprocess, real engine processes (MiniLM embeddings, the tiny causal LM), the real runner for
the fine-tune, the gateway in front; then `sage down` and no process left behind.

The tests of this module follow one session in order: the first command starts the control plane.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sage_harness.net import free_port, free_port_run
from sage_harness.proc_tree import alive, descendants
from sage_harness.repo import source_pythonpath
from sage_harness.sage_script import run_sage
from sage_harness.waiting import WaitTimeout, wait_until

pytestmark = [pytest.mark.engine, pytest.mark.slow]


@dataclass
class Session:
    env: dict[str, str]
    control_url: str
    gateway_url: str
    state: Path

    def sage(self, *args: str, timeout: float = 300) -> tuple[int, str, str]:
        result = run_sage(self.env, *args, timeout=timeout)
        assert "Traceback" not in result.stderr, result.stderr
        return result.returncode, result.stdout, result.stderr

    def rows(self) -> dict[str, list[str]]:
        """`sage llm engine list`, as {name: [kind, model, backend, ready, phase, progress...]}."""
        code, out, err = self.sage("llm", "engine", "list")
        assert code == 0, err
        lines = [line for line in out.splitlines()[1:] if line and not line.startswith(" ")]
        return {fields[0]: fields[1:] for fields in (line.split() for line in lines)}

    def messages(self) -> str:
        return self.sage("llm", "engine", "list")[1]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    state = tmp_path_factory.mktemp("sage-cli-state")
    control, gateway = free_port(), free_port()
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("SAGE_")},
        "PYTHONPATH": source_pythonpath(),
        "HF_HUB_OFFLINE": "1",
        "SAGE_STATE_DIR": str(state),
        "SAGE_CONTROL_PORT": str(control),
        "SAGE_GATEWAY_PORT": str(gateway),
        "SAGE_LOCAL_ENGINE_BASE_PORT": str(free_port_run(4)),
    }
    session = Session(env, f"http://127.0.0.1:{control}", f"http://127.0.0.1:{gateway}", state)
    try:
        yield session
    finally:
        run_sage(env, "down", "--grace", "10")
        log = state / "logs" / "up.log"
        if log.exists():
            print(log.read_text()[-5000:])


@pytest.fixture(scope="module")
def chat_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-dataset") / "chats.jsonl"
    pairs = [("What is SAGE?", "A way to serve LLMs."), ("Who runs it?", "Platform teams.")] * 4
    path.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n"
            for q, a in pairs
        )
    )
    return path


def chat(session: Session, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    return httpx.post(f"{session.gateway_url}/v1/chat/completions", json=body, timeout=120, trust_env=False)


def test_without_a_control_plane_list_says_how_to_start_one(session: Session) -> None:
    code, out, err = session.sage("llm", "engine", "list")
    assert code == 1
    assert out == ""
    assert f"no local control plane answers at {session.control_url}" in err
    assert "sage up" in err


def test_bad_arguments_exit_2_naming_the_option(session: Session) -> None:
    code, _, err = session.sage("llm", "engine", "start", "some/model", "--replicas", "-1")
    assert code == 2
    assert "--replicas" in err
    code, _, err = session.sage("llm", "fine-tune", "some/model", "--output", "x")
    assert code == 2
    assert "--dataset" in err
    code, _, err = session.sage("llm", "engine", "list", "--local", "--context", "elsewhere")
    assert code == 2
    assert "--local" in err


def test_engine_start_starts_the_control_plane_and_waits_until_ready(session: Session, minilm_path: Path) -> None:
    code, out, err = session.sage("llm", "engine", "start", str(minilm_path), "--engine-kind", "embedding",
                                  "--name", "minilm")  # fmt: skip
    assert code == 0, err
    assert "started one in the background" in err
    assert f"target: local control plane at {session.control_url}" in err
    assert "engine minilm starting on port" in out
    assert "engine minilm is ready" in err
    response = httpx.post(f"{session.gateway_url}/v1/embeddings", json={"model": "minilm", "input": "hi"},
                          trust_env=False, timeout=60)  # fmt: skip
    assert response.status_code == 200, response.text
    assert len(response.json()["data"][0]["embedding"]) == 384


def test_a_second_engine_and_the_list(session: Session, tiny_lm_path: Path, minilm_path: Path) -> None:
    code, _, err = session.sage("llm", "engine", "start", str(tiny_lm_path), "--name", "tiny")
    assert code == 0, err
    assert "started one in the background" not in err, "the running control plane is reused"
    rows = session.rows()
    assert rows["minilm"][:2] == ["embedding", str(minilm_path)]
    assert rows["minilm"][2:5] == ["sentence-transformers", "1/1", "Ready"]
    assert rows["tiny"][0] == "llm"
    assert rows["tiny"][2:5] == ["transformers", "1/1", "Ready"]
    assert chat(session, "tiny").status_code == 200
    code, _, err = session.sage("llm", "engine", "start", str(tiny_lm_path), "--name", "tiny")
    assert code == 1
    assert "already ready; stop it first" in err


def control_plane_processes(session: Session) -> set[int]:
    """What the detached control plane runs, from the pid record `sage up --detach` wrote."""
    record = json.loads((session.state / "run" / "up.json").read_text())
    return descendants(int(record["pid"]))


def engine_pid(session: Session, served_name: str) -> int:
    for pid in control_plane_processes(session):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"sage_engine" in argv and served_name.encode() in argv:
                return pid
    msg = f"no engine process serving {served_name}"
    raise AssertionError(msg)


def test_a_killed_engine_is_reported_restarted_and_meanwhile_503(session: Session) -> None:
    engine = engine_pid(session, "tiny")
    os.kill(engine, signal.SIGKILL)
    wait_until(lambda: "killed by SIGKILL" in session.messages(), "the exit to be reported", timeout=30)
    assert session.rows()["tiny"][3:5] == ["0/1", "Degraded"]
    answers: list[httpx.Response] = []

    def refused() -> bool:
        answers.append(chat(session, "tiny"))
        return answers[-1].status_code == 503

    wait_until(refused, "the gateway to answer 503 while tiny restarts", timeout=30)
    assert answers[-1].headers["retry-after"].isdigit()
    assert answers[-1].json()["error"]["code"] == "model_not_ready"
    wait_until(lambda: session.rows()["tiny"][3:5] == ["1/1", "Ready"], "tiny to be restarted", timeout=120)
    assert chat(session, "tiny").status_code == 200
    assert engine_pid(session, "tiny") != engine


def test_logs_of_an_engine_and_of_an_unknown_name(session: Session) -> None:
    code, out, err = session.sage("llm", "engine", "logs", "tiny")
    assert code == 0, err
    assert "serving as ['tiny']" in out
    code, out, err = session.sage("llm", "engine", "logs", "nobody")
    assert code == 1
    assert "no engine or fine-tune named nobody" in err


def test_fine_tune_follows_progress_and_the_engine_serves_the_result(
    session: Session, tiny_lm_path: Path, chat_dataset: Path, tmp_path: Path
) -> None:
    output = tmp_path / "support"
    code, out, err = session.sage("llm", "fine-tune", str(tiny_lm_path), "--dataset", str(chat_dataset),
                                  "--output", str(output), "--name", "support", "--max-steps", "3",
                                  "--batch-size", "2", "--serve", "tiny", timeout=600)  # fmt: skip
    assert code == 0, out + err
    assert "fine-tune support started" in out
    assert "step 3/3" in out
    assert f"fine-tune support succeeded; result: {output}" in out
    assert (output / "adapter_config.json").is_file()
    rows = session.rows()
    assert rows["support"][0] == "finetune"
    assert rows["support"][4] == "Succeeded"
    models = httpx.get(f"{session.gateway_url}/v1/models", trust_env=False).json()["data"]
    assert "support" in {model["id"] for model in models}
    assert chat(session, "support").status_code == 200


def test_stop_keeps_the_engine_and_start_runs_it_again(session: Session, tiny_lm_path: Path) -> None:
    code, out, err = session.sage("llm", "engine", "stop", "tiny")
    assert code == 0, err
    assert "engine tiny stopped" in out
    assert session.rows()["tiny"][3:5] == ["0/0", "Paused"]
    assert chat(session, "tiny").status_code == 503
    code, _, err = session.sage("llm", "engine", "start", str(tiny_lm_path), "--name", "tiny")
    assert code == 0, err
    assert chat(session, "tiny").status_code == 200


def test_delete_forgets_the_engine(session: Session) -> None:
    code, out, err = session.sage("llm", "engine", "stop", "minilm", "--delete")
    assert code == 0, err
    assert "engine minilm deleted" in out
    assert "minilm" not in session.rows()

    def unknown() -> bool:
        body = {"model": "minilm", "input": "x"}
        return httpx.post(f"{session.gateway_url}/v1/embeddings", json=body, trust_env=False).status_code == 404

    wait_until(unknown, "the gateway to forget minilm", timeout=10)


def test_down_stops_everything(session: Session) -> None:
    children = control_plane_processes(session)
    assert len(children) >= 2, "the control plane runs the gateway and an engine"
    code, out, err = session.sage("down")
    assert code == 0, err
    assert "stopped" in out
    with contextlib.suppress(WaitTimeout):
        wait_until(lambda: not [pid for pid in children if alive(pid)], "every child to exit", timeout=30)
    assert not [pid for pid in children if alive(pid)], "processes left behind by sage down"
    code, _, err = session.sage("down")
    assert code == 1
    assert "no control plane" in err
