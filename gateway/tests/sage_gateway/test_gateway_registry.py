"""The registry: engines and endpoint groups in, routable endpoints by model name out."""

from __future__ import annotations

from unittest.mock import patch

from sage_gateway.registry import Endpoint, EngineInfo, EngineRegistry, PolicyName, Route, Unavailable, Unknown

QWEN = EngineInfo("ml/qwen", "qwen", aliases=("chat",), adapters=("support-bot",))
MINILM = EngineInfo("ml/minilm", "minilm", kind="embedding")


def test_served_name_alias_and_adapter_route_to_the_ready_replicas() -> None:
    registry = EngineRegistry()
    registry.upsert_engine(QWEN)
    registry.set_endpoints("ml/qwen", "slice-a", [Endpoint("http://10.0.0.1:8000"), Endpoint("http://10.0.0.2:8000")])
    for name in ("qwen", "chat", "support-bot"):
        found = registry.resolve(name)
        assert isinstance(found, Route)
        assert found.engine is QWEN
        assert found.urls == ("http://10.0.0.1:8000", "http://10.0.0.2:8000")


def test_not_ready_endpoints_are_not_routable() -> None:
    registry = EngineRegistry()
    registry.upsert_engine(QWEN)
    registry.set_endpoints("ml/qwen", "s", [Endpoint("http://a:1", ready=False), Endpoint("http://b:1")])
    found = registry.resolve("qwen")
    assert isinstance(found, Route)
    assert found.urls == ("http://b:1",)
    registry.set_endpoints("ml/qwen", "s", [Endpoint("http://a:1", ready=False)])
    assert registry.resolve("qwen") == Unavailable("qwen", QWEN)


def test_endpoints_from_several_slices_merge_and_removing_one_slice_keeps_the_other() -> None:
    registry = EngineRegistry()
    registry.upsert_engine(QWEN)
    registry.set_endpoints("ml/qwen", "s1", [Endpoint("http://a:1")])
    registry.set_endpoints("ml/qwen", "s2", [Endpoint("http://b:1"), Endpoint("http://a:1")])
    assert registry.ready_urls("ml/qwen") == ("http://a:1", "http://b:1")
    registry.remove_endpoints("ml/qwen", "s1")
    assert registry.ready_urls("ml/qwen") == ("http://a:1", "http://b:1")
    registry.remove_endpoints("ml/qwen", "s2")
    assert isinstance(registry.resolve("qwen"), Unavailable)


def test_a_slice_seen_before_its_engine_counts_once_the_engine_arrives() -> None:
    registry = EngineRegistry()
    registry.set_endpoints("ml/qwen", "s", [Endpoint("http://a:1")])
    assert isinstance(registry.resolve("qwen"), Unknown)
    registry.upsert_engine(QWEN)
    assert isinstance(registry.resolve("qwen"), Route)


def test_unknown_model_lists_the_names_that_exist() -> None:
    registry = EngineRegistry()
    registry.upsert_engine(QWEN)
    registry.upsert_engine(MINILM)
    found = registry.resolve("gpt-4")
    assert found == Unknown("gpt-4", ("chat", "minilm", "qwen", "support-bot"))


def test_removed_engine_is_unknown() -> None:
    registry = EngineRegistry()
    registry.upsert_engine(QWEN)
    registry.set_endpoints("ml/qwen", "s", [Endpoint("http://a:1")])
    registry.remove_engine("ml/qwen")
    assert isinstance(registry.resolve("qwen"), Unknown)


def test_a_name_two_engines_claim_belongs_to_the_older_one_only() -> None:
    """Never another tenant's engine: the newer claimant gets no traffic, even while the owner
    has no ready replica (Unavailable, not a fall-over to the other namespace)."""
    registry = EngineRegistry()
    older = EngineInfo("z-team/m", "m", created="2026-01-01T00:00:00Z")
    newer = EngineInfo("a-team/m", "m", aliases=("shared",), created="2026-06-01T00:00:00Z")
    registry.upsert_engine(newer)
    registry.upsert_engine(older)
    registry.set_endpoints("a-team/m", "s", [Endpoint("http://newer:1")])
    unavailable = registry.resolve("m")
    assert isinstance(unavailable, Unavailable)
    assert unavailable.engine is older
    assert [entry.id for entry in registry.models()] == ["shared"]  # the newer lists only its own names
    registry.set_endpoints("z-team/m", "s", [Endpoint("http://older:1")])
    routed = registry.resolve("m")
    assert isinstance(routed, Route)
    assert routed.engine is older
    assert routed.urls == ("http://older:1",)
    assert {entry.id: entry.engine for entry in registry.models()} == {"m": "z-team/m", "shared": "a-team/m"}


