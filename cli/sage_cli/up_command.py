"""`sage up` (the local control plane, in the foreground or `--detach`ed) and `sage down`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from sage_api.paths import state_dir
from sage_api.ports import SagePorts
from sage_cli import daemon
from sage_local.manifests import ManifestError, load_engines
from sage_local.plan import plan_engines
from sage_local.up import CONTROL_HOST, UpOptions, run_up

UP_DAEMON = "up"
"""The pid record of `sage up --detach` (sage_cli.daemon)."""

UP_HELP = """Start the local control plane: every LLMEngine in the manifests runs as a local process
(progress is shown while models load), then the gateway starts in front and its URL and an
example request are printed. With no manifests it starts empty, ready for
`sage llm engine start MODEL`.

Engines are supervised: one that dies is reported with its exit reason and restarted with
backoff, and meanwhile its model answers 503 with Retry-After. An engine that cannot start is
reported and the rest keep serving. `sage llm engine ...` reaches the control plane through its
management API on 127.0.0.1:--control-port. Ctrl-C stops everything; with --detach it runs in
the background (log: the state folder's logs/up.log) until `sage down`.
${VAR:-default} in manifests is replaced from the environment (local mode only).

  sage up examples/local/
  sage up --detach && sage llm engine start sentence-transformers/all-MiniLM-L6-v2 --engine-kind embedding"""

DOWN_HELP = """Stop the local control plane that `sage up --detach` (or `sage llm engine start`) started,
with every engine and fine-tune it runs. Exits 1 when none is running."""

DETACHED_READY_MARGIN_SECONDS = 120.0
"""How much longer than --health-timeout `sage up --detach` waits for the control plane's
readiness: the gateway's start after the engines'."""


def add_up_commands(commands: Any) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    up = commands.add_parser("up", help="run the local control plane (engines from manifests + gateway)",
                             description=UP_HELP, formatter_class=raw)  # fmt: skip
    up.add_argument("paths", nargs="*", type=Path, metavar="FILE_OR_DIR", help="manifests (also -f)")
    up.add_argument("-f", "--filename", action="append", type=Path, default=[], metavar="FILE_OR_DIR",
                    help="a manifest file or a folder of them; repeatable")  # fmt: skip
    up.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    up.add_argument("--port", type=int, default=SagePorts.gateway(),
                    help="gateway port (default: %(default)s, env SAGE_GATEWAY_PORT)")  # fmt: skip
    up.add_argument("--control-port", type=int, default=SagePorts.control(),
                    help="management API port on 127.0.0.1 (default: %(default)s, env SAGE_CONTROL_PORT)")  # fmt: skip
    up.add_argument("--engine-base-port", type=int, default=SagePorts.local_engine_base(),
                    help="first engine port; engines get the lowest free ones from here "
                    "(default: %(default)s, env SAGE_LOCAL_ENGINE_BASE_PORT)")  # fmt: skip
    up.add_argument("--log-dir", type=Path, default=state_dir() / "logs",
                    help="per-engine log files (default: %(default)s)")  # fmt: skip
    up.add_argument("--follow-logs", action="store_true", help="also print engine logs, prefixed by engine name")
    up.add_argument("--health-timeout", type=float, default=900,
                    help="seconds an engine may take to load (default: %(default)s)")  # fmt: skip
    up.add_argument("--api-key", default=os.environ.get("SAGE_API_KEY") or None,
                    help="require this key on every /v1 request (env SAGE_API_KEY; default: none)")  # fmt: skip
    up.add_argument("-d", "--detach", action="store_true",
                    help="run in the background; returns once the gateway serves (`sage down` stops it)")  # fmt: skip
    down = commands.add_parser("down", help="stop the control plane `sage up --detach` started", description=DOWN_HELP)
    down.add_argument("--grace", type=float, default=30.0,
                      help="seconds to finish after SIGTERM before SIGKILL (default: %(default)s)")  # fmt: skip


def foreground_argv(args: argparse.Namespace) -> list[str]:
    """The `sage up` command line a detached control plane runs (everything but --detach; the
    API key travels in the environment, never on a command line)."""
    argv = [sys.executable, "-m", "sage_cli", "up", *(str(path) for path in [*args.paths, *args.filename])]
    argv += ["--host", args.host, "--port", str(args.port), "--control-port", str(args.control_port)]
    argv += ["--engine-base-port", str(args.engine_base_port), "--log-dir", str(args.log_dir)]
    argv += ["--health-timeout", str(args.health_timeout)]
    return argv


def start_detached_plane(args: argparse.Namespace) -> daemon.Daemon:
    """Runs `sage up` in the background and returns once its control plane is ready (engines
    settled, gateway serving). Raises daemon.DaemonError."""
    control_url = f"http://{CONTROL_HOST}:{args.control_port}"
    env = {"SAGE_API_KEY": args.api_key} if args.api_key else {}
    return daemon.start_detached(
        UP_DAEMON,
        foreground_argv(args),
        log_file=args.log_dir / "up.log",
        env=env,
        ready_url=f"{control_url}/readyz",
        ready_timeout=args.health_timeout + DETACHED_READY_MARGIN_SECONDS,
        url=control_url,
    )


def up_main(args: argparse.Namespace) -> int:
    paths = [*args.paths, *args.filename]
    try:
        loaded, notes = load_engines(paths) if paths else ([], [])
        engines = plan_engines(loaded, base_port=args.engine_base_port, host=args.host, python=sys.executable)
    except ManifestError as error:
        print(f"sage up: {error}", file=sys.stderr)
        return 2
    for note in notes:
        print(note)
    if args.detach:
        return _detach(args, len(engines))
    options = UpOptions(
        engines=engines,
        host=args.host,
        gateway_port=args.port,
        log_dir=args.log_dir,
        echo_logs=args.follow_logs,
        python=sys.executable,
        health_timeout=args.health_timeout,
        api_key=args.api_key,
        control_port=args.control_port,
        engine_base_port=args.engine_base_port,
    )
    return asyncio.run(run_up(options))


def _detach(args: argparse.Namespace, engines: int) -> int:
    if engines:
        print(f"starting {engines} engine(s) in the background; waiting until they are loaded ...", flush=True)
    try:
        started = start_detached_plane(args)
    except daemon.DaemonError as error:
        print(f"sage up: {error.reason}", file=sys.stderr)
        return 1
    print(f"the local control plane runs in the background (pid {started.pid}, log: {started.log_file})")
    print(f"  gateway:    http://{args.host}:{args.port}/v1")
    print(f"  management: {started.url}   (`sage llm engine list`; `sage down` stops everything)")
    return 0


def down_main(args: argparse.Namespace) -> int:
    stopped = daemon.stop(UP_DAEMON, grace=args.grace)
    if stopped is None:
        print("sage down: no control plane started by `sage up --detach` is running "
              "(a foreground `sage up` stops with Ctrl-C in its terminal)", file=sys.stderr)  # fmt: skip
        return 1
    print(f"the local control plane (pid {stopped.pid}) and its engines stopped")
    return 0
