"""The started gateway keeps the cyclic garbage collector out of its requests' way: what exists at
start is frozen, and young passes wait for what actually accumulates."""

from __future__ import annotations

import gc

from sage_gateway import app as gateway_app
from sage_gateway.settings import GatewaySettings


async def test_start_freezes_what_exists_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    gc.set_threshold(700, *before[1:])  # CPython's default, whatever an earlier test left
    app = gateway_app.create_app(GatewaySettings(discovery="static", static_engines="engines: []"))
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_threshold()[0] == gateway_app.YOUNG_GENERATION_THRESHOLD
            assert gc.get_threshold()[1:] == before[1:]  # the older generations keep theirs
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
