"""vLLM's runtime LoRA adapter API, so one operator code path serves vLLM and our engine:
POST /v1/load_lora_adapter {lora_name, lora_path} and POST /v1/unload_lora_adapter {lora_name}.
Adapter changes run on the generation thread, never in the middle of a generation. With an admin
token file configured (the operator mounts one), both need `Authorization: Bearer <its content>`;
the file is read on each call, so a rotated token takes effect without a restart."""

from __future__ import annotations

import asyncio
import hmac
import logging

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from sage_engine import errors
from sage_engine.http_io import engine_state, request_body
from sage_engine.protocol import LoadAdapterRequest, UnloadAdapterRequest, parse_body

log = logging.getLogger("sage_engine")
router = APIRouter()


def _require_admin(request: Request) -> None:
    token_file = engine_state(request).settings.admin_token_file
    if token_file is None:
        return
    try:
        expected = token_file.read_text().strip()
    except OSError as error:
        log.error("the admin token file %s cannot be read: %s", token_file, error)
        raise errors.admin_only() from None
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if (
        not expected
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(presented.strip().encode(), expected.encode())
    ):
        raise errors.admin_only()


@router.post("/v1/load_lora_adapter")
async def load_lora_adapter(request: Request) -> Response:
    _require_admin(request)
    state = engine_state(request)
    backend = state.require_backend()
    body = parse_body(LoadAdapterRequest, await request_body(request))
    if body.lora_name in state.settings.model_names():
        raise errors.bad_request(f"'{body.lora_name}' is the base model's name; pick another lora_name.", "lora_name")
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(state.generate_executor, backend.load_adapter, body.lora_name, body.lora_path)
    log.info("loaded LoRA adapter '%s' from %s", body.lora_name, body.lora_path)
    return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' added successfully.")


@router.post("/v1/unload_lora_adapter")
async def unload_lora_adapter(request: Request) -> Response:
    _require_admin(request)
    state = engine_state(request)
    backend = state.require_backend()
    body = parse_body(UnloadAdapterRequest, await request_body(request))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(state.generate_executor, backend.unload_adapter, body.lora_name)
    log.info("unloaded LoRA adapter '%s'", body.lora_name)
    return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' removed successfully.")
