"""Answers sent as raw ASGI messages: headers as given, a Content-Length where HTTP wants one."""

from __future__ import annotations

from typing import Any

import pytest

from sage_wire.asgi import CompleteAnswer


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
