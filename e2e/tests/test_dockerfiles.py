"""Every Dockerfile under images/: pinned bases, a non-root user, the right port exposed, no
HEALTHCHECK (Kubernetes probes own health), and the entry point of the image's package."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from sage_api import names
from sage_api.ports import PORTS
from sage_harness.dockerfile import Stage, instructions, names_registry_host, pinned, stages
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
