"""From `sage llm engine start` / `sage llm fine-tune` arguments to what a target is asked for
(pure): an LLMEngine manifest (a fine-tune is a `sage_api.finetune_request.FinetuneRequest`)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from sage_api.engine import LLMEngine
from sage_api.finetune_request import DNS_LABEL, RequestError
from sage_api.names import API_VERSION, ENGINE_KIND

_NOT_DNS = re.compile(r"[^a-z0-9-]+")
MAX_NAME = 63


def name_from_model(model: str) -> str:
    """`Qwen/Qwen2.5-0.5B-Instruct` -> `qwen2-5-0-5b-instruct`; a DNS label for the engine name."""
    last = model.rstrip("/").rsplit("/", 1)[-1].removeprefix("hf:")
    label = _NOT_DNS.sub("-", last.lower()).strip("-")[:MAX_NAME].strip("-")
    if not label:
        msg = f"cannot derive a name from the model {model!r}; give --name"
        raise RequestError(msg)
    return label


OPTION_OF_FIELD = {
    "model": "MODEL",
    "engineKind": "--engine-kind",
    "backend": "--backend",
    "replicas": "--replicas",
    "resources": "--gpus",
    "servedModelName": "--served-model-name",
    "name": "--name",
}


def _option(location: tuple[int | str, ...]) -> str:
    fields = [str(part) for part in location if isinstance(part, str) and part not in {"spec", "metadata"}]
    return OPTION_OF_FIELD.get(fields[0], fields[0]) if fields else "arguments"


def engine_manifest(
    *,
    model: str,
    kind: str = "llm",
    backend: str | None = None,
    name: str | None = None,
    replicas: int = 1,
    gpus: int = 0,
    served_model_name: str | None = None,
) -> dict[str, Any]:
    """An LLMEngine manifest, validated by the same model the CRD is generated from."""
    name = name or name_from_model(model)
    spec: dict[str, Any] = {"model": model, "engineKind": kind, "replicas": replicas}
    if backend:
        spec["backend"] = backend
    if gpus:
        spec["resources"] = {"gpus": gpus}
    if served_model_name:
        spec["servedModelName"] = served_model_name
    manifest = {"apiVersion": API_VERSION, "kind": ENGINE_KIND, "metadata": {"name": name}, "spec": spec}
    try:
        LLMEngine.model_validate(manifest)
    except ValidationError as error:
        problem = error.errors()[0]
        msg = f"{_option(tuple(problem['loc']))}: {problem['msg']}"
        raise RequestError(msg) from None
    if not DNS_LABEL.fullmatch(name) or len(name) > MAX_NAME:
        msg = f"--name: {name!r} is not a DNS label (lower case letters, digits and '-', at most 63)"
        raise RequestError(msg)
    return manifest
