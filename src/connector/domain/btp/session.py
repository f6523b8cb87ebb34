"""The BTP 2.0 session (RFC-0023) as a sans-I/O state machine: bytes and commands in, events and
bytes out. It holds no timers and does no I/O; the transport adapter pumps it.

Use it like websockets' ``Protocol``::

    session.receive_message(data)          # each whole WebSocket message from the peer
    for event in session.events_received(): ...   # act on each event (see events.py)
    for data in session.messages_to_send(): ...   # write each to the transport, in order

States and what moves between them (one table, below, in the spirit of h11's ``_state.py``)::

    AWAITING_AUTH ──accept_auth / auth RESPONSE──▶ OPEN ──close()──▶ CLOSING
         │                                           │                  │
         └──bad auth, reject_auth──▶ CLOSING         └─too many unreadable frames─▶ ERROR
    any state ──connection_lost()──▶ CLOSED          ERROR and CLOSED are final (ERROR still
                                                     answers the requests it accepted).

The session owns what interledger-rs tangles into its I/O: auth comes first; the peer's request
ids and ours live in separate maps (RFC-0023 §Flow: "the requestId of a response is the
requestId of the request"); frames we cannot read get no reply, since answering garbage loops
between peers; an unknown RESPONSE or ERROR is ignored.
"""

from __future__ import annotations

import secrets
from enum import Enum, IntEnum

from connector.domain.btp import frames
from connector.domain.btp.events import (
    Authenticated,
    AuthRequested,
    CloseRequested,
    Event,
    FrameRejected,
    InvalidPrepareReceived,
    PrepareReceived,
    ReplyReceived,
    RequestFailed,
    RequestIgnored,
    ResponseIgnored,
)
from connector.domain.btp.frames import FrameType
from connector.domain.errors import BtpCodecError, IlpCodecError, InvalidState
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Prepare, Reply
from connector.domain.oer import UINT32_MAX
from connector.domain.ports import Clock
from connector.domain.secret import Secret


class State(Enum):
    AWAITING_AUTH = "AWAITING_AUTH"
    OPEN = "OPEN"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"
    ERROR = "ERROR"


class Role(Enum):
    SERVER = "SERVER"  # the peer dialed us: it authenticates to us
    CLIENT = "CLIENT"  # we dialed: we authenticate to the peer


