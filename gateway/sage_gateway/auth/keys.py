"""API keys as the gateway holds them: hashes with their policies, and who a request is (pure).

The ring never sees an APIKey's key, only its SHA-256 (`spec.keyHash`); a presented key is hashed
and looked up. Looking up a hash in a dict leaks nothing useful through timing: learning a hash's
first bytes brings no one closer to a key that produces it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from sage_api.apikey import HASH_PREFIX, is_key_hash
from sage_wire.errors import WireError

UNLIMITED_NAME = "static"


@dataclass(frozen=True)
class KeyPolicy:
    """One key: its object's name (never the key), its access and its limits."""

    name: str
    """`namespace/name` of its APIKey (metric label, log name), its name when read from a file,
    or `static-N`."""
    digest: str
    """Hex SHA-256 of the key."""
    models: frozenset[str] | None = None
    namespaces: frozenset[str] | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_concurrent: int | None = None
    expires_at: datetime | None = None
    disabled: bool = False

    def allows(self, namespace: str, model: str) -> bool:
        """May this key use `model`, served by an engine in `namespace`?"""
        if self.namespaces is not None and namespace not in self.namespaces:
            return False
        return self.models is None or model in self.models

    @cached_property
    def limited(self) -> bool:
        """Asked on every request of the key; a policy never changes (a changed key is a new one)."""
        return any(
            limit is not None for limit in (self.requests_per_minute, self.tokens_per_minute, self.max_concurrent)
        )


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _timestamp(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _names(values: Any) -> frozenset[str] | None:
    return frozenset(str(value) for value in values) if isinstance(values, list) else None


def _positive(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and value > 0 else None


def policy_from_object(obj: Mapping[str, Any]) -> KeyPolicy:
    """The policy of an APIKey object; ValueError when its hash or expiry cannot be read (the API
    server's schema refuses such objects, so this guards against a stale CRD)."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    namespace, own = metadata.get("namespace"), str(metadata.get("name", ""))
    name = f"{namespace}/{own}" if namespace else own
    key_hash = str(spec.get("keyHash", ""))
    if not is_key_hash(key_hash):
        msg = f"APIKey {name}: spec.keyHash is not sha256:<64 hex digits>"
        raise ValueError(msg)
    expires = spec.get("expiresAt")
    return KeyPolicy(
        name=name,
        digest=key_hash.removeprefix(HASH_PREFIX),
        models=_names(spec.get("models")),
        namespaces=_names(spec.get("namespaces")),
        requests_per_minute=_positive(spec.get("requestsPerMinute")),
        tokens_per_minute=_positive(spec.get("tokensPerMinute")),
        max_concurrent=_positive(spec.get("maxConcurrentRequests")),
        expires_at=_timestamp(str(expires)) if expires else None,
        disabled=spec.get("disabled") is True,
    )


def unlimited_policy(key: str, index: int = 0) -> KeyPolicy:
    """A key given in the gateway's own settings (local mode): every model, no limits."""
    return KeyPolicy(name=f"{UNLIMITED_NAME}-{index}", digest=digest_of(key))


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a client sent: `Authorization: Bearer <key>` (OpenAI clients) or `x-api-key`
    (Anthropic clients)."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def invalid_key(message: str) -> WireError:
    return WireError(401, message, "invalid_api_key", headers={"WWW-Authenticate": 'Bearer realm="sage"'})


MISSING_KEY = "No API key was given. Send it as 'Authorization: Bearer <key>' (OpenAI clients) or 'x-api-key: <key>'."


ACCEPTED_LIMIT = 1024
"""Presented credentials remembered as accepted (cleared when full, and on any change of keys)."""


class KeyRing:
    """Every key the gateway accepts, by digest; changed as APIKey objects come and go.

    A key that was accepted is remembered by the headers that presented it, so that its next
    requests cost a dict look-up instead of parsing and hashing (every request of a client carries
    the same key). Only accepted keys are remembered, at most ACCEPTED_LIMIT presentations, and
    all are forgotten when any key changes. Finding them by the presented text is no timing
    oracle: a dict compares two strings only once their (per-process, randomly seeded) hashes are
    equal, which a guessed key's is not."""

    def __init__(self) -> None:
        self._by_digest: dict[str, KeyPolicy] = {}
        self._digest_of: dict[str, str] = {}
        self._accepted: dict[tuple[str | None, str | None], KeyPolicy] = {}

    def __len__(self) -> int:
        return len(self._by_digest)

    def upsert(self, policy: KeyPolicy) -> None:
        self.remove(policy.name)
        self._by_digest[policy.digest] = policy
        self._digest_of[policy.name] = policy.digest

    def remove(self, name: str) -> None:
        self._accepted.clear()
        digest = self._digest_of.pop(name, "")
        held = self._by_digest.get(digest)
        if held is not None and held.name == name:  # two objects may carry one hash: keep the other's
            del self._by_digest[digest]

    def _look_up(self, headers: Mapping[str, str]) -> KeyPolicy:
        key = presented_key(headers)
        if key is None:
            raise invalid_key(MISSING_KEY)
        policy = self._by_digest.get(digest_of(key))
        if policy is None:
            raise invalid_key("The API key is not valid.")
        if policy.disabled:
            raise invalid_key("The API key is disabled.")
        return policy

    def authenticate(self, headers: Mapping[str, str], clock: Callable[[], datetime]) -> KeyPolicy:
        """The policy of the request's key, or a 401 that names what is wrong (never the key).
        `clock` (the wall clock) is read only for a key that expires."""
        presented = (headers.get("authorization"), headers.get("x-api-key"))
        policy = self._accepted.get(presented)
        if policy is None:
            policy = self._look_up(headers)
            if len(self._accepted) >= ACCEPTED_LIMIT:
                self._accepted.clear()
            self._accepted[presented] = policy
        if policy.expires_at is not None and clock() >= policy.expires_at:
            raise invalid_key(f"The API key expired at {policy.expires_at.isoformat()}.")
        return policy
