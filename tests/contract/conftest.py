"""A BTP server on either transport, with scripted raw-frame peers to talk to it.

Every test in this folder runs twice: on the in-memory transport and on real WebSockets over
127.0.0.1. Passing on both is what keeps the in-memory fake honest. Time is a FakeClock; the only
real-time bound is ``GUARD``, a hang guard on every wait (never a performance threshold).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from connector.adapters.memory_transport import MemoryConnection, MemoryServerTransport
from connector.adapters.websockets_transport import WebsocketsServerTransport
from connector.app.btp_server import BtpServer, ServerLimits
from connector.app.links import LinkContext, Links
from connector.domain.accounts import Accounts
from connector.domain.admission import Admission
from connector.domain.auth import AuthPolicy, AuthThrottle
from connector.domain.btp import frames
from connector.domain.errors import PeerDisconnected
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Prepare, Reply
from connector.domain.pipeline import Pipeline, Step
from connector.domain.ports import Clock, ServerTransport
from tests.fakes import FakeClock, FakeProcessor, FakeSecretStore, RecordingLogSink

GUARD = 10.0  # seconds: bounds every wait so a broken build fails instead of hanging
NODE = "test.node"
SECRETS = {"alice": "alice-secret-1", "bob": "bob-secret-2"}
MAX_FRAME = 64 * 1024


class Peer:
    """A scripted peer speaking raw frames, on either transport."""

    def __init__(self, memory: MemoryConnection | None, ws: ClientConnection | None) -> None:
        self._memory = memory
        self._ws = ws
        self._next_id = 1

    async def send(self, data: bytes | str) -> None:
        if self._memory is not None:
            self._memory.send(data)
            await asyncio.sleep(0)
        else:
            assert self._ws is not None
            await self._ws.send(data)

    def pending(self) -> int:
        """Messages received and not read yet."""
        if self._memory is not None:
            return len(self._memory._inbox)
        assert self._ws is not None
        return len(self._ws.recv_messages.frames)

    async def send_frame(self, frame: frames.Frame) -> None:
        await self.send(frames.encode(frame))

    async def recv(self) -> bytes:
        async with asyncio.timeout(GUARD):
            if self._memory is not None:
                data = await self._memory.receive()
            else:
                assert self._ws is not None
                data = await self._ws.recv()
        assert isinstance(data, bytes)
        return data

    async def recv_frame(self) -> frames.Frame:
        return frames.decode(await self.recv())

    async def closed(self) -> tuple[int, str]:
        """Wait for the server to close; returns its close code and reason. Fails if a message
        arrives instead."""
        async with asyncio.timeout(GUARD):
            try:
                data = await self.recv()
            except (PeerDisconnected, ConnectionClosed):
                return self.close_info()
        raise AssertionError(f"expected a close, got a message: {data.hex()}")

    def close_info(self) -> tuple[int, str]:
        if self._memory is not None:
            info = self._memory.close_info
            assert info is not None
            return info
        assert self._ws is not None
        frame = self._ws.protocol.close_rcvd
        assert frame is not None, "the server did not send a close frame"
        return frame.code, frame.reason

    async def close(self) -> None:
        if self._memory is not None:
            self._memory.close(1000, "bye")
        elif self._ws is not None:
            await self._ws.close()

    async def authenticate(self, username: str, token: str) -> frames.Frame:
        request_id = self.new_id()
        await self.send_frame(frames.auth_message(request_id, username, token.encode()))
        reply = await self.recv_frame()
        assert reply.request_id == request_id
        return reply

    async def send_prepare(self, prepare: Prepare | bytes) -> int:
        request_id = self.new_id()
        packet = codec.encode(prepare) if isinstance(prepare, Prepare) else prepare
        await self.send_frame(frames.ilp_message(request_id, packet))
        return request_id

    async def recv_reply(self) -> tuple[int, Reply]:
        frame = await self.recv_frame()
        assert isinstance(frame, frames.Response), frame
        packet = frames.ilp_entry(frame)
        assert packet is not None
        return frame.request_id, codec.decode_reply(packet)

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id


def build_server(
    transport: ServerTransport,
    step: Step,
    throttle: AuthThrottle,
    clock: Clock,
    log: RecordingLogSink,
    limits: ServerLimits,
    secrets: dict[str, str] | None = None,
    address: str = NODE,
) -> BtpServer:
    """A BTP server whose pipeline is the one ``step``, every peer with a secret a child."""
    links = Links(clock, log, address)
    accounts = Accounts(address, [], open_children=True)
    ctx = LinkContext(
        Pipeline([step], address, links.spawn, log),
        links,
        accounts,
        Admission(AuthPolicy(FakeSecretStore(secrets or SECRETS), accounts.is_known), throttle),
        clock,
        log,
        address,
        limits,
    )
    return BtpServer(transport, ctx, links)


class Harness:
    def __init__(self, kind: str, limits: ServerLimits) -> None:
        self.kind = kind
        self.clock = FakeClock()
        self.log = RecordingLogSink()
        self.processor = FakeProcessor()
        self.throttle = AuthThrottle(base_delay=0.5)
        self.transport: MemoryServerTransport | WebsocketsServerTransport
        if kind == "memory":
            self.transport = MemoryServerTransport(max_frame_size=MAX_FRAME)
        else:
            self.transport = WebsocketsServerTransport(
                "127.0.0.1", 0, max_frame_size=MAX_FRAME, close_timeout=2.0
            )
        self.server = build_server(
            self.transport, self.processor, self.throttle, self.clock, self.log, limits
        )
        self._clients: list[Peer] = []

    async def connect(self) -> Peer:
        if isinstance(self.transport, MemoryServerTransport):
            peer = Peer(await self.transport.connect(), None)
        else:
            ws = await connect(
                f"ws://127.0.0.1:{self.transport.port}", max_size=None, open_timeout=GUARD
            )
            peer = Peer(None, ws)
        self._clients.append(peer)
        return peer

    async def connect_as(self, username: str = "alice") -> Peer:
        peer = await self.connect()
        reply = await peer.authenticate(username, SECRETS[username])
        assert isinstance(reply, frames.Response)
        return peer

    async def until(self, condition: Any, what: str) -> None:
        """Let the server run until ``condition()`` holds (bounded by GUARD)."""
        async with asyncio.timeout(GUARD):
            # Polling, bounded by GUARD: the conditions are facts of the server under test,
            # which has no event to offer for them.
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.001)

    async def until_clock_waited_on(self, count: int = 1) -> None:
        await self.until(lambda: self.clock.waiting >= count, "the server waits on the clock")

    async def aclose(self) -> None:
        for peer in self._clients:
            await peer.close()
        await self.server.shutdown()


@pytest.fixture(params=["memory", "websockets"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    marker = request.node.get_closest_marker("limits")
    limits = replace(ServerLimits(), **(marker.kwargs if marker else {}))
    h = Harness(request.param, limits)
    await h.server.start()
    try:
        yield h
    finally:
        h.processor.released.set()
        async with asyncio.timeout(GUARD):
            await h.aclose()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "limits(**kwargs): ServerLimits for the harness")