def test_a_name_the_platform_shares_pools_every_claimants_replicas() -> None:
    """Explicit opt-in (SAGE_GATEWAY_SHARED_NAMES): the name is served by any ready replica of the
    engines claiming it, in whatever namespace; their other names stay their own."""
    registry = EngineRegistry(shared_names=frozenset({"m"}))
    older = EngineInfo("z-team/m", "m", created="2026-01-01T00:00:00Z")
    newer = EngineInfo("a-team/m", "m", aliases=("mine",), created="2026-06-01T00:00:00Z")
    registry.upsert_engine(older)
    registry.upsert_engine(newer)
    registry.set_endpoints("a-team/m", "s", [Endpoint("http://newer:1")])
    routed = registry.resolve("m")
    assert isinstance(routed, Route)  # the older has no ready replica: the newer's serve the name
    assert routed.urls == ("http://newer:1",)
    assert routed.engine is older  # the oldest claimant still describes the name
    registry.set_endpoints("z-team/m", "s", [Endpoint("http://older:1")])
    pooled = registry.resolve("m")
    assert isinstance(pooled, Route)
    assert pooled.urls == ("http://newer:1", "http://older:1")
    assert {entry.id for entry in registry.models()} == {"m", "mine"}
    unshared = EngineRegistry()
    for engine in (older, newer):
        unshared.upsert_engine(engine)
    unshared.set_endpoints("a-team/m", "s", [Endpoint("http://newer:1")])
    assert isinstance(unshared.resolve("m"), Unavailable)  # without the opt-in: the older's alone


def test_the_owner_goes_when_it_is_deleted() -> None:
    registry = EngineRegistry()
    registry.upsert_engine(EngineInfo("b/m", "m", created="2026-01-01T00:00:00Z"))
    registry.upsert_engine(EngineInfo("a/m", "m", created="2026-02-01T00:00:00Z"))
    registry.set_endpoints("a/m", "s", [Endpoint("http://a:1")])
    registry.remove_engine("b/m")
    found = registry.resolve("m")
    assert isinstance(found, Route)
    assert found.engine.key == "a/m"


def test_static_engines_without_timestamps_are_ordered_by_key() -> None:
    registry = EngineRegistry()
    registry.upsert_engine(EngineInfo("b", "m"))
    registry.upsert_engine(EngineInfo("a", "m"))
    owner = registry.owner("m")
    assert owner is not None
    assert owner.key == "a"


def test_models_lists_ready_engines_with_roles() -> None:
    registry = EngineRegistry()
    registry.upsert_engine(QWEN)
    registry.upsert_engine(MINILM)
    registry.set_endpoints("ml/qwen", "s", [Endpoint("http://a:1")])
    listed = {(entry.id, entry.role, entry.root) for entry in registry.models()}
    assert listed == {("qwen", "served", "qwen"), ("chat", "alias", "qwen"), ("support-bot", "adapter", "qwen")}
    assert {entry.id for entry in registry.models(ready_only=False)} >= {"minilm"}


def test_default_policy_follows_the_engine_kind_and_can_be_overridden() -> None:
    assert QWEN.routing_policy is PolicyName.PREFIX_HASH
    assert MINILM.routing_policy is PolicyName.LEAST_INFLIGHT
    pinned = EngineInfo("ml/x", "x", policy=PolicyName.LEAST_INFLIGHT)
    assert pinned.routing_policy is PolicyName.LEAST_INFLIGHT


def test_listing_many_engines_rebuilds_the_index_once_on_the_first_lookup() -> None:
    registry = EngineRegistry()
    with patch.object(registry, "_rebuild", wraps=registry._rebuild) as rebuild:
        for index in range(1000):
            registry.upsert_engine(EngineInfo(f"ml/e{index}", f"e{index}"))
            registry.set_endpoints(f"ml/e{index}", "s", [Endpoint(f"http://10.1.{index // 250}.{index % 250}:8000")])
        assert (rebuild.call_count, registry.version) == (0, 2000)
        assert registry.ready_urls("ml/e999") == ("http://10.1.3.249:8000",)
        assert isinstance(registry.resolve("e0"), Route)
        assert rebuild.call_count == 1
        registry.remove_engine("ml/e0")
        assert isinstance(registry.resolve("e0"), Unknown)
        assert rebuild.call_count == 2


def test_a_change_is_seen_by_the_callback_it_wakes() -> None:
    registry = EngineRegistry()
    seen: list[object] = []
    registry.on_change = lambda: seen.append(registry.resolve("qwen"))
    registry.upsert_engine(QWEN)
    registry.set_endpoints("ml/qwen", "s", [Endpoint("http://a:1")])
    assert seen == [Unavailable("qwen", QWEN), Route("qwen", QWEN, ("http://a:1",))]
