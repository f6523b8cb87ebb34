"""An in-memory transport: two connection ends joined by bounded in-process pipes.

It behaves like the WebSocket transport where the core can tell (whole messages, close codes,
messages queued before a close are still delivered, the frame size limit closes with 1009,
a full pipe makes the sender wait), so the same contract tests pass on both.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque

from connector.domain.errors import PeerDisconnected
from connector.domain.ports import ConnectionHandler, HttpHandler

MESSAGE_TOO_BIG = 1009


class MemoryConnection:
    """One end of an in-memory connection, as the core's ``Connection`` port."""

    def __init__(self, remote_address: str, *, max_size: int, max_queue: int) -> None:
        self._remote = remote_address
        self._max_size = max_size
        self._max_queue = max_queue
        self._inbox: deque[bytes | str] = deque()
        self._changed = asyncio.Event()
        self._closed: tuple[int, str] | None = None
        self.peer: MemoryConnection | None = None

    @property
    def remote_address(self) -> str:
        return self._remote

    @property
    def close_info(self) -> tuple[int, str] | None:
        """``(code, reason)`` once closed, as the far end sent it (or 1006)."""
        return self._closed

    async def receive(self) -> bytes | str:
        while not self._inbox and self._closed is None:
            self._changed.clear()
            await self._changed.wait()
        if self._inbox:
            data = self._inbox.popleft()
            if self.peer is not None:
                self.peer._changed.set()  # room in our inbox: wake a waiting sender
            return data
        assert self._closed is not None
        raise PeerDisconnected(*self._closed)

    async def send(self, data: bytes | str) -> None:
        peer = self.peer
        if self._closed is not None or peer is None:
            raise PeerDisconnected(*(self._closed or (1006, "")))
        if len(data) > peer._max_size:
            # As a WebSocket server would: the receiver refuses it unread and closes with 1009.
            self._close_both(MESSAGE_TOO_BIG, "message too big")
            return
        while len(peer._inbox) >= peer._max_queue and self._closed is None:
            self._changed.clear()
            await self._changed.wait()
        if self._closed is not None:
            raise PeerDisconnected(*self._closed)
        peer._inbox.append(data)
        peer._changed.set()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self._close_both(code, reason)
        await asyncio.sleep(0)

    def _close_both(self, code: int, reason: str) -> None:
        for end in (self, self.peer):
            if end is not None and end._closed is None:
                end._closed = (code, reason)
                end._changed.set()


def connection_pair(
    client_address: str = "127.0.0.1:50000",
    server_address: str = "127.0.0.1:3000",
    *,
    max_size: int = 1 << 20,
    max_queue: int = 64,
) -> tuple[MemoryConnection, MemoryConnection]:
    """Two joined ends: ``(client, server)``. Each end's remote_address names the other."""
    client = MemoryConnection(server_address, max_size=max_size, max_queue=max_queue)
    server = MemoryConnection(client_address, max_size=max_size, max_queue=max_queue)
    client.peer, server.peer = server, client
    return client, server


class MemoryServerTransport:
    """A server transport that tests dial with ``connect()`` instead of a socket."""

    def __init__(self, *, max_frame_size: int = 1 << 20, max_queue: int = 64) -> None:
        self._max_size = max_frame_size
        self._max_queue = max_queue
        self._handler: ConnectionHandler | None = None
        self._http: HttpHandler | None = None
        self._accepting = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._ports = itertools.count(50000)

    async def start(self, handler: ConnectionHandler, http: HttpHandler | None = None) -> None:
        self._handler = handler
        self._http = http
        self._accepting = True

    def get(self, path: str) -> tuple[int, str, bytes]:
        """A plain HTTP GET, as the WebSocket transport would answer it."""
        result = self._http(path) if self._http is not None else None
        return result or (404, "text/plain", b"not found\n")

    async def connect(self, host: str = "127.0.0.1") -> MemoryConnection:
        """Dial the server; returns the client end once the server is handling the other."""
        if not self._accepting or self._handler is None:
            raise ConnectionRefusedError("memory transport is not accepting connections")
        client, server = connection_pair(
            f"{host}:{next(self._ports)}",
            "memory:0",
            max_size=self._max_size,
            max_queue=self._max_queue,
        )
        task = asyncio.create_task(self._handler(server))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return client

    async def stop_accepting(self) -> None:
        self._accepting = False

    async def wait_closed(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    @property
    def address(self) -> str:
        return "memory:0"


class MemoryNetwork:
    """In-process "addresses": URLs mapped to memory server transports, for a ``MemoryDialer``."""

    def __init__(self) -> None:
        self.servers: dict[str, MemoryServerTransport] = {}

    def listen(self, url: str, transport: MemoryServerTransport) -> None:
        self.servers[url] = transport


class MemoryDialer:
    def __init__(self, network: MemoryNetwork, host: str = "127.0.0.1") -> None:
        self._network = network
        self._host = host

    async def dial(self, url: str) -> MemoryConnection:
        server = self._network.servers.get(url.removeprefix("btp+"))
        if server is None:
            raise ConnectionRefusedError(f"nothing listens at {url}")
        return await server.connect(self._host)
