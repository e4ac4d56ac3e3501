"""The LoRA adapters an engine loads before it turns ready: a JSON file `{name: path}` (the operator
renders it into a ConfigMap the pod mounts, so a new adapter changes no pod template, and a
restarted pod is Ready only once it serves every adapter it had). Runs on the generation thread."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sage_engine.backends.base import Backend

log = logging.getLogger("sage_engine")


class AdapterListError(Exception):
    """The list cannot be read, or one of its adapters cannot be loaded: the engine never turns
    ready (it exits, naming the adapter, for Kubernetes to report)."""


def read_adapter_list(path: Path) -> dict[str, str]:
    try:
        listed = json.loads(path.read_text() or "{}")
    except (OSError, ValueError) as error:
        raise AdapterListError(f"the adapter list {path} cannot be read: {error}") from None
    if not isinstance(listed, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in listed.items()):
        raise AdapterListError(f"the adapter list {path} is not a JSON object of adapter name -> path")
    return listed


def load_listed_adapters(backend: Backend, path: Path | None) -> None:
    if path is None:
        return
    for name, source in read_adapter_list(path).items():
        try:
            backend.load_adapter(name, source)
        except Exception as error:  # the reason goes into the engine's status, never swallowed
            raise AdapterListError(f"failed to load LoRA adapter '{name}' from {source}: {error}") from None
        log.info("loaded LoRA adapter '%s' from %s before turning ready", name, source)
