"""The operator's vLLM command lines, checked by vLLM's own `vllm serve` parser (the pinned release,
run without a GPU: sage_harness.vllm_args). Every example whose backend resolves to vllm and a
synthetic engine for each thing the renderer puts on the command line (chat, embedding, LoRA from
sources and from FinetuneJobs, aliases, spec.args) is rendered by the real renderer; the parser
must accept each container command, and refuse a command line with a flag it does not know.

The vLLM environment (about 9 GB) is built by e2e/vllm/vllm-env.sh on first use, once per machine;
without it the tests skip, and fail with CI=true."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sage_api.engine import Backend, LLMEngine
from sage_harness.repo import REPO_ROOT
from sage_harness.vllm_args import Verdict, VllmEnvError, check_command_lines, vllm_environment
from sage_operator.engine.render import CONTAINER, render_engine_deployment
from sage_operator.engine.spec import check_spec, resolve_backend
from sage_operator.finetune.serving import finetune_adapters
from sage_operator.settings import OperatorSettings
from sage_testing.prereq import missing

EXAMPLES = REPO_ROOT / "examples"
DOCKERFILE = REPO_ROOT / "images" / "vllm" / "Dockerfile"
PINNED_IMAGE = re.compile(r"^ARG VLLM_IMAGE=(?P<image>vllm/vllm-openai:v(?P<version>\S+))$", re.MULTILINE)


def pinned_release() -> str:
    """The vLLM version images/vllm/Dockerfile pins (and vllm-env.sh installs)."""
    found = PINNED_IMAGE.search(DOCKERFILE.read_text())
    assert found, f"{DOCKERFILE} has no ARG VLLM_IMAGE=vllm/vllm-openai:v<version>"
    return found["version"]


def test_the_operator_default_vllm_image_is_the_one_the_dockerfile_pins() -> None:
    found = PINNED_IMAGE.search(DOCKERFILE.read_text())
    assert found, f"{DOCKERFILE} has no ARG VLLM_IMAGE=vllm/vllm-openai:v<version>"
    assert OperatorSettings.model_fields["vllm_image"].default == found["image"]


# --- what gets rendered ------------------------------------------------------------------------


def _documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def _example_documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, document) for path in sorted(EXAMPLES.rglob("*.yaml")) for document in _documents(path)]


def _engine(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "sage.ai/v1alpha1", "kind": "LLMEngine", "metadata": {"name": name}, "spec": spec}


def _finetunejob(name: str, *, serve: str, rank: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "baseModel": "Qwen/Qwen2.5-0.5B-Instruct",
        "dataset": {"source": "configmap://data/train.jsonl"},
        "output": {"claimName": f"{name}-out"},
        "serve": {"engine": serve},
    }
    if rank is not None:
        spec["lora"] = {"rank": rank}
    return {"apiVersion": "sage.ai/v1alpha1", "kind": "FinetuneJob", "metadata": {"name": name}, "spec": spec}


GPU = {"gpus": 1, "memory": "24Gi"}
QWEN = "Qwen/Qwen2.5-0.5B-Instruct"
# Synthetic engines: (the LLMEngine, the FinetuneJobs of its namespace).
SYNTHETIC: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {
    "chat": (_engine("chat", model=QWEN, backend="vllm", resources=GPU), []),
    "chat-by-default-on-gpus": (_engine("chat-gpu", model=f"hf://{QWEN}", resources=GPU), []),
    "embedding": (
        _engine("embed", model="BAAI/bge-small-en-v1.5", engineKind="embedding", backend="vllm", resources={"gpus": 1}),
        [],
    ),
    "aliases": (
        _engine(
            "aliased",
            model="pvc://models/qwen2.5-0.5b",
            backend="vllm",
            servedModelName="qwen-small",
            aliases=["gpt-4o-mini", "small", "qwen"],
            resources=GPU,
        ),
        [],
    ),
    "lora-one-source": (
        _engine("one", model=QWEN, backend="vllm", resources=GPU, adapters=[{"name": "a", "source": "hf://org/a"}]),
        [],
    ),
    "lora-several-sources": (
        _engine(
            "several",
            model=QWEN,
            backend="vllm",
            resources=GPU,
            adapters=[
                {"name": "support", "source": "pvc://adapters/support"},
                {"name": "sql", "source": "pvc://adapters/sql"},
                {"name": "hub", "source": "hf://org/adapter"},
            ],
        ),
        [],
    ),
    "lora-finetunejob-claims": (
        _engine("tuned", model=QWEN, backend="vllm", resources=GPU),
        [_finetunejob("ft-wide", serve="tuned", rank=64), _finetunejob("ft-default", serve="tuned")],
    ),
    "lora-finetunejob-and-source": (
        _engine(
            "mixed",
            model=QWEN,
            backend="vllm",
            resources=GPU,
            adapters=[{"name": "base-bot", "source": "hf://org/bot"}, {"name": "ft", "finetuneJob": "ft"}],
        ),
        [_finetunejob("ft", serve="mixed", rank=100)],
    ),
    "lora-user-pins-max-loras": (
        _engine(
            "pinned",
            model=QWEN,
            backend="vllm",
            resources=GPU,
            adapters=[{"name": "x", "source": "hf://org/x"}, {"name": "y", "source": "hf://org/y"}],
            args=["--max-loras=8", "--max_lora_rank", "32"],
        ),
        [],
    ),
    "args": (
        _engine(
            "tuned-args",
            model=QWEN,
            backend="vllm",
            resources={"gpus": 2},
            args=[
                "--max-model-len",
                "8192",
                "--gpu-memory-utilization",
                "0.90",
                "--tensor-parallel-size",
                "2",
                "--dtype",
                "bfloat16",
                "--enable-prefix-caching",
                "--max-num-seqs",
                "64",
                "--enforce-eager",
            ],
        ),
        [],
    ),
}


def _vllm_cases() -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    examples = _example_documents()
    jobs = [document for _, document in examples if document.get("kind") == "FinetuneJob"]
    cases: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for path, document in examples:
        if document.get("kind") != "LLMEngine":
            continue
        if resolve_backend(LLMEngine.model_validate(document).spec) is Backend.VLLM:
            cases[f"example:{path.relative_to(EXAMPLES)}:{document['metadata']['name']}"] = (document, jobs)
    assert cases, "no example under examples/ runs on vllm"
    return cases | {f"synthetic:{name}": case for name, case in SYNTHETIC.items()}


CASES = _vllm_cases()


def render_command(document: dict[str, Any], finetunejobs: list[dict[str, Any]]) -> list[str]:
    """The container command, rendered as the reconciler renders it (FinetuneJobs included)."""
    engine = LLMEngine.model_validate({**document, "metadata": {"namespace": "ml", "uid": "u", **document["metadata"]}})
    assert check_spec(engine.spec, engine.metadata["name"]) is None, "the operator would refuse this engine"
    finetuned = finetune_adapters(engine.metadata["name"], engine.spec, finetunejobs)
    deployment = render_engine_deployment(engine, OperatorSettings(), finetuned)
    (container,) = (c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == CONTAINER)
    command: list[str] = container["command"]
    return command


COMMANDS = {case: render_command(*CASES[case]) for case in CASES}
# Deliberately wrong: the embedding flag vLLM dropped, and a flag that never existed.
WRONG = {
    "task-embed": [*COMMANDS["synthetic:chat"], "--task", "embed"],
    "unknown-flag": [*COMMANDS["synthetic:chat"], "--no-such-flag"],
}


# --- what vLLM says ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vllm_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The vLLM environment; e2e/vllm/vllm-env.sh builds it on first use (once per machine)."""
    log = tmp_path_factory.mktemp("vllm-env") / "vllm-env.log"
    try:
        return vllm_environment(log=log)
    except VllmEnvError as error:
        missing(f"the vLLM environment (e2e/vllm/vllm-env.sh): {error}")


