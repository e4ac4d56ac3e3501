"""API keys as the gateway holds them: hashes, policies, and who a request is."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sage_api.apikey import KEY_PREFIX, key_hash, new_key
from sage_gateway.auth.keys import ACCEPTED_LIMIT, KeyRing, policy_from_object, presented_key
from sage_wire.errors import WireError

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def clock() -> datetime:
    return NOW


def apikey(name: str, key: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "sage-system"}, "spec": {"keyHash": key_hash(key), **spec}}


def refusal(ring: KeyRing, headers: dict[str, str]) -> WireError:
    with pytest.raises(WireError) as caught:
        ring.authenticate(headers, clock)
    return caught.value


def test_new_keys_are_random_and_only_their_hash_is_kept() -> None:
    first, second = new_key(), new_key()
    assert first != second
    assert first.startswith(KEY_PREFIX)
    assert len(first) == len(KEY_PREFIX) + 32
    policy = policy_from_object(apikey("team-a", first))
    assert first not in repr(policy)
    assert policy.digest in key_hash(first)


def test_a_key_is_read_from_bearer_or_x_api_key() -> None:
    assert presented_key({"authorization": "Bearer sk-1"}) == "sk-1"
    assert presented_key({"authorization": "bearer  sk-2 "}) == "sk-2"
    assert presented_key({"x-api-key": "sk-3"}) == "sk-3"
    assert presented_key({"authorization": "Basic abc"}) is None
    assert presented_key({"authorization": "Bearer "}) is None


def test_the_ring_accepts_its_keys_and_refuses_others_without_echoing_them() -> None:
    ring = KeyRing()
    key = new_key()
    ring.upsert(policy_from_object(apikey("team-a", key, models=["chat"])))
    assert ring.authenticate({"authorization": f"Bearer {key}"}, clock).name == "sage-system/team-a"
    assert ring.authenticate({"x-api-key": key}, clock).models == frozenset({"chat"})
    missing = refusal(ring, {})
    assert (missing.status, missing.code) == (401, "invalid_api_key")
    wrong = refusal(ring, {"authorization": "Bearer sk-sage-guessed-key"})
    assert wrong.status == 401
    assert "guessed" not in wrong.message


def test_revoked_disabled_and_expired_keys_are_refused() -> None:
    ring = KeyRing()
    key, other = new_key(), new_key()
    ring.upsert(policy_from_object(apikey("a", key)))
    ring.upsert(policy_from_object(apikey("b", other, disabled=True)))
    assert "disabled" in refusal(ring, {"x-api-key": other}).message
    ring.upsert(policy_from_object(apikey("b", other, expiresAt="2026-12-01T00:00:00Z")))
    assert "expired" in refusal(ring, {"x-api-key": other}).message
    ring.upsert(policy_from_object(apikey("b", other, expiresAt="2027-01-01T00:00:00Z")))
    assert ring.authenticate({"x-api-key": other}, clock).name == "sage-system/b"
    ring.remove("sage-system/a")
    assert refusal(ring, {"x-api-key": key}).status == 401
    rotated = new_key()
    ring.upsert(policy_from_object(apikey("b", rotated)))  # the same object, a new key
    assert refusal(ring, {"x-api-key": other}).status == 401
    assert len(ring) == 1


def test_an_accepted_key_is_refused_as_soon_as_it_is_revoked_disabled_or_expires() -> None:
    ring = KeyRing()
    key = new_key()
    ring.upsert(policy_from_object(apikey("a", key, expiresAt="2026-12-03T00:00:00Z")))
    for headers in ({"authorization": f"Bearer {key}"}, {"x-api-key": key}):
        assert ring.authenticate(headers, clock).name == "sage-system/a"
        assert ring.authenticate(headers, clock).name == "sage-system/a"  # remembered
    later = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
    with pytest.raises(WireError, match="expired"):
        ring.authenticate({"x-api-key": key}, lambda: later)
    ring.upsert(policy_from_object(apikey("a", key, disabled=True)))
    assert "disabled" in refusal(ring, {"x-api-key": key}).message
    ring.upsert(policy_from_object(apikey("a", key, models=["chat"])))
    assert ring.authenticate({"x-api-key": key}, clock).models == frozenset({"chat"})
    ring.remove("sage-system/a")
    assert refusal(ring, {"authorization": f"Bearer {key}"}).status == 401
    other = new_key()
    ring.upsert(policy_from_object(apikey("b", other)))
    for spaces in range(ACCEPTED_LIMIT + 5):  # presentations of one key are remembered within a bound
        assert ring.authenticate({"authorization": f"Bearer {other}" + " " * spaces}, clock).name == "sage-system/b"
    assert 0 < len(ring._accepted) <= ACCEPTED_LIMIT


def test_access_by_model_and_namespace() -> None:
    policy = policy_from_object(apikey("a", new_key(), models=["chat"], namespaces=["team-a"]))
    assert policy.allows("team-a", "chat")
    assert not policy.allows("team-b", "chat")
    assert not policy.allows("team-a", "other")
    anything = policy_from_object(apikey("b", new_key()))
    assert anything.allows("any", "model")
    assert not anything.limited


def test_an_object_without_a_readable_hash_is_refused() -> None:
    with pytest.raises(ValueError, match="keyHash"):
        policy_from_object({"metadata": {"name": "x"}, "spec": {"keyHash": "plain-key"}})
