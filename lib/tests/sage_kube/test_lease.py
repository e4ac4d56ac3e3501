"""Leader election on a real API server: of two electors on one Lease exactly one leads; the
other takes over at once when the leader releases it, and after a whole lease duration when the
leader just stops renewing (a crash). The take-over rule itself is pure and tested alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest

from sage_harness.controlplane import ControlPlane
from sage_kube import KubeClient
from sage_kube.lease import LeaseElector, Sighting, held_spec, may_take

DURATION = 1.5


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_env(str(control_plane.kubeconfig)) as client:
        yield client


def test_who_may_take_the_lease() -> None:
    seen = Sighting("7", "a", seen_at=100.0)
    assert may_take({}, None, me="b", now=100.0, duration=10)
    assert may_take({"holderIdentity": "b"}, seen, me="b", now=100.0, duration=10)
    assert not may_take({"holderIdentity": "a"}, seen, me="b", now=109.9, duration=10)
    assert may_take({"holderIdentity": "a"}, seen, me="b", now=110.0, duration=10)
    assert not may_take({"holderIdentity": "a"}, None, me="b", now=1e9, duration=10)
    assert may_take({"holderIdentity": "a", "leaseDurationSeconds": 4}, seen, me="b", now=104.0, duration=10)


def test_taking_over_counts_a_transition_and_renewing_does_not() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    first = held_spec({}, me="a", duration=15, now=now)
    assert (first["holderIdentity"], first["leaseTransitions"], first["leaseDurationSeconds"]) == ("a", 0, 15)
    assert first["renewTime"] == "2026-01-01T00:00:00.000000Z"
    assert held_spec(first, me="a", duration=15, now=now)["leaseTransitions"] == 0
    assert held_spec(first, me="b", duration=15, now=now)["leaseTransitions"] == 1


async def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_one_leads_and_the_other_takes_over(kube: KubeClient, namespace: str) -> None:
    a = LeaseElector(kube, namespace, "autoscaler", "a", duration=DURATION)
    b = LeaseElector(kube, namespace, "autoscaler", "b", duration=DURATION)
    a.start()
    assert await wait_for(lambda: a.is_leader, 10)
    b.start()
    await asyncio.sleep(DURATION * 2)
    assert (a.is_leader, b.is_leader) == (True, False), "b must not take a lease a renews"

    await a.stop(release=True)
    assert await wait_for(lambda: b.is_leader, DURATION), "a released it: b leads at once"
    lease = await kube.get(b.path)
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 0  # a handed it back: b took a free lease

    await b.stop(release=False)  # b crashes: the lease still names it
    c = LeaseElector(kube, namespace, "autoscaler", "c", duration=DURATION)
    c.start()
    try:
        await asyncio.sleep(DURATION / 2)
        assert not c.is_leader, "b's lease has not run out yet"
        assert await wait_for(lambda: c.is_leader, DURATION * 3)
        assert (await kube.get(c.path))["spec"]["leaseTransitions"] == 1
    finally:
        await c.stop()


async def test_a_leader_whose_lease_is_taken_says_so_once(kube: KubeClient, namespace: str) -> None:
    """Someone else writing the Lease (a replica that judged it expired) ends leading: `on_lost` is
    called once, and the elector neither leads nor fights for it while the other renews."""
    lost: list[str] = []
    a = LeaseElector(kube, namespace, "autoscaler", "a", duration=DURATION, on_lost=lambda: lost.append("a"))
    a.start()
    try:
        await asyncio.wait_for(a.until_leading(), 10)
        lease = await kube.get(a.path)
        spec = held_spec(lease["spec"], me="intruder", duration=DURATION * 4, now=datetime.now(UTC))
        await kube.patch(a.path, {"spec": spec})
        assert await wait_for(lambda: lost == ["a"], DURATION * 2)
        assert not a.is_leader
        await asyncio.sleep(DURATION)
        assert (await kube.get(a.path))["spec"]["holderIdentity"] == "intruder"
        assert lost == ["a"]
    finally:
        await a.stop()
