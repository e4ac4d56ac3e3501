"""Turns a pydantic model's JSON schema into a Kubernetes structural OpenAPI v3 schema.

Kubernetes accepts a subset of OpenAPI: no `$ref`, no `anyOf` with null for optional fields,
`exclusiveMinimum` as a boolean beside `minimum`, and no `title`. Descriptions, enums, defaults,
bounds and `x-kubernetes-*` extensions (CEL rules, list types, int-or-string) are kept.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_DROPPED_KEYS = frozenset({"title", "$defs", "examples"})


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural schema of `model`, with every `$ref` inlined."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions: dict[str, Any] = raw.get("$defs", {})
    return _convert(raw, definitions)


def _resolve_ref(ref: str, definitions: dict[str, Any]) -> dict[str, Any]:
    name = ref.rsplit("/", 1)[-1]
    resolved: dict[str, Any] = definitions[name]
    return resolved


def _strip_null(options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [option for option in options if option.get("type") != "null"]


def _convert(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        # Field-level keys (description, default, validations) win over the definition's.
        merged = {**_resolve_ref(node["$ref"], definitions), **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, definitions)

    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        options = _strip_null(node["anyOf"])
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(options) == 1:
            merged = {**options[0], **rest} if "$ref" not in options[0] else {"$ref": options[0]["$ref"], **rest}
            return _convert(merged, definitions)
        msg = f"cannot express a union in a structural schema: {node}"
        raise ValueError(msg)

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "default" and value is None:
            continue
        if key == "anyOf":  # int-or-string: Kubernetes wants the marker only
            continue
        if key == "properties":
            out["properties"] = {name: _convert(sub, definitions) for name, sub in value.items()}
        elif key == "items":
            out["items"] = _convert(value, definitions)
        elif key == "additionalProperties" and isinstance(value, dict):
            out["additionalProperties"] = _convert(value, definitions)
        elif key == "additionalProperties":
            # pydantic marks `extra="forbid"` models with false: structural schemas prune
            # unknown fields instead, which is the Kubernetes way of refusing them.
            continue
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "const" in out:
        out["enum"] = [out.pop("const")]
    return out
