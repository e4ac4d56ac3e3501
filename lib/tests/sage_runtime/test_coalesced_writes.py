"""The coalescing transport: one write per loop turn, nothing lost on close."""

from __future__ import annotations

import asyncio

from sage_runtime.coalesced_writes import CoalescingTransport


class _Recorder(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_the_writes_of_one_turn_leave_in_one_write() -> None:
    real = _Recorder()
    transport = CoalescingTransport(real, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"{}")
    assert real.writes == []
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert real.writes[1:] == [b"next"]


async def test_close_sends_what_was_gathered_first() -> None:
    real = _Recorder()
    transport = CoalescingTransport(real, asyncio.get_running_loop())
    transport.write(b"last words")
    transport.close()
    assert real.writes == [b"last words"]
    assert real.closed
    transport.write(b"too late")
    await asyncio.sleep(0)
    assert real.writes == [b"last words"]
    assert transport.is_closing()  # everything else is the real transport's
