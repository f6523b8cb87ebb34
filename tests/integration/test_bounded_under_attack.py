"""The real process under abuse: a peer that stops reading, sockets that never finish the
WebSocket handshake. Every wait has a bound, then the socket is dropped; memory and file
descriptors stay bounded; shutdown never hangs."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from datetime import UTC, datetime, timedelta

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from connector.domain.btp import frames
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Prepare
from tests.fakes import CONDITION
from tests.integration.helpers import GUARD, BtpClient, connector_process

SECRET = "not-reading-secret"
LONG_DESTINATION = "test.nowhere." + "x" * 1000  # each F02 Reject names it: about 1.1 KB


async def _non_reading_peer(port: int) -> tuple[object, int]:
    """Authenticate, then send Prepares whose Rejects we never read, until the connector stops
    reading us (its back-pressure) or we have sent enough to fill every buffer between us."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    # max_queue=1: the client library stops reading the socket once one message waits.
    ws = await connect(f"ws://127.0.0.1:{port}", sock=sock, max_queue=1, ping_interval=None)
    await ws.send(frames.encode(frames.auth_message(1, "alice", SECRET.encode())))
    assert isinstance(frames.decode(await ws.recv()), frames.Response)
    expiry = datetime.now(UTC) + timedelta(seconds=30)
    prepare = Prepare(1, expiry.replace(microsecond=0), CONDITION, LONG_DESTINATION)
    packet = codec.encode(prepare)
    sent = 0
    try:
        for request_id in range(2, 20_000):
            async with asyncio.timeout(0.5):
                await ws.send(frames.encode(frames.ilp_message(request_id, packet)))
            sent += 1
    except (TimeoutError, ConnectionClosed):
        pass  # the connector stopped reading us (or dropped us): what a non-reader must get
    return ws, sent


async def test_a_peer_that_stops_reading_is_dropped_and_shutdown_stays_bounded() -> None:
    async with connector_process(
        BTP_PEER_ALICE_SECRET=SECRET,
        CONNECTOR_PING_INTERVAL="1",
        CONNECTOR_SHUTDOWN_TIMEOUT="2",
    ) as node:
        ws, sent = await _non_reading_peer(node.port)
        assert sent > 1000
        (record,) = await node.wait_for("btp_peer_not_reading")
        assert record["remoteAddress"].startswith("127.0.0.1:")
        (gone,) = await node.wait_for("btp_disconnect")
        assert gone["peerId"] == "alice"
        ws.transport.abort()  # type: ignore[attr-defined]

        # Again, and this time stop the connector while the peer is not reading: SIGTERM must
        # not wait on the full buffer past its bounds.
        ws, _ = await _non_reading_peer(node.port)
        node.signal(signal.SIGTERM)
        assert await node.wait() == 0  # bounded by GUARD: it used to hang forever
        ws.transport.abort()  # type: ignore[attr-defined]


async def _get(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    try:
        async with asyncio.timeout(GUARD):
            return await reader.read()
    finally:
        writer.close()


async def test_sockets_that_never_finish_the_handshake_are_counted_and_time_limited() -> None:
    async with connector_process(
        BTP_PEER_ALICE_SECRET=SECRET,
        CONNECTOR_MAX_CONNECTIONS="3",
        CONNECTOR_AUTH_TIMEOUT="4",
        CONNECTOR_MAX_PENDING_PER_HOST="1000",  # every socket here comes from one host
    ) as node:
        idle = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(3)]
        await asyncio.sleep(0.2)
        # The handshake slots are full: a health probe still gets its answer...
        answer = await _get(node.port, b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b" 200 " in answer.split(b"\r\n", 1)[0]
        # ...a few more sockets are held for a second at most, and beyond them none at all.
        extra = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(70)]
        (refused, *_) = await node.wait_for("btp_handshake_refused")
        assert refused["reason"] == "too many"
        for sock in extra:
            sock.settimeout(GUARD)
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1) == b""
            sock.close()
        # The idle ones are dropped at the handshake bound, each with a log line.
        records = await node.wait_for("btp_handshake_timeout", count=3)
        assert {r["seconds"] for r in records} == {4}
        for sock in idle:
            sock.settimeout(GUARD)
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1) == b""
            sock.close()
        # And the port serves again: a health probe gets its answer.
        answer = await _get(node.port, b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b" 200 " in answer.split(b"\r\n", 1)[0]


async def test_malformed_http_gets_400_other_methods_405_and_never_a_traceback() -> None:
    async with connector_process(BTP_PEER_ALICE_SECRET=SECRET) as node:
        two_upgrades = (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        assert b" 400 " in (await _get(node.port, two_upgrades)).split(b"\r\n", 1)[0]
        pipelined = (
            b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        answer = await _get(node.port, pipelined)
        assert answer.count(b"HTTP/1.1 ") == 1  # the first is answered, then the close
        assert b'{"status": "live"}' in answer
        for garbage in (
            b"\x00\xff garbage\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET / HTTP/2\r\n\r\n",
            b"GET /health/live HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        ):
            answer = await _get(node.port, garbage)  # 400, then the close
            assert answer.startswith(b"HTTP/1.1 400 "), (garbage, answer[:60])
        for method in (b"POST", b"PUT", b"DELETE", b"OPTIONS"):
            answer = await _get(node.port, method + b" /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 405 "), (method, answer[:60])
            assert b"\r\nAllow: GET, HEAD\r\n" in answer
        head = await _get(node.port, b"HEAD /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert head.endswith(b"\r\n\r\n")  # the headers, no body
        answer = await _get(node.port, b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b" 200 " in answer.split(b"\r\n", 1)[0]
        assert "Traceback" not in node.output
        assert '"level": "error"' not in node.output


async def test_one_host_cannot_hold_the_slots_of_everyone_else() -> None:
    async with connector_process(
        BTP_PEER_ALICE_SECRET=SECRET, CONNECTOR_MAX_PENDING_PER_HOST="4"
    ) as node:
        # Sockets that never finish their handshake: four are held, the fifth is dropped.
        idle = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(5)]
        (refused,) = await node.wait_for("btp_handshake_refused")
        assert refused["reason"] == "too many from host"
        for sock in idle:
            sock.close()
        # WebSockets that never authenticate: the same bound, one stage later.
        pending = [
            await connect(f"ws://127.0.0.1:{node.port}", open_timeout=GUARD) for _ in range(4)
        ]
        fifth = await connect(f"ws://127.0.0.1:{node.port}", open_timeout=GUARD)
        async with asyncio.timeout(GUARD):
            with contextlib.suppress(ConnectionClosed):
                await fifth.recv()
        assert fifth.close_code == 1013
        refusals = [r["reason"] for r in node.records("btp_connection_refused")]
        assert refusals == ["too many connections from your host waiting to authenticate"]
        for ws in pending:
            await ws.close()


async def test_open_mode_knows_a_peer_by_one_spelling_of_its_id() -> None:
    """Without a file any peer with a secret may connect; ``ALICE`` would find alice's secret
    (the variable name upper-cases the id) and become a second peer with its own routes."""
    async with connector_process(BTP_PEER_ALICE_SECRET=SECRET) as node:
        async with BtpClient.connect(node.port) as impostor:
            reply = await impostor.authenticate("ALICE", SECRET)
            assert isinstance(reply, frames.Error)
        async with BtpClient.connect(node.port) as alice:
            assert isinstance(await alice.authenticate("alice", SECRET), frames.Response)
