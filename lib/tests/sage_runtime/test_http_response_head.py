"""A response head is framed from the app's headers, and a header that would break it (a control
character, a CR or an LF of its own) is refused rather than sent."""

from __future__ import annotations

import pytest

from sage_runtime.http_response import frame_head

REFUSED = [*range(0x09), *range(0x0A, 0x20), 0x7F]  # every control character but tab, CR and LF included


def test_a_head_says_how_its_body_is_framed() -> None:
    head, length, chunked, close = frame_head(
        200, [(b"Content-Length", b"2"), (b"x-note", b"a\ttab is allowed")], [(b"server", b"s")]
    )
    assert head == b"HTTP/1.1 200 OK\r\nserver: s\r\ncontent-length: 2\r\nx-note: a\ttab is allowed\r\n"
    assert (length, chunked, close) == (2, False, False)
    assert frame_head(200, [(b"transfer-encoding", b"chunked"), (b"connection", b"close")], [])[1:] == (
        None,
        True,
        True,
    )


@pytest.mark.parametrize("byte", REFUSED)
def test_a_control_character_in_a_name_or_value_is_refused(byte: int) -> None:
    control = bytes([byte])
    for header in [(b"x-a", b"v" + control + b"w"), (b"x-" + control, b"v"), (b"x-a", control)]:
        with pytest.raises(RuntimeError, match="Invalid HTTP header"):
            frame_head(200, [(b"content-length", b"0"), header], [])
