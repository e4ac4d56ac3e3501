"""The app while its model loads and when loading fails (in-process, with a gated loader that
stands in for a slow model load), and the termination log writer."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient

from sage_engine.app import create_app
from sage_engine.backends.base import Backend, EmbeddingBatch, EmbeddingItem
from sage_engine.backends.deterministic_backend import DeterministicBackend
from sage_engine.settings import EngineSettings
from sage_harness.waiting import wait_until


def test_health_is_503_until_loaded() -> None:
    gate = threading.Event()

    def slow_loader(settings: EngineSettings) -> Backend:
        gate.wait(10)
        return DeterministicBackend(settings.model, 8)

    app = create_app(EngineSettings(backend="deterministic", model="slow"), loader=slow_loader)
    with TestClient(app) as client:
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json() == {"status": "loading", "reason": "loading model 'slow' with the deterministic backend"}
        busy = client.post("/v1/embeddings", json={"input": "x"})
        assert busy.status_code == 503
        assert busy.json()["error"]["type"] == "server_error"
        assert client.get("/v1/models").status_code == 503
        gate.set()
        wait_until(lambda: client.get("/health").status_code == 200, "the load to finish", timeout=10)
        assert client.post("/v1/embeddings", json={"input": "x"}).status_code == 200


def test_load_failure_is_reported() -> None:
    reasons: list[str] = []

    def broken_loader(settings: EngineSettings) -> Backend:
        raise OSError("no weights in /models/x")

    app = create_app(EngineSettings(backend="transformers", model="/models/x"), reasons.append, broken_loader)
    with TestClient(app) as client:
        wait_until(lambda: bool(reasons), "the load to finish", timeout=10)
        health = client.get("/health").json()
        assert health["status"] == "failed"
        assert "no weights in /models/x" in health["reason"]
    assert reasons == ["failed to load model '/models/x' (transformers): no weights in /models/x"]


class _BrokenEmbeddings(DeterministicBackend):
    def embed(self, items: list[EmbeddingItem], *, alone: bool = False) -> EmbeddingBatch:
        raise RuntimeError("the runtime fell over")


def test_an_embedding_failure_answers_500_in_the_envelope() -> None:
    app = create_app(EngineSettings(backend="deterministic", model="x"), loader=lambda s: _BrokenEmbeddings("x", 8))
    with TestClient(app) as client:
        wait_until(lambda: client.get("/health").status_code == 200, "the load to finish", timeout=10)
        answer = client.post("/v1/embeddings", json={"input": "x"})
        assert answer.status_code == 500
        assert answer.json()["error"]["code"] == "internal_error"
        assert answer.json()["error"]["type"] == "server_error"
        assert client.get("/v1/embeddings").status_code == 405  # FastAPI still has the route
