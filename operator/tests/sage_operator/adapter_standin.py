"""A STAND-IN for an engine pod's adapter API (GET /v1/models, POST /v1/load_lora_adapter), on
loopback. Pods never run here (no kubelet), so the tests point a pod's IP at this server; it
speaks the same contract as SAGE's engine server and vLLM, and can simulate a restart (adapters
forgotten) and failing loads."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StandInEngine:
    def __init__(self, base_models: list[str]) -> None:
        self.base_models = base_models
        self.adapters: dict[str, str] = {}
        self.load_calls: list[dict[str, Any]] = []
        self.fail_loads = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> StandInEngine:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def restart(self) -> None:
        """What a container restart does to runtime-loaded adapters: they are gone."""
        with self._lock:
            self.adapters.clear()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/health":
                    self._send(200, {"status": "ok"})
                elif self.path == "/v1/models":
                    with engine._lock:
                        ids = engine.base_models + sorted(engine.adapters)
                    self._send(200, {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]})
                else:
                    self._send(
                        404, {"error": {"message": "not found", "type": "not_found", "param": None, "code": 404}}
                    )

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path != "/v1/load_lora_adapter":
                    self._send(
                        404, {"error": {"message": "not found", "type": "not_found", "param": None, "code": 404}}
                    )
                    return
                with engine._lock:
                    engine.load_calls.append(body)
                    if engine.fail_loads > 0:
                        engine.fail_loads -= 1
                        failing = True
                    else:
                        failing = False
                        engine.adapters[body["lora_name"]] = body["lora_path"]
                if failing:
                    error = {"message": "adapter files not ready", "type": "server_error", "param": None, "code": 503}
                    self._send(503, {"error": error})
                else:
                    self._send(200, {"status": "loaded"})

        return Handler
