"""Several workers serving one gateway: the counts they share (across real forked processes), and
a real gateway with two workers whose `/load` and `/metrics` agree whichever worker answers."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
from pathlib import Path

import httpx
import pytest

from sage_gateway.workers.shared import SharedCounts, SharedInflight, SharedTally
from sage_harness.gateway import GatedUpstream, GatewayProcess
from sage_harness.proc_tree import connections_by_worker
from sage_harness.waiting import wait_until_async


def test_every_worker_reads_the_counts_all_workers_wrote() -> None:
    shared = SharedCounts(workers=3, width=64)
    children = []
    for index in (1, 2):
        pid = os.fork()
        if pid == 0:  # a worker: adds to its own rows, in its own process
            counts = shared.for_worker(index)
            for _ in range(index * 5):
                counts.add("http://10.0.0.7:8000", 1)
            counts.add("ns/engine", index)
            os._exit(0)
        children.append(pid)
    for pid in children:
        assert os.waitpid(pid, 0)[1] == 0
    mine = shared.for_worker(0)
    mine.add("http://10.0.0.7:8000", 2)
    assert mine.count("http://10.0.0.7:8000") == 2 + 5 + 10
    assert mine.count("ns/engine") == 3
    assert mine.count("http://10.0.0.9:8000") in (0, 3, 17)  # at most a collision's overcount
    mine.reset()
    assert mine.count("http://10.0.0.7:8000") == 15  # the others' counts stay


def test_keys_sharing_a_cell_in_one_row_are_told_apart_by_the_other() -> None:
    counts = SharedCounts(workers=1, width=8).for_worker(0)
    names = (f"http://10.0.0.{i}:8000" for i in itertools.count())
    first = next(names)
    other = next(
        n
        for n in names
        if counts.columns(n)[0] == counts.columns(first)[0] and counts.columns(n)[1] != counts.columns(first)[1]
    )
    counts.add(first, 4)
    assert counts.count(other) == 0
    assert counts.count(first) == 4


def test_shared_inflight_and_tallies_count_like_the_local_ones() -> None:
    worker = SharedCounts(workers=2, width=256).for_worker(1)
    inflight = SharedInflight(worker)
    inflight.start("http://a:8000")
    inflight.start("http://a:8000")
    inflight.start("http://b:8000")
    inflight.finish("http://a:8000")
    assert (inflight.counts.get("http://a:8000", 0), inflight.counts.get("http://b:8000", 0)) == (1, 1)
    inflight.finish("http://a:8000")
    assert sorted(inflight.counts) == ["http://b:8000"]  # this worker's own in-flight URLs
    held = SharedTally(worker, "held ")
    routed = SharedTally(worker, "routed ")
    held.add("ns/e")
    routed.add("ns/e", 3)
    assert (held.get("ns/e"), routed.get("ns/e")) == (1, 3)


def worker_pids(gateway: GatewayProcess) -> set[int]:
    assert gateway.process is not None
    children = Path(f"/proc/{gateway.process.pid}/task/{gateway.process.pid}/children").read_text()
    return {int(pid) for pid in children.split()}


@pytest.fixture
def two_workers(gated_upstream: GatedUpstream) -> GatewayProcess:
    gated_upstream.reset()
    engines = json.dumps([{"name": "gated", "urls": [gated_upstream.base_url]}])
    env = {"SAGE_GATEWAY_DISCOVERY": "static", "SAGE_GATEWAY_STATIC_ENGINES": engines, "SAGE_GATEWAY_WORKERS": "2"}
    return GatewayProcess(env=env)


async def load_of_gated(gateway: GatewayProcess) -> dict[str, int]:
    async with httpx.AsyncClient(timeout=10) as fresh:  # a new connection: any worker may answer
        report: dict[str, int] = (await fresh.get(f"{gateway.base_url}/load")).json()["engines"]["gated"]
        return report


async def test_two_workers_agree_on_load_and_metrics_and_survive_a_worker_crash(
    two_workers: GatewayProcess, gated_upstream: GatedUpstream
) -> None:
    with two_workers as gateway:
        assert len(worker_pids(gateway)) == 2
        body = {"model": "gated", "hold": True, "messages": [{"role": "user", "content": "hi"}]}

        async def one() -> int:
            async with httpx.AsyncClient(timeout=30) as client:  # its own connection
                return (await client.post(f"{gateway.base_url}/v1/chat/completions", json=body)).status_code

        held = [asyncio.create_task(one()) for _ in range(6)]
        await wait_until_async(lambda: len(gated_upstream.seen_headers) == 6, within=20, what="six requests upstream")
        reports = [await load_of_gated(gateway) for _ in range(8)]
        assert {report["inflight"] for report in reports} == {6}  # whichever worker answered
        assert {report["requests"] for report in reports} == {6}
        gated_upstream.release.set()
        assert await asyncio.gather(*held) == [200] * 6
        assert (await load_of_gated(gateway))["inflight"] == 0

        # Each worker applies its requests' additions to the shared files at a scrape of its own
        # or within a second (sage_gateway.metric_tally): whichever worker answers, all six arrive.
        counted = 'sage_gateway_requests_total{model="gated",route="chat",status="200"} 6.0'
        await wait_until_async(
            lambda: counted in httpx.get(f"{gateway.base_url}/metrics", timeout=10).text,  # a new connection
            within=20,
            what="six requests counted",
        )

        victim = sorted(worker_pids(gateway))[0]
        os.kill(victim, signal.SIGKILL)
        await wait_until_async(
            lambda: len(worker_pids(gateway) - {victim}) == 2, within=20, what="the worker started again"
        )
        assert all([await one() == 200 for _ in range(4)])  # released already: answered at once
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.wait(timeout=30) == 0


async def test_connections_are_spread_over_the_workers(two_workers: GatewayProcess) -> None:
    """Each worker accepts on a socket of its own (SO_REUSEPORT): the kernel spreads connections
    over them. 32 connections all on one worker would happen by chance once in 2**31 runs."""
    with two_workers as gateway:
        opened = []
        for _ in range(32):
            reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
            await reader.readuntil(b"\r\n\r\n")  # accepted and answered: held by one worker
            opened.append(writer)
        held = connections_by_worker(sorted(worker_pids(gateway)), gateway.port)
        assert sum(held) == 32
        assert min(held) > 0
        for writer in opened:
            writer.close()
