"""`python -m sage_edge.server`: serve the edge shell with uvicorn."""

from __future__ import annotations

import argparse
import os
import sys

from sage_api.ports import SagePorts

DESCRIPTION = (
    "sage-edge: one HTTP entry point that answers /healthz and /readyz and mounts the SAGE gateway "
    "(OpenAI /v1/*) at / or under a prefix. The gateway reads its own SAGE_GATEWAY_* settings (see "
    "python -m sage_gateway --help)."
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sage_edge.server", description=DESCRIPTION)
    parser.add_argument("--host", default=os.environ.get("SAGE_EDGE_HOST", "0.0.0.0"), help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=SagePorts.edge(), help="port to listen on (default: SAGE_EDGE_PORT or %(default)s)"
    )
    parser.add_argument(
        "--llm-prefix",
        default=os.environ.get("SAGE_EDGE_LLM_PREFIX"),
        help="mount the gateway under this path, e.g. /llm -> /llm/v1/* (SAGE_EDGE_LLM_PREFIX; default: /)",
    )
    parser.add_argument(
        "--no-llm",
        action="store_true",
        default=os.environ.get("SAGE_EDGE_MOUNT_LLM", "true").lower() in {"0", "false", "no"},
        help="do not mount the gateway (SAGE_EDGE_MOUNT_LLM=false)",
    )
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import uvicorn  # noqa: PLC0415 - keep --help fast

    from sage_edge.app import create_app  # noqa: PLC0415

    app = create_app(mount_llm=not args.no_llm, llm_prefix=args.llm_prefix)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False, loop="uvloop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
