"""Static discovery follows its file: local mode's control plane rewrites it as engines start,
restart and stop, and the gateway's view converges on each version without a restart."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sage_gateway.discovery.static import StaticDiscovery
from sage_gateway.registry import EngineRegistry, Route, Unavailable, Unknown


def write(path: Path, engines: list[dict[str, object]], *, bump: int) -> None:
    path.write_text(json.dumps({"engines": engines}))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + bump * 1_000_000))  # a distinct mtime


@pytest.fixture
def engines_file(tmp_path: Path) -> Path:
    path = tmp_path / "engines.json"
    write(path, [{"name": "tiny", "urls": ["http://127.0.0.1:18000"]}], bump=0)
    return path


def test_an_added_engine_routes_and_a_removed_one_is_forgotten(engines_file: Path) -> None:
    registry = EngineRegistry()
    discovery = StaticDiscovery(registry, file=engines_file, inline=None)
    assert isinstance(registry.resolve("tiny"), Route)
    assert not discovery.reload_if_changed()  # nothing changed

    write(engines_file, [{"name": "minilm", "kind": "embedding", "urls": ["http://127.0.0.1:18001"]}], bump=1)
    assert discovery.reload_if_changed()
    assert isinstance(registry.resolve("minilm"), Route)
    assert isinstance(registry.resolve("tiny"), Unknown)


def test_an_engine_without_endpoints_is_known_but_unavailable(engines_file: Path) -> None:
    registry = EngineRegistry()
    discovery = StaticDiscovery(registry, file=engines_file, inline=None)
    write(engines_file, [{"name": "tiny", "urls": []}], bump=1)  # restarting: 503, not 404
    assert discovery.reload_if_changed()
    assert isinstance(registry.resolve("tiny"), Unavailable)


def test_a_broken_file_keeps_the_last_good_view(engines_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    registry = EngineRegistry()
    discovery = StaticDiscovery(registry, file=engines_file, inline=None)
    engines_file.write_text("engines: [{name: tiny, urls: [], colour: blue}]")
    assert not discovery.reload_if_changed()
    assert isinstance(registry.resolve("tiny"), Route)
    assert "kept the previous engines" in caplog.text
    assert "colour" in caplog.text
