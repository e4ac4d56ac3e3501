"""`images/build.sh` (`make images`): one clear line and success where no Docker engine answers;
one `docker build` per image, tagged as the chart expects, where one does. The Docker engine cannot
run here, so a stand-in `docker` executable on PATH records what the script asks of it."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import yaml

from sage_harness.repo import REPO_ROOT

SCRIPT = REPO_ROOT / "images" / "build.sh"
DOCKERFILES = sorted(REPO_ROOT.glob("images/*/Dockerfile"))


def standin_docker(folder: Path, *, engine_answers: bool) -> Path:
    """A `docker` that logs its arguments; `docker info` succeeds only if `engine_answers`."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "calls.log"
    info_status = 0 if engine_answers else 1
    script = folder / "docker"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%s\\n" "$*" >> {shlex.quote(str(log))}\n'
        f'[[ "$1" == info ]] && exit {info_status}\n'
        "exit 0\n"
    )
    script.chmod(0o755)
    return log


def run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}"}
    env.pop("SAGE_IMAGE_TAG", None)
    env.pop("SAGE_IMAGE_PREFIX", None)
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_without_a_docker_engine_it_says_so_in_one_line(tmp_path: Path) -> None:
    log = standin_docker(tmp_path, engine_answers=False)
    result = run(tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip().splitlines() == [
        "make images: skipped: no Docker engine answers on this machine ('docker info' failed)"
    ]
    assert "build" not in log.read_text()


def test_builds_every_image_tagged_as_the_chart_expects(tmp_path: Path) -> None:
    log = standin_docker(tmp_path, engine_answers=True)
    result = run(tmp_path)
    assert result.returncode == 0, result.stderr
    builds = [line.split() for line in log.read_text().splitlines() if line.startswith("build")]
    app_version = yaml.safe_load((REPO_ROOT / "charts" / "sage" / "Chart.yaml").read_text())["appVersion"]
    expected = {(str(path), f"sage/{path.parent.name}:{app_version}", str(REPO_ROOT)) for path in DOCKERFILES}
    assert {(b[b.index("--file") + 1], b[b.index("--tag") + 1], b[-1]) for b in builds} == expected
    assert "image(s) built" in result.stderr  # progress and a summary


def test_builds_only_the_images_asked_for(tmp_path: Path) -> None:
    log = standin_docker(tmp_path, engine_answers=True)
    assert run(tmp_path, "gateway").returncode == 0
    builds = [line for line in log.read_text().splitlines() if line.startswith("build")]
    assert len(builds) == 1
    assert "sage/gateway:" in builds[0]
    unknown = run(tmp_path, "no-such-image")
    assert unknown.returncode != 0
    assert "no-such-image" in unknown.stderr


def test_the_operator_defaults_to_the_images_make_images_builds() -> None:
    """With the chart's defaults the operator puts `sage/engine:<version>` and
    `sage/finetune:<version>` into pods: the very tags `make images` gives those images."""
    from sage_operator.settings import OperatorSettings  # noqa: PLC0415 - keeps collection free of the operator

    app_version = yaml.safe_load((REPO_ROOT / "charts" / "sage" / "Chart.yaml").read_text())["appVersion"]
    defaults = {name: field.default for name, field in OperatorSettings.model_fields.items()}
    for image in ("engine", "finetune"):
        assert (REPO_ROOT / "images" / image / "Dockerfile").exists()
        assert defaults[f"{image}_image"] == f"sage/{image}:{app_version}"
