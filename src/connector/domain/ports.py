"""The ports of the core, each declared by the code that uses it (typing.Protocol).

Adapters implement them: ``adapters.websockets_transport`` and ``adapters.memory_transport`` the
transport (``Connection``, ``ServerTransport``, ``Dialer``), ``adapters.env_secret_store`` the
secret store, ``adapters.structlog_sink`` the log sink, ``adapters.clock`` the clock. Tests use
small fakes of the same ports.

The transport is push-style: a connection delivers each whole message to its
``ConnectionHandler`` as it arrives (``on_message``) and tells it once when it is gone
(``on_closed``); ``send`` is synchronous and buffered. Nothing per message costs a task, a future
or a timer. Back-pressure is explicit: ``congested`` says the peer is not reading what we send,
and while it holds the transport stops reading from that peer.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from connector.domain.secret import Secret


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Time, injected so that nothing in the core reads a clock of its own."""

    def now(self) -> datetime:
        """The current UTC time (timezone-aware), for expiries and timestamps."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for durations (latency metrics)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        """A scope that raises ``TimeoutError`` on exit when it ran longer than ``seconds``."""
        ...

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback`` after ``seconds`` unless cancelled."""
        ...


class SecretStore(Protocol):
    """Where each peer's shared secret comes from. Asked at each use (an auth attempt, a dial),
    so a secret rotated at its source takes effect without a restart."""

    def secret_for(self, peer_id: str) -> Secret | None:
        """The secret we present when we dial the peer, or ``None`` when there is none."""
        ...

    def accepted(self, peer_id: str) -> tuple[Secret, ...]:
        """Every secret the peer may present to us (at most two: the current one and, during a
        rotation, the previous one); empty when the peer has none."""
        ...

    def missing_reason(self, peer_id: str) -> str:
        """Why ``secret_for`` gave ``None``, for an error or a log line: it names where the
        secret should come from, never any of its content."""
        ...

    def peer_ids(self) -> list[str]:
        """Every peer id with a secret, sorted, each in the one spelling that finds it: with no
        configuration file, these are the peers that may connect."""
        ...


class LogSink(Protocol):
    """Structured logging: stable event names with key/value fields."""

    def bind(self, **fields: Any) -> LogSink: ...

    def debug(self, event: str, **fields: Any) -> None: ...

    def info(self, event: str, **fields: Any) -> None: ...

    def warning(self, event: str, **fields: Any) -> None: ...

    def error(self, event: str, **fields: Any) -> None: ...


class NullSink:
    """The default sink: drops everything (h2's DummyLogger, websockets' logger=None)."""

    def bind(self, **fields: Any) -> NullSink:
        return self

    def debug(self, event: str, **fields: Any) -> None:
        pass

    info = warning = error = debug


# --- transport ----------------------------------------------------------------------------------


class ConnectionHandler(Protocol):
    """What a connection pushes to: implemented by the link that owns the connection."""

    def on_message(self, data: bytes | str) -> None:
        """One whole message from the peer (``str`` for a text frame)."""
        ...

    def on_closing(self, code: int, reason: str) -> None:
        """The transport is about to send a close frame it decided on itself (an oversized
        message: 1009): the last moment to ``send`` answers still owed to the peer."""
        ...

    def on_closed(self, code: int, reason: str) -> None:
        """The connection is gone (called exactly once); ``send`` does nothing from now on."""
        ...


class Connection(Protocol):
    """One open connection, whatever carries it: whole binary messages in and out."""

    @property
    def remote_address(self) -> str:
        """``host:port`` of the peer, for logs and auth throttling."""
        ...

    @property
    def congested(self) -> bool:
        """More than the high-water mark is buffered for a peer that is not reading it. While
        this holds the transport reads nothing more from the peer; new requests of ours to it
        should be refused instead of buffered."""
        ...

    def start(self, handler: ConnectionHandler, *, max_message_size: int | None = None) -> None:
        """Begin delivering messages to ``handler``. ``max_message_size`` changes the largest
        message accepted from now on (a small one until the peer has authenticated)."""
        ...

    def set_max_message_size(self, size: int | None) -> None:
        """The largest message accepted from now on; ``None``: the transport's own limit."""
        ...

    def send(self, data: bytes) -> None:
        """Queue one binary message; it goes out with the next write batch. Does nothing once
        the connection is closing."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then a close frame; ``on_closed`` follows (bounded: the socket is
        aborted if the peer does not complete the close in time)."""
        ...

    def abort(self) -> None:
        """Drop the connection at once, unsent data included; ``on_closed`` follows (1006)."""
        ...


#: A plain HTTP GET on the transport's port: path -> (status, content type, body), or None
#: when the path is not served.
HttpHandler = Callable[[str], "tuple[int, str, bytes] | None"]
#: Called with each connection once its WebSocket handshake completed; must call ``start``.
AcceptHandler = Callable[[Connection], None]


class ServerTransport(Protocol):
    """Accepts connections and hands each to ``accept``, until stopped."""

    async def start(self, accept: AcceptHandler, http: HttpHandler | None = None) -> None:
        """Begin accepting; returns once listening. ``http`` answers plain HTTP GETs."""
        ...

    async def stop_accepting(self) -> None:
        """Refuse new connections; connections already accepted stay open."""
        ...

    async def wait_closed(self) -> None:
        """Return once every connection this transport accepted is closed."""
        ...

    @property
    def address(self) -> str:
        """Where it listens, e.g. ``127.0.0.1:3000``."""
        ...

    @property
    def tls(self) -> bool:
        """Whether connections are TLS (``wss://``)."""
        ...


class Dialer(Protocol):
    """Opens outgoing connections (the client side of a transport)."""

    async def dial(self, url: str) -> Connection:
        """Connect to ``url`` (handshake done); raises ``OSError`` or ``TransportError``."""
        ...
