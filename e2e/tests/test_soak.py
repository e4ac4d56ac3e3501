"""One minute of the soak (`make soak` runs ten and writes docs/perf/soak.md): chat streams, chat
and embeddings through the gateway to real engine processes, a chat replica SIGKILLed and started
again every 15 seconds. Nothing may be lost, and every error must be a request that was in flight
on the killed replica, answered with an error event or envelope."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from sage_harness.soak import soak, write
from sage_harness.soak_report import process_summaries, unexplained

pytestmark = pytest.mark.engine


def test_a_minute_of_mixed_load_with_replica_kills_loses_nothing(tmp_path: Path) -> None:
    report = soak(60, kill_every=15, clients=3, window=10)
    page = write(report, tmp_path, "pytest e2e/tests/test_soak.py")
    print("\n" + page.read_text())

    assert [fault.replica for fault in report.faults] == ["chat-b"] * 3
    assert set(Counter(o.kind for o in report.outcomes)) == {"chat", "chat-stream", "embeddings"}
    assert report.lost == 0, [o for o in report.outcomes if o.lost][:5]
    assert unexplained(report.outcomes, report.faults, report.origin) == []
    assert {p.process for p in process_summaries(report.samples, warmup=10)} >= {"gateway", "chat-a", "vectors"}
    assert (tmp_path / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
