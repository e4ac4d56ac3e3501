"""The runtime helpers every image shares: CPU limits from cgroup files, termination messages,
comma-separated settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from sage_runtime import cgroup
from sage_runtime.settings import split_commas
from sage_runtime.termination import write_termination_message


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("max 100000\n", None), ("200000 100000\n", 2.0), ("50000 100000", 0.5), ("150000", 1.5), ("", None)],
)
def test_cpu_max(text: str, cpus: float | None) -> None:
    assert cgroup.parse_cpu_max(text) == cpus


@pytest.mark.parametrize(("quota", "period", "cpus"), [("-1\n", "100000\n", None), ("300000", "100000", 3.0)])
def test_cfs_quota(quota: str, period: str, cpus: float | None) -> None:
    assert cgroup.parse_cfs(quota, period) == cpus


@pytest.mark.parametrize(("limit", "available", "threads"), [(None, 8, 8), (0.5, 8, 1), (2.5, 8, 3), (16.0, 4, 4)])
def test_threads_follow_the_limit(limit: float | None, available: int, threads: int) -> None:
    assert cgroup.threads_for(limit, available) == threads


def test_container_limit_reads_v2_then_v1(tmp_path: Path) -> None:
    assert cgroup.container_cpu_limit(tmp_path) is None
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup.container_cpu_limit(tmp_path) == 1.0
    (tmp_path / "cpu.max").write_text("400000 100000\n")
    assert cgroup.container_cpu_limit(tmp_path) == 4.0


def test_termination_message_keeps_the_end(tmp_path: Path) -> None:
    path = tmp_path / "engine.termination"
    write_termination_message(path, "x" * 5000 + "the reason")
    text = path.read_text()
    assert text.endswith("the reason\n")
    assert len(text) == 4001


def test_termination_message_that_cannot_be_written_is_no_error(tmp_path: Path) -> None:
    write_termination_message(tmp_path / "missing-dir" / "log", "ignored")
    assert not (tmp_path / "missing-dir").exists()


def test_termination_message_is_not_created_under_dev_outside_a_pod() -> None:
    missing = Path("/dev/sage-test-termination-log-that-does-not-exist")
    write_termination_message(missing, "reason")
    assert not missing.exists()


def test_comma_separated_settings() -> None:
    assert split_commas(" a, b,,c ") == ["a", "b", "c"]
    assert split_commas(["x"]) == ["x"]
