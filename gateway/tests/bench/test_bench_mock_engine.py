"""The benchmarks' mock upstream streams the way OpenAI's API and vLLM do when asked for usage:
`"usage": null` in every chunk, then one chunk without choices that carries it."""

from __future__ import annotations

import httpx
import orjson
from bench.mock_engine import make_app

BODY = {"model": "m", "messages": [{"role": "user", "content": "one two three"}], "stream": True}


async def stream_events(body: dict[str, object]) -> list[dict[str, object]]:
    transport = httpx.ASGITransport(app=make_app("m"))
    async with httpx.AsyncClient(transport=transport, base_url="http://mock") as client:
        answer = await client.post("/v1/chat/completions", json=body)
    lines = [line[len("data: ") :] for line in answer.text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [orjson.loads(line) for line in lines[:-1]]


async def test_a_stream_asked_for_usage_ends_with_a_usage_chunk() -> None:
    events = await stream_events({**BODY, "stream_options": {"include_usage": True}})
    *words, last = events
    assert [event["usage"] for event in words] == [None, None, None]
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}


async def test_a_stream_not_asked_has_no_usage() -> None:
    events = await stream_events(BODY)
    assert len(events) == 3
    assert all("usage" not in event for event in events)
