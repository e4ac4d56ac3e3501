"""`images/build.sh` (`make images`): one `docker build` per image, tagged as the chart expects,
where a Docker engine answers; one `buildah bud --layers` per image (vllm excepted) on the local
base image where only buildah is installed; one clear line and success where neither is. Neither
may really build here, so stand-in `docker` and `buildah` executables on PATH record what the script
asks of them."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import yaml

from sage_harness.repo import REPO_ROOT

SCRIPT = REPO_ROOT / "images" / "build.sh"
DOCKERFILES = sorted(REPO_ROOT.glob("images/*/Dockerfile"))
# Images built FROM a third-party image rather than the PYTHON_IMAGE base: Docker only.
DOCKER_ONLY = {"vllm"}
APP_VERSION = yaml.safe_load((REPO_ROOT / "charts" / "sage" / "Chart.yaml").read_text())["appVersion"]


def standin(folder: Path, command: str, *, answers: bool, probe: str) -> Path:
    """A `command` that logs its arguments; `command probe` succeeds only if `answers`."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{command}.log"
    log.touch()
    script = folder / command
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%s\\n" "$*" >> {shlex.quote(str(log))}\n'
        f'[[ "$1" == {probe} ]] && exit {0 if answers else 1}\n'
        "exit 0\n"
    )
    script.chmod(0o755)
    return log


def standin_docker(folder: Path, *, engine_answers: bool) -> Path:
    """A `docker` that logs its arguments; `docker info` succeeds only if `engine_answers`."""
    return standin(folder, "docker", answers=engine_answers, probe="info")


def standin_buildah(folder: Path, *, installed: bool) -> Path:
    """A `buildah` that logs its arguments; `buildah version` fails unless `installed`; every
    other call (`inspect`: the base image exists in its storage) succeeds."""
    log = standin(folder, "buildah", answers=installed, probe="version")
    counter = folder / "images-count"
    script = folder / "buildah"
    # `buildah images --quiet`: a new image id on every look, as after each rebuild.
    head, _, _ = script.read_text().rpartition("exit 0\n")
    script.write_text(
        head + f'if [[ "$1" == images ]]; then n=$(($(cat {counter} 2>/dev/null || echo 0) + 1)); '
        f'echo $n > {counter}; echo "image-$n"; fi\nexit 0\n'
    )
    standin(folder, "debootstrap", answers=True, probe="--version")  # never called: the base "exists"
    return log


def run(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}"}
    for name in ("SAGE_IMAGE_TAG", "SAGE_IMAGE_PREFIX", "SAGE_PYTHON_IMAGE"):
        environment.pop(name, None)
    environment.update(env)
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=environment, timeout=60, check=False
    )


def builds_of(log: Path, verb: str) -> list[list[str]]:
    return [shlex.split(line) for line in log.read_text().splitlines() if line.startswith(verb)]


def test_without_a_docker_engine_or_buildah_it_says_so_in_one_line(tmp_path: Path) -> None:
    docker = standin_docker(tmp_path, engine_answers=False)
    buildah = standin_buildah(tmp_path, installed=False)
    result = run(tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip().splitlines() == [
        "make images: skipped: no Docker engine answers on this machine ('docker info' failed)"
        " and buildah is not installed"
    ]
    assert "build" not in docker.read_text()
    assert "bud" not in buildah.read_text()


def test_builds_every_image_tagged_as_the_chart_expects(tmp_path: Path) -> None:
    log = standin_docker(tmp_path, engine_answers=True)
    buildah = standin_buildah(tmp_path, installed=True)
    result = run(tmp_path)
    assert result.returncode == 0, result.stderr
    builds = builds_of(log, "build")
    expected = {(str(path), f"sage/{path.parent.name}:{APP_VERSION}", str(REPO_ROOT)) for path in DOCKERFILES}
    assert {(b[b.index("--file") + 1], b[b.index("--tag") + 1], b[-1]) for b in builds} == expected
    assert "image(s) built" in result.stderr  # progress and a summary
    assert buildah.read_text() == ""  # Docker wins where its engine answers


def test_builds_only_the_images_asked_for(tmp_path: Path) -> None:
    log = standin_docker(tmp_path, engine_answers=True)
    assert run(tmp_path, "gateway").returncode == 0
    builds = [line for line in log.read_text().splitlines() if line.startswith("build")]
    assert len(builds) == 1
    assert "sage/gateway:" in builds[0]
    unknown = run(tmp_path, "no-such-image")
    assert unknown.returncode != 0
    assert "no-such-image" in unknown.stderr


def test_without_docker_buildah_builds_the_same_dockerfiles_on_the_given_base(tmp_path: Path) -> None:
    standin_docker(tmp_path, engine_answers=False)
    log = standin_buildah(tmp_path, installed=True)
    result = run(tmp_path, SAGE_PYTHON_IMAGE="localhost/my/python:3.11")
    assert result.returncode == 0, result.stderr
    builds = builds_of(log, "bud")
    expected = {
        (str(path), f"sage/{path.parent.name}:{APP_VERSION}", str(REPO_ROOT))
        for path in DOCKERFILES
        if path.parent.name not in DOCKER_ONLY
    }
    assert {(b[b.index("--file") + 1], b[b.index("--tag") + 1], b[-1]) for b in builds} == expected
    for build in builds:
        assert "--layers" in build
        assert build[build.index("--build-arg") + 1] == "PYTHON_IMAGE=localhost/my/python:3.11"
        dockerfile = Path(build[build.index("--file") + 1])
        assert build[build.index("--ignorefile") + 1] == f"{dockerfile}.dockerignore"
    calls = log.read_text().splitlines()
    # The image each rebuild replaced goes (the stand-in names a new one on every look), and only
    # that one: a prune of every dangling image would also drop the wheel stage's cache.
    removed = [call for call in calls if call.startswith("rmi ")]
    assert len(removed) == len(builds)
    assert all(call.split()[1].startswith("image-") for call in removed)
    skipped = [line for line in result.stdout.splitlines() if "skipped" in line]
    assert len(skipped) == len(DOCKER_ONLY)
    assert all("sage/vllm:" in line and "Docker" in line for line in skipped)


def test_without_docker_the_base_is_the_local_stand_in(tmp_path: Path) -> None:
    """No SAGE_PYTHON_IMAGE: e2e/node/base-image.sh names the base (here it "exists" already)."""
    standin_docker(tmp_path, engine_answers=False)
    log = standin_buildah(tmp_path, installed=True)
    result = run(tmp_path, "gateway")
    assert result.returncode == 0, result.stderr
    (build,) = builds_of(log, "bud")
    assert build[build.index("--build-arg") + 1].startswith("PYTHON_IMAGE=localhost/sage-base/python:3.11-bookworm-")
    assert not any(line.startswith("commit") for line in log.read_text().splitlines())  # nothing rebuilt


def test_the_operator_defaults_to_the_images_make_images_builds() -> None:
    """With the chart's defaults the operator puts `sage/engine:<version>` and
    `sage/finetune:<version>` into pods: the very tags `make images` gives those images."""
    from sage_operator.settings import OperatorSettings  # noqa: PLC0415 - keeps collection free of the operator

    defaults = {name: field.default for name, field in OperatorSettings.model_fields.items()}
    for image in ("engine", "finetune"):
        assert (REPO_ROOT / "images" / image / "Dockerfile").exists()
        assert defaults[f"{image}_image"] == f"sage/{image}:{APP_VERSION}"
