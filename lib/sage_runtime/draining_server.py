"""uvicorn's server, telling a drain (sage_runtime.drain) when the first SIGTERM or SIGINT arrives;
uvicorn itself stops accepting connections then and waits for the open ones (give it
`timeout_graceful_shutdown` a little past the drain, so the drain ends them first)."""

from __future__ import annotations

from types import FrameType

import uvicorn

from sage_runtime.drain import Drain


class DrainingServer(uvicorn.Server):
    """uvicorn, telling the gateway's drain when the first SIGTERM (or SIGINT) arrives."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.drain.begin_threadsafe()
        super().handle_exit(sig, frame)
