"""A minimal OpenAI-shaped upstream for the gateway benchmark (a mock, named as such).

Raw ASGI on uvicorn, so that the upstream costs as little as possible and the benchmark measures
the gateway: `/health`, `/v1/models`, `/v1/chat/completions` (JSON or SSE, echoing the last
message word by word), `/v1/completions`, `/v1/embeddings` (a fixed-size vector from a hash).

    python gateway/bench/mock_engine.py --port P [--model NAME]
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _json(send: Send, status: int, payload: Any) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": orjson.dumps(payload)})


def _words(request: dict[str, Any]) -> list[str]:
    messages = request.get("messages") or [{"content": request.get("prompt", "")}]
    text = str(messages[-1].get("content") or "empty")
    limit = int(request.get("max_tokens") or 16)
    return (text.split() or ["empty"])[:limit]


def make_app(model: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if path == "/health":
            await _json(send, 200, {"status": "ok"})
            return
        if path == "/v1/models":
            await _json(send, 200, {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "mock"}]})
            return
        request = orjson.loads(await _body(receive) or b"{}")
        created = int(time.time())
        if path == "/v1/embeddings":
            inputs = request.get("input")
            inputs = inputs if isinstance(inputs, list) else [inputs]
            data = [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": [b / 255 for b in hashlib.sha256(str(t).encode()).digest()],
                }
                for i, t in enumerate(inputs)
            ]
            await _json(
                send,
                200,
                {"object": "list", "model": model, "data": data, "usage": {"prompt_tokens": 1, "total_tokens": 1}},
            )
            return
        words = _words(request)
        chat = path == "/v1/chat/completions"
        usage = {"prompt_tokens": len(words), "completion_tokens": len(words), "total_tokens": 2 * len(words)}
        if request.get("stream"):
            # As OpenAI's API and vLLM do: asked for usage, every chunk says `"usage": null` and one
            # more chunk, without choices, carries it (the gateway asks when API keys are on).
            options = request.get("stream_options")
            with_usage = isinstance(options, dict) and options.get("include_usage") is True
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            for word in words:
                choice = {"index": 0, "delta": {"content": word + " "}} if chat else {"index": 0, "text": word + " "}
                chunk = {
                    "id": "mock",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [choice],
                    **({"usage": None} if with_usage else {}),
                }
                await send(
                    {"type": "http.response.body", "body": b"data: " + orjson.dumps(chunk) + b"\n\n", "more_body": True}
                )
            if with_usage:
                last = {"id": "mock", "object": "chat.completion.chunk", "created": created, "model": model}
                body = b"data: " + orjson.dumps({**last, "choices": [], "usage": usage}) + b"\n\n"
                await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
            return
        text = " ".join(words)
        choice = (
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            if chat
            else {"index": 0, "text": text, "finish_reason": "stop"}
        )
        await _json(
            send,
            200,
            {
                "id": "mock",
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": usage,
            },
        )

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", default="mock")
    args = parser.parse_args()
    import uvicorn  # noqa: PLC0415

    uvicorn.run(
        make_app(args.model),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
