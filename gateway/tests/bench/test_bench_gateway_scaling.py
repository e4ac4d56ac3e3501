"""The scaling scenario's pure parts: where each setup's processes go, the figures pooled over
rounds (CPU per request and CPUs kept busy per process tree, per worker), the measured and the
derived ratio, and the static upstream's configuration."""

from __future__ import annotations

import json

import pytest
from bench.gateway_report import read_markdown
from bench.gateway_scaling import STATIC_ANSWER, STATIC_NGINX_CONF, busy_ticks
from bench.gateway_scaling_report import (
    GATEWAY,
    LOAD,
    OTHERS,
    UPSTREAM,
    ScalingCell,
    ScalingSample,
    derived_scaling,
    scaling_setups,
    scaling_summary_table,
    scaling_table,
)

from sage_harness.proc_tree import established_inodes


def test_one_worker_gets_a_cpu_of_its_own_and_two_share_theirs_with_nginx_and_wrk() -> None:
    one, two = scaling_setups([0, 1], 2)
    assert (one.workers, one.gateway_cpus, one.peer_cpus) == (1, frozenset({1}), frozenset({0}))
    assert (two.workers, two.gateway_cpus, two.peer_cpus) == (2, frozenset({0, 1}), frozenset({0, 1}))
    assert one.name == "1 worker on 1 CPU"
    assert two.describe() == "2 workers on 2 CPUs: the gateway on CPUs 0,1, nginx and wrk on the same CPUs"
    assert one.describe() == "1 worker on 1 CPU: the gateway on CPU 1, nginx and wrk on CPU 0"


def test_on_more_cpus_the_setups_take_the_last_ones() -> None:
    one, two = scaling_setups([3, 0, 2, 1], 2)
    assert (one.gateway_cpus, one.peer_cpus) == (frozenset({3}), frozenset({2}))
    assert two.gateway_cpus == two.peer_cpus == frozenset({2, 3})


def test_a_setup_needs_a_cpu_per_worker() -> None:
    with pytest.raises(ValueError, match="a CPU each"):
        scaling_setups([0], 2)


def sample(
    rate: float, seconds: float, cpus: dict[str, float], workers: tuple[float, ...], split: tuple[int, ...] = ()
) -> ScalingSample:
    """A run of `seconds` at `rate` req/s; `cpus`: CPUs each tree kept busy; `workers`: each
    worker's; `split`: connections per worker."""
    return ScalingSample(
        completed=int(rate * seconds),
        failed=0,
        seconds=seconds,
        cpu_seconds={part: busy * seconds for part, busy in cpus.items()},
        worker_cpu_seconds=tuple(busy * seconds for busy in workers),
        worker_connections=split,
    )


def pooled(*samples: ScalingSample) -> ScalingCell:
    cell = ScalingCell()
    for each in samples:
        cell.add(each)
    return cell


ONE = pooled(
    sample(10_000, 4, {GATEWAY: 1.0, UPSTREAM: 0.2, LOAD: 0.2}, (1.0,)),
    sample(9_000, 4, {GATEWAY: 1.0, UPSTREAM: 0.2, LOAD: 0.2}, (1.0,)),
    sample(2_000, 4, {GATEWAY: 0.2, UPSTREAM: 0.05, LOAD: 0.05}, (0.2,)),  # spoilt by other work
)
TWO = pooled(
    sample(12_500, 4, {GATEWAY: 1.5, UPSTREAM: 0.25, LOAD: 0.25, OTHERS: 0.1}, (0.8, 0.7), (40, 24)),
    sample(12_500, 4, {GATEWAY: 1.5, UPSTREAM: 0.25, LOAD: 0.25}, (0.7, 0.8), (15, 49)),
)


def test_a_cell_pools_cpu_per_request_and_cpus_kept_busy() -> None:
    assert ONE.rate == 9_000  # the median of rounds
    assert TWO.cpu_us_per_request(GATEWAY) == pytest.approx(120.0)
    assert TWO.cpu_us_per_request(UPSTREAM) == pytest.approx(20.0)
    assert TWO.cpus_used(LOAD) == pytest.approx(0.25)
    assert TWO.cpus_used_by_workers() == pytest.approx([0.8, 0.7])  # the busiest first, whichever it was
    assert TWO.requests_per_gateway_cpu_second() == pytest.approx(12_500 / 1.5)


