"""Closes on the real WebSocket transport. A raw client (websockets' sans-I/O client over
a plain TCP stream) sends exactly the bytes a test writes: it never answers pings, never echoes a
close and never closes its socket unless told to."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from connector.adapters.websockets_transport import WebsocketsServerTransport
from connector.app.btp_server import BtpServer
from connector.app.links import ServerLimits
from connector.domain.auth import AuthThrottle
from connector.domain.btp import frames
from connector.domain.ilp import codec
from tests.contract.conftest import MAX_FRAME, SECRETS, build_server
from tests.fakes import FakeClock, FakeProcessor, RecordingLogSink, make_prepare

GUARD = 5.0


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int):
        self.reader, self.writer = reader, writer
        self.proto = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}"))
        self.events: list[Any] = []

    @classmethod
    async def open(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer, port)
        client.proto.send_request(client.proto.connect())
        writer.write(b"".join(client.proto.data_to_send()))
        assert isinstance(await client.event(), Response)
        return client

    def frame(self, opcode: Opcode, data: bytes) -> bytes:
        return Frame(opcode, data).serialize(mask=True, extensions=[])

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def send(self, data: bytes) -> None:
        self.write(self.frame(Opcode.BINARY, data))

    async def event(self) -> Any:
        async with asyncio.timeout(GUARD):
            while not self.events:
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise EOFError
                self.proto.receive_data(chunk)
                self.events.extend(self.proto.events_received())
        return self.events.pop(0)

    async def frame_event(self) -> Frame:
        """The next frame that is not a ping."""
        while True:
            event = await self.event()
            if isinstance(event, Frame) and event.opcode is not Opcode.PING:
                return event

    async def authenticate(self, username: str = "alice") -> None:
        self.send(frames.encode(frames.auth_message(1, username, SECRETS[username].encode())))
        reply = await self.frame_event()
        assert isinstance(frames.decode(bytes(reply.data)), frames.Response)

    def close(self) -> None:
        self.writer.close()


class Node:
    def __init__(self, **options: Any) -> None:
        self.clock = FakeClock()
        self.log = RecordingLogSink()
        self.processor = FakeProcessor()
        self.transport = WebsocketsServerTransport(
            "127.0.0.1", 0, max_frame_size=MAX_FRAME, **options
        )
        self.server: BtpServer = build_server(
            self.transport, self.processor, AuthThrottle(), self.clock, self.log, ServerLimits()
        )
        self.clients: list[RawClient] = []

    async def client(self) -> RawClient:
        client = await RawClient.open(self.transport.port)
        self.clients.append(client)
        return client


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    n = Node(close_timeout=0.2, open_timeout=1.0)
    await n.server.start()
    try:
        yield n
    finally:
        n.processor.released.set()
        for c in n.clients:
            c.close()
        async with asyncio.timeout(GUARD):
            await n.server.shutdown()


async def eventually(condition: Any, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while not condition():  # noqa: ASYNC110 - bounded poll of server state
                await asyncio.sleep(0.01)
    return bool(condition())


async def test_a_prepare_that_arrives_after_we_closed_the_link_is_not_forwarded(
    node: Node,
) -> None:
    old = await node.client()
    await old.authenticate()
    new = await node.client()
    await new.authenticate()  # replaces `old`: the server sends it close 1000
    close = await old.frame_event()
    assert close.opcode is Opcode.CLOSE
    # The old peer's Prepare was already on the wire: its answer can never be sent (our close
    # frame is out), so forwarding it pays the next hop for a Fulfill nobody receives.
    old.send(frames.encode(frames.ilp_message(5, codec.encode(make_prepare(node.clock)))))
    forwarded = await eventually(lambda: node.processor.seen, 0.5)
    assert not forwarded, "a Prepare read after our close frame went down the pipeline"


async def test_a_connection_failed_1009_before_auth_is_dropped_when_the_peer_stays_silent(
    node: Node,
) -> None:
    client = await node.client()
    # A header declaring 20,000 bytes: above the 16 KiB pre-auth limit, refused 1009 unread.
    client.write(bytes((0x82, 0x80 | 126)) + (20_000).to_bytes(2, "big") + b"mask" + b"x" * 100)
    close = await client.frame_event()
    assert close.opcode is Opcode.CLOSE
    # The peer never closes its socket. Nothing bounds this wait: no close deadline (websockets
    # sent the close, not close()), and the link's auth deadline is off once on_closing ran.
    dropped = await eventually(lambda: node.transport.connections == 0, 2.0)
    assert dropped, f"still held: {node.transport.connections} connection(s)"
    assert not node.server.links.all


async def test_a_peer_that_closes_and_keeps_its_socket_open_is_dropped(node: Node) -> None:
    client = await node.client()
    await client.authenticate()
    client.write(client.frame(Opcode.CLOSE, (1000).to_bytes(2, "big")))
    echo = await client.frame_event()
    assert echo.opcode is Opcode.CLOSE
    dropped = await eventually(lambda: node.transport.connections == 0, 2.0)
    # Meanwhile the link still counts as open: Prepares to alice go over it and are lost.
    assert dropped, f"link_for(alice) open: {node.server.links.link_for('alice') is not None}"


async def test_a_keepalive_close_answers_the_prepares_in_flight_first() -> None:
    n = Node(close_timeout=0.2, open_timeout=1.0, ping_interval=0.1, ping_timeout=0.1)
    await n.server.start()
    try:
        client = await n.client()
        await client.authenticate()
        n.processor.hold = True
        client.send(frames.encode(frames.ilp_message(5, codec.encode(make_prepare(n.clock)))))
        # The raw client never answers pings: after ping_timeout the transport closes 1011.
        first = await client.frame_event()
        assert first.opcode is Opcode.BINARY, f"got {first.opcode.name} before any answer (T03)"
    finally:
        n.processor.released.set()
        for c in n.clients:
            c.close()
        async with asyncio.timeout(GUARD):
            await n.server.shutdown()


async def test_a_prepare_pipelined_behind_a_refused_auth_does_not_crash_the_reader(
    node: Node,
) -> None:
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
    client = await node.client()
    auth = frames.encode(frames.auth_message(1, "alice", b"wrong-token"))
    prepare = frames.encode(frames.ilp_message(2, codec.encode(make_prepare(node.clock))))
    client.write(client.frame(Opcode.BINARY, auth) + client.frame(Opcode.BINARY, prepare))
    try:
        reply = await client.frame_event()
    except EOFError:
        reply = None
    assert not errors, [str(e.get("exception")) or e.get("message") for e in errors]
    assert reply is not None, "no F00 ERROR before the connection dropped"
    assert isinstance(frames.decode(bytes(reply.data)), frames.Error)
