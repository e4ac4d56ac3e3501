"""Static discovery: engines and their URLs from a file or an environment variable (local mode)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sage_gateway.discovery.model import parse_static_engines
from sage_gateway.registry import EngineRegistry


def load_static(registry: EngineRegistry, *, file: Path | None, inline: str | None) -> None:
    """Fill `registry` from the file, else from the inline document; a ValueError says what is wrong."""
    if file is not None:
        try:
            text, source = file.read_text(), str(file)
        except OSError as error:
            msg = f"cannot read the static engines file {file}: {error.strerror}"
            raise ValueError(msg) from None
    elif inline is not None:
        text, source = inline, "SAGE_GATEWAY_STATIC_ENGINES"
    else:
        msg = "static discovery needs SAGE_GATEWAY_STATIC_ENGINES_FILE or SAGE_GATEWAY_STATIC_ENGINES"
        raise ValueError(msg)
    for engine, endpoints in parse_static_engines(text, source):
        registry.upsert_engine(engine)
        registry.set_endpoints(engine.key, "static", endpoints)


class StaticDiscovery:
    """Loads the list once, at construction, so that a bad list stops the gateway at start-up."""

    def __init__(self, registry: EngineRegistry, *, file: Path | None, inline: str | None) -> None:
        load_static(registry, file=file, inline=inline)
        self.synced = asyncio.Event()
        self.synced.set()

    async def run(self) -> None:
        return None
