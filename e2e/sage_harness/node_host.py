"""The machine a test node runs on: its address, what it must have installed, and the cleanup
of what a node leaves on it (containerd shims, mounts, iptables rules and chains)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

# Pod addresses: inside 198.18.0.0/15 (routed nowhere), in the half sage_harness.podnet does not
# take for the same process, so that both can run in one session.
BENCHMARK_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
CNI_BIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")
COMMANDS = ("containerd", "ctr", "runc", "iptables", "ip", "buildah", "docker-registry", "mount")


class NodeError(RuntimeError):
    """The node could not be provisioned, started, or did not become Ready."""


def host_address() -> str:
    """This machine's address on its default route (what pods reach the API server at);
    SAGE_NODE_IP overrides."""
    if os.environ.get("SAGE_NODE_IP"):
        return os.environ["SAGE_NODE_IP"]
    routes = json.loads(_output(["ip", "-j", "-4", "route", "show", "default"]) or "[]")
    devices = [route["dev"] for route in routes if "dev" in route]
    for device in [*devices, None]:
        argv = ["ip", "-j", "-4", "addr", "show", *(["dev", device] if device else [])]
        for link in json.loads(_output(argv) or "[]"):
            for info in link.get("addr_info", []):
                if info.get("scope") == "global":
                    return str(info["local"])
    msg = "no global IPv4 address on this machine for pods to reach the API server at (set SAGE_NODE_IP)"
    raise NodeError(msg)


def _output(argv: list[str], timeout: float = 60) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    return result.stdout if result.returncode == 0 else ""


def check_prerequisites(binaries: Path) -> None:
    """Raise NodeError naming what is missing to run a node here."""
    problems: list[str] = []
    if os.geteuid() != 0:
        problems.append("root (containerd, runc, CNI and iptables need it)")
    problems += [f"`{c}`" for c in COMMANDS if shutil.which(c) is None and not Path(f"/usr/sbin/{c}").exists()]
    if not (CNI_BIN_DIR / "bridge").exists() or not (CNI_BIN_DIR / "host-local").exists():
        problems.append(f"CNI plugins in {CNI_BIN_DIR}")
    problems += [
        f"{b} in {binaries}" for b in ("kubelet", "kube-scheduler", "kube-proxy") if not (binaries / b).exists()
    ]
    if problems:
        msg = "a real node needs " + ", ".join(problems) + " (run e2e/node/install-prerequisites.sh and make binaries)"
        raise NodeError(msg)


def pod_subnet() -> ipaddress.IPv4Network:
    subnets = list(BENCHMARK_RANGE.subnets(new_prefix=24))
    return subnets[(os.getpid() + len(subnets) // 2) % len(subnets)]


def kill_shims(socket: Path) -> None:
    """containerd-shim processes outlive containerd; kill those started for our socket only."""
    marker = str(socket).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and marker in argv:
                os.kill(int(entry.name), signal.SIGKILL)


def unmount_under(*folders: Path) -> None:
    """Lazily unmount every mount below `folders`, deepest first (shm, rootfs, tmpfs volumes)."""
    prefixes = tuple(f"{folder.resolve()}/" for folder in folders)
    points: list[str] = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefixes):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def remove_masquerade_rules(network: str) -> None:
    """The bridge plugin's ipMasq rules for our network (left behind when a sandbox was killed
    rather than torn down)."""
    rules = _output(["iptables", "-t", "nat", "-S", "POSTROUTING"]).splitlines()
    for rule in rules:
        if f'name: \\"{network}\\"' in rule or f'name: "{network}"' in rule:
            args = rule.split()[2:]  # drop "-A POSTROUTING"
            subprocess.run(
                ["iptables", "-t", "nat", "-D", "POSTROUTING", *_unquote(args)], check=False, capture_output=True
            )
            if "-j" in args:
                chain = args[args.index("-j") + 1]
                subprocess.run(["iptables", "-t", "nat", "-F", chain], capture_output=True, check=False)
                subprocess.run(["iptables", "-t", "nat", "-X", chain], capture_output=True, check=False)


def remove_kubelet_chains() -> None:
    """The chains every kubelet creates (and never removes): KUBE-FIREWALL (a DROP rule for
    non-local traffic to 127/8), the canaries, the hint. Left alone while another kubelet runs."""
    if other_kubelets():
        return
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        for table in ("filter", "nat", "mangle"):
            for rule in _output([tool, "-t", table, "-S"]).splitlines():
                words = rule.split()
                if words[:1] == ["-A"] and words[1] in {"INPUT", "OUTPUT"} and words[-2:] == ["-j", "KUBE-FIREWALL"]:
                    subprocess.run([tool, "-t", table, "-D", *words[1:]], capture_output=True, check=False)
            for chain in KUBELET_CHAINS:
                subprocess.run([tool, "-t", table, "-F", chain], capture_output=True, check=False)
                subprocess.run([tool, "-t", table, "-X", chain], capture_output=True, check=False)


def other_kubelets() -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if Path((entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")).name == "kubelet":
                    return True
    return False


def _unquote(args: list[str]) -> list[str]:
    """`iptables -S` quotes comments; split on spaces broke them: rejoin the quoted words."""
    return shlex.split(" ".join(args))
