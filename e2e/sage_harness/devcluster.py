"""`python -m sage_harness.devcluster`: a real local control plane to try SAGE's resources on.

Starts etcd + kube-apiserver + kube-controller-manager on loopback, applies crds/, prints a
KUBECONFIG line to paste, and runs until Ctrl-C. No kubelet: engine pods are not started here
(local mode, `sage up`, runs engines as processes instead).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from sage_harness.controlplane import ControlPlane, ControlPlaneError, locate_binaries
from sage_harness.kubectl import Kubectl, apply_crds
from sage_harness.repo import REPO_ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    try:
        binaries = locate_binaries()
    except ControlPlaneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("starting etcd, kube-apiserver and kube-controller-manager ...", flush=True)
    with ControlPlane(binaries) as plane:
        kubectl = Kubectl(binaries / "kubectl", plane.kubeconfig)
        apply_crds(kubectl, REPO_ROOT / "crds")
        print(f"API server ready at {plane.server}; CRDs applied.")
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
