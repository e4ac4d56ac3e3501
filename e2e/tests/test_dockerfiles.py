"""Every Dockerfile under images/: pinned bases, a non-root user, the right port exposed, no
HEALTHCHECK (Kubernetes probes own health), and the entry point of the image's package."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from sage_api import names
from sage_api.ports import PORTS
from sage_harness.dockerfile import Instruction, Stage, instructions, names_registry_host, pinned, stages
from sage_harness.repo import REPO_ROOT

IMAGES = REPO_ROOT / "images"
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))

# The port each image serves on (None: it serves nothing), from the ports module.
EXPOSED: dict[str, int | None] = {
    "operator": None,
    "gateway": PORTS.GATEWAY,
    "engine": PORTS.ENGINE,
    "vllm": PORTS.ENGINE,
    "finetune": None,
}
# Images that run our own package: `python -m <package>`.
ENTRYPOINTS = {"operator": "sage_operator", "gateway": "sage_gateway"}
ROOT_USERS = {"root", "0", "0:0", "root:root"}


def final_stage(path: Path) -> Stage:
    return stages(path.read_text())[-1]


def test_the_service_images_exist() -> None:
    assert {"operator", "gateway"} <= {p.parent.name for p in DOCKERFILES}


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.parent.name for p in DOCKERFILES])
def test_every_image_is_known(path: Path) -> None:
    assert path.parent.name in EXPOSED, f"add images/{path.parent.name} to EXPOSED with the port it serves"


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.parent.name for p in DOCKERFILES])
def test_bases_are_pinned_and_name_no_registry(path: Path) -> None:
    built = stages(path.read_text())
    assert built, "no FROM"
    aliases: set[str] = set()
    for stage in built:
        if stage.base not in aliases:
            assert pinned(stage.base), f"FROM {stage.base}: pin a release tag (not latest) or a digest"
            assert not names_registry_host(stage.base), f"FROM {stage.base}: leave the registry to the builder"
        if stage.alias:
            aliases.add(stage.alias)


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.parent.name for p in DOCKERFILES])
def test_runs_as_a_non_root_user(path: Path) -> None:
    user = final_stage(path).last("USER")
    assert user is not None, "the final stage sets no USER: it would run as root"
    assert user.arguments not in ROOT_USERS
    assert user.arguments == f"{names.IMAGE_USER_ID}:{names.IMAGE_USER_ID}", "pods run as names.IMAGE_USER_ID"


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.parent.name for p in DOCKERFILES])
def test_no_healthcheck(path: Path) -> None:
    """Kubernetes ignores HEALTHCHECK; the operator renders startup, readiness and liveness probes."""
    assert [i.line for i in instructions(path.read_text()) if i.keyword == "HEALTHCHECK"] == []


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.parent.name for p in DOCKERFILES])
def test_exposes_the_port_it_serves(path: Path) -> None:
    exposed = [port for i in final_stage(path).all("EXPOSE") for port in i.arguments.split()]
    expected = EXPOSED.get(path.parent.name)
    assert exposed == ([] if expected is None else [str(expected)])


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.parent.name for p in DOCKERFILES])
def test_port_variables_agree_with_the_ports_module(path: Path) -> None:
    ports = {"SAGE_GATEWAY_PORT": PORTS.GATEWAY, "SAGE_ENGINE_PORT": PORTS.ENGINE, "SAGE_EDGE_PORT": PORTS.EDGE}
    for instruction in final_stage(path).all("ENV"):
        for pair in shlex.split(instruction.arguments):
            name, _, value = pair.partition("=")
            if name in ports:
                assert value == str(ports[name]), f"ENV {name}={value}, the ports module says {ports[name]}"


@pytest.mark.parametrize("name", sorted(ENTRYPOINTS))
def test_entrypoint_runs_the_package(name: str) -> None:
    entrypoint = final_stage(IMAGES / name / "Dockerfile").last("ENTRYPOINT")
    assert entrypoint is not None
    assert entrypoint.arguments == f'["python", "-m", "{ENTRYPOINTS[name]}"]'
    assert (REPO_ROOT / name / ENTRYPOINTS[name]).is_dir()


# --- the reader itself ---------------------------------------------------------------------------


def test_reader_joins_continuations_and_substitutes_build_args() -> None:
    text = (
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE=python:3.11.13-slim\n"
        "FROM ${BASE} AS build\n"
        "RUN a \\\n"
        "    # a comment inside a continuation\n"
        "    && b\n"
        "FROM --platform=linux/amd64 build\n"
        "USER 10001\n"
    )
    first, second = stages(text)
    assert (first.base, first.alias) == ("python:3.11.13-slim", "build")
    assert first.instructions[0].arguments == "a && b"
    assert first.instructions[0].line == 4
    assert (second.base, second.alias) == ("build", None)
    assert second.last("USER") is not None


@pytest.mark.parametrize(
    ("image", "ok"),
    [
        ("python:3.11.13-slim-bookworm", True),
        ("vllm/vllm-openai:v0.11.0", True),
        ("python@sha256:" + "a" * 64, True),
        ("python", False),
        ("python:latest", False),
        ("python:slim", False),
        ("localhost:5000/python", False),
    ],
)
def test_pinned(image: str, ok: bool) -> None:
    assert pinned(image) is ok


def test_registry_hosts_are_recognised() -> None:
    assert names_registry_host("ghcr.io/x/y:1")
    assert names_registry_host("localhost:5000/x:1")
    assert not names_registry_host("vllm/vllm-openai:v0.11.0")
    assert not names_registry_host("python:3.11.13-slim")


# --- layer order: a code change must never reinstall the dependencies ----------------------------

# Images built on the Python base (the build argument `images/build.sh` sets for buildah).
PYTHON_IMAGES = sorted(p for p in DOCKERFILES if p.parent.name != "vllm")
DEPENDENCY_INPUTS = {"pyproject.toml", ".ci/requirements.lock"}


def _copies_the_wheel(instruction: Instruction) -> bool:
    return instruction.keyword == "COPY" and "--from=wheel" in instruction.arguments.split()


@pytest.mark.parametrize("path", PYTHON_IMAGES, ids=[p.parent.name for p in PYTHON_IMAGES])
def test_the_base_is_the_python_image_build_argument(path: Path) -> None:
    text = path.read_text()
    assert "ARG PYTHON_IMAGE=" in text
    assert all(line.strip() == "FROM ${PYTHON_IMAGE}" or line.strip().startswith("FROM ${PYTHON_IMAGE} AS ")
               for line in text.splitlines() if line.startswith("FROM "))  # fmt: skip


@pytest.mark.parametrize("path", PYTHON_IMAGES, ids=[p.parent.name for p in PYTHON_IMAGES])
def test_dependencies_are_installed_from_the_lock_before_the_code(path: Path) -> None:
    """Every layer before the project's wheel depends on pyproject.toml and the lock file only; the
    wheel goes in last, with --no-deps (so PyTorch is not reinstalled when the code changes)."""
    runtime = final_stage(path)
    wheel_copies = [i for i in runtime.instructions if _copies_the_wheel(i)]
    assert len(wheel_copies) == 1, "the wheel is copied from the wheel stage once"
    (wheel_copy,) = wheel_copies
    runs = runtime.all("RUN")
    assert runs[-1].line > wheel_copy.line, "the project's wheel is the last thing installed"
    assert "--no-deps" in runs[-1].arguments
    assert "/tmp/wheels/sage-" in runs[-1].arguments
    before = [i for i in runtime.instructions if i.line < wheel_copy.line]
    copied = {
        source
        for i in before
        if i.keyword in {"COPY", "ADD"}
        for source in i.arguments.split()[:-1]
        if not source.startswith("--")
    }
    assert copied <= DEPENDENCY_INPUTS, f"layers under the dependencies copy {copied - DEPENDENCY_INPUTS}"
    installs = [i for i in before if i.keyword == "RUN" and "pip install" in i.arguments]
    assert installs, "the dependencies are installed in a layer of their own"
    from_the_lock = [i for i in installs if "$TORCH_REQUIREMENT" not in i.arguments]
    assert from_the_lock, "the dependencies other than PyTorch are installed from the lock"
    assert all("/tmp/deps/requirements.lock" in i.arguments for i in from_the_lock), "versions come from the lock"


TORCH_IMAGES = [IMAGES / name / "Dockerfile" for name in ("engine", "finetune")]


@pytest.mark.parametrize("path", TORCH_IMAGES, ids=[p.parent.name for p in TORCH_IMAGES])
def test_the_pytorch_layer_is_keyed_by_the_locks_pin_alone(path: Path) -> None:
    """PyTorch goes in before the lock is copied (a change to another pin never downloads its
    gigabytes again), at exactly the version the lock pins."""
    runtime = final_stage(path)
    (pin,) = [i.arguments for i in runtime.all("ARG") if i.arguments.startswith("TORCH_REQUIREMENT=")]
    lock = (REPO_ROOT / ".ci" / "requirements.lock").read_text().splitlines()
    (locked,) = [line for line in lock if line.startswith("torch==")]
    assert pin == f"TORCH_REQUIREMENT={locked}"
    torch_install = next(i for i in runtime.all("RUN") if "$TORCH_REQUIREMENT" in i.arguments)
    lock_copy = next(i for i in runtime.instructions if i.keyword == "COPY" and ".ci/requirements.lock" in i.arguments)
    assert torch_install.line < lock_copy.line


@pytest.mark.parametrize("path", PYTHON_IMAGES, ids=[p.parent.name for p in PYTHON_IMAGES])
def test_no_run_bind_mounts_build_inputs(path: Path) -> None:
    """buildah's layer cache does not key a RUN by the content it bind-mounts (BuildKit's does): a
    mounted wheel or lock file would leave the old one in the image. Inputs come in by COPY."""
    mounts = [
        i.line for stage in stages(path.read_text()) for i in stage.all("RUN") if "--mount=type=bind" in i.arguments
    ]
    assert mounts == [], f"RUN --mount=type=bind at line(s) {mounts}"


def test_engine_and_finetune_share_their_layers_up_to_pytorch() -> None:
    """The same instructions on the same base: a layer cache builds and stores PyTorch once."""
    engine, finetune = (final_stage(IMAGES / name / "Dockerfile").instructions for name in ("engine", "finetune"))
    torch_at = next(n for n, i in enumerate(engine) if i.keyword == "RUN" and "$TORCH_REQUIREMENT" in i.arguments)
    assert [(i.keyword, i.arguments) for i in engine[: torch_at + 1]] == [
        (i.keyword, i.arguments) for i in finetune[: torch_at + 1]
    ]
