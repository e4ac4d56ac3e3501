"""POST /v1/embeddings, /v1/chat/completions and /v1/completions."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from sage_engine import errors, responses
from sage_engine.backends.base import Backend, Prompt
from sage_engine.embeddings_route import PATH, embedding_answer
from sage_engine.generation import GenerationResult, SamplingParams, run_generation
from sage_engine.http_io import engine_state, json_response, request_body
from sage_engine.protocol import ChatRequest, CompletionRequest, SamplingRequest, context_too_long, parse_body
from sage_engine.state import EngineState
from sage_wire.asgi import unless_disconnected
from sage_wire.envelopes import envelope
from sage_wire.sse import DONE, data_event

log = logging.getLogger("sage_engine")
router = APIRouter()


async def embeddings(request: Request) -> Response:
    """The route within FastAPI; uvicorn's POST requests go to `EngineApp` first, which answers
    them without FastAPI (see `embeddings_route`)."""
    answer = await embedding_answer(engine_state(request), await request_body(request))
    return Response(answer, media_type="application/json")


# A plain Starlette route: no FastAPI dependency machinery.
router.add_route(PATH, embeddings, methods=["POST"])


def _sampling(
    body: SamplingRequest, backend: Backend, prompt: Prompt, param: str, default_cap: int | None
) -> SamplingParams:
    prompt_tokens = len(prompt.token_ids)
    limit = backend.context_length()
    requested = body.requested_max_tokens()
    max_tokens = requested if requested is not None else backend.default_max_tokens(prompt_tokens)
    if requested is None and default_cap is not None:
        max_tokens = min(max_tokens, default_cap)
    if prompt_tokens + max_tokens > limit:
        raise context_too_long(prompt_tokens, max_tokens, limit, param if requested is None else "max_tokens")
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=tuple(body.stop_sequences()),
    )


def _generation(request: Request) -> tuple[EngineState, Backend]:
    """The engine's state and its backend, which must generate text (404 otherwise)."""
    state = engine_state(request)
    backend = state.require_backend()
    if not backend.supports_generation():
        raise errors.unsupported_route("an embedding model", "chat or completions")
    return state, backend


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    state, backend = _generation(request)
    body = parse_body(ChatRequest, await request_body(request))
    adapter = state.resolve(body.model, allow_adapters=True)
    prompt = _prompt(lambda: backend.chat_prompt(body.plain_messages()), "The messages cannot be rendered", "messages")

    def whole(result: GenerationResult, name: str) -> dict[str, Any]:
        return responses.chat_completion(result, name, len(prompt.token_ids))

    return await _answer(request, state, _Job(backend, prompt, adapter, chat=True), body, whole)


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    state, backend = _generation(request)
    body = parse_body(CompletionRequest, await request_body(request))
    adapter = state.resolve(body.model, allow_adapters=True)
    prompt = _prompt(lambda: backend.text_prompt(body.prompt_text_or_ids()), "The prompt cannot be tokenized", "prompt")
    echoed = body.prompt if body.echo and isinstance(body.prompt, str) else ""

    def whole(result: GenerationResult, name: str) -> dict[str, Any]:
        return responses.text_completion(result, name, len(prompt.token_ids), echoed)

    return await _answer(request, state, _Job(backend, prompt, adapter, chat=False), body, whole)


def _prompt(render: Callable[[], Prompt], problem: str, param: str) -> Prompt:
    try:
        return render()
    except ValueError as error:
        raise errors.bad_request(f"{problem}: {error}", param) from None


@dataclass(frozen=True)
class _Job:
    """One generation: what to run it on, and whether it answers chat or completions."""

    backend: Backend
    prompt: Prompt
    adapter: str | None
    chat: bool


async def _answer(
    request: Request,
    state: EngineState,
    job: _Job,
    body: SamplingRequest,
    whole: Callable[[GenerationResult, str], dict[str, Any]],
) -> Response:
    """Streamed chunk by chunk, or generated whole and rendered by `whole(result, model name)`."""
    param = "messages" if job.chat else "prompt"
    params = _sampling(body, job.backend, job.prompt, param, state.settings.default_max_tokens)
    name = body.model or state.settings.name()
    state.admit_generation()  # 503 when the queue is full
    if body.stream:
        return _stream(state, job, params, name, body.include_usage_in_stream())
    try:
        result = await _generate(request, state, job, params)
    finally:
        state.generation_done()
    return json_response(whole(result, name))


async def _generate(request: Request, state: EngineState, job: _Job, params: SamplingParams) -> GenerationResult:
    """The whole generation; a client that goes away first stops it at its next token."""
    loop = asyncio.get_running_loop()
    cancelled = threading.Event()

    def work() -> GenerationResult:
        result = run_generation(job.backend.generate(job.prompt, params, job.adapter), params, None, cancelled)
        if cancelled.is_set():
            log.info("generation cancelled after %d tokens: the client went away", result.completion_tokens)
        return result

    async def generated() -> GenerationResult:
        return await loop.run_in_executor(state.generate_executor, work)

    try:
        return await unless_disconnected(request, generated())
    finally:
        cancelled.set()


def _stream(
    state: EngineState, job: _Job, params: SamplingParams, model_name: str, include_usage: bool
) -> StreamingResponse:
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[str | None] = asyncio.Queue()
    cancelled = threading.Event()
    chunks = responses.ChunkBuilder(model_name, job.chat)

    def emit(piece: str) -> None:
        loop.call_soon_threadsafe(pieces.put_nowait, piece)

    def work() -> GenerationResult:
        try:
            result = run_generation(job.backend.generate(job.prompt, params, job.adapter), params, emit, cancelled)
            if cancelled.is_set():
                log.info("generation cancelled after %d tokens: the client went away", result.completion_tokens)
            return result
        finally:
            loop.call_soon_threadsafe(pieces.put_nowait, None)
            loop.call_soon_threadsafe(state.generation_done)

    # Started here, not when the body is first read: it ends (and leaves the queue) even if the
    # body is never read.
    future = loop.run_in_executor(state.generate_executor, work)
    drained = threading.Event()

    def cut() -> None:  # the drain ran out: stop generating, end the stream with an error event
        drained.set()
        cancelled.set()

    async def events() -> AsyncIterator[bytes]:
        state.drain.on_expiry(cut)
        try:
            if job.chat:
                yield data_event(chunks.role())
            while (piece := await pieces.get()) is not None:
                yield data_event(chunks.text(piece))
            result = await future
            if drained.is_set():
                yield data_event(envelope(errors.shutting_down()))
                return
            yield data_event(chunks.finish(result.finish_reason))
            if include_usage:
                yield data_event(chunks.usage(len(job.prompt.token_ids), result.completion_tokens))
            yield DONE
        finally:
            cancelled.set()  # a client that went away stops the generation at the next token
            state.drain.forget(cut)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
