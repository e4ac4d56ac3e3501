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
        return _convert(_collapse_optional(node), definitions)

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS or (key == "default" and value is None) or key == "anyOf":
            # anyOf survives only on int-or-string, where Kubernetes wants the marker alone.
            continue
        if key == "additionalProperties" and not isinstance(value, dict):
            # pydantic marks `extra="forbid"` models with false; structural schemas prune
            # unknown fields instead, which is the Kubernetes way of refusing them.
            continue
        out.update(_convert_keyword(key, value, definitions))
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def _collapse_optional(node: dict[str, Any]) -> dict[str, Any]:
    """`X | None` -> X: an optional field is one that may be left out, not one that may be null."""
    options = _strip_null(node["anyOf"])
    if len(options) != 1:
        msg = f"cannot express a union in a structural schema: {node}"
        raise ValueError(msg)
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    return {**options[0], **rest}


def _convert_keyword(key: str, value: Any, definitions: dict[str, Any]) -> dict[str, Any]:
    if key == "properties":
        return {key: {name: _convert(sub, definitions) for name, sub in value.items()}}
    if key in ("items", "additionalProperties"):
        return {key: _convert(value, definitions)}
    if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
        # JSON Schema 2020 puts the bound here; OpenAPI v3.0 wants it in minimum/maximum.
        return {"minimum" if key == "exclusiveMinimum" else "maximum": value, key: True}
    if key == "const":
        return {"enum": [value]}
    return {key: value}
