"""The least a Python proxy can do, as a reference row for the gateway benchmark.

Raw ASGI on uvicorn with one aiohttp session: read the body, POST it to one fixed upstream,
answer with its body. No routing, no metrics, no errors handled, no streaming. It shows how much
of the gateway's cost is the second HTTP hop itself on this machine.

    python gateway/bench/minimal_proxy.py --upstream http://127.0.0.1:P --port Q
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def make_app(upstream: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    sessions: list[aiohttp.ClientSession] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                sessions.append(aiohttp.ClientSession(auto_decompress=False))
                await send({"type": "lifespan.startup.complete"})
            await sessions[0].close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {"content-type": "application/json"}
        async with sessions[0].post(upstream + scope["path"], data=body, headers=headers) as response:
            content = await response.read()
            start = {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(b"content-type", b"application/json")],
            }
            await send(start)
            await send({"type": "http.response.body", "body": content})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    import uvicorn  # noqa: PLC0415

    uvicorn.run(
        make_app(args.upstream),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
