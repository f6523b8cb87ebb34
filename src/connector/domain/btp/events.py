"""What a ``BtpSession`` reports after ``receive_message()``: immutable, past-tense events.

The caller acts on each: it answers ``AuthRequested`` with ``accept_auth``/``reject_auth``, every
``PrepareReceived`` and ``InvalidPrepareReceived`` with exactly one ``send_result``, and closes
the transport on ``CloseRequested``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connector.domain.ilp.packets import Prepare, Reply
from connector.domain.secret import Secret


@dataclass(frozen=True, slots=True)
class AuthRequested:
    """Server side: the peer sent its auth MESSAGE. ``token`` stays wrapped."""

    request_id: int
    username: str
    token: Secret = field(repr=False)


@dataclass(frozen=True, slots=True)
class Authenticated:
    """Client side: the server accepted our auth."""


@dataclass(frozen=True, slots=True)
class PrepareReceived:
    """The peer sent an ILP Prepare; answer it with ``send_result(request_id, ...)``."""

    request_id: int
    prepare: Prepare
    #: The Prepare's wire bytes (relayed with its expiry patched, not re-encoded).
    packet: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class InvalidPrepareReceived:
    """The ``ilp`` entry of a MESSAGE is not a valid Prepare; answer with an F01 Reject."""

    request_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class ReplyReceived:
    """The peer answered one of our Prepares with a Fulfill or Reject."""

    request_id: int
    reply: Reply
    #: The reply's wire bytes, checked by decoding: relayed upstream as they are.
    packet: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class RequestFailed:
    """One of our requests got a BTP ERROR, an unreadable reply, or lost its connection."""

    request_id: int
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class FrameRejected:
    """A frame we could not read or serve. ``answered`` when a BTP ERROR went back;
    ``violations`` counts the consecutive unreadable frames so far."""

    reason: str
    request_id: int | None
    code: str | None
    answered: bool
    violations: int


@dataclass(frozen=True, slots=True)
class ResponseIgnored:
    """A RESPONSE or ERROR for a requestId we have no request for (RFC-0023: send nothing)."""

    request_id: int


@dataclass(frozen=True, slots=True)
class RequestIgnored:
    """A request that arrived while the session was closing: not taken, not answered."""

    request_id: int


@dataclass(frozen=True, slots=True)
class CloseRequested:
    """The session wants the transport closed with this WebSocket close code and reason."""

    code: int
    reason: str


Event = (
    AuthRequested
    | Authenticated
    | PrepareReceived
    | InvalidPrepareReceived
    | ReplyReceived
    | RequestFailed
    | FrameRejected
    | ResponseIgnored
    | RequestIgnored
    | CloseRequested
)
