"""The ports of the core, each declared by the code that uses it (typing.Protocol).

Adapters implement them: ``adapters.websockets_transport`` and ``adapters.memory_transport`` the
transport, ``adapters.env_secret_store`` the secret store, ``adapters.structlog_sink`` the log
sink, ``adapters.clock`` the clock. Tests use small fakes of the same ports.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from connector.domain.ilp.packets import Prepare, Reply
from connector.domain.secret import Secret


class Clock(Protocol):
    """Time, injected so that nothing in the core reads a clock of its own."""

    def now(self) -> datetime:
        """The current UTC time (timezone-aware), for expiries and timestamps."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        """A scope that raises ``TimeoutError`` on exit when it ran longer than ``seconds``."""
        ...

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback`` after ``seconds`` unless cancelled: a timer cheaper than a scope."""
        ...


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class SecretStore(Protocol):
    """Where each peer's shared secret comes from."""

    def secret_for(self, peer_id: str) -> Secret | None:
        """The peer's secret, or ``None`` when the peer is unknown."""
        ...


class PacketProcessor(Protocol):
    """Turns an ILP Prepare from a peer into exactly one Fulfill or Reject.

    A Reject is a returned value. An exception means a bug: the outermost step of the chain turns
    it into a T00 Reject.
    """

    async def process(self, prepare: Prepare, peer_id: str) -> Reply: ...


class PeerLink(Protocol):
    """Sends a Prepare to a connected peer, over whichever connection to it is up."""

    def is_connected(self, peer_id: str) -> bool: ...

    async def send_prepare(self, peer_id: str, prepare: Prepare) -> Reply:
        """The peer's Fulfill or Reject. Raises a ``TransportError`` when the peer is not
        connected, its connection drops, or it answers with a BTP ERROR."""
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


class Connection(Protocol):
    """One accepted connection, whatever carries it: whole messages in and out."""

    @property
    def remote_address(self) -> str:
        """``host:port`` of the peer, for logs and auth throttling."""
        ...

    async def receive(self) -> bytes | str:
        """The next whole message (``str`` for a text frame). Raises ``PeerDisconnected``."""
        ...

    async def send(self, data: bytes) -> None:
        """Send one binary message. Raises ``PeerDisconnected`` when the connection is gone."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close with a WebSocket close code and reason; returns once closed (bounded)."""
        ...


ConnectionHandler = Callable[[Connection], Coroutine[Any, Any, None]]
#: A plain HTTP GET on the transport's port: path -> (status, content type, body), or None
#: when the path is not served.
HttpHandler = Callable[[str], "tuple[int, str, bytes] | None"]


class Dialer(Protocol):
    """Opens outgoing connections (the client side of a transport)."""

    async def dial(self, url: str) -> Connection:
        """Connect to ``url``; raises ``OSError`` or ``TransportError`` when it cannot."""
        ...


class ServerTransport(Protocol):
    """Accepts connections and hands each to a handler, until stopped."""

    async def start(self, handler: ConnectionHandler, http: HttpHandler | None = None) -> None:
        """Begin accepting; returns once listening. ``http`` answers plain HTTP GETs."""
        ...

    async def stop_accepting(self) -> None:
        """Refuse new connections; connections already accepted stay open."""
        ...

    @property
    def address(self) -> str:
        """Where it listens, e.g. ``127.0.0.1:3000``."""
        ...
