"""The one-write-per-response transport wrapper (kmsframe/http/protocol.py)."""

from __future__ import annotations

import asyncio

from kmsframe.http.protocol import CoalescingTransport


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_writes_in_one_loop_turn_leave_together_in_order() -> None:
    async def run() -> Recorder:
        rec = Recorder()
        t = CoalescingTransport(rec, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(b"")
        t.write(b"body")
        assert rec.writes == [] and t.get_write_buffer_size() == 23
        await asyncio.sleep(0)
        assert rec.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        t.write(b"next")  # a later turn: its own write
        await asyncio.sleep(0)
        t.write(b"last")
        t.close()  # close flushes first
        assert t.get_extra_info("peername") == "info:peername"
        return rec

    rec = asyncio.run(run())
    assert rec.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"next", b"last"] and rec.closed


def test_abort_drops_pending_data() -> None:
    class Aborting(Recorder):
        def abort(self) -> None:
            self.closed = True

    async def run() -> Aborting:
        rec = Aborting()
        t = CoalescingTransport(rec, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(b"x")
        t.abort()
        await asyncio.sleep(0)
        return rec

    rec = asyncio.run(run())
    assert rec.writes == [] and rec.closed
