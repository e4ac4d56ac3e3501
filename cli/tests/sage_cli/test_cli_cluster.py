"""`sage llm ...` on a cluster, run as a user runs it: the installed `sage` script in a subprocess
against the real kube-apiserver, with KUBECONFIG pointing at it (no operator here: the objects
and what the API server says about them are what is checked; the node tier runs the pods)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sage_harness.controlplane import ControlPlane
from sage_harness.kubectl import Kubectl
from sage_harness.sage_script import run_sage
from sage_testing.engine_objects import get, must_get


@pytest.fixture
def env(control_plane: ControlPlane, tmp_path: Path) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("SAGE_")}
    return {**base, "KUBECONFIG": str(control_plane.kubeconfig), "SAGE_STATE_DIR": str(tmp_path / "state")}


def sage(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = run_sage(env, *args, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr


def test_start_list_stop_and_delete_an_engine(env: dict[str, str], kubectl: Kubectl, namespace: str) -> None:
    code, out, err = sage(env, "llm", "engine", "start", "deterministic", "--backend", "deterministic",
                          "--name", "echo", "--replicas", "2", "-n", namespace, "--no-wait")  # fmt: skip
    assert code == 0, err
    assert f"target: cluster: context envtest, namespace {namespace}" in err
    assert out.strip() == f"created LLMEngine echo in namespace {namespace}"
    spec = must_get(kubectl, namespace, "llmengine", "echo")["spec"]
    assert (spec["model"], spec["backend"], spec["replicas"]) == ("deterministic", "deterministic", 2)

    code, out, err = sage(env, "llm", "engine", "list", "--cluster", "--namespace", namespace)
    assert code == 0, err
    header, row = out.splitlines()[:2]
    assert header.split()[:5] == ["NAME", "KIND", "MODEL", "BACKEND", "READY"]
    assert row.split()[:5] == ["echo", "llm", "deterministic", "deterministic", "0/2"]

    code, out, err = sage(env, "llm", "engine", "stop", "echo", "-n", namespace)
    assert code == 0, err
    assert must_get(kubectl, namespace, "llmengine", "echo")["spec"]["replicas"] == 0
    code, out, err = sage(env, "llm", "engine", "stop", "echo", "--delete", "-n", namespace)
    assert code == 0, err
    assert get(kubectl, namespace, "llmengine", "echo") is None


def test_a_fine_tune_uploads_its_local_dataset(
    env: dict[str, str], kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    dataset = tmp_path / "chats.jsonl"
    dataset.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    code, out, err = sage(env, "llm", "fine-tune", "Qwen/Qwen2.5-0.5B-Instruct", "--dataset", str(dataset),
                          "--output", "pvc://models/adapters/support", "--name", "support", "--max-steps", "5",
                          "-n", namespace, "--no-follow")  # fmt: skip
    assert code == 0, err
    assert "support" in out
    job = must_get(kubectl, namespace, "finetunejob", "support")
    assert job["spec"]["baseModel"] == "Qwen/Qwen2.5-0.5B-Instruct"
    config_maps = kubectl.json("get", "configmaps", "-n", namespace)["items"]
    assert any(dataset.read_text() in cm.get("data", {}).values() for cm in config_maps)
    code, out, err = sage(env, "llm", "engine", "list", "-n", namespace)
    assert code == 0, err
    assert out.splitlines()[1].split()[:2] == ["support", "finetune"]


def test_errors_name_what_was_tried(env: dict[str, str], namespace: str, tmp_path: Path) -> None:
    code, _, err = sage(env, "llm", "engine", "logs", "nobody", "-n", namespace)
    assert code == 1
    assert "nobody" in err
    assert namespace in err
    code, _, err = sage(env, "llm", "engine", "list", "--context", "no-such-context")
    assert code == 1
    assert "no-such-context" in err
    missing = tmp_path / "absent-kubeconfig"
    code, _, err = sage({**env, "KUBECONFIG": str(missing)}, "llm", "engine", "list", "--cluster")
    assert code == 1
    assert str(missing) in err
