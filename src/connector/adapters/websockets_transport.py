"""The WebSocket transport, on the ``websockets`` asyncio server: whole binary messages in and out.

Thin on purpose: it moves messages between sockets and the core, maps ``ConnectionClosed`` to
``PeerDisconnected``, and lets ``websockets`` enforce the frame size limit (``max_size``), which
it checks from the frame header before reading the payload, closing with 1009.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.connection import Connection as WsConnection
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from connector.domain.errors import PeerDisconnected
from connector.domain.ports import ConnectionHandler, HttpHandler


def _format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


def _disconnected(exc: ConnectionClosed) -> PeerDisconnected:
    frame = exc.rcvd or exc.sent
    code = frame.code if frame is not None else 1006
    reason = frame.reason if frame is not None else "connection lost"
    return PeerDisconnected(code, reason)


class WebsocketsConnection:
    """One accepted WebSocket, as the core's ``Connection`` port."""

    __slots__ = ("_remote", "_ws")

    def __init__(self, ws: WsConnection) -> None:
        self._ws = ws
        self._remote = _format_address(ws.remote_address)

    @property
    def remote_address(self) -> str:
        return self._remote

    async def receive(self) -> bytes | str:
        try:
            return await self._ws.recv()
        except ConnectionClosed as exc:
            raise _disconnected(exc) from None

    async def send(self, data: bytes) -> None:
        try:
            await self._ws.send(data)
        except ConnectionClosed as exc:
            raise _disconnected(exc) from None

    async def close(self, code: int, reason: str) -> None:
        # websockets bounds this by close_timeout and never raises for an already closed socket.
        await self._ws.close(code, reason[:120])


@dataclass(frozen=True, slots=True)
class WebsocketOptions:
    """The limits and keepalive of every WebSocket, served or dialed."""

    max_frame_size: int
    open_timeout: float = 10.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    close_timeout: float = 5.0
    max_queue: int = 64

    def as_kwargs(self) -> dict[str, Any]:
        return {
            "max_size": self.max_frame_size,  # refused from the frame header, unread: 1009
            "open_timeout": self.open_timeout,
            "ping_interval": self.ping_interval,
            "ping_timeout": self.ping_timeout,
            "close_timeout": self.close_timeout,
            "max_queue": self.max_queue,
            "compression": None,  # BTP frames are small and mostly random: not worth the CPU
        }


class WebsocketsServerTransport:
    """Listens on ``host:port`` and hands every WebSocket connection to the handler."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_frame_size: int,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 5.0,
        max_queue: int = 64,
    ) -> None:
        self._host = host
        self._port = port
        self._options = WebsocketOptions(
            max_frame_size, open_timeout, ping_interval, ping_timeout, close_timeout, max_queue
        ).as_kwargs() | {"server_header": None}
        self._server: Server | None = None

    async def start(self, handler: ConnectionHandler, http: HttpHandler | None = None) -> None:
        async def on_connection(ws: ServerConnection) -> None:
            await handler(WebsocketsConnection(ws))

        def process_request(ws: ServerConnection, request: Request) -> Response | None:
            # websockets answers plain HTTP before the upgrade: health and metrics share the
            # BTP port, so a container exposes one port.
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return None
            result = http(request.path.split("?", 1)[0]) if http is not None else None
            if result is None:
                return ws.respond(HTTPStatus.NOT_FOUND, "not found\n")
            status, content_type, body = result
            response = ws.respond(HTTPStatus(status), body.decode("utf-8"))
            del response.headers["Content-Type"]  # Headers appends on set: replace, not add
            response.headers["Content-Type"] = content_type
            response.headers["Cache-Control"] = "no-store"
            return response

        self._server = await serve(
            on_connection, self._host, self._port, process_request=process_request, **self._options
        )

    async def stop_accepting(self) -> None:
        if self._server is not None:
            # Closes the listening socket only: open connections are the core's to close.
            self._server.close(close_connections=False)

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def address(self) -> str:
        if self._server is None:
            return f"{self._host}:{self._port}"
        sockets = list(self._server.sockets)
        return _format_address(sockets[0].getsockname()) if sockets else "closed"

    @property
    def port(self) -> int:
        """The bound port (useful with port 0 in tests)."""
        if self._server is None or not list(self._server.sockets):
            return self._port
        return int(next(iter(self._server.sockets)).getsockname()[1])


class WebsocketsDialer:
    """Dials ``ws://`` and ``wss://`` URLs (a ``btp+`` prefix is dropped, as ilp-plugin-btp does).

    Credentials never go in the URL: the link sends them in the BTP auth MESSAGE.
    """

    def __init__(
        self,
        *,
        max_frame_size: int,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 5.0,
        max_queue: int = 64,
    ) -> None:
        self._options = WebsocketOptions(
            max_frame_size, open_timeout, ping_interval, ping_timeout, close_timeout, max_queue
        ).as_kwargs() | {"user_agent_header": None}

    async def dial(self, url: str) -> WebsocketsConnection:
        target = url.removeprefix("btp+")
        ws = await connect(target, **self._options)
        return WebsocketsConnection(ws)
