"""The WebSocket adapter reads plain binary frames itself and hands everything else to
websockets: whatever the mix of frames and however the stream is cut into reads, the messages it
delivers are exactly those websockets alone would deliver."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from connector.adapters.websockets_transport import WebSocket, WebsocketOptions, _Registry
from connector.domain.ports import NullSink

MAX = 100_000


@dataclass
class FakeTransport:
    written: list[bytes] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def abort(self) -> None:
        pass


@dataclass
class Messages:
    got: list[bytes | str] = field(default_factory=list)

    def on_message(self, data: bytes | str) -> None:
        self.got.append(data)

    def on_closing(self, code: int, reason: str) -> None:
        pass

    def on_closed(self, code: int, reason: str) -> None:
        pass


def reference(stream: bytes) -> list[bytes | str]:
    """What websockets alone makes of the stream, assembled into messages."""
    ws = ServerProtocol(state=OPEN, max_size=MAX)
    ws.receive_data(stream)
    out: list[bytes | str] = []
    parts: list[bytes] = []
    text = False
    for event in ws.events_received():
        if event.opcode in (Opcode.TEXT, Opcode.BINARY):
            text = event.opcode is Opcode.TEXT
            parts = [bytes(event.data)]
        elif event.opcode is Opcode.CONT:
            parts.append(bytes(event.data))
        else:
            continue
        if event.fin:
            data = b"".join(parts)
            out.append(data.decode("utf-8", "replace") if text else data)
    return out


binary = st.binary(max_size=300).map(lambda d: [Frame(Opcode.BINARY, d)])
large = st.integers(126, 70_000).map(lambda n: [Frame(Opcode.BINARY, b"z" * n)])
ping = st.binary(max_size=20).map(lambda d: [Frame(Opcode.PING, d)])
text = st.text(max_size=20).map(lambda t: [Frame(Opcode.TEXT, t.encode())])
fragmented = st.lists(st.binary(max_size=30), min_size=2, max_size=4).map(
    lambda parts: [
        Frame(Opcode.BINARY if i == 0 else Opcode.CONT, p, fin=i == len(parts) - 1)
        for i, p in enumerate(parts)
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.one_of(binary, binary, binary, large, ping, text, fragmented), max_size=12),
    st.lists(st.integers(1, 200), max_size=30),
)
def test_delivers_what_websockets_alone_would_however_the_stream_is_cut(
    messages: list[list[Frame]], cuts: list[int]
) -> None:
    stream = b"".join(f.serialize(mask=True) for frames in messages for f in frames)
    expected = reference(stream)
    plain_only = all(f.opcode is Opcode.BINARY and f.fin for fs in messages for f in fs)

    async def run() -> tuple[list[bytes | str], bool]:
        registry = _Registry(WebsocketOptions(MAX), NullSink())
        ws = WebSocket(registry, ServerProtocol(state=OPEN, max_size=MAX))
        ws._transport = FakeTransport()  # type: ignore[assignment]
        ws._fast = True
        handler = Messages()
        ws.start(handler)
        pos = 0
        for cut in [*cuts, len(stream)]:
            if pos >= len(stream):
                break
            ws.data_received(stream[pos : pos + cut])
            pos += cut
        if pos < len(stream):
            ws.data_received(stream[pos:])
        await asyncio.sleep(0)
        return handler.got, ws._fast

    got, still_fast = asyncio.run(run())
    assert got == expected
    if plain_only:
        assert still_fast  # the path under test was taken


def test_an_oversized_frame_goes_to_websockets_which_closes_1009() -> None:
    async def run() -> Any:
        registry = _Registry(WebsocketOptions(MAX), NullSink())
        ws = WebSocket(registry, ServerProtocol(state=OPEN, max_size=1000))
        ws._transport = FakeTransport()  # type: ignore[assignment]
        ws._fast = True
        ws.start(Messages())
        ws.data_received(Frame(Opcode.BINARY, b"x" * 1001).serialize(mask=True)[:20])
        return ws.ws.close_sent

    close = asyncio.run(run())
    assert close is not None
    assert close.code == 1009


async def test_a_real_connection_reads_its_frames_on_the_fast_path() -> None:
    from websockets.asyncio.client import connect

    from connector.adapters.websockets_transport import WebsocketsServerTransport

    accepted: list[WebSocket] = []
    handler = Messages()

    def accept(conn: Any) -> None:
        accepted.append(conn)
        conn.start(handler)

    transport = WebsocketsServerTransport("127.0.0.1", 0, max_frame_size=MAX)
    await transport.start(accept)
    try:
        async with asyncio.timeout(10):
            ws = await connect(f"ws://127.0.0.1:{transport.port}")
            for n in range(20):
                await ws.send(b"m%d" % n)
            while len(handler.got) < 20:  # noqa: ASYNC110 - bounded polling
                await asyncio.sleep(0.001)
            assert accepted[0]._fast
            assert handler.got == [b"m%d" % n for n in range(20)]
            await ws.close()
    finally:
        await transport.stop_accepting()
