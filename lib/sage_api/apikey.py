"""The APIKey custom resource: one client key of the gateway, held as a hash, with its policy (pure).

The key itself is never stored: `sage key create` (or any tool) draws a random key, prints it once,
and writes only `spec.keyHash` (SHA-256). Why a typed resource and not Secrets: see docs/auth.md.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Annotated

from pydantic import Field

from sage_api.common import SageModel

KEY_PREFIX = "sk-sage-"
HASH_PREFIX = "sha256:"
HASH_PATTERN = r"^sha256:[0-9a-f]{64}$"
_NAME = Annotated[str, Field(min_length=1, max_length=253)]


class APIKeySpec(SageModel):
    """Desired state of an APIKey: whose key it is (by hash) and what it may do."""

    key_hash: Annotated[str, Field(pattern=HASH_PATTERN)]
    """sha256:<64 hex digits> of the key, as `sage key create` prints it; the key itself is never stored."""

    models: Annotated[list[_NAME], Field(max_length=256)] | None = None
    """Model names (served names, aliases, adapters) the key may use; unset: every model of `namespaces`."""

    namespaces: Annotated[list[_NAME], Field(max_length=256)] | None = None
    """Namespaces whose engines the key may use; unset: every namespace the gateway serves."""

    requests_per_minute: Annotated[int, Field(ge=1)] | None = None
    """Requests allowed per minute (a sliding window); unset: no limit."""

    tokens_per_minute: Annotated[int, Field(ge=1)] | None = None
    """Prompt plus completion tokens allowed per minute, counted from the engines' usage; unset: no limit."""

    max_concurrent_requests: Annotated[int, Field(ge=1)] | None = None
    """Requests (streams included) the key may have open at once; unset: no limit."""

    expires_at: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    """When the key stops working (RFC 3339, e.g. 2027-01-01T00:00:00Z); unset: never."""

    disabled: bool = False
    """true refuses the key without deleting it."""

    description: Annotated[str, Field(max_length=1024)] | None = None
    """Whose key this is, for people reading `kubectl get apikeys`."""


def new_key() -> str:
    """A fresh key: the prefix and 32 random URL-safe characters (192 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(24)


def key_hash(key: str) -> str:
    """The `spec.keyHash` of `key`. A fast hash suffices: keys are random, not passwords."""
    return HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def is_key_hash(text: str) -> bool:
    return re.fullmatch(HASH_PATTERN, text) is not None