def test_the_table_sets_the_setups_side_by_side() -> None:
    by_row = read_markdown(scaling_table(ONE, TWO, scaling_setups([0, 1], 2)))
    assert by_row["req/s (median of rounds)"] == ["9,000", "12,500", "1.39"]
    assert by_row["gateway CPU µs/request"] == ["104.8", "120.0", "1.15"]  # 8.8 s over 84,000; 6 s over 50,000
    assert by_row["nginx: CPUs kept busy"][1] == "0.25"
    assert by_row["everything else: CPUs kept busy"][1] == "0.05"  # 0.1 in one of two runs
    assert by_row["gateway: CPUs kept busy by each worker, busiest first"][1] == "0.80 + 0.70"
    assert by_row["wrk's connections per worker mid-run, each run"][1] == "40+24, 49+15"
    assert by_row["failed requests (and runs wrk did not report)"] == ["0", "0", ""]


def test_the_derived_ratio_is_the_workers_times_their_requests_per_gateway_cpu_second_over_one() -> None:
    one = pooled(sample(10_000, 4, {GATEWAY: 1.0, UPSTREAM: 0.2, LOAD: 0.2}, (1.0,)))
    two = pooled(sample(12_000, 4, {GATEWAY: 1.5, UPSTREAM: 0.25, LOAD: 0.25}, (0.75, 0.75)))
    assert derived_scaling(one, two, 2) == pytest.approx(2 * (12_000 / 1.5) / 10_000)
    by_row = read_markdown(scaling_summary_table(one, two, 2))
    assert by_row["measured: req/s, 2 workers over 1 (a lower bound)"] == ["1.20", ">= 1.6"]
    cpus_row = "the most it could read here: the CPUs the gateway got, 2 workers over 1 (nginx and wrk took the rest)"
    assert by_row[cpus_row] == ["1.50", ""]
    assert by_row["derived: req/s per gateway CPU-second, 2 workers over 1, times 2"] == ["1.60", ">= 1.6"]


def test_a_run_wrk_did_not_report_counts_as_a_failure_with_its_reason() -> None:
    cell = pooled(ScalingSample(0, 0, 0.0, {}, reason="no summary in wrk's output"))
    assert cell.unreported_runs == 1
    assert cell.reasons == {"no summary in wrk's output": 1}
    by_row = read_markdown(scaling_table(cell, TWO, scaling_setups([0, 1], 2)))
    assert by_row["failed requests (and runs wrk did not report)"][0] == "0 (1 runs)"
    assert by_row["req/s per gateway CPU-second"][0] == ""


def test_connections_accepted_on_the_port_are_found_by_inode() -> None:
    table = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1\n"
        "   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 222 1\n"
        "   2: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 333 1\n"
        "   3: 0100007F:1F90 0100007F:C351 06 00000000:00000000 00:00000000 00000000  1000        0 0 3\n"
    )
    assert established_inodes(table, 8080) == {"222"}  # not the listener, wrk's end or a closed one


def test_busy_time_is_summed_over_the_chosen_cpus_leaving_out_idle_and_io_wait() -> None:
    stat = (
        "cpu  1000 0 1000 9000 50 0 10 0 0 0\n"
        "cpu0 100 1 200 4000 30 3 4 5 0 0\n"
        "cpu1 10 0 20 5000 20 0 1 0 0 0\n"
        "cpu10 7 0 0 0 0 0 0 0 0 0\n"
        "intr 12345 0 0\n"
    )
    assert busy_ticks(stat, frozenset({0})) == 100 + 1 + 200 + 3 + 4 + 5
    assert busy_ticks(stat, frozenset({1, 10})) == 10 + 20 + 1 + 7


def test_the_static_upstream_answers_a_chat_completion_nginx_can_quote() -> None:
    answer = json.loads(STATIC_ANSWER)
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert "'" not in STATIC_ANSWER
    config = STATIC_NGINX_CONF.format(folder="/tmp/x", port=8080, answer=STATIC_ANSWER)
    assert f"location / {{ return 200 '{STATIC_ANSWER}'; }}" in config
    assert "default_type application/json;" in config
