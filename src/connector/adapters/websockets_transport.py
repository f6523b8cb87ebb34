"""The WebSocket transport: ``websockets``' sans-I/O protocol inside a plain ``asyncio.Protocol``.

Why not the ``websockets`` asyncio connection: it costs a task wake-up per received message and
a send context, a drain and a socket write per sent one. Here every read batch is handled
synchronously in ``data_received``: each whole message goes straight to the connection's handler,
and what handlers send (to this connection or any other) is written once per connection per
batch, by one ``call_soon`` for all of them. ``websockets`` still does the protocol: the opening
handshake, frame parsing and the frame size limit (checked from the header, unread: 1009),
masking, ping/pong and the closing handshake.

Every wait is bounded, by one periodic check per transport (not a timer per connection or per
message): the opening handshake (``open_timeout``), the closing handshake (``close_timeout``,
then the socket is aborted), keepalive (a ping every ``ping_interval``; no pong within
``ping_timeout`` closes 1011, and that close is bounded like any other), and a peer that stops
reading (congested for ``ping_timeout``: the socket is aborted, since no close frame would get
through).
Back-pressure: above ``write_high_water`` bytes buffered for a peer, the connection is
``congested`` and nothing more is read from that peer until the buffer drains.

TLS (``wss://``) on the server side is done here too, in memory (``_Tls``), not by the event
loop's own TLS transport: that one runs its handshake before the protocol even hears of the
connection, outside every bound above. Here the TLS handshake is part of the opening handshake:
the same slots, the same per-host limit, the same ``open_timeout``. A dialed ``wss://`` peer
uses the event loop's TLS (the dial is bounded by ``open_timeout`` as a whole).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, cast

from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import CLIENT, CLOSED, CONNECTING, OPEN, Protocol
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from connector.adapters.proxies import TrustedProxies
from connector.adapters.tls import client_context
from connector.domain.errors import PeerDisconnected

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a platform without websockets' C extension
    from websockets.utils import apply_mask
from connector.domain.ports import (
    AcceptHandler,
    ConnectionHandler,
    HttpHandler,
    LogSink,
    NullSink,
)

_BINARY, _TEXT, _CONT, _PONG = Opcode.BINARY, Opcode.TEXT, Opcode.CONT, Opcode.PONG
#: Sockets allowed over ``max_handshakes``, for one second each, to answer health probes.
_HEALTH_RESERVE = 64


def _host(remote: str) -> str:
    if remote.endswith("]"):
        return remote  # an IPv6 host without a port (a forwarded client)
    host, _, _ = remote.rpartition(":")
    return host or remote


def _format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


@dataclass(frozen=True, slots=True)
class WebsocketOptions:
    """The limits and keepalive of every WebSocket, served or dialed."""

    max_frame_size: int
    open_timeout: float = 10.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    close_timeout: float = 5.0
    #: Bytes buffered for a peer before it counts as not reading (and we stop reading it).
    write_high_water: int = 1 << 20
    #: Sockets still in the opening handshake, at most; and at most this many from one host, so
    #: that one host cannot take the slots of everyone else.
    max_handshakes: int = 1000
    max_handshakes_per_host: int = 32


class _Flusher:
    """Writes every connection that has data queued, once per event-loop iteration."""

    def __init__(self) -> None:
        self._dirty: list[WebSocket] = []

    def mark(self, ws: WebSocket) -> None:
        if not self._dirty:
            asyncio.get_running_loop().call_soon(self.flush)
        self._dirty.append(ws)

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for ws in dirty:
            ws._flush()


class _Registry:
    """The connections of one transport and the one periodic check that bounds their waits."""

    def __init__(self, options: WebsocketOptions, log: LogSink) -> None:
        self.options = options
        self.log = log
        self.flusher = _Flusher()
        self.connections: set[WebSocket] = set()
        self.handshakes = 0
        self.handshakes_by_host: dict[str, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._closed = asyncio.Event()
        self._closed.set()

    def add(self, ws: WebSocket) -> None:
        self.connections.add(ws)
        self._closed.clear()
        if self._timer is None:
            self._schedule()

    def remove(self, ws: WebSocket) -> None:
        self.connections.discard(ws)
        if not self.connections:
            self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._tick(), self._check)

    def _tick(self) -> float:
        o = self.options
        bounds = [o.open_timeout, o.close_timeout]
        if o.ping_interval:
            bounds.append(o.ping_interval)
        if o.ping_timeout:
            bounds.append(o.ping_timeout)
        return max(0.05, min(1.0, min(bounds) / 4))

    def _check(self) -> None:
        self._timer = None
        if not self.connections:
            return
        now = asyncio.get_running_loop().time()
        for ws in list(self.connections):
            ws._check(now)
        self._schedule()


class _TlsFailed(Exception):
    """The peer broke TLS (no TLS at all, a bad certificate, a corrupt record)."""


class _Tls:
    """Server-side TLS over the socket's bytes, in memory: ciphertext in, plaintext out, and
    back. Whatever OpenSSL wants to send (handshake records, tickets, alerts) is taken from
    ``outgoing`` right after every call, so records leave in the order they were made."""

    __slots__ = ("ended", "incoming", "obj", "open", "outgoing")

    def __init__(self, context: ssl.SSLContext) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.open = False
        self.ended = False  # the peer sent close_notify: nothing more comes from it

    def receive(self, data: bytes) -> tuple[bytes, bool]:
        """The plaintext ``data`` completes, and whether the peer ended TLS (close_notify).
        Raises ``_TlsFailed``."""
        self.incoming.write(data)
        obj = self.obj
        chunks = []
        ended = False
        try:
            if not self.open:
                obj.do_handshake()
                self.open = True
            while chunk := obj.read(65536):
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            ended = self.ended = True
        except ssl.SSLError as exc:
            raise _TlsFailed(exc.reason or type(exc).__name__) from None
        return b"".join(chunks), ended

    def encrypt(self, data: bytes) -> bytes:
        """``data`` as TLS records (after what is already pending); raises ``_TlsFailed``."""
        try:
            view = memoryview(data)
            while view:
                view = view[self.obj.write(view) :]
        except ssl.SSLError as exc:
            raise _TlsFailed(exc.reason or type(exc).__name__) from None
        return self.outgoing.read()

    def end(self) -> bytes:
        """Our close_notify; the peer's is not waited for (the socket closes next)."""
        with contextlib.suppress(ssl.SSLError):
            self.obj.unwrap()
        return self.outgoing.read()


