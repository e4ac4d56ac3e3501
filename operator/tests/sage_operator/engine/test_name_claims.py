"""Which engine owns a model name, as the gateway decides it (pure)."""

from __future__ import annotations

from typing import Any

from sage_operator.engine.name_claims import NameIndex, claimed_names, conflict_message


def engine(namespace: str, name: str, created: str = "", **spec: Any) -> dict[str, Any]:
    metadata = {"namespace": namespace, "name": name}
    if created:
        metadata["creationTimestamp"] = created
    return {"metadata": metadata, "spec": {"model": "m", **spec}}


OLD = engine("team-a", "chat", "2026-01-01T00:00:00Z", aliases=["assistant"])
NEW = engine("team-b", "bot", "2026-03-01T00:00:00Z", servedModelName="chat", adapters=[{"name": "assistant"}])


def index(*engines: dict[str, Any], shared: frozenset[str] = frozenset()) -> NameIndex:
    names = NameIndex(shared=shared)
    for item in engines:
        names.update(f"{item['metadata']['namespace']}/{item['metadata']['name']}", item)
    return names


def test_served_name_aliases_and_adapters_are_claimed() -> None:
    assert claimed_names(OLD) == {"chat", "assistant"}
    assert claimed_names(NEW) == {"chat", "assistant"}


def test_the_newer_claimant_is_told_which_names_are_taken_and_by_whom() -> None:
    names = index(NEW, OLD)
    assert names.taken("team-b/bot") == {"assistant": "team-a/chat", "chat": "team-a/chat"}
    assert names.taken("team-a/chat") == {}
    assert "model name 'chat' belongs to the older LLMEngine team-a/chat" in conflict_message(names.taken("team-b/bot"))


def test_a_shared_name_is_no_conflict_the_others_still_are() -> None:
    names = index(NEW, OLD, shared=frozenset({"chat"}))
    assert names.taken("team-b/bot") == {"assistant": "team-a/chat"}


def test_same_age_is_ordered_by_namespace_and_name_like_the_gateway() -> None:
    names = index(engine("b", "x", "2026-01-01T00:00:00Z"), engine("a", "x", "2026-01-01T00:00:00Z"))
    assert names.taken("b/x") == {"x": "a/x"}
    assert names.taken("a/x") == {}


def test_an_update_names_the_engines_whose_conflicts_may_change() -> None:
    names = index(OLD, engine("team-c", "embed"))
    assert names.update("team-b/bot", NEW) == {"team-a/chat"}
    renamed = engine("team-b", "bot", "2026-03-01T00:00:00Z", servedModelName="other")
    assert names.update("team-b/bot", renamed) == {"team-a/chat"}  # it claimed chat before
    assert names.taken("team-b/bot") == {}
    assert names.update("team-a/chat", None) == set()  # deleted; nobody else claims its names now
    assert names.update("team-b/bot", NEW) == set()
    assert names.taken("team-b/bot") == {}  # the older one is gone: every name is its own
