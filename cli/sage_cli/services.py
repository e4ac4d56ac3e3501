"""`sage gateway start|stop` and `sage edge start|stop`: the gateway (`python -m sage_gateway`) or
the edge shell (`python -m sage_edge.server`) in the foreground, or detached with a pid file
(sage_cli.daemon)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from sage_api.paths import state_dir
from sage_api.ports import SagePorts
from sage_cli import daemon

GATEWAY_HELP = """The OpenAI-compatible gateway on its own, without engines of its own: it routes /v1/* to
the engines that discovery finds (a watch on the Kubernetes API, or a static list of URLs).

  sage gateway start --discovery static --static-engines-file engines.yaml --detach
  sage gateway stop"""

GATEWAY_START_HELP = """Run the gateway (python -m sage_gateway). In the foreground by default (Ctrl-C stops it);
with --detach it runs in the background, logging to the state folder, and `sage gateway stop`
stops it. Settings not given as options come from SAGE_GATEWAY_* variables
(python -m sage_gateway --help lists them). Example, routing to engines listed in a file:

  sage gateway start --port 8080 --discovery static --static-engines-file engines.yaml --detach
  curl -s http://127.0.0.1:8080/v1/models

where engines.yaml is e.g. `engines: [{name: chat, urls: ["http://127.0.0.1:18000"]}]`."""

EDGE_HELP = """sage-edge: one HTTP entry point with /healthz and /readyz that mounts the gateway at / or
under a prefix (--llm-prefix /llm serves /llm/v1/*).

  sage edge start --llm-prefix /llm --discovery static --static-engines-file engines.yaml --detach
  sage edge stop"""

EDGE_START_HELP = """Run the edge shell (python -m sage_edge.server) with the gateway mounted in it. In the
foreground by default (Ctrl-C stops it); with --detach it runs in the background and
`sage edge stop` stops it. The gateway inside reads SAGE_GATEWAY_* variables; --discovery,
--static-engines-file and --namespaces set them. Example:

  sage edge start --llm-prefix /llm --discovery static --static-engines-file engines.yaml --detach
  curl -s http://127.0.0.1:8090/llm/v1/models"""

STOP_HELP = """Stop the {name} that `sage {name} start --detach` started: SIGTERM, then SIGKILL after
--grace seconds. Exits 1 when none is running.

  sage {name} stop"""

READY_TIMEOUT_SECONDS = 60.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
FORWARDED_SIGNALS = (*STOP_SIGNALS, signal.SIGHUP, signal.SIGQUIT)


@dataclass(frozen=True)
class Launch:
    """How to run one service: its command line, extra environment, and where it answers."""

    argv: list[str]
    env: dict[str, str]
    ready_url: str
    url: str


def _url_host(host: str) -> str:
    """The address to reach a server listening on `host` (a wildcard means this machine)."""
    if host in {"", "0.0.0.0"}:
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _prefix(prefix: str | None) -> str:
    stripped = (prefix or "").strip().strip("/")
    return f"/{stripped}" if stripped else ""


def gateway_launch(args: argparse.Namespace, python: str) -> Launch:
    argv = [python, "-m", "sage_gateway", "--host", args.host, "--port", str(args.port)]
    for option, value in (
        ("--discovery", args.discovery),
        ("--static-engines-file", args.static_engines_file),
        ("--namespaces", args.namespaces),
        ("--log-level", args.log_level),
    ):
        if value is not None:
            argv += [option, str(value)]
    base = f"http://{_url_host(args.host)}:{args.port}"
    return Launch(argv, {}, f"{base}/readyz", f"{base}/v1")


def edge_launch(args: argparse.Namespace, python: str) -> Launch:
    argv = [python, "-m", "sage_edge.server", "--host", args.host, "--port", str(args.port)]
    if args.llm_prefix is not None:
        argv += ["--llm-prefix", args.llm_prefix]
    if args.log_level is not None:
        argv += ["--log-level", args.log_level]
    env = {
        variable: str(value)
        for variable, value in (
            ("SAGE_GATEWAY_DISCOVERY", args.discovery),
            ("SAGE_GATEWAY_STATIC_ENGINES_FILE", args.static_engines_file),
            ("SAGE_GATEWAY_NAMESPACES", args.namespaces),
        )
        if value is not None
    }
    base = f"http://{_url_host(args.host)}:{args.port}"
    return Launch(argv, env, f"{base}/readyz", f"{base}{_prefix(args.llm_prefix)}/v1")


def _absolute(text: str) -> Path:
    """A path made absolute here, so that a detached child started elsewhere finds it too."""
    return Path(text).expanduser().absolute()


def _add_common_start_options(start: argparse.ArgumentParser, default_port: int, port_env: str) -> None:
    start.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    start.add_argument("--port", type=int, default=default_port,
                       help=f"port to listen on (default: %(default)s, env {port_env})")  # fmt: skip
    start.add_argument("--discovery", choices=["static", "kubernetes"],
                       help="where engines come from (default: SAGE_GATEWAY_DISCOVERY, else kubernetes)")  # fmt: skip
    start.add_argument("--static-engines-file", type=_absolute, metavar="FILE",
                       help="static discovery: YAML/JSON `engines: [{name, urls}]`, reread on change")  # fmt: skip
    start.add_argument("--namespaces", metavar="NS[,NS...]",
                       help="kubernetes discovery: comma-separated namespaces to watch (default: all)")  # fmt: skip
    start.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    start.add_argument("--detach", action="store_true",
                       help="run in the background once ready; log to the state folder; stop with `stop`")  # fmt: skip


def _add_stop(actions: Any, name: str) -> None:
    stop = actions.add_parser("stop", help=f"stop the detached {name}", description=STOP_HELP.format(name=name),
                              formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    stop.add_argument("--grace", type=float, default=10.0,
                      help="seconds to wait after SIGTERM before SIGKILL (default: %(default)s)")  # fmt: skip


def add_service_commands(commands: Any) -> None:
    """`sage gateway ...` and `sage edge ...` on the top-level subparsers of `sage`."""
    raw = argparse.RawDescriptionHelpFormatter
    gateway = commands.add_parser("gateway", help="run the gateway alone (foreground or detached)",
                                  description=GATEWAY_HELP, formatter_class=raw)  # fmt: skip
    actions = gateway.add_subparsers(dest="service_command", required=True, metavar="ACTION")
    start = actions.add_parser("start", help="start the gateway", description=GATEWAY_START_HELP, formatter_class=raw)
    _add_common_start_options(start, SagePorts.gateway(), "SAGE_GATEWAY_PORT")
    _add_stop(actions, "gateway")

    edge = commands.add_parser("edge", help="run the edge shell with the gateway in it (foreground or detached)",
                               description=EDGE_HELP, formatter_class=raw)  # fmt: skip
    actions = edge.add_subparsers(dest="service_command", required=True, metavar="ACTION")
    start = actions.add_parser("start", help="start the edge shell", description=EDGE_START_HELP, formatter_class=raw)
    _add_common_start_options(start, SagePorts.edge(), "SAGE_EDGE_PORT")
    start.add_argument("--llm-prefix", metavar="PATH",
                       help="mount the gateway under this path, e.g. /llm -> /llm/v1/* (default: /)")  # fmt: skip
    _add_stop(actions, "edge")


def run_foreground(launch: Launch) -> int:
    """Run the service here until it ends; its exit code (128 + N when signal N ended it). The
    child has a process group of its own, so that a Ctrl-C in the terminal reaches it once,
    through us: SIGINT and SIGTERM become the SIGTERM the servers drain on (uvicorn re-raises a
    SIGINT after its shutdown, a KeyboardInterrupt traceback), and a stop asked for that way
    that ends the child is exit code 0. SIGHUP and SIGQUIT are passed on as they are."""
    children: list[subprocess.Popen[bytes]] = []
    pending: list[signal.Signals] = []
    asked_to_stop = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal asked_to_stop
        sent = signal.SIGTERM if signum in STOP_SIGNALS else signal.Signals(signum)
        asked_to_stop = asked_to_stop or sent is signal.SIGTERM
        if not children:
            pending.append(sent)
        elif children[0].poll() is None:
            children[0].send_signal(sent)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED_SIGNALS}
    try:
        env = {**os.environ, **launch.env}
        children.append(subprocess.Popen(launch.argv, stdin=subprocess.DEVNULL, env=env, process_group=0))
        for sent in pending:
            children[0].send_signal(sent)
        code = children[0].wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if asked_to_stop and code == -signal.SIGTERM:
        return 0
    return 128 - code if code < 0 else code


def _start(name: str, args: argparse.Namespace) -> int:
    launch = (gateway_launch if name == "gateway" else edge_launch)(args, sys.executable)
    if not args.detach:
        return run_foreground(launch)
    log_file = state_dir() / "logs" / f"{name}.log"
    try:
        started = daemon.start_detached(
            name,
            launch.argv,
            log_file=log_file,
            env=launch.env,
            ready_url=launch.ready_url,
            ready_timeout=READY_TIMEOUT_SECONDS,
            url=launch.url,
        )
    except daemon.DaemonError as error:
        print(f"sage {name} start: {error.reason}", file=sys.stderr)
        return 1
    print(f"{name} started (pid {started.pid}) at {started.url}, log: {started.log_file}")
    return 0


def _stop(name: str, args: argparse.Namespace) -> int:
    stopped = daemon.stop(name, grace=args.grace)
    if stopped is None:
        print(f"no {name} started by sage {name} start --detach is running", file=sys.stderr)
        return 1
    print(f"{name} stopped (pid {stopped.pid})")
    return 0


def service_main(args: argparse.Namespace) -> int:
    """`sage gateway|edge start|stop`."""
    name: str = args.command
    if args.service_command == "start":
        return _start(name, args)
    return _stop(name, args)