class WebSocket(asyncio.Protocol):
    """One WebSocket connection, either side, as the core's ``Connection`` port."""

    def __init__(self, registry: _Registry, protocol: Protocol) -> None:
        self._registry = registry
        self._options = registry.options
        self.ws = protocol
        self._transport: asyncio.Transport | None = None
        self._handler: ConnectionHandler | None = None
        self._early: list[bytes | str] = []
        self._fragments: list[bytes] = []
        self._fragment_opcode: Opcode | None = None
        self._remote = "unknown"
        self._dirty = False
        self._congested_since: float | None = None
        self._reading_paused = False
        self._ping_sent: float | None = None
        self._last_ping = 0.0
        self._close_deadline: float | None = None
        self._late: list[bytes] | None = None  # answers written before a library-sent close
        self._closed_reported = False
        self._in_handshake = False
        self._host = ""
        self._responded = False
        self._http_only = False  # over the handshake limit: plain HTTP (health) only
        self._fast = False  # plain binary frames are parsed here, not by websockets
        self._clean_chunk = False
        self._partial = bytearray()  # the start of a frame _frames has not got whole yet
        self._opened_at = 0.0
        self._tls: _Tls | None = None  # server-side TLS, when the server has a certificate
        self.handshake_done: asyncio.Future[None] | None = None

    # --- the Connection port ----------------------------------------------------------------

    @property
    def remote_address(self) -> str:
        return self._remote

    @property
    def congested(self) -> bool:
        return self._congested_since is not None

    def start(self, handler: ConnectionHandler, *, max_message_size: int | None = None) -> None:
        self._handler = handler
        if max_message_size is not None:
            self.set_max_message_size(max_message_size)
        early, self._early = self._early, []
        for message in early:
            handler.on_message(message)
        self._update_reading()
        if self.ws.state is CLOSED and not self._closed_reported:
            self._report_closed()

    def set_max_message_size(self, size: int | None) -> None:
        limit = self._options.max_frame_size
        self.ws.max_message_size = limit if size is None else min(size, limit)

    def send(self, data: bytes) -> None:
        ws = self.ws
        if ws.state is OPEN:
            # What ws.send_binary(data) queues, serialized here: no extension is ever
            # negotiated (neither side offers one), so a binary frame is a header and the data.
            ws.writes.append(_binary_frame(data, ws.side is CLIENT))
            self._mark()
        elif self._late is not None:
            self._late.append(_binary_frame(data, ws.side is CLIENT))

    def close(self, code: int, reason: str) -> None:
        ws = self.ws
        if ws.state is OPEN:
            ws.send_close(code, reason[:120])
            self._mark()
        if self._close_deadline is None and self._transport is not None:
            self._start_close_deadline()
            if self.congested:  # the close frame cannot get through a full buffer
                self.abort()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._remote = _format_address(transport.get_extra_info("peername"))
        high = self._options.write_high_water
        transport.set_write_buffer_limits(high=high, low=high // 4)
        self._opened_at = self._last_ping = asyncio.get_running_loop().time()
        self._registry.add(self)
        if self.ws.state is CONNECTING:
            host = _host(self._remote)
            per_host = self._registry.handshakes_by_host
            # A trusted proxy is not one host but many clients: their own addresses are known
            # from the upgrade request on, and counted by the server from then on.
            if per_host.get(host, 0) >= self._options.max_handshakes_per_host and not (
                isinstance(self._registry, _ServerRegistry) and self._registry.proxies.trusts(host)
            ):
                self._registry.log.warning(
                    "btp_handshake_refused", remoteAddress=self._remote, reason="too many from host"
                )
                transport.abort()
                return
            per_host[host] = per_host.get(host, 0) + 1
            self._host = host
            self._in_handshake = True
            self._registry.handshakes += 1
            over = self._registry.handshakes - self._options.max_handshakes
            if over > 0:
                if over > _HEALTH_RESERVE:
                    self._registry.log.warning(
                        "btp_handshake_refused", remoteAddress=self._remote, reason="too many"
                    )
                    transport.abort()
                else:
                    # A few more, each for one second, answer plain HTTP only: a health probe
                    # still gets through while the handshake slots are full.
                    self._http_only = True
                    self._opened_at -= self._options.open_timeout - 1.0

    def data_received(self, data: bytes) -> None:
        if self._tls is not None:
            self._tls_received(self._tls, data)
        else:
            self._received(data)

    def _received(self, data: bytes) -> None:
        """Plaintext from the peer."""
        if self._fast:
            self._frames(data)
            return
        # A handshake that ends its read chunk leaves websockets' parser at a frame boundary
        # with nothing buffered: from then on plain data frames can be read here (_frames).
        # (the first blank line ends the chunk: no frame bytes came after the HTTP head)
        self._clean_chunk = data.find(b"\r\n\r\n") == len(data) - 4
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        """Bytes for websockets' own parser (the handshake, control frames, anything unusual)."""
        ws = self.ws
        was_open = ws.state is OPEN
        ws.receive_data(data)
        events = ws.events_received()
        if was_open and ws.state is not OPEN:
            self._start_close_deadline()
            if ws.close_sent is not None and ws.parser_exc is not None:
                # websockets failed the connection (an oversized message: 1009, bad framing:
                # 1002) and queued its close frame: answers still owed go out before it.
                pending = ws.data_to_send()
                self._late = []
                self._deliver(events)
                if self._handler is not None:
                    self._handler.on_closing(ws.close_sent.code, ws.close_sent.reason)
                late, self._late = self._late, None
                self._write([*late, *pending])
                return
            # The peer closed: nothing more can be sent, and the link must know at once.
            self._deliver(events)
            if self._handler is not None:
                self._handler.on_closing(*self._close_info())
            self._mark()
            return
        if events:
            self._deliver(events)
        if (
            not self._responded
            and ws.handshake_exc is not None
            and isinstance(ws, ServerProtocol)
            and ws.state is CONNECTING
        ):
            # A request websockets could not parse (a bad request line, a body): 400, not a
            # silent close.
            self._responded = True
            self._handshake_over()
            self._respond(ws.reject(HTTPStatus.BAD_REQUEST, "malformed HTTP request\n"))
        self._mark()

    def _start_close_deadline(self) -> None:
        """Every close, whoever began it, ends by the close timeout: then the socket is aborted."""
        if self._close_deadline is None and self._transport is not None:
            loop = asyncio.get_running_loop()
            self._close_deadline = loop.time() + self._options.close_timeout

    def _tls_received(self, tls: _Tls, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing() or tls.ended:
            return
        try:
            plain, ended = tls.receive(data)
        except _TlsFailed as exc:
            # Not TLS (a ws:// client, a scanner) or a TLS we refuse: its alert, then the close.
            self._registry.log.warning(
                "btp_tls_failed", remoteAddress=self._remote, reason=str(exc)
            )
            transport.write(tls.outgoing.read())
            transport.close()
            return
        pending = tls.outgoing.read()
        if pending:
            transport.write(pending)
        if plain:
            self._received(plain)
        if ended:
            # The peer's close_notify: its end of the stream, as a TCP end would be.
            self.eof_received()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        ws = self.ws
        self._handshake_over()
        ws.receive_eof()
        self._registry.remove(self)
        if self.handshake_done is not None and not self.handshake_done.done():
            self.handshake_done.set_exception(
                PeerDisconnected(1006, "connection lost during the handshake")
            )
        self._report_closed()

    def pause_writing(self) -> None:
        self._congested_since = asyncio.get_running_loop().time()
        self._update_reading()

    def resume_writing(self) -> None:
        self._congested_since = None
        self._update_reading()

    # --- internals ------------------------------------------------------------------------

    def _frames(self, data: bytes) -> None:
        """Read whole, plain binary frames (FIN, no RSV bits, masked as the side requires, within
        the size limit) straight from ``data``: websockets' generator-based parser costs more
        than the rest of a packet's decoding. Complete control frames go to websockets one at a
        time, so its parser always starts at a frame boundary; at anything else (a fragment, a
        text frame, an oversized or malformed header) the rest of the stream goes to websockets
        for good, and it applies its own checks (1009 from the header, 1002...)."""
        if self._partial:
            # Appending, not concatenating: a frame trickled in byte by byte costs linear time.
            self._partial += data
            buf: bytes | bytearray = self._partial
        else:
            buf = data
        ws = self.ws
        masked_expected = 0x80 if ws.side is not CLIENT else 0
        size = len(buf)
        pos = 0
        while size - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            length = second & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            mask = second & 0x80
            head += 4 if mask else 0
            limit = ws.max_message_size
            if first == 0x82 and mask == masked_expected and (limit is None or length <= limit):
                end = pos + head + length
                if end > size:
                    break  # wait for the rest of this frame
                payload = bytes(buf[pos + head : end])
                if mask:
                    payload = apply_mask(payload, buf[pos + head - 4 : pos + head])
                pos = end
                self._message(payload)
            elif first & 0x88 == 0x88 and not first & 0x70 and length <= 125:
                end = pos + head + length  # a whole control frame (FIN, opcode 8 and up)
                if end > size:
                    break
                self._feed(bytes(buf[pos:end]))
                pos = end
            else:
                self._fast = False
                break
            if ws.state is not OPEN:
                self._fast = False
                break
        if self._fast:
            if buf is self._partial:
                del self._partial[:pos]  # at most one frame's start is left to move
            elif pos < size:
                self._partial = bytearray(buf[pos:])
            self._mark()
        else:
            rest = bytes(buf[pos:])
            self._partial = bytearray()
            if rest:
                self._feed(rest)
            else:
                self._mark()

    def _deliver(self, events: list[Any]) -> None:
        for event in events:
            if type(event) is Frame:
                opcode = event.opcode
                if opcode is _BINARY or opcode is _TEXT:
                    if event.fin:
                        self._message(bytes(event.data) if opcode is _BINARY else _text(event))
                    else:
                        self._fragment_opcode = opcode
                        self._fragments = [bytes(event.data)]
                elif opcode is _CONT:
                    # websockets bounds the whole message by max_message_size.
                    self._fragments.append(bytes(event.data))
                    if event.fin:
                        data = b"".join(self._fragments)
                        self._fragments = []
                        binary = self._fragment_opcode is _BINARY
                        self._message(data if binary else data.decode("utf-8", "replace"))
                elif opcode is _PONG:
                    self._ping_sent = None
            elif isinstance(event, Request):
                self._handshake_request(event)
            elif isinstance(event, Response):
                self._handshake_response()

    def _message(self, data: bytes | str) -> None:
        handler = self._handler
        if handler is not None:
            handler.on_message(data)
        else:
            self._early.append(data)
            self._update_reading()  # nothing more until the handler is there

    def _handshake_request(self, request: Request) -> None:
        ws = self.ws
        assert isinstance(ws, ServerProtocol)
        server = self._registry
        assert isinstance(server, _ServerRegistry)
        if self._responded:
            return  # another request pipelined behind the first: the connection is ending
        self._responded = True
        self._handshake_over()
        upgrade = request.headers.get_all("Upgrade")
        if request.method not in ("GET", "HEAD"):
            response = ws.reject(HTTPStatus.METHOD_NOT_ALLOWED, "GET or HEAD only\n")
            response.headers["Allow"] = "GET, HEAD"
            self._respond(response)
        elif len(upgrade) > 1:
            self._respond(ws.reject(HTTPStatus.BAD_REQUEST, "one Upgrade header, please\n"))
        elif not upgrade or upgrade[0].lower() != "websocket" or request.method == "HEAD":
            # Plain HTTP before any upgrade: health and metrics share the BTP port (HEAD: the
            # same answer without its body).
            response = server.http_response(ws, request)
            if request.method == "HEAD":
                response = Response(
                    response.status_code, response.reason_phrase, response.headers, b""
                )
            self._respond(response)
        elif self._http_only:
            # Over the handshake limit: kept only to answer health probes, not to upgrade.
            self._respond(ws.reject(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n"))
        elif ws.eof_sent:
            # websockets already ended the stream: what followed the request was not a frame.
            self._respond(ws.reject(HTTPStatus.BAD_REQUEST, "bytes after the request\n"))
        else:
            response = ws.accept(request)
            self._respond(response)
            if response.status_code == 101:
                self._fast = self._clean_chunk
                if server.proxies:
                    client = server.proxies.forwarded_host(
                        _host(self._remote), request.headers.get_all("X-Forwarded-For")
                    )
                    self._remote = client or self._remote
                server.accept(self)

    def _respond(self, response: Response) -> None:
        ws = self.ws
        assert isinstance(ws, ServerProtocol)
        if ws.eof_sent:
            # The stream is already ended (a second request, or garbage, after this one): the
            # answer goes before that end, then the connection closes.
            writes = ws.writes
            writes.insert(len(writes) - 1 if writes and not writes[-1] else len(writes),
                          response.serialize())  # fmt: skip
        else:
            ws.send_response(response)
        self._mark()

    def _handshake_response(self) -> None:
        ws = self.ws
        self._handshake_over()
        done = self.handshake_done
        if done is not None and not done.done():
            if ws.handshake_exc is not None:
                done.set_exception(ws.handshake_exc)
            else:
                self._fast = self._clean_chunk
                done.set_result(None)

    def _handshake_over(self) -> None:
        if self._in_handshake:
            self._in_handshake = False
            self._registry.handshakes -= 1
            per_host = self._registry.handshakes_by_host
            left = per_host.get(self._host, 1) - 1
            if left > 0:
                per_host[self._host] = left
            else:
                per_host.pop(self._host, None)

    def _mark(self) -> None:
        if not self._dirty:
            self._dirty = True
            self._registry.flusher.mark(self)

    def _flush(self) -> None:
        self._dirty = False
        self._write(self.ws.data_to_send())

    def _write(self, chunks: list[bytes]) -> None:
        transport = self._transport
        if transport is None or not chunks or transport.is_closing():
            return
        eof = not chunks[-1]
        data = b"".join(chunks)
        tls = self._tls
        if tls is not None:
            try:
                data = tls.encrypt(data) if data else b""
                if eof:
                    data += tls.end()
            except _TlsFailed:
                transport.abort()
                return
        if data:
            transport.write(data)
        if eof:
            # The closing handshake is done on our side: half-close, or close.
            if transport.can_write_eof():
                with contextlib.suppress(Exception):  # uvloop may raise RuntimeError
                    transport.write_eof()
            else:
                transport.close()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        pause = self.congested or (self._handler is None and bool(self._early))
        if pause and not self._reading_paused:
            transport.pause_reading()
            self._reading_paused = True
        elif not pause and self._reading_paused:
            transport.resume_reading()
            self._reading_paused = False

    def _check(self, now: float) -> None:
        """The bounds of every wait, checked periodically by the registry."""
        transport = self._transport
        if transport is None:
            return
        o = self._options
        state = self.ws.state
        if state is CONNECTING:
            if now - self._opened_at > o.open_timeout:
                self._registry.log.warning(
                    "btp_handshake_timeout", remoteAddress=self._remote, seconds=o.open_timeout
                )
                transport.abort()
            return
        if state is not OPEN:
            self._start_close_deadline()  # a close websockets began itself is bounded too
        if self._close_deadline is not None and now > self._close_deadline:
            transport.abort()
            return
        timeout = o.ping_timeout
        if timeout is not None and self._congested_since is not None:
            if now - self._congested_since > timeout:
                self._registry.log.warning(
                    "btp_peer_not_reading", remoteAddress=self._remote, seconds=timeout
                )
                transport.abort()
            return
        if state is not OPEN or not o.ping_interval:
            return
        if self._ping_sent is not None:
            if timeout is not None and now - self._ping_sent > timeout:
                if self._handler is not None:  # answers still owed go before the close
                    self._handler.on_closing(1011, "keepalive ping timeout")
                self.close(1011, "keepalive ping timeout")
                # A peer that does not answer pings will not answer the close either: write
                # what is queued and drop it now rather than after the close timeout.
                self._flush()
                transport.close()
            return
        if now - self._last_ping >= o.ping_interval:
            self._last_ping = self._ping_sent = now
            self.ws.send_ping(b"")
            self._mark()

    def _report_closed(self) -> None:
        if self._closed_reported or self._handler is None:
            return
        self._closed_reported = True
        self._handler.on_closed(*self._close_info())

    def _close_info(self) -> tuple[int, str]:
        """The close code and reason: the peer's close frame, else ours, else 1006."""
        frame = self.ws.close_rcvd or self.ws.close_sent
        return (1006, "connection lost") if frame is None else (frame.code, frame.reason)


def _binary_frame(data: bytes, mask: bool) -> bytes:
    """One unfragmented binary frame (RFC 6455 §5.2); a client masks its frames (§5.3)."""
    size = len(data)
    bit = 0x80 if mask else 0
    if size < 126:
        header = bytes((0x82, bit | size))
    elif size < 0x10000:
        header = bytes((0x82, bit | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x82, bit | 127)) + size.to_bytes(8, "big")
    if not mask:
        return header + data
    key = secrets.token_bytes(4)
    return header + key + apply_mask(data, key)


def _text(frame: Frame) -> str:
    return bytes(frame.data).decode("utf-8", "replace")


class _ServerRegistry(_Registry):
    def __init__(
        self,
        options: WebsocketOptions,
        log: LogSink,
        accept: AcceptHandler,
        http: HttpHandler | None,
        proxies: TrustedProxies,
    ) -> None:
        super().__init__(options, log)
        self.accept = accept
        self.http = http
        self.proxies = proxies

    def http_response(self, ws: ServerProtocol, request: Request) -> Response:
        result = self.http(request.path.split("?", 1)[0]) if self.http is not None else None
        if result is None:
            return ws.reject(HTTPStatus.NOT_FOUND, "not found\n")
        status, content_type, body = result
        response = ws.reject(HTTPStatus(status), "")
        headers = Headers(
            [
                ("Date", response.headers["Date"]),
                ("Connection", "close"),
                ("Content-Length", str(len(body))),
                ("Content-Type", content_type),
                ("Cache-Control", "no-store"),
            ]
        )
        return Response(response.status_code, response.reason_phrase, headers, body)


class WebsocketsServerTransport:
    """Listens on ``host:port`` and hands every WebSocket connection to ``accept``."""

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
        write_high_water: int = 1 << 20,
        max_handshakes: int = 1000,
        max_handshakes_per_host: int = 32,
        log: LogSink | None = None,
        tls: ssl.SSLContext | None = None,
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        self._host = host
        self._tls = tls
        self._proxies = TrustedProxies(trusted_proxies)
        self._port = port
        self._options = WebsocketOptions(
            max_frame_size,
            open_timeout,
            ping_interval,
            ping_timeout,
            close_timeout,
            write_high_water,
            max_handshakes,
            max_handshakes_per_host,
        )
        self._log = log or NullSink()
        self._server: asyncio.Server | None = None
        self._registry: _ServerRegistry | None = None

    async def start(self, accept: AcceptHandler, http: HttpHandler | None = None) -> None:
        registry = _ServerRegistry(self._options, self._log, accept, http, self._proxies)
        self._registry = registry
        logger = logging.getLogger("websockets.server")
        max_size = self._options.max_frame_size
        tls = self._tls

        def factory() -> WebSocket:
            ws = WebSocket(registry, ServerProtocol(max_size=max_size, logger=logger))
            if tls is not None:
                ws._tls = _Tls(tls)
            return ws

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(factory, self._host, self._port)

    async def stop_accepting(self) -> None:
        if self._server is not None:
            # Closes the listening socket only: open connections are the core's to close.
            self._server.close()

    async def wait_closed(self) -> None:
        if self._registry is not None:
            await self._registry.wait_closed()

    @property
    def tls(self) -> bool:
        """Whether this server speaks TLS (``wss://``, and HTTPS for health and metrics)."""
        return self._tls is not None

    @property
    def connections(self) -> int:
        """Open sockets, in the handshake or after it."""
        return len(self._registry.connections) if self._registry is not None else 0

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

    Credentials never go in the URL: the link sends them in the BTP auth MESSAGE. A ``wss://``
    peer's certificate must chain to the system's trust store, or, for a URL in ``ca_files``, to
    that file's CAs (built at construction: a bad file stops start-up).
    """

    def __init__(
        self,
        *,
        max_frame_size: int,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 5.0,
        write_high_water: int = 1 << 20,
        log: LogSink | None = None,
        ca_files: Mapping[str, Path] | None = None,
    ) -> None:
        self._options = WebsocketOptions(
            max_frame_size,
            open_timeout,
            ping_interval,
            ping_timeout,
            close_timeout,
            write_high_water,
        )
        self._log = log or NullSink()
        self._registry: _Registry | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}
        self.trust(ca_files or {})
        self._default_context: ssl.SSLContext | None = None

    def trust(self, ca_files: Mapping[str, Path]) -> None:
        """The CA file of each ``wss://`` URL that has one (again on a reload: from the next
        dial on)."""
        self._contexts = {
            url: client_context(path, key=f"tls_ca_file of {url}") for url, path in ca_files.items()
        }

    async def dial(self, url: str) -> WebSocket:
        if self._registry is None:
            self._registry = _Registry(self._options, self._log)
        registry = self._registry
        uri = parse_uri(url.removeprefix("btp+"))
        protocol = ClientProtocol(
            uri,
            max_size=self._options.max_frame_size,
            logger=logging.getLogger("websockets.client"),
        )
        loop = asyncio.get_running_loop()
        context = self._context(url) if uri.secure else None
        ws = WebSocket(registry, protocol)
        ws.handshake_done = loop.create_future()
        async with asyncio.timeout(self._options.open_timeout):
            await loop.create_connection(
                lambda: ws,
                uri.host,
                uri.port,
                ssl=context,
                server_hostname=uri.host if context else None,
            )
            try:
                protocol.send_request(protocol.connect())
                ws._mark()
                await ws.handshake_done
            except BaseException:
                ws.abort()
                raise
        return ws

    def _context(self, url: str) -> ssl.SSLContext:
        context = self._contexts.get(url)
        if context is None:
            if self._default_context is None:
                self._default_context = client_context()
            context = self._default_context
        return context

    async def wait_closed(self) -> None:
        if self._registry is not None:
            await self._registry.wait_closed()
