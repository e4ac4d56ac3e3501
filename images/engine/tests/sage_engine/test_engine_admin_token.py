"""The adapter routes of an engine started with an admin token file (as the operator starts its
pods): refused without the token, with another, or with one in the wrong scheme; accepted with
it; a rotated file takes effect at once; the model routes stay open."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sage_harness.engines import EngineProcess

pytestmark = pytest.mark.engine

LOAD = {"lora_name": "bot", "lora_path": "/adapters/bot"}


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("admin") / "token"
    path.write_text("first-token\n")
    return path


@pytest.fixture(scope="module")
def engine(token_file: Path) -> Iterator[EngineProcess]:
    with EngineProcess("deterministic", "echo", env={"SAGE_ENGINE_ADMIN_TOKEN_FILE": str(token_file)}) as process:
        yield process


@pytest.fixture
def http(engine: EngineProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=engine.base_url, timeout=30) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong"),
        {"Authorization": "Basic first-token"},
        {"Authorization": "Bearer first-tok\xe9n".encode("latin-1")},
        {"Authorization": "Bearer"},
    ],
    ids=["none", "another", "basic", "not-ascii", "empty"],
)
def test_the_adapter_routes_refuse_callers_without_the_token(http: httpx.Client, headers: dict[str, Any]) -> None:
    for route, body in (("/v1/load_lora_adapter", LOAD), ("/v1/unload_lora_adapter", {"lora_name": "bot"})):
        refused = http.post(route, json=body, headers=headers)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "invalid_api_key"
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "bot" not in {m["id"] for m in http.get("/v1/models").json()["data"]}


def test_the_token_loads_and_unloads_and_a_rotation_takes_effect(http: httpx.Client, token_file: Path) -> None:
    assert http.post("/v1/load_lora_adapter", json=LOAD, headers=bearer("first-token")).status_code == 200
    chat = {"model": "bot", "messages": [{"role": "user", "content": "hi"}]}
    reply = http.post("/v1/chat/completions", json=chat)  # the model routes need no token
    assert reply.json()["choices"][0]["message"]["content"] == "[bot] echo: hi"
    token_file.write_text("second-token")
    assert (
        http.post("/v1/unload_lora_adapter", json={"lora_name": "bot"}, headers=bearer("first-token")).status_code
        == 401
    )
    assert (
        http.post("/v1/unload_lora_adapter", json={"lora_name": "bot"}, headers=bearer("second-token")).status_code
        == 200
    )
