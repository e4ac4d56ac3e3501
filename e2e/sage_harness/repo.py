"""Where this checkout is, and the folders its packages live in (pyproject.toml names them once)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
_PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
SOURCE_FOLDERS: tuple[str, ...] = tuple(_PROJECT["tool"]["setuptools"]["packages"]["find"]["where"])
TEST_FOLDERS: tuple[str, ...] = tuple(_PROJECT["tool"]["pytest"]["ini_options"]["testpaths"])


def source_pythonpath(root: Path = REPO_ROOT) -> str:
    """PYTHONPATH for child processes: this checkout's packages (or those of the checkout at
    `root`) first, then the caller's path."""
    ours = [str(root / folder) for folder in SOURCE_FOLDERS]
    existing = os.environ.get("PYTHONPATH")
    return os.pathsep.join([*ours, existing] if existing else ours)
