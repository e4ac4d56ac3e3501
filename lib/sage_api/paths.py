"""User directories (XDG, via platformdirs). Nothing else names `~/.sage` or the like."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

_APP = "sage"


def cache_dir() -> Path:
    """Model weights, built test binaries and other things that can be fetched again."""
    return Path(os.environ.get("SAGE_CACHE_DIR") or platformdirs.user_cache_dir(_APP))


def state_dir() -> Path:
    """Logs and pid files of local mode."""
    return Path(os.environ.get("SAGE_STATE_DIR") or platformdirs.user_state_dir(_APP))


def config_dir() -> Path:
    """User configuration."""
    return Path(os.environ.get("SAGE_CONFIG_DIR") or platformdirs.user_config_dir(_APP))
