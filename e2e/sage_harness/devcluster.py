"""`python -m sage_harness.devcluster`: a real local control plane to try SAGE's resources on.

Starts etcd + kube-apiserver + kube-controller-manager on loopback, applies crds/, prints a
KUBECONFIG line to paste, and runs until Ctrl-C. With a real node (kubelet +
containerd) unless --no-node: pods run from the images built here (`images/build.sh`).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from sage_harness.controlplane import ControlPlane, ControlPlaneError, locate_binaries
from sage_harness.kubectl import Kubectl, apply_crds
from sage_harness.node import Node, NodeError, check_prerequisites, host_address
from sage_harness.node_images import LocalRegistry
from sage_harness.repo import REPO_ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-node", action="store_true", help="only the control plane: no kubelet, pods never run")
    args = parser.parse_args(argv)
    try:
        binaries = locate_binaries()
    except ControlPlaneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with_node = not args.no_node
    if with_node:
        try:
            check_prerequisites(binaries)
        except NodeError as error:
            print(f"error: {error} (or run with --no-node)", file=sys.stderr)
            return 1
    print("starting etcd, kube-apiserver and kube-controller-manager ...", flush=True)
    with contextlib.ExitStack() as running:
        address = host_address() if with_node else None
        plane = running.enter_context(ControlPlane(binaries, for_nodes=with_node, advertise_address=address))
        kubectl = Kubectl(binaries / "kubectl", plane.kubeconfig)
        apply_crds(kubectl, REPO_ROOT / "crds")
        print(f"API server ready at {plane.server}; CRDs applied.")
        if with_node:
            print("starting a node: containerd, kube-scheduler, kube-proxy, kubelet ...", flush=True)
            registry = running.enter_context(LocalRegistry())
            node = running.enter_context(Node(plane, binaries, registry))
            print(f"node {node.name} Ready at {node.address}; `images/build.sh` builds the images it runs")
        print(f"\n  export KUBECONFIG={plane.kubeconfig}")
        print(f"  export PATH={binaries}:$PATH")
        print(f"  kubectl apply -f {REPO_ROOT / 'examples'}/ && kubectl get sage\n")
        print("Ctrl-C stops it and removes its data.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        print("stopping ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
