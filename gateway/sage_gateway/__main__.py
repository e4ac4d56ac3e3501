"""`python -m sage_gateway`: serve the gateway with uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import tempfile
from typing import TYPE_CHECKING

from pydantic import ValidationError

from sage_gateway.settings import GatewaySettings
from sage_gateway.workers import MULTIPROCESS_DIR

if TYPE_CHECKING:
    from sage_gateway.workers.shared import WorkerCounts


def _settings_help() -> str:
    lines = ["environment variables (flags override them):"]
    for name, info in GatewaySettings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        lines.append(f"  SAGE_GATEWAY_{name.upper():<22} default: {default!r}")
        if info.description:
            lines.append(f"      {info.description}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sage_gateway",
        description=(
            "The SAGE gateway: routes OpenAI /v1/chat/completions, /v1/completions, /v1/embeddings, "
            "/v1/models and the Anthropic /v1/messages to ready engine replicas by the request's "
            "'model'. Engines come from a watch on the Kubernetes API (LLMEngines and their "
            "EndpointSlices) or from a static list (local mode)."
        ),
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="address to listen on (SAGE_GATEWAY_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (SAGE_GATEWAY_PORT)")
    parser.add_argument("--discovery", choices=["kubernetes", "static"], help="where engines come from")
    parser.add_argument("--static-engines-file", help="static discovery: YAML/JSON file listing engines and URLs")
    parser.add_argument("--namespaces", help="kubernetes discovery: comma-separated namespaces (default: all)")
    parser.add_argument("--auth", choices=["none", "api-keys"], help="require API keys (SAGE_GATEWAY_AUTH)")
    parser.add_argument("--workers", type=int, help="worker processes sharing the port (SAGE_GATEWAY_WORKERS)")
    parser.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {
        key: value for key, value in vars(args).items() if value is not None and key in GatewaySettings.model_fields
    }
    try:
        settings = GatewaySettings(**overrides)
    except ValidationError as error:
        print(f"sage_gateway: invalid settings:\n{error}", file=sys.stderr)
        return 2

    if settings.workers > 1:
        # Before anything imports the metrics: each worker then records into files there.
        os.environ[MULTIPROCESS_DIR] = tempfile.mkdtemp(prefix="sage-gateway-metrics-")
    if settings.discovery == "static":
        from sage_gateway.discovery.static import load_static  # noqa: PLC0415
        from sage_gateway.registry import EngineRegistry  # noqa: PLC0415

        try:  # a bad list stops here with one clear line instead of a lifespan traceback
            load_static(EngineRegistry(), file=settings.static_engines_file, inline=settings.static_engines)
        except ValueError as error:
            print(f"sage_gateway: {error}", file=sys.stderr)
            return 2
    try:  # bad key settings stop here too
        from sage_gateway.app import keys_namespace  # noqa: PLC0415
        from sage_gateway.auth.sources import static_policies  # noqa: PLC0415

        if settings.auth != "none":
            static_policies(list(settings.api_keys), settings.api_keys_file)
            if settings.discovery == "kubernetes":
                keys_namespace(settings)
    except ValueError as error:
        print(f"sage_gateway: {error}", file=sys.stderr)
        return 2
    if settings.discovery == "kubernetes":
        from sage_kube import load_config  # noqa: PLC0415

        try:
            load_config(settings.kubeconfig)
        except Exception as error:
            print(f"sage_gateway: no Kubernetes credentials for discovery: {error}", file=sys.stderr)
            return 2
    # The gateway's own loggers (discovery, scale-ups, watch errors) at the same level as uvicorn's.
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if settings.workers == 1:
        serve(settings)
        return 0
    from sage_gateway.workers.supervisor import Supervisor  # noqa: PLC0415

    def serve_worker(counts: WorkerCounts, sock: socket.socket) -> None:
        serve(settings, counts, sock)

    metrics_dir = os.environ[MULTIPROCESS_DIR]
    return Supervisor(settings.workers, settings.host, settings.port, serve_worker, metrics_dir).run()


def serve(settings: GatewaySettings, counts: WorkerCounts | None = None, sock: socket.socket | None = None) -> None:
    """One gateway process (the only one, or a worker given the shared counts and socket)."""
    import uvicorn  # noqa: PLC0415 - keep --help fast

    from sage_gateway.app import create_app  # noqa: PLC0415
    from sage_gateway.metrics import record_for_every_worker  # noqa: PLC0415
    from sage_runtime.draining_server import DrainingServer  # noqa: PLC0415
    from sage_runtime.http_server import HttpServerProtocol  # noqa: PLC0415

    if counts is not None:
        record_for_every_worker()
    app = create_app(settings, counts)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        loop="uvloop",
        http=HttpServerProtocol,  # SAGE's HTTP/1.1 connection (sage_runtime.http_server)
        timeout_keep_alive=75,
        # The gateway never reads the client's address, so X-Forwarded-* need no rewriting per
        # request; and it does not name its server software.
        proxy_headers=False,
        server_header=False,
        # The drain ends what is still open at drain_seconds; uvicorn's own cut comes after that.
        timeout_graceful_shutdown=int(settings.drain_seconds) + 5,
    )
    DrainingServer(config, app.state.drain).run(sockets=[sock] if sock is not None else None)


if __name__ == "__main__":
    sys.exit(main())
