"""Each image is built from the shared library plus its own package, nothing else, and that is
enough: every module of the image's package imports with only those folders on the path (one
image at a time, not the union the development environment has)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sage_harness.dockerfile import copied_sources, stages
from sage_harness.repo import REPO_ROOT

SHARED_LIBRARY = "lib"
# image -> (its own folder, the packages its containers run)
IMAGES = {
    "operator": ("operator", ("sage_operator",)),
    "gateway": ("gateway", ("sage_gateway", "sage_edge")),
    "engine": ("images/engine", ("sage_engine",)),
    "finetune": ("images/finetune", ("sage_finetune",)),
}
BUILD_FILES = {"pyproject.toml", "README.md"}

# Runs in a fresh interpreter: the editable install's finder (which knows every folder) is taken
# away, the allowed folders are the only first-party places on the path, and every module of the
# packages is imported; then each first-party module must have come from an allowed folder.
PROBE = """
import importlib, json, pkgutil, sys
allowed, packages = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")
                    and "__editable__" not in type(f).__module__]
sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in getattr(h, "__module__", "")]
sys.path[:] = allowed + [p for p in sys.path if "site-packages" in p or "lib/python" in p]
sys.path_importer_cache.clear()
importlib.invalidate_caches()
failures = {}
for name in packages:
    package = importlib.import_module(name)
    for info in pkgutil.walk_packages(package.__path__, name + "."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            importlib.import_module(info.name)
        except Exception as error:
            failures[info.name] = f"{type(error).__name__}: {error}"
outside = {m.__name__: getattr(m, "__file__", None) for m in list(sys.modules.values())
           if m.__name__.split(".")[0].startswith("sage_")
           and not any(str(getattr(m, "__file__", "") or "").startswith(a) for a in allowed)}
print(json.dumps({"failures": failures, "outside": outside}))
"""


def wheel_stage_sources(image: str) -> set[str]:
    """What the image's wheel is built from: the COPY sources of its first stage."""
    first = stages((REPO_ROOT / "images" / image / "Dockerfile").read_text())[0]
    return copied_sources(first)


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_the_image_copies_the_shared_library_and_its_own_package(image: str) -> None:
    own, _ = IMAGES[image]
    assert wheel_stage_sources(image) == BUILD_FILES | {SHARED_LIBRARY, own}


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_the_package_imports_with_only_those_folders(image: str) -> None:
    own, packages = IMAGES[image]
    allowed = [str(REPO_ROOT / SHARED_LIBRARY), str(REPO_ROOT / own)]
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(allowed), json.dumps(list(packages))],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path("/"),
        env={**environment, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"failures": {}, "outside": {}}
