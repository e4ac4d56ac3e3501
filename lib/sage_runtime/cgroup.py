"""How many CPUs this container may use, from its cgroup quota (v2 `cpu.max`, v1 CFS files).

Torch defaults to one thread per host core; in a container limited to 2 CPUs on a 64-core node
that oversubscribes the quota and throttles every request. The parsers are pure functions of the
files' text; `container_cpu_limit()` reads the files.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 `cpu.max`: "<quota> <period>" or "max <period>" -> CPUs, or None (no limit)."""
    fields = text.split()
    if not fields or fields[0] == "max":
        return None
    quota = int(fields[0])
    period = int(fields[1]) if len(fields) > 1 else 100_000
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def parse_cfs(quota_text: str, period_text: str) -> float | None:
    """cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` -> CPUs, or None (quota -1)."""
    quota = int(quota_text.strip())
    period = int(period_text.strip())
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def threads_for(limit: float | None, available_cpus: int) -> int:
    """Whole threads for a fractional CPU limit: at least one, never more than the CPUs we see."""
    if limit is None:
        return max(1, available_cpus)
    return max(1, min(available_cpus, math.ceil(limit)))


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def container_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup, or None when unlimited or unknown."""
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        return parse_cpu_max(v2)
    for folder in (root / "cpu", root / "cpu,cpuacct"):
        quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            return parse_cfs(quota, period)
    return None


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def torch_threads(root: Path = CGROUP_ROOT) -> int:
    """The thread count torch should use inside this container."""
    return threads_for(container_cpu_limit(root), available_cpus())
