"""Discovery: where engines and their replicas come from, behind one small interface.

Two providers feed the same `EngineRegistry`: `kubernetes` (a watch on LLMEngines and the
EndpointSlices of their Services) and `static` (a list from a file or an environment variable).
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Discovery(Protocol):
    """Keeps a registry current. `run()` works until cancelled; `synced` is set once the registry
    holds everything that existed when discovery started."""

    synced: asyncio.Event

    async def run(self) -> None: ...
