"""Which engine owns a model name, as the gateway decides it (pure)."""

from __future__ import annotations

from typing import Any

from sage_operator.engine.name_claims import claimed_names, conflict_message, sharing_a_name, taken_names


def engine(namespace: str, name: str, created: str = "", **spec: Any) -> dict[str, Any]:
    metadata = {"namespace": namespace, "name": name}
    if created:
        metadata["creationTimestamp"] = created
    return {"metadata": metadata, "spec": {"model": "m", **spec}}


OLD = engine("team-a", "chat", "2026-01-01T00:00:00Z", aliases=["assistant"])
NEW = engine("team-b", "bot", "2026-03-01T00:00:00Z", servedModelName="chat", adapters=[{"name": "assistant"}])


def test_served_name_aliases_and_adapters_are_claimed() -> None:
    assert claimed_names(OLD) == {"chat", "assistant"}
    assert claimed_names(NEW) == {"chat", "assistant"}


def test_the_newer_claimant_is_told_which_names_are_taken_and_by_whom() -> None:
    assert taken_names(NEW, [OLD, NEW]) == {"assistant": "team-a/chat", "chat": "team-a/chat"}
    assert taken_names(OLD, [OLD, NEW]) == {}
    message = conflict_message(taken_names(NEW, [OLD, NEW]))
    assert "model name 'chat' belongs to the older LLMEngine team-a/chat" in message


def test_same_age_is_ordered_by_namespace_and_name_like_the_gateway() -> None:
    first = engine("a", "x", "2026-01-01T00:00:00Z")
    second = engine("b", "x", "2026-01-01T00:00:00Z")
    assert taken_names(second, [first, second]) == {"x": "a/x"}
    assert taken_names(first, [first, second]) == {}


def test_every_engine_sharing_a_name_is_found() -> None:
    unrelated = engine("team-c", "embed")
    assert sharing_a_name(OLD, [OLD, NEW, unrelated]) == [("team-b", "bot")]
    assert sharing_a_name(unrelated, [OLD, NEW, unrelated]) == []