@pytest.fixture(scope="module")
def verdicts(vllm_venv: Path) -> dict[str, Verdict]:
    """vLLM's verdict on every command line, from one run of its parser."""
    names = [*COMMANDS, *(f"wrong:{name}" for name in WRONG)]
    try:
        answers = check_command_lines(vllm_venv, [*COMMANDS.values(), *WRONG.values()])
    except VllmEnvError as error:
        missing(f"vLLM's parser in {vllm_venv}: {error}")
    return dict(zip(names, answers, strict=True))


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the first run on a machine builds the vLLM environment
def test_the_parser_is_the_pinned_release(verdicts: dict[str, Verdict]) -> None:
    assert {verdict.vllm_version for verdict in verdicts.values()} == {pinned_release()}


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("case", list(COMMANDS))
def test_vllm_accepts_the_rendered_command_line(case: str, verdicts: dict[str, Verdict]) -> None:
    verdict = verdicts[case]
    assert verdict.accepted, f"vLLM {verdict.vllm_version} refuses {' '.join(verdict.command)}:\n{verdict.error}"


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("case", list(WRONG))
def test_vllm_refuses_a_wrong_flag(case: str, verdicts: dict[str, Verdict]) -> None:
    verdict = verdicts[f"wrong:{case}"]
    assert not verdict.accepted, f"vLLM accepted {' '.join(verdict.command)}"
    assert "unrecognized arguments" in verdict.error


def test_the_cases_cover_what_the_renderer_puts_on_a_vllm_command_line() -> None:
    """The synthetic engines reach every flag the renderer sets (else the parser checks less)."""
    flags = {arg for command in COMMANDS.values() for arg in command if arg.startswith("--")}
    rendered = {"--served-model-name", "--port", "--runner", "--enable-lora", "--max-loras", "--max-lora-rank"}
    assert rendered <= flags
    runners = {command[command.index("--runner") + 1] for command in COMMANDS.values()}
    assert runners == {"generate", "pooling"}

    def served(command: list[str]) -> list[str]:
        after = command[command.index("--served-model-name") + 1 :]
        return list(itertools.takewhile(lambda arg: not arg.startswith("--"), after))

    assert max(len(served(command)) for command in COMMANDS.values()) > 2, "no case serves several names"