class CloseCode(IntEnum):
    """WebSocket close codes (RFC 6455 §7.4.1) the session asks for."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    POLICY_VIOLATION = 1008
    TRY_AGAIN_LATER = 1013


# Which commands each state allows. Every command checks this table first.
_ALLOWED: dict[str, frozenset[State]] = {
    "send_auth": frozenset({State.AWAITING_AUTH}),
    "accept_auth": frozenset({State.AWAITING_AUTH}),
    "reject_auth": frozenset({State.AWAITING_AUTH}),
    "send_prepare": frozenset({State.OPEN}),
    # A session that failed still answers the requests it accepted (each gets exactly one
    # answer, before the close frame); it reads nothing more.
    "send_result": frozenset({State.OPEN, State.CLOSING, State.ERROR}),
    "close": frozenset({State.AWAITING_AUTH, State.OPEN, State.CLOSING}),
}

_FINAL = frozenset({State.CLOSED, State.ERROR})
_ANSWERABLE = _ALLOWED["send_result"]


class BtpSession:
    """One BTP connection's protocol state, for either role. See the module docstring."""

    def __init__(
        self,
        role: Role,
        clock: Clock,
        *,
        max_violations: int = 3,
        first_request_id: int | None = None,
    ) -> None:
        if max_violations < 1:
            raise ValueError("max_violations must be at least 1")
        self.role = role
        self._clock = clock
        self._state = State.AWAITING_AUTH
        self._max_violations = max_violations
        self._violations = 0
        self._peer_id: str | None = None
        self._auth_request_id: int | None = None
        self._next_id = secrets.randbits(32) if first_request_id is None else first_request_id
        self._outgoing: set[int] = set()  # our requests awaiting the peer's answer
        self._incoming: set[int] = set()  # the peer's requests awaiting our answer
        self._events: list[Event] = []
        self._out: list[bytes] = []

    # --- facts ----------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def peer_id(self) -> str | None:
        """The authenticated peer (server role), set by ``accept_auth``."""
        return self._peer_id

    @property
    def auth_pending(self) -> bool:
        """Still waiting for auth: the adapter enforces the auth deadline while this holds."""
        return self._state is State.AWAITING_AUTH

    @property
    def pending_request_ids(self) -> frozenset[int]:
        """Our requests in flight: the adapter times them out."""
        return frozenset(self._outgoing)

    @property
    def incoming_request_ids(self) -> frozenset[int]:
        """The peer's requests we have not answered yet."""
        return frozenset(self._incoming)

    @property
    def incoming_in_flight(self) -> int:
        return len(self._incoming)

    def awaits_answer(self, request_id: int) -> bool:
        """Whether the peer's request ``request_id`` still needs our ``send_result``."""
        return request_id in self._incoming and self._state in _ANSWERABLE

    @property
    def has_output(self) -> bool:
        """Whether ``messages_to_send()`` has anything (a cheap check on the per-packet path)."""
        return bool(self._out)

    @property
    def violations(self) -> int:
        """Consecutive frames we could not read."""
        return self._violations

    # --- output ---------------------------------------------------------------------------

    def events_received(self) -> list[Event]:
        """Events since the last call, in order. Act on each (see events.py)."""
        events, self._events = self._events, []
        return events

    def messages_to_send(self) -> list[bytes]:
        """Binary messages to write to the transport, in order, since the last call."""
        out, self._out = self._out, []
        return out

    # --- input ----------------------------------------------------------------------------

    def receive_message(self, data: bytes | str) -> None:
        """Feed one whole WebSocket message from the peer, then read ``events_received()``
        and ``messages_to_send()``. Messages after the session closed are dropped; after it
        failed (too many unreadable frames), only answers to our own requests are read, as
        while closing: the adapter may wait for them before it closes."""
        if self._state is State.CLOSED:
            return
        if isinstance(data, str):
            self._unreadable("text frame: BTP frames are binary messages")
            return
        violations = self._violations
        if self._state is State.OPEN:
            # The per-packet path: a MESSAGE or RESPONSE whose only entry is ``ilp``.
            fast = frames.decode_ilp_fast(data)
            if fast is not None:
                kind, request_id, packet = fast
                if kind == FrameType.MESSAGE:
                    self._receive_prepare(request_id, packet)
                else:
                    self._receive_reply(request_id, packet)
                if self._violations == violations:
                    self._violations = 0
                return
        try:
            frame = frames.decode(data)
        except BtpCodecError as exc:
            if exc.request_id is not None and exc.btp_error_code is not None:
                self._refuse(exc.request_id, exc.btp_error_code, str(exc))
            else:
                self._unreadable(str(exc))
            return
        if self._state is State.AWAITING_AUTH:
            self._receive_during_auth(frame)
        elif self._state in (State.CLOSING, State.ERROR) and not isinstance(
            frame, frames.Response | frames.Error
        ):
            # Closing: no new request is taken (nor answered: the close is on its way); answers
            # to our own requests still arrive.
            self._events.append(RequestIgnored(frame.request_id))
        elif isinstance(frame, frames.Message):
            self._receive_message(frame)
        elif isinstance(frame, frames.Transfer):
            self._refuse(frame.request_id, "F00", "TRANSFER is not supported by this connector")
        else:
            self._receive_response(frame)
        # A readable frame ends a run of unreadable ones; one that counted as a violation
        # itself (a duplicate requestId) must not reset the count it just raised.
        if self._violations == violations:
            self._violations = 0

    def connection_lost(self) -> None:
        """The transport closed. Our requests still in flight fail (``RequestFailed``)."""
        if self._state is State.CLOSED:
            return
        for request_id in sorted(self._outgoing):
            self._events.append(RequestFailed(request_id, "T01", "connection lost"))
        self._outgoing.clear()
        self._state = State.CLOSED

    # --- commands -------------------------------------------------------------------------

    def send_auth(self, username: str, token: Secret) -> int:
        """Client role: send the auth MESSAGE. ``Authenticated`` follows on success."""
        self._check("send_auth")
        if self.role is not Role.CLIENT or self._auth_request_id is not None:
            raise InvalidState(f"send_auth is for a client that has not sent auth ({self._state})")
        request_id = self._allocate_id()
        self._auth_request_id = request_id
        self._emit(frames.auth_message(request_id, username, token.reveal()))
        return request_id

    def accept_auth(self, peer_id: str) -> None:
        """Server role: the auth policy accepted the peer; answer RESPONSE and open."""
        self._check("accept_auth")
        request_id = self._require_auth_request()
        self._peer_id = peer_id
        self._auth_request_id = None
        self._state = State.OPEN
        self._emit(frames.Response(request_id))

    def reject_auth(self, reason: str) -> None:
        """Server role: answer ERROR F00 with ``reason`` (never a token) and ask to close."""
        self._check("reject_auth")
        request_id = self._require_auth_request()
        self._fail_auth(request_id, reason)

    def send_prepare(self, prepare: Prepare | bytes) -> int:
        """Send an ILP Prepare; returns its requestId. ``ReplyReceived`` or ``RequestFailed``
        follows for that id."""
        self._check("send_prepare")
        packet = codec.encode_prepare(prepare) if isinstance(prepare, Prepare) else prepare
        request_id = self._allocate_id()
        self._outgoing.add(request_id)
        self._out.append(frames.encode_ilp_frame(FrameType.MESSAGE, request_id, packet))
        return request_id

    def forget_request(self, request_id: int) -> None:
        """Stop waiting for an answer to our request (it timed out); a late one is ignored."""
        self._outgoing.discard(request_id)

    def send_result(self, request_id: int, reply: Reply | bytes) -> None:
        """Answer the peer's Prepare ``request_id`` with a RESPONSE carrying ``reply``."""
        self._check("send_result")
        if request_id not in self._incoming:
            raise InvalidState(f"no request {request_id} from the peer awaits an answer")
        self._incoming.remove(request_id)
        packet = reply if isinstance(reply, bytes) else codec.encode(reply)
        self._out.append(frames.encode_ilp_frame(FrameType.RESPONSE, request_id, packet))

    def close(self, code: int = CloseCode.NORMAL, reason: str = "closing") -> None:
        """Begin closing: no new requests of ours; the peer's are still answered. Emits
        ``CloseRequested`` for the adapter to act on once it has drained what it must."""
        self._check("close")
        if self._state is not State.CLOSING:
            self._state = State.CLOSING
            self._events.append(CloseRequested(code, reason))

    # --- internals ------------------------------------------------------------------------

    def _check(self, command: str) -> None:
        if self._state not in _ALLOWED[command]:
            raise InvalidState(f"{command}() is not allowed in state {self._state.name}")

    def _emit(self, frame: frames.Frame) -> None:
        self._out.append(frames.encode(frame))

    def _allocate_id(self) -> int:
        # Sequential from a random start, skipping ids still in flight (never reuse one).
        request_id = self._next_id
        while request_id in self._outgoing or request_id == self._auth_request_id:
            request_id = (request_id + 1) & UINT32_MAX
        self._next_id = (request_id + 1) & UINT32_MAX
        return request_id

    def _require_auth_request(self) -> int:
        if self.role is not Role.SERVER or self._auth_request_id is None:
            raise InvalidState("no auth request from the peer awaits a decision")
        return self._auth_request_id

    def _fail_auth(self, request_id: int, reason: str) -> None:
        self._auth_request_id = None
        self._emit(frames.error_frame(request_id, "F00", reason, self._clock.now()))
        self._state = State.CLOSING
        self._events.append(FrameRejected(reason, request_id, "F00", True, self._violations))
        self._events.append(CloseRequested(CloseCode.POLICY_VIOLATION, reason))

    def _unreadable(self, reason: str) -> None:
        """RFC-0023: no reply to a frame we cannot read. Close after too many in a row."""
        self._violations += 1
        self._events.append(FrameRejected(reason, None, None, False, self._violations))
        if self._state is State.AWAITING_AUTH:
            self._fail(CloseCode.PROTOCOL_ERROR, "unreadable frame before authentication")
        elif self._violations >= self._max_violations and self._state is not State.ERROR:
            self._fail(CloseCode.PROTOCOL_ERROR, f"{self._violations} unreadable frames in a row")

    def _fail(self, code: int, reason: str) -> None:
        self._state = State.ERROR
        self._events.append(CloseRequested(code, reason))

    def _refuse(self, request_id: int, code: str, reason: str) -> None:
        """A request we can read but not serve: BTP ERROR on its requestId."""
        if self._state is State.AWAITING_AUTH:
            self._fail_auth(request_id, f"first frame must be an auth MESSAGE: {reason}")
            return
        self._emit(frames.error_frame(request_id, code, reason, self._clock.now()))
        self._events.append(FrameRejected(reason, request_id, code, True, self._violations))

    def _receive_during_auth(self, frame: frames.Frame) -> None:
        if self.role is Role.CLIENT:
            if not isinstance(frame, frames.Response | frames.Error) or (
                frame.request_id != self._auth_request_id
            ):
                self._unreadable(f"unexpected {type(frame).__name__} before authentication")
                return
            self._auth_request_id = None
            if isinstance(frame, frames.Response):
                self._state = State.OPEN
                self._events.append(Authenticated())
            else:
                reason = frame.data.decode("utf-8", "replace")
                self._events.append(RequestFailed(frame.request_id, frame.code, reason))
                self._state = State.CLOSING
                self._events.append(
                    CloseRequested(CloseCode.POLICY_VIOLATION, f"auth rejected: {reason}")
                )
            return
        if self._auth_request_id is not None:
            self._unreadable("frame before the auth decision")
            return
        if isinstance(frame, frames.Response | frames.Error):
            # Never answer a response, not even a misplaced one: close without a reply.
            self._fail(CloseCode.POLICY_VIOLATION, "first frame must be an auth MESSAGE")
            return
        try:
            auth = frames.read_auth(frame)
        except BtpCodecError as exc:
            self._fail_auth(frame.request_id, str(exc))
            return
        self._auth_request_id = auth.request_id
        self._events.append(AuthRequested(auth.request_id, auth.username, Secret(auth.token)))

    def _receive_message(self, frame: frames.Message) -> None:
        request_id = frame.request_id
        packet = frames.ilp_entry(frame)
        if packet is None:
            self._refuse(request_id, "F00", "invalid packet, no ilp protocol data")
            return
        self._receive_prepare(request_id, packet)

    def _receive_prepare(self, request_id: int, packet: bytes) -> None:
        if request_id in self._incoming:
            # Answering would resolve the peer's *other* request with that id: stay silent.
            self._unreadable(f"requestId {request_id} is already in flight")
            return
        self._incoming.add(request_id)
        try:
            prepare = codec.decode_prepare(packet)
        except IlpCodecError as exc:
            self._events.append(InvalidPrepareReceived(request_id, str(exc)))
            return
        self._events.append(PrepareReceived(request_id, prepare, packet))

    def _receive_response(self, frame: frames.Response | frames.Error) -> None:
        request_id = frame.request_id
        if isinstance(frame, frames.Error):
            if request_id not in self._outgoing:
                self._events.append(ResponseIgnored(request_id))
                return
            self._outgoing.remove(request_id)
            reason = frame.data.decode("utf-8", "replace")
            self._events.append(RequestFailed(request_id, frame.code, reason))
            return
        self._receive_reply(request_id, frames.ilp_entry(frame))

    def _receive_reply(self, request_id: int, packet: bytes | None) -> None:
        if request_id not in self._outgoing:
            self._events.append(ResponseIgnored(request_id))
            return
        self._outgoing.remove(request_id)
        try:
            if packet is None:
                raise IlpCodecError("RESPONSE has no ilp entry")
            reply, canonical = codec.decode_reply_bytes(packet)
        except IlpCodecError as exc:
            self._events.append(RequestFailed(request_id, "F01", f"invalid ILP reply: {exc}"))
            return
        self._events.append(ReplyReceived(request_id, reply, canonical))
