"""An in-memory transport: two connection ends joined in process, push-style like the WebSocket
transport, so the same contract tests pass on both.

What the core can tell, it behaves alike: whole messages, delivered in order on a later turn of
the event loop (never re-entrantly inside ``send``); a close is delivered after the messages
queued before it; a message above the receiver's size limit closes both ends with 1009 after the
receiver's ``on_closing``; bytes queued for an end that is not reading count against the sender's
high-water mark (``congested``), and a congested end stops delivering to its own handler.

A test peer uses an end without a handler: ``await receive()`` pulls its messages.

For fault-injection tests, a ``MemoryNetwork`` may carry ``faults`` (a ``LinkFaults``): every
message on a dialed connection is then delivered as it plans (late, twice, or out of order);
closes and the 1009 refusal are never delayed.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from typing import Protocol

from connector.domain.errors import PeerDisconnected
from connector.domain.ports import AcceptHandler, ConnectionHandler, HttpHandler


class LinkFaults(Protocol):
    """What a faulty network does with one message: ``plan`` gives a delay (seconds) for each
    copy delivered (one: late; two: duplicated; different delays reorder); ``later`` runs a
    callback after a delay (the test's clock)."""

    def plan(self, data: bytes | str) -> list[float]: ...

    def later(self, seconds: float, callback: Callable[[], None]) -> object: ...


MESSAGE_TOO_BIG = 1009
_TOO_BIG = (MESSAGE_TOO_BIG, "message too big", "refused unread")
#: Messages delivered to one end per turn of the event loop, as one socket read would.
_BATCH = 64


class MemoryConnection:
    """One end of an in-memory connection, as the core's ``Connection`` port."""

    def __init__(self, remote_address: str, *, max_size: int, high_water: int = 1 << 20) -> None:
        self._remote = remote_address
        self.max_size = self._limit = max_size
        self._high_water = high_water
        self._inbox: deque[bytes | str | tuple[int, str] | tuple[int, str, str]] = deque()
        self._queued = 0  # bytes in our inbox: the far end's write buffer
        self._handler: ConnectionHandler | None = None
        self._scheduled = False
        self._changed = asyncio.Event()
        self._closing = False
        self._closed: tuple[int, str] | None = None
        self.peer: MemoryConnection | None = None
        #: Set on both ends of a dialed connection when the network is faulty.
        self.faults: LinkFaults | None = None

    # --- the Connection port ----------------------------------------------------------------

    @property
    def remote_address(self) -> str:
        return self._remote

    @property
    def congested(self) -> bool:
        peer = self.peer
        return peer is not None and peer._queued > self._high_water

    @property
    def close_info(self) -> tuple[int, str] | None:
        """``(code, reason)`` once closed, as the far end sent it (or 1006)."""
        return self._closed

    def start(self, handler: ConnectionHandler, *, max_message_size: int | None = None) -> None:
        self._handler = handler
        if max_message_size is not None:
            self.set_max_message_size(max_message_size)
        self._schedule()
        if self._closed is not None:
            handler.on_closed(*self._closed)

    def set_max_message_size(self, size: int | None) -> None:
        self.max_size = self._limit if size is None else min(size, self._limit)

    def send(self, data: bytes | str) -> None:
        peer = self.peer
        if self._closing or self._closed is not None or peer is None:
            return
        if len(data) > peer.max_size:
            # As a WebSocket peer would, in order: what came before is delivered, then this is
            # refused unread (1009), after the receiver's last answers.
            peer._inbox.append(_TOO_BIG)
            peer._arrived()
            return
        faults = self.faults
        if faults is not None:
            for delay in faults.plan(data):
                if delay <= 0:
                    self._deliver(data)
                else:
                    faults.later(delay, lambda: self._deliver(data))
            return
        self._deliver(data)

    def _deliver(self, data: bytes | str) -> None:
        peer = self.peer
        if peer is None or peer._closed is not None or self._closed is not None:
            return  # gone meanwhile: a late message dies with its connection
        peer._inbox.append(data)
        peer._queued += len(data)
        peer._arrived()

    def close(self, code: int = 1000, reason: str = "") -> None:
        peer = self.peer
        if self._closing or self._closed is not None:
            return
        self._closing = True
        if peer is None:
            self._gone(code, reason)
            return
        peer._inbox.append((code, reason))
        peer._arrived()
        if peer._handler is None:
            # A test peer: its WebSocket library would complete the closing handshake at once.
            self._gone(code, reason)

    def abort(self) -> None:
        for end in (self, self.peer):
            if end is not None:
                end._gone(1006, "connection lost")

    # --- the test side: pull when there is no handler ----------------------------------------

    async def receive(self) -> bytes | str:
        """The next message (test peers only). Raises ``PeerDisconnected`` once closed."""
        while True:
            if self._inbox:
                item = self._inbox.popleft()
                if isinstance(item, tuple):
                    self._closed_by_far_end(item[0], item[1])
                    raise PeerDisconnected(item[0], item[1])
                self._queued -= len(item)
                return item
            if self._closed is not None:
                raise PeerDisconnected(*self._closed)
            self._changed.clear()
            await self._changed.wait()

    # --- internals ------------------------------------------------------------------------

    def _arrived(self) -> None:
        self._changed.set()
        self._schedule()

    def _schedule(self) -> None:
        if self._handler is not None and not self._scheduled and self._inbox:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        handler = self._handler
        budget = _BATCH
        while self._inbox and handler is not None and self._closed is None:
            if not budget:
                # Like one socket read: the rest waits for a later turn, after other ends.
                self._schedule()
                return
            budget -= 1
            if self.congested:
                # Like a socket we stopped reading: the rest waits until we can write again.
                asyncio.get_running_loop().call_later(0.001, self._schedule)
                return
            item = self._inbox.popleft()
            if item is _TOO_BIG:
                self._inbox.clear()  # discarded unread, as a failed WebSocket does
                self._queued = 0
                self._too_big()
                return
            if isinstance(item, tuple):
                self._closed_by_far_end(item[0], item[1])
                return
            self._queued -= len(item)
            handler.on_message(item)

    def _closed_by_far_end(self, code: int, reason: str) -> None:
        peer = self.peer
        self._gone(code, reason)
        if peer is not None:
            peer._gone(code, reason)

    def _too_big(self) -> None:
        if self._handler is not None and self._closed is None:
            self._handler.on_closing(MESSAGE_TOO_BIG, "message too big")
        # What the receiver queued before the close still reaches the sender.
        self._closing = True
        peer = self.peer
        if peer is not None:
            peer._inbox.append((MESSAGE_TOO_BIG, "message too big"))
            peer._arrived()
        self._gone(MESSAGE_TOO_BIG, "message too big")

    def _gone(self, code: int, reason: str) -> None:
        if self._closed is not None:
            return
        self._closed = (code, reason)
        self._closing = True
        self._changed.set()
        if self._handler is not None:
            self._handler.on_closed(code, reason)


def connection_pair(
    client_address: str = "127.0.0.1:50000",
    server_address: str = "127.0.0.1:3000",
    *,
    max_size: int = 1 << 20,
    high_water: int = 1 << 20,
) -> tuple[MemoryConnection, MemoryConnection]:
    """Two joined ends: ``(client, server)``. Each end's remote_address names the other."""
    client = MemoryConnection(server_address, max_size=max_size, high_water=high_water)
    server = MemoryConnection(client_address, max_size=max_size, high_water=high_water)
    client.peer, server.peer = server, client
    return client, server


class MemoryServerTransport:
    """A server transport that tests dial with ``connect()`` instead of a socket."""

    def __init__(self, *, max_frame_size: int = 1 << 20, high_water: int = 1 << 20) -> None:
        self._max_size = max_frame_size
        self._high_water = high_water
        self._accept: AcceptHandler | None = None
        self._http: HttpHandler | None = None
        self._accepting = False
        self._ends: list[MemoryConnection] = []
        self._ports = itertools.count(50000)

    async def start(self, accept: AcceptHandler, http: HttpHandler | None = None) -> None:
        self._accept = accept
        self._http = http
        self._accepting = True

    def get(self, path: str) -> tuple[int, str, bytes]:
        """A plain HTTP GET, as the WebSocket transport would answer it."""
        result = self._http(path) if self._http is not None else None
        return result or (404, "text/plain", b"not found\n")

    async def connect(self, host: str = "127.0.0.1") -> MemoryConnection:
        """Dial the server; returns the client end once the server has accepted the other."""
        if not self._accepting or self._accept is None:
            raise ConnectionRefusedError("memory transport is not accepting connections")
        client, server = connection_pair(
            f"{host}:{next(self._ports)}",
            "memory:0",
            max_size=self._max_size,
            high_water=self._high_water,
        )
        self._ends = [end for end in self._ends if end.close_info is None]
        self._ends.append(server)
        self._accept(server)
        return client

    async def stop_accepting(self) -> None:
        self._accepting = False

    async def wait_closed(self) -> None:
        # Polling, bounded by the caller: memory ends have no event to wait on together.
        while any(end.close_info is None for end in self._ends):  # noqa: ASYNC110
            await asyncio.sleep(0.001)

    @property
    def address(self) -> str:
        return "memory:0"

    @property
    def tls(self) -> bool:
        return False


class MemoryNetwork:
    """In-process "addresses": URLs mapped to memory server transports, for a ``MemoryDialer``."""

    def __init__(self) -> None:
        self.servers: dict[str, MemoryServerTransport] = {}

    def listen(self, url: str, transport: MemoryServerTransport) -> None:
        self.servers[url] = transport

    #: A faulty network for the connections dialed on it (tests only).
    faults: LinkFaults | None = None


class MemoryDialer:
    def __init__(self, network: MemoryNetwork, host: str = "127.0.0.1") -> None:
        self._network = network
        self._host = host

    async def dial(self, url: str) -> MemoryConnection:
        server = self._network.servers.get(url.removeprefix("btp+"))
        if server is None:
            raise ConnectionRefusedError(f"nothing listens at {url}")
        conn = await server.connect(self._host)
        faults = self._network.faults
        if faults is not None and conn.peer is not None:
            conn.faults = conn.peer.faults = faults
        return conn
