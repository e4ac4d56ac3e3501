"""Which processes a process left behind (read from /proc): what tests of `sage up` and
`sage down` check after stopping them; and which of a server's processes hold its connections."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def descendants(pid: int) -> set[int]:
    """Every live process whose ancestry leads to `pid` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def established_inodes(tcp_table: str, port: int) -> set[str]:
    """The socket inodes of the connections accepted on `port` and still established, from the
    text of /proc/net/tcp (columns: sl, local address:port in hex, remote, state, ..., inode)."""
    inodes = set()
    for line in tcp_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(fields[9])
    return inodes


def connections_by_worker(workers: list[int], port: int) -> list[int]:
    """How many of the connections accepted on `port` each of `workers` holds now (/proc)."""
    inodes = established_inodes(Path("/proc/net/tcp").read_text(), port)
    counts = []
    for pid in workers:
        held = 0
        with contextlib.suppress(OSError):
            for descriptor in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    held += os.readlink(descriptor).removeprefix("socket:[").removesuffix("]") in inodes
        counts.append(held)
    return counts
