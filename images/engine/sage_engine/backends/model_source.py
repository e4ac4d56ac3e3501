"""Where a model comes from: a local folder, `hf://org/name`, or a hub id.

A hub id is only fetched when the user has network; with `HF_HUB_OFFLINE=1` (always in tests)
huggingface_hub reads its cache and fails with a clear message when the model is not there.
"""

from __future__ import annotations

import os
from pathlib import Path


def resolve_model(spec: str) -> str:
    """The argument for `from_pretrained`: a folder path or a hub id."""
    if spec.startswith("hf://"):
        spec = spec.removeprefix("hf://").strip("/")
    elif spec.startswith(("/", "./", "../", "~")) or Path(spec).exists():
        path = Path(spec).expanduser()
        if not path.is_dir():
            msg = f"model folder {path} does not exist"
            raise FileNotFoundError(msg)
        return str(path)
    if spec.count("/") > 1 or not spec:
        msg = f"'{spec}' is neither a local folder nor a hub id (org/name)"
        raise ValueError(msg)
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        # Say why up front instead of a cache-miss traceback from deep inside the hub client.
        from huggingface_hub import try_to_load_from_cache  # noqa: PLC0415 (only for hub ids)

        if try_to_load_from_cache(spec, "config.json") is None:
            msg = f"'{spec}' is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading it"
            raise FileNotFoundError(msg)
    return spec
