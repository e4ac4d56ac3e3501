"""Field types the processes' pydantic settings share."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_settings import NoDecode


def split_commas(value: Any) -> Any:
    """`"a, b,,c"` -> `["a", "b", "c"]`; lists pass through."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _split_commas_or_none(value: Any) -> Any:
    return split_commas(value) or None


CommaSeparated = Annotated[list[str], NoDecode, BeforeValidator(split_commas)]
"""A list of names given in the environment as one comma-separated variable."""

OptionalCommaSeparated = Annotated[list[str] | None, NoDecode, BeforeValidator(_split_commas_or_none)]
"""The same, where an empty list means "not set" (None)."""
