"""The `sage` command line: its parser and the dispatch to each command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from sage_api.paths import state_dir
from sage_api.ports import SagePorts
from sage_cli.keys import OPTION_OF, add_key_commands, create_key
from sage_local.manifests import ManifestError, load_engines
from sage_local.plan import plan_engines
from sage_local.up import UpOptions, run_up

DESCRIPTION = """SAGE: serve LLMs and embedding models from LLMEngine manifests.

On a cluster, apply the manifests with kubectl and the operator runs them. Locally, `sage up`
runs the same manifests as processes on this machine, with the OpenAI-compatible gateway in front."""

UP_HELP = """Start every LLMEngine in the manifests as a local process, wait until each is healthy
(progress is shown), then start the gateway and print its URL and an example request.
Ctrl-C stops everything. An engine that cannot start is reported and the rest keep serving;
the gateway answers 503 for its model. ${VAR:-default} in manifests is replaced from the
environment (local mode only)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sage", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = commands.add_parser("up", help="run LLMEngine manifests locally", description=UP_HELP)
    up.add_argument("paths", nargs="*", type=Path, metavar="FILE_OR_DIR", help="manifests (also -f)")
    up.add_argument("-f", "--filename", action="append", type=Path, default=[], metavar="FILE_OR_DIR",
                    help="a manifest file or a folder of them; repeatable")  # fmt: skip
    up.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    up.add_argument("--port", type=int, default=SagePorts.gateway(),
                    help="gateway port (default: %(default)s, env SAGE_GATEWAY_PORT)")  # fmt: skip
    up.add_argument("--engine-base-port", type=int, default=SagePorts.local_engine_base(),
                    help="first engine port; engines get consecutive ports (default: %(default)s)")  # fmt: skip
    up.add_argument("--log-dir", type=Path, default=state_dir() / "logs",
                    help="per-engine log files (default: %(default)s)")  # fmt: skip
    up.add_argument("--follow-logs", action="store_true", help="also print engine logs, prefixed by engine name")
    up.add_argument("--health-timeout", type=float, default=900,
                    help="seconds an engine may take to load (default: %(default)s)")  # fmt: skip
    up.add_argument("--api-key", default=os.environ.get("SAGE_API_KEY") or None,
                    help="require this key on every /v1 request (env SAGE_API_KEY; default: none)")  # fmt: skip
    add_key_commands(commands)
    return parser


def key_main(args: argparse.Namespace) -> int:
    try:
        manifest, key = create_key(args)
    except ValidationError as error:
        for problem in error.errors():
            option = OPTION_OF.get(str(problem["loc"][0]), str(problem["loc"][0]))
            print(f"sage key create: {option}: {problem['msg']}", file=sys.stderr)
        return 2
    except argparse.ArgumentTypeError as error:
        print(f"sage key create: {error}", file=sys.stderr)
        return 2
    print(manifest, end="")
    print(f"The new key (shown only now; the manifest on stdout holds its hash):\n  {key}", file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "key":
        return key_main(args)
    paths = [*args.paths, *args.filename]
    if not paths:
        print("sage up: give manifest files or folders (e.g. sage up examples/local/)", file=sys.stderr)
        return 2
    try:
        loaded, notes = load_engines(paths)
        engines = plan_engines(loaded, base_port=args.engine_base_port, host=args.host, python=sys.executable)
    except ManifestError as error:
        print(f"sage up: {error}", file=sys.stderr)
        return 2
    for note in notes:
        print(note)
    options = UpOptions(
        engines=engines,
        host=args.host,
        gateway_port=args.port,
        log_dir=args.log_dir,
        echo_logs=args.follow_logs,
        python=sys.executable,
        health_timeout=args.health_timeout,
        api_key=args.api_key,
    )
    return asyncio.run(run_up(options))


if __name__ == "__main__":
    sys.exit(main())
