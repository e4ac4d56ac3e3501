"""Static discovery: engines and their URLs from a file or an environment variable (local mode).

A file is watched: when it changes (local mode's control plane rewrites it as engines start,
restart and stop) the registry converges on it, engines missing from it are forgotten. A file
that no longer parses is logged and the last good view is kept."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from sage_gateway.discovery.model import parse_static_engines
from sage_gateway.registry import EngineRegistry

log = logging.getLogger(__name__)

WATCH_INTERVAL_SECONDS = 0.2
"""How often the file's identity (mtime, size, inode) is compared: one stat() call."""


def _read(file: Path | None, inline: str | None) -> tuple[str, str]:
    if file is not None:
        try:
            return file.read_text(), str(file)
        except OSError as error:
            msg = f"cannot read the static engines file {file}: {error.strerror}"
            raise ValueError(msg) from None
    if inline is not None:
        return inline, "SAGE_GATEWAY_STATIC_ENGINES"
    msg = "static discovery needs SAGE_GATEWAY_STATIC_ENGINES_FILE or SAGE_GATEWAY_STATIC_ENGINES"
    raise ValueError(msg)


def load_static(registry: EngineRegistry, *, file: Path | None, inline: str | None) -> None:
    """Make `registry` hold exactly the engines of the file, else of the inline document; a
    ValueError says what is wrong (and leaves the registry as it was)."""
    text, source = _read(file, inline)
    listed = parse_static_engines(text, source)
    keep = {engine.key for engine, _ in listed}
    for engine in registry.engines():
        if engine.key not in keep:
            registry.remove_engine(engine.key)
    for engine, endpoints in listed:
        registry.upsert_engine(engine)
        registry.set_endpoints(engine.key, "static", endpoints)


def _identity(file: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(file)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class StaticDiscovery:
    """Loads the list at construction, so that a bad list stops the gateway at start-up; then,
    for a file, follows its changes."""

    def __init__(self, registry: EngineRegistry, *, file: Path | None, inline: str | None) -> None:
        self.registry = registry
        self.file = file
        self._seen = _identity(file) if file is not None else None
        load_static(registry, file=file, inline=inline)
        self.synced = asyncio.Event()
        self.synced.set()

    async def run(self) -> None:
        if self.file is None:
            return
        while True:
            await asyncio.sleep(WATCH_INTERVAL_SECONDS)
            self.reload_if_changed()

    def reload_if_changed(self) -> bool:
        """True when the file changed and its new list is now the registry's."""
        assert self.file is not None
        identity = _identity(self.file)
        if identity is None or identity == self._seen:
            return False
        self._seen = identity
        try:
            load_static(self.registry, file=self.file, inline=None)
        except ValueError as error:
            log.warning("kept the previous engines: %s", error)
            return False
        log.info("static engines reloaded from %s: %d engines", self.file, len(self.registry.engines()))
        return True
