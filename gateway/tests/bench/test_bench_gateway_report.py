"""The gateway benchmark's tables: added latency and ratios against the right baselines, a peer
that is not there leaves no column or ratio behind, wrk's summary is read back."""

from __future__ import annotations

from bench.gateway_load import Measurement, encode_request
from bench.gateway_report import (
    CHAT_1,
    CHAT_64,
    STREAM_16,
    Cell,
    Results,
    comparison_table,
    cpu_table,
    read_markdown,
)
from bench.gateway_rounds import rounds_table
from bench.gateway_wrk import parse_summary, wrk_script


def cell(latency_ms: float, *, rate: float = 100.0, cpu_ms: float = 0.0, ttft_ms: float = 0.0) -> Cell:
    """A cell of 100 requests at `latency_ms`, answered at `rate` req/s."""
    measurement = Measurement(
        latencies=[latency_ms / 1000] * 100,
        ttfts=[ttft_ms / 1000] * 100 if ttft_ms else [],
        completed=100,
        elapsed=100 / rate,
        cpu_seconds=cpu_ms / 1000 * 100,
    )
    pooled = Cell()
    pooled.add(measurement)
    return pooled


def results(targets: dict[str, tuple[float, float, float, float]]) -> Results:
    """target -> (p50 ms at 1 client, req/s at 64, CPU ms per request at 64, stream TTFT ms)."""
    return {
        CHAT_1.name: {name: cell(p50) for name, (p50, _, _, _) in targets.items()},
        CHAT_64.name: {name: cell(5.0, rate=rate, cpu_ms=cpu) for name, (_, rate, cpu, _) in targets.items()},
        STREAM_16.name: {name: cell(9.0, ttft_ms=ttft) for name, (_, _, _, ttft) in targets.items()},
    }


def test_the_comparison_adds_latency_over_direct_and_divides_throughput_by_vllm_router() -> None:
    measured = results(
        {
            "direct": (0.10, 10000, 0.02, 1.0),
            "vllm-router": (0.25, 5000, 0.08, 1.5),
            "SAGE": (0.30, 4000, 0.12, 2.0),
        }
    )
    rss = {"direct": 30_000_000, "vllm-router": 80_000_000, "SAGE": 60_000_000}
    table = comparison_table(measured, rss, ["direct", "vllm-router", "SAGE"])
    by_row = read_markdown(table)
    assert by_row["added p50, 1 client"] == ["0 (0.10 ms)", "+0.15 ms", "+0.20 ms", "<= +0.2 ms"]
    assert by_row["req/s, 64 clients"][:3] == ["10,000", "5,000", "4,000"]
    assert by_row["req/s, 64 clients, ratio to vllm-router"] == ["2.00", "1.00", "0.80", ">= 0.6"]
    assert by_row["req/s, 64 clients, ratio to direct"][:3] == ["1.00", "0.50", "0.40"]
    assert by_row["added stream TTFT p50, 16 clients"][:3] == ["0 (1.00 ms)", "+0.50 ms", "+1.00 ms"]
    assert by_row["server CPU per request (chat, 64 clients)"][:3] == ["0.020 ms", "0.080 ms", "0.120 ms"]
    assert by_row["RSS at the end (process tree)"][:3] == ["30 MB", "80 MB", "60 MB"]


def test_a_missing_peer_leaves_no_column_and_no_ratio_to_it() -> None:
    measured = results({"direct": (0.1, 10000, 0.02, 1.0), "SAGE": (0.3, 4000, 0.12, 2.0)})
    table = comparison_table(measured, {}, ["direct", "SAGE"])
    assert table.splitlines()[0] == "| per request | direct | SAGE | aim (SAGE) |"
    assert "vllm-router" not in table
    assert read_markdown(table)["req/s, 64 clients, ratio to direct"] == ["1.00", "0.40", ""]


def test_the_cpu_table_says_what_keys_and_limits_add() -> None:
    measured = results({"SAGE": (0.3, 4000, 0.120, 2.0), "SAGE keys+limits": (0.4, 3000, 0.165, 2.5)})
    by_row = read_markdown(cpu_table(measured, [CHAT_64], ["SAGE", "SAGE keys+limits"]))
    assert by_row[CHAT_64.name] == ["120", "165", "+45"]


def test_the_cpu_table_sets_two_workers_beside_one() -> None:
    measured = results({"SAGE": (0.3, 4000, 0.120, 2.0), "SAGE 2 workers": (0.3, 4000, 0.132, 2.0)})
    table = cpu_table(measured, [CHAT_64], ["SAGE", "SAGE 2 workers"])
    assert table.splitlines()[0].endswith("| 2 workers / 1, CPU per request |")
    assert read_markdown(table)[CHAT_64.name] == ["120", "132", "1.10"]


def test_rates_are_the_median_of_rounds() -> None:
    pooled = Cell()
    for rate in (100.0, 5.0, 120.0):  # one round spoilt by other work on the machine
        pooled.add(Measurement(latencies=[0.01], completed=10, elapsed=10 / rate))
    assert pooled.rate == 100.0
    assert pooled.requests == 30


def test_a_request_is_encoded_once_with_its_length_and_headers() -> None:
    request = encode_request("127.0.0.1", 8080, "/v1/chat/completions", b'{"a":1}', {"authorization": "Bearer k"})
    head, body = request.split(b"\r\n\r\n")
    assert body == b'{"a":1}'
    assert head.split(b"\r\n") == [
        b"POST /v1/chat/completions HTTP/1.1",
        b"Host: 127.0.0.1:8080",
        b"Content-Length: 7",
        b"authorization: Bearer k",
    ]


def test_wrk_reports_through_its_done_hook() -> None:
    script = wrk_script(b'{"model": "echo"}', {"content-type": "application/json"})
    assert 'wrk.body = [==[{"model": "echo"}]==]' in script
    assert 'wrk.headers["content-type"] = "application/json"' in script
    output = "Running 3s test\nsage-bench-wrk 9000 3000000 12\n"
    assert parse_summary(output) == (9000, 3.0, 12)


def rounds_of(*rounds: tuple[float, float]) -> Cell:
    """A cell of one request per round: (latency ms, req/s) in each."""
    pooled = Cell()
    for latency_ms, rate in rounds:
        pooled.add(Measurement(latencies=[latency_ms / 1000], completed=10, elapsed=10 / rate))
    return pooled


def test_each_round_is_read_against_the_baseline_of_the_same_round() -> None:
    measured: Results = {
        CHAT_1.name: {
            "direct": rounds_of((0.10, 1), (0.30, 1), (0.10, 1)),  # round 2: the machine was busy
            "SAGE": rounds_of((0.25, 1), (0.60, 1), (0.28, 1)),
        },
        CHAT_64.name: {
            "vllm-router": rounds_of((1, 5000), (1, 2500), (1, 5000)),
            "SAGE": rounds_of((1, 4000), (1, 2000), (1, 3000)),
        },
    }
    table = rounds_table(measured, ["direct", "vllm-router", "SAGE"])
    assert table.splitlines()[0] == "| figure | target | round 1 | round 2 | round 3 | median of rounds |"
    by_row = {tuple(line.split(" | ")[:2]): line.split(" | ")[2:] for line in table.splitlines()[2:]}
    assert by_row[("| added p50, 1 client (ms)", "SAGE")] == ["+0.15", "+0.30", "+0.18", "+0.18 |"]
    assert by_row[("| req/s, 64 clients, ratio to vllm-router", "SAGE")] == ["0.80", "0.80", "0.60", "0.80 |"]
    assert len(by_row) == 2  # no row for a baseline against itself, none for a scenario not run
