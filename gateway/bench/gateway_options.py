"""The gateway benchmark's command line (`bench_gateway.py --help` says what each option does)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.gateway_peers import PEERS
from bench.gateway_scaling import SCALING_WORKERS

from sage_harness.repo import REPO_ROOT


def parse_args(description: str) -> argparse.Namespace:
    """The command line of `bench_gateway.py`, whose help starts with `description`."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the request counts (default: 1)")
    parser.add_argument("--max-seconds", type=float, default=8.0, help="time cap of one measurement (default: 8)")
    parser.add_argument("--wrk-seconds", type=float, default=3.0, help="length of one wrk measurement (default: 3)")
    parser.add_argument("--no-wrk", action="store_true", help="skip the wrk row even when wrk is installed")
    parser.add_argument("--peers", default=",".join(peer.name for peer in PEERS), help="default: %(default)s")
    parser.add_argument(
        "--install-peers", action="store_true", help="install vllm-router, LiteLLM and py-spy into the user cache first"
    )
    parser.add_argument(
        "--pin", action=argparse.BooleanOptionalAction, default=None,
        help="servers on one CPU, the load generator on another (default: when there are two CPUs)",
    )  # fmt: skip
    parser.add_argument("--no-keys", action="store_true", help="skip SAGE with API keys and limits")
    parser.add_argument(
        "--no-workers", action="store_true",
        help="skip SAGE as 2 workers (on the servers' one CPU: what running several workers costs per request)",
    )  # fmt: skip
    parser.add_argument(
        "--no-scaling", action="store_true",
        help=f"skip the scaling scenario (1 gateway worker on 1 CPU vs {SCALING_WORKERS} on {SCALING_WORKERS})",
    )  # fmt: skip
    parser.add_argument(
        "--scaling-only", action="store_true", help="run only the scaling scenario (its section alone in --output)"
    )
    parser.add_argument(
        "--scaling-seconds", type=float, default=4.0, help="length of one scaling run (default: %(default)s)"
    )
    parser.add_argument("--upstream", choices=["mock", "deterministic"], default="mock")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "perf" / "gateway.md")
    parser.add_argument(
        "--profile", action="store_true",
        help="after the rounds, sample SAGE's gateway with py-spy under load: flame graphs beside --output",
    )  # fmt: skip
    parser.add_argument("--profile-seconds", type=float, default=6.0, help="per recording (default: %(default)s)")
    parser.add_argument("--profile-rate", type=int, default=500, help="py-spy samples/s (default: %(default)s)")
    args = parser.parse_args()
    unknown = set(args.peers.split(",")) - {peer.name for peer in PEERS} - {""}
    if args.scaling_only and args.no_scaling:
        parser.error("--scaling-only and --no-scaling: nothing to run")
    if unknown:
        parser.error(
            f"--peers: no peer named {', '.join(sorted(unknown))} (there are {', '.join(p.name for p in PEERS)})"
        )
    return args
