"""The installed `sage` console script, run as a user runs it: a subprocess with its own
environment, output captured, never raising on failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SAGE = Path(sys.executable).parent / "sage"
"""`make env` installs the project editable into the environment, console script included."""


def run_sage(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    assert SAGE.is_file(), f"{SAGE} is missing: `make env` installs the sage console script"
    return subprocess.run(
        [str(SAGE), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
