"""docs/perf/gateway.md from one run of the gateway benchmark (pure): what was run where, the
tables, and how to read them."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from bench.gateway_report import (
    CHAT_64,
    REFERENCE,
    SAGE_KEYED,
    SAGE_WORKERS,
    Results,
    Scenario,
    comparison_table,
    cpu_table,
    detail_table,
)
from bench.gateway_rounds import rounds_table


@dataclass(frozen=True)
class RunFacts:
    when: str
    command: str
    machine: str
    layout: str
    versions: str
    upstream: str
    rounds: int
    skipped: dict[str, str] = field(default_factory=dict)
    """Peer -> why it is not in the tables."""


def _paragraph(text: str) -> str:
    return "\n".join(textwrap.wrap(text, 100)) + "\n"


def tables(results: Results, rss_bytes: dict[str, int], scenarios: list[Scenario], targets: list[str]) -> str:
    """What the benchmark prints: the comparison, CPU by scenario, round by round, every measurement."""
    return (
        comparison_table(results, rss_bytes, targets)
        + "\n\n"
        + cpu_table(results, scenarios, targets)
        + "\n\n"
        + rounds_table(results, targets)
        + "\n\n"
        + detail_table(results, scenarios, targets)
    )


def document(
    facts: RunFacts, results: Results, rss_bytes: dict[str, int], scenarios: list[Scenario], targets: list[str]
) -> str:
    about = (
        f"Measured on {facts.when} by `{facts.command}`, all in one run: {facts.machine}. "
        f"Layout: {facts.layout}. Upstream: {facts.upstream}; every other column proxies to it. "
        f"Peers: {facts.versions}. "
        f"{facts.rounds} rounds; within a round each scenario runs against every target in turn (the order "
        "turns each round), so every comparison is taken close together in time."
    )
    skipped = "".join(f"- {name}: {why}\n" for name, why in facts.skipped.items())
    reading = (
        "How to read it. Added p50 and added TTFT (time to the first body bytes of a stream) are the "
        "target's median minus direct's in the same run: what the hop costs a request. req/s is the "
        "median over rounds. The load generator has a CPU of its own, and the wrk rows (a C client, when "
        "wrk is installed) check that it is not what limits the 64-client figures: where the Python "
        "client's req/s for a target is well below wrk's, the client was the limit and wrk's is the "
        "server's. Every server runs on the same CPU, so a proxied request costs that CPU the "
        "proxy's time plus the mock's: at saturation req/s is about 1 / (proxy + mock CPU per request). "
        f"The ratio to {REFERENCE} is the one the aim is set against. Server CPU per "
        "request is the CPU time of the target's process tree (from /proc) over the measured requests, "
        "divided by their number: the steadiest figure when other work shares the machine; direct's is the "
        f"mock's own cost, which every proxied request pays too. RSS is the process tree's resident memory "
        f"after the run. {SAGE_KEYED} is a second SAGE gateway in the same run requiring an API key and "
        "checking requests-, tokens- and concurrency limits on every request (limits never reached, so each "
        "request pays for the checks and the usage counting). "
        f"{SAGE_WORKERS} is SAGE's gateway as two worker processes sharing their routing counts "
        "(SAGE_GATEWAY_WORKERS=2): on the servers' one CPU they cannot serve more than one, so its "
        "figure to read is its CPU per request beside one worker's, what running several workers costs "
        "(their req/s on a CPU each is the scaling section's, below). The aim column is SAGE's."
    )
    cpu_note = (
        "Server CPU per request by scenario (µs, the target's process tree; direct: the mock upstream's). "
        f"The table above quotes the `{CHAT_64.name}` row. The last columns are what API keys and limits add "
        "to SAGE's gateway, and two workers' CPU per request over one's (1.00: running several costs nothing "
        "per request)."
    )
    rounds_note = (
        "The headline figures in each round, each against its baseline measured in the same round "
        f"(direct for added latency, {REFERENCE} for ratios), and the median of those paired figures. The "
        "table above pools the rounds instead (req/s: the median of rounds; p50s: over every request of "
        "every round), so its figures can differ a little from these medians. How far the rounds spread is "
        "how far other work on the machine moved the figures during the run."
    )
    return (
        "# Gateway overhead beside its peers\n\n"
        + _paragraph(about)
        + ("\nLeft out:\n" + skipped if skipped else "")
        + "\n"
        + comparison_table(results, rss_bytes, targets)
        + "\n\n"
        + _paragraph(reading)
        + "\n## CPU per request\n\n"
        + _paragraph(cpu_note)
        + "\n"
        + cpu_table(results, scenarios, targets)
        + "\n\n## Round by round\n\n"
        + _paragraph(rounds_note)
        + "\n"
        + rounds_table(results, targets)
        + "\n\n## Every measurement\n\n"
        + _paragraph("req/s: median of rounds; p50, p99 and TTFT p50: over every request of every round.")
        + "\n"
        + detail_table(results, scenarios, targets)
        + "\n"
    )


def scaling_document(facts: RunFacts, scaling: str) -> str:
    """The document of a run of the scaling scenario alone (`--scaling-only`)."""
    about = f"Measured on {facts.when} by `{facts.command}`: {facts.machine}. The scaling scenario alone."
    return "# Gateway scaling with cores\n\n" + _paragraph(about) + scaling
