"""Answers sent as raw ASGI messages (headers as given, a Content-Length where HTTP wants one), and
work cancelled when its client leaves."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sage_wire.asgi import WATCH_AFTER_SECONDS, ClientGone, CompleteAnswer, unless_gone


async def sent_by(answer: CompleteAnswer) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        messages.append(dict(message))

    async def receive() -> Any:
        raise AssertionError("an answer never reads the request")

    await answer({"type": "http"}, receive, send)
    return messages


async def test_a_complete_answer_is_two_messages_with_its_length() -> None:
    answer = CompleteAnswer(b'{"ok":true}', 200, [(b"content-type", b"application/json")])
    assert await sent_by(answer) == [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")],
        },
        {"type": "http.response.body", "body": b'{"ok":true}'},
    ]


@pytest.mark.parametrize("status", [204, 304, 101])
async def test_statuses_without_a_body_get_no_length(status: int) -> None:
    start, _ = await sent_by(CompleteAnswer(b"", status, []))
    assert start["headers"] == []
    assert start["status"] == status


async def test_work_that_outlasts_the_watch_delay_is_cancelled_when_its_client_leaves() -> None:
    asked: list[str] = []

    async def receive() -> Any:
        asked.append("receive")
        return {"type": "http.disconnect"}

    async def quick() -> str:
        return "answered"

    async def slow() -> str:
        await asyncio.sleep(WATCH_AFTER_SECONDS * 20)
        return "never"

    assert await unless_gone(receive, quick()) == "answered"
    await asyncio.sleep(WATCH_AFTER_SECONDS * 2)
    assert asked == []  # a quick answer never started a watcher
    with pytest.raises(ClientGone):
        await unless_gone(receive, slow())
    assert asked == ["receive"]


async def test_requests_overlapping_in_time_each_get_their_watch_when_due() -> None:
    async def gone() -> Any:
        return {"type": "http.disconnect"}

    async def slow() -> str:
        await asyncio.sleep(WATCH_AFTER_SECONDS * 20)
        return "never"

    async def one(delay: float) -> str:
        await asyncio.sleep(delay)
        try:
            return await unless_gone(gone, slow())
        except ClientGone:
            return "gone"

    results = await asyncio.gather(*(one(WATCH_AFTER_SECONDS * n / 4) for n in range(6)))
    assert results == ["gone"] * 6
