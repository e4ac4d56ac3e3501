"""Run the engine: uvicorn on the configured port; exit non-zero when the model fails to load,
with the reason in the log and in the Kubernetes termination log."""

from __future__ import annotations

import logging
import sys

import uvicorn

from sage_engine.app import create_app
from sage_engine.cli import parse_settings
from sage_engine.settings import EngineSettings
from sage_runtime.draining_server import DrainingServer
from sage_runtime.http_server import HttpServerProtocol
from sage_runtime.termination import write_termination_message

log = logging.getLogger("sage_engine")


def serve(settings: EngineSettings) -> int:
    """Serve until stopped; returns the process exit code."""
    failure: list[str] = []
    server: uvicorn.Server | None = None

    def on_load_failure(reason: str) -> None:
        failure.append(reason)
        write_termination_message(settings.termination_log, reason)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_load_failure)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=False,
        # The drain ends the streams still open at drain_seconds; uvicorn's own cut comes after.
        timeout_graceful_shutdown=int(settings.drain_seconds) + 5,
        server_header=False,
        http=HttpServerProtocol,  # SAGE's HTTP/1.1 connection (sage_runtime.http_server)
        loop="uvloop",
        # Behind the gateway, the client address is the gateway's: nothing reads X-Forwarded-For.
        proxy_headers=False,
    )
    server = DrainingServer(config, app.state.drain)
    server.run()
    if failure:
        log.error("exiting: %s", failure[0])
        return 1
    return 0 if server.started else 1


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return serve(settings)
