"""The transport port itself, held to one behaviour on both adapters: a dialed connection and an
accepted one exchange whole messages in order, report one close each with its code and reason,
and signal back-pressure (``congested``) when the far end stops reading, until it reads again."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from websockets.asyncio.client import connect

from connector.adapters.memory_transport import MemoryConnection, MemoryServerTransport
from connector.adapters.websockets_transport import WebsocketsDialer, WebsocketsServerTransport
from connector.domain.ports import Connection
from tests.contract.conftest import GUARD


@dataclass
class Recorder:
    """A ConnectionHandler that records what the transport pushes."""

    messages: list[bytes | str] = field(default_factory=list)
    closing: list[tuple[int, str]] = field(default_factory=list)
    closed: list[tuple[int, str]] = field(default_factory=list)
    echo: Connection | None = None

    def on_message(self, data: bytes | str) -> None:
        self.messages.append(data)
        if self.echo is not None and isinstance(data, bytes):
            self.echo.send(data.upper())

    def on_closing(self, code: int, reason: str) -> None:
        self.closing.append((code, reason))

    def on_closed(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))


async def until(condition: object, what: str) -> None:
    async with asyncio.timeout(GUARD):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110 - bounded polling
            await asyncio.sleep(0.001)


class Pair:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.accepted: list[Connection] = []
        self.server_side = Recorder()
        self.transport: MemoryServerTransport | WebsocketsServerTransport
        if kind == "memory":
            self.transport = MemoryServerTransport(max_frame_size=1 << 20, high_water=64 * 1024)
        else:
            self.transport = WebsocketsServerTransport(
                "127.0.0.1", 0, max_frame_size=1 << 20, write_high_water=64 * 1024
            )

    def accept(self, conn: Connection) -> None:
        self.accepted.append(conn)
        self.server_side.echo = conn
        conn.start(self.server_side)

    async def dial(self) -> Connection:
        if isinstance(self.transport, MemoryServerTransport):
            return await self.transport.connect()
        return await WebsocketsDialer(max_frame_size=1 << 20).dial(
            f"ws://127.0.0.1:{self.transport.port}"
        )


@pytest.fixture(params=["memory", "websockets"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    p = Pair(request.param)
    await p.transport.start(p.accept)
    yield p
    await p.transport.stop_accepting()


async def test_messages_flow_in_order_both_ways_and_each_end_reports_one_close(
    pair: Pair,
) -> None:
    client = await pair.dial()
    mine = Recorder()
    client.start(mine)
    for n in range(50):
        client.send(b"m%d" % n)
    await until(lambda: len(mine.messages) == 50, "50 echoes")
    assert mine.messages == [b"M%d" % n for n in range(50)]
    assert pair.server_side.messages == [b"m%d" % n for n in range(50)]
    client.close(1000, "done here")
    await until(lambda: mine.closed and pair.server_side.closed, "both ends closed")
    assert mine.closed == [(1000, "done here")]
    assert pair.server_side.closed == [(1000, "done here")]
    client.send(b"after the close")  # does nothing, raises nothing
    await asyncio.sleep(0.01)
    assert len(pair.server_side.messages) == 50


async def test_an_end_that_stops_reading_makes_the_sender_congested_until_it_reads(
    pair: Pair,
) -> None:
    # A far end that does not read: a test peer without a handler (memory), or a WebSocket
    # client that reads nothing once one message waits, with a small socket buffer.
    reader: MemoryConnection | None = None
    ws = None
    if isinstance(pair.transport, MemoryServerTransport):
        reader = await pair.transport.connect()
    else:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", pair.transport.port))
        sock.setblocking(False)
        ws = await connect(
            f"ws://127.0.0.1:{pair.transport.port}", sock=sock, max_queue=1, ping_interval=None
        )
    await until(lambda: pair.accepted, "accepted")
    server = pair.accepted[0]
    chunk = b"x" * 16 * 1024
    sent = 0
    async with asyncio.timeout(GUARD):
        while not server.congested:
            server.send(chunk)
            sent += 1
            await asyncio.sleep(0)
    assert sent > 4  # above the 64 KiB high-water mark
    # The far end reads everything: the sender is no longer congested.
    received = 0
    async with asyncio.timeout(GUARD):
        while received < sent:
            if reader is not None:
                data = await reader.receive()
            else:
                assert ws is not None
                data = await ws.recv()
            assert data == chunk
            received += 1
    await until(lambda: not server.congested, "the buffer drained")
    if ws is not None:
        await ws.close()
    else:
        assert reader is not None
        reader.close(1000, "bye")
