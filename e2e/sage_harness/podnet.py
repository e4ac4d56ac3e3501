"""Test pods on a real network: network namespaces joined to this host by veth pairs.

The API server refuses loopback addresses in EndpointSlices, and no kubelet gives engines pod IPs
here. A `PodNetwork` makes each stand-in pod a host of its own: a network namespace with one
address from 198.18.0.0/15 (the RFC 2544 benchmarking range, routed nowhere), reached from this
host over a veth pair. Engines run inside with `ip netns exec`; EndpointSlices carry their
addresses; the gateway connects to them exactly as it would to pods. Needs root and iproute2.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass, field

# Each run takes a /24 of its own (chosen by process id) so that parallel runs never collide.
BENCHMARK_RANGE = ipaddress.IPv4Network("198.18.0.0/15")


class PodNetworkError(RuntimeError):
    """Namespaces or veth pairs cannot be made here (not root, no iproute2, no netns support)."""


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        msg = f"ip {' '.join(args)}: {result.stderr.strip()}"
        raise PodNetworkError(msg)


@dataclass(frozen=True)
class PodHost:
    """One stand-in pod: its namespace and its address."""

    namespace: str
    address: str

    @property
    def exec_prefix(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.namespace)


@dataclass
class PodNetwork:
    """Makes and removes test pod hosts. Use as a context manager."""

    tag: str = field(default_factory=lambda: f"sg{os.getpid() % 100000}")
    pods: list[PodHost] = field(default_factory=list)

    def __post_init__(self) -> None:
        subnets = list(BENCHMARK_RANGE.subnets(new_prefix=24))
        self._subnet = subnets[os.getpid() % len(subnets)]

    @staticmethod
    def check() -> None:
        if os.geteuid() != 0:
            raise PodNetworkError("test pod networks need root (network namespaces and veth pairs)")
        if shutil.which("ip") is None:
            raise PodNetworkError("test pod networks need iproute2's `ip` command")

    def add_pod(self) -> PodHost:
        """A new namespace with its own /30: host side .4n+1, pod side .4n+2."""
        self.check()
        index = len(self.pods)
        base = int(self._subnet.network_address) + 4 * index
        host_address, pod_address = ipaddress.ip_address(base + 1), ipaddress.ip_address(base + 2)
        namespace = f"{self.tag}-pod{index}"
        host_end, pod_end = f"{self.tag}h{index}"[:15], f"{self.tag}p{index}"[:15]
        _ip("netns", "add", namespace)
        pod = PodHost(namespace, str(pod_address))
        self.pods.append(pod)
        _ip("link", "add", host_end, "type", "veth", "peer", "name", pod_end)
        _ip("link", "set", pod_end, "netns", namespace)
        _ip("addr", "add", f"{host_address}/30", "dev", host_end)
        _ip("link", "set", host_end, "up")
        _ip("netns", "exec", namespace, "ip", "addr", "add", f"{pod_address}/30", "dev", pod_end)
        _ip("netns", "exec", namespace, "ip", "link", "set", pod_end, "up")
        _ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        return pod

    def close(self) -> None:
        """Deleting a namespace deletes its veth pair too."""
        for pod in self.pods:
            subprocess.run(["ip", "netns", "del", pod.namespace], capture_output=True, check=False)
        self.pods.clear()

    def __enter__(self) -> PodNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
