"""Routing policies: least in-flight fairness, prefix affinity, bounded load."""

from __future__ import annotations

from collections import Counter

import pytest

from sage_gateway.adapter_misses import AdapterMisses
from sage_gateway.policies import InflightCounter, LeastInflight, PrefixHash

URLS = [f"http://10.0.0.{n}:8000" for n in range(1, 5)]


def test_least_inflight_picks_the_least_loaded() -> None:
    policy = LeastInflight()
    load = {URLS[0]: 3, URLS[1]: 1, URLS[2]: 2, URLS[3]: 5}
    assert all(policy.choose(URLS, load, None) == URLS[1] for _ in range(10))


def test_least_inflight_shares_idle_replicas_evenly() -> None:
    policy = LeastInflight()
    picks = Counter(policy.choose(URLS, {}, None) for _ in range(400))
    assert set(picks.values()) == {100}


def test_least_inflight_balances_when_requests_stay_in_flight() -> None:
    policy = LeastInflight()
    counter = InflightCounter()
    for _ in range(40):
        counter.start(policy.choose(URLS, counter.counts, None))
    assert set(counter.counts.values()) == {10}


def test_inflight_counter_forgets_finished_replicas() -> None:
    counter = InflightCounter()
    counter.start("a")
    counter.start("a")
    counter.finish("a")
    assert counter.counts == {"a": 1}
    counter.finish("a")
    assert counter.counts == {}


def test_prefix_hash_sends_a_prefix_to_the_same_replica() -> None:
    policy = PrefixHash()
    for prefix in (f"system: you are agent {n}" for n in range(20)):
        chosen = {policy.choose(URLS, {}, prefix) for _ in range(5)}
        assert len(chosen) == 1


def test_prefix_hash_spreads_different_prefixes() -> None:
    policy = PrefixHash()
    picks = Counter(policy.choose(URLS, {}, f"user: question number {n}") for n in range(400))
    assert set(picks) == set(URLS)
    assert min(picks.values()) > 400 / len(URLS) / 3


def test_prefix_hash_keeps_its_choice_when_another_replica_leaves() -> None:
    policy = PrefixHash()
    prefixes = [f"user: question number {n}" for n in range(200)]
    before = {prefix: policy.choose(URLS, {}, prefix) for prefix in prefixes}
    remaining = URLS[:3]
    after = {prefix: policy.choose(remaining, {}, prefix) for prefix in prefixes}
    moved = [prefix for prefix in prefixes if before[prefix] in remaining and after[prefix] != before[prefix]]
    assert moved == []


def test_prefix_hash_bounds_the_load_of_a_hot_prefix() -> None:
    policy = PrefixHash(factor=1.25)
    counter = InflightCounter()
    for _ in range(40):
        counter.start(policy.choose(URLS, counter.counts, "the same hot prefix"))
    # No replica exceeds ceil(1.25 * 40 / 4) = 13 requests in flight.
    assert max(counter.counts.values()) <= 13
    assert len(counter.counts) >= 3


def test_prefix_hash_without_a_prefix_is_least_inflight() -> None:
    policy = PrefixHash()
    load = {URLS[0]: 2, URLS[1]: 2, URLS[2]: 0, URLS[3]: 2}
    assert policy.choose(URLS, load, None) == URLS[2]


def test_prefix_hash_refuses_a_factor_that_cannot_bound() -> None:
    with pytest.raises(ValueError, match="above 1"):
        PrefixHash(factor=1.0)


def test_adapter_misses_pass_a_replica_over_until_they_expire() -> None:
    now = [100.0]
    misses = AdapterMisses(5.0, clock=lambda: now[0])
    urls = ["http://a", "http://b"]
    misses.missed("bot", "http://b")
    assert misses.serving("bot", urls) == ["http://a"]
    assert misses.serving("other-adapter", urls) == urls
    misses.missed("bot", "http://a")
    assert misses.serving("bot", urls) == urls  # none left: ask them all rather than refuse
    now[0] += 5.0
    misses.missed("bot", "http://a")
    assert misses.serving("bot", urls) == ["http://b"]
