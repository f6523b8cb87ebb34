"""One BTP connection, in either role: a ``BtpSession`` driven by a push-style ``Connection``.

The connection pushes each message to ``on_message``; the link feeds the session and acts on its
events, synchronously: an auth MESSAGE goes to ``Admission``, a Prepare to the pipeline (whose
answer comes back through ``answer``, now or later), a reply to one of our Prepares resumes the
request that sent it. Nothing per packet costs a task, a future or a timer: expiries are found by
``sweep``, which the owner of all links (``Links``) runs a few times a second.

Every Prepare the peer sent and we accepted gets exactly one answer: the pipeline's, T03 beyond
``max_in_flight`` or while draining, R00 at its expiry, T03 when we close the connection first.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from connector.app.metrics import Metrics, PeerStats
from connector.domain.accounts import Accounts
from connector.domain.admission import Admission, AuthFailure
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
from connector.domain.btp.session import BtpSession, CloseCode, Role, State
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Fulfill, IlpErrorCode, Reject, Reply
from connector.domain.pipeline import PacketRequest, Pipeline
from connector.domain.ports import Clock, Connection, LogSink
from connector.domain.secret import Secret

#: The largest message before a peer has authenticated: an auth MESSAGE is tiny, and nothing
#: bigger is read from a stranger.
PRE_AUTH_MAX_MESSAGE = 16 * 1024

_R00_EXPIRED = "expired before a reply"


class Observer(Protocol):
    """Where a link reports what metrics count (``app/metrics.py``'s ``Metrics``): per-peer
    plain counters it bumps itself, and the rare events."""

    def peer(self, peer_id: str) -> PeerStats: ...

    def auth_failed(self, failure: AuthFailure) -> None: ...

    def frame_rejected(self, peer_id: str | None, answered: bool) -> None: ...

    def dialing(self, peer_id: str) -> None: ...


class LinkOwner(Protocol):
    """What a link needs from the owner of all links (``app/links.py``'s ``Links``)."""

    draining: bool

    def track(self, link: BtpLink) -> None: ...

    def attach(self, link: BtpLink) -> None: ...

    def forget(self, link: BtpLink) -> None: ...

    def answered_while_draining(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Every bound a link or the server enforces; each has a setting (see README)."""

    auth_timeout: float = 5.0
    max_in_flight: int = 4096
    max_violations: int = 3
    shutdown_timeout: float = 10.0
    #: Connections from one host still in their handshake or not authenticated yet, at most.
    max_pending_per_host: int = 32
    max_connections: int = 1000
    #: How long a link we close ourselves waits for the Prepares in flight on it, either way:
    #: at least the longest a next hop may hold one (``max_hold_time``) and a margin.
    retire_limit: float = 60.0


@dataclass(slots=True)
class LinkContext:
    """What every link of this node shares."""

    pipeline: Pipeline
    links: LinkOwner
    accounts: Accounts
    admission: Admission
    clock: Clock
    log: LogSink
    ilp_address: str
    limits: ServerLimits
    observer: Observer = field(default_factory=Metrics)
    debug: bool = False


#: The shortest a retiring link waits for what is in flight (forwarded Prepares are answered by
#: their outgoing expiry, at most ``forwarding.max_hold_time_ms`` away, 30 s by default): with a
#: longer hold time, ``ServerLimits.retire_limit`` is that and a margin (``retire_limit``).
RETIRE_LIMIT = 60.0


def retire_limit(max_hold_time: float) -> float:
    return max(RETIRE_LIMIT, max_hold_time + 5.0)


class _PipelineOrigin:
    """The link as the pipeline's ``Origin``: counts the peer's work the pipeline finished."""

    __slots__ = ("_link",)

    def __init__(self, link: BtpLink) -> None:
        self._link = link

    def answer(self, request_id: int, reply: Reply, raw: bytes | None) -> None:
        link = self._link
        stats = link.stats
        if stats is not None:
            stats.working -= 1
        link.answer(request_id, reply, raw)


def host_of(remote_address: str) -> str:
    """``host:port`` -> ``host`` (``[v6]:port`` -> ``[v6]``); a client forwarded by a trusted
    proxy comes without a port (``203.0.113.7``, ``[2001:db8::7]``) and is its own host."""
    if remote_address.endswith("]"):
        return remote_address
    host, _, _ = remote_address.rpartition(":")
    return host or remote_address


class BtpLink:
    """One connection's session, log context, and requests in flight in both directions."""

    def __init__(
        self,
        ctx: LinkContext,
        conn: Connection,
        role: Role,
        *,
        peer_id: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.conn = conn
        self.role = role
        self.session = BtpSession(role, ctx.clock, max_violations=ctx.limits.max_violations)
        self.log: LogSink = ctx.log.bind(remoteAddress=conn.remote_address)
        self.peer_id = peer_id
        self.account = None if peer_id is None else ctx.accounts.get(peer_id)
        if peer_id is not None:
            self.log = self.log.bind(peerId=peer_id)
        self.stats: PeerStats | None = None
        #: The peer's Prepares not answered yet: request id -> (expiry, arrival on clock.monotonic).
        self.incoming: dict[int, tuple[datetime, float]] = {}
        #: Our Prepares to the peer not answered yet: request id -> the pipeline request.
        self.outgoing: dict[int, PacketRequest] = {}
        self.started_at: datetime = ctx.clock.now()
        self.opened_at: datetime | None = None
        self.last_seen: datetime | None = None
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()
        self._received = 0
        self._seen_at_sweep = 0
        self._refusing = False
        self._close: tuple[int, str] | None = None
        #: Set when we retire the link: the close to send once nothing is in flight, and by when.
        self._retiring: tuple[int, str, float] | None = None
        self._origin = _PipelineOrigin(self)
        self._debug = ctx.debug
        self._monotonic = ctx.clock.monotonic
        # For the one summary line per connection (btp_disconnect).
        self.fulfilled = self.rejected = self.sent = 0

    @property
    def is_open(self) -> bool:
        """Open for new packets: authenticated, not closing, not retiring."""
        return self.session.state is State.OPEN and self._close is None and self._retiring is None

    @property
    def direction(self) -> str:
        return "dialed" if self.role is Role.CLIENT else "accepted"

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, username: str | None = None, token: Secret | None = None) -> None:
        """Take the connection: a server waits for the peer's auth, a client sends its own."""
        self.log.info("btp_connection", direction=self.role.name.lower())
        self.ctx.links.track(self)
        self.conn.start(self, max_message_size=PRE_AUTH_MAX_MESSAGE)
        if self.role is Role.CLIENT:
            assert username is not None
            assert token is not None
            self.session.send_auth(username, token)
            self._flush()

    def answer_in_flight(self, reason: str) -> None:
        """Answer T03 to every Prepare of the peer still in flight."""
        self._answer_all(IlpErrorCode.T03_CONNECTOR_BUSY, reason)

    def stop(self, reason: str, code: int = CloseCode.NORMAL) -> None:
        """Close from our side now: answer the peer's requests still in flight (T03), then
        close (shutdown, after its drain)."""
        self.answer_in_flight(reason)
        self._close_transport(code, reason)

    def retire(self, reason: str, code: int = CloseCode.NORMAL) -> None:
        """Close from our side once nothing is in flight either way: no new Prepare is taken
        (T03), but those in flight keep going and get their real answers, and our own requests
        on this link get the peer's (a next hop may fulfill what it was sent: answering T03
        upstream instead would lose that value). Bounded: the sweep answers what expires, and
        after ``limits.retire_limit`` whatever is left gets T03 and the link closes."""
        if self._close is not None or self._retiring is not None:
            return
        self._retiring = (code, reason, self._monotonic() + self.ctx.limits.retire_limit)
        self.log.info(
            "btp_connection_retiring",
            reason=reason,
            inFlight=len(self.incoming),
            outgoing=len(self.outgoing),
        )
        self._retired_when_idle()

    def _retired_when_idle(self) -> None:
        retiring = self._retiring
        if retiring is not None and not self.incoming and not self.outgoing:
            self._close_transport(retiring[0], retiring[1])

    # --- ConnectionHandler ----------------------------------------------------------------

    def on_message(self, data: bytes | str) -> None:
        session = self.session
        session.receive_message(data)
        self._received += 1
        for event in session.events_received():
            kind = type(event)
            if kind is PrepareReceived:
                self._prepare(event)  # type: ignore[arg-type]
            elif kind is ReplyReceived:
                self._replied(event)  # type: ignore[arg-type]
            else:
                self._event(event)
        self._flush()

    def on_closing(self, code: int, reason: str) -> None:
        """The connection is closing without our asking (an oversized or malformed message, the
        peer's close, a keepalive timeout): answer what is in flight while that can still be
        written, and take no new request."""
        self._answer_all(IlpErrorCode.T03_CONNECTOR_BUSY, f"connection closing: {reason}")
        if self._close is None:
            self._close = (code, reason)

    def on_closed(self, code: int, reason: str) -> None:
        if self.closed.is_set():
            return
        self.session.connection_lost()
        for event in self.session.events_received():
            if isinstance(event, RequestFailed):
                self._failed(event)
        if self._close is not None:
            code, reason = self._close
        self.log.info(
            "btp_disconnect",
            code=code,
            reason=reason,
            inFlight=len(self.incoming),
            seconds=round((self.ctx.clock.now() - self.opened_at).total_seconds(), 3)
            if self.opened_at
            else 0,
            fulfilled=self.fulfilled,
            rejected=self.rejected,
            sent=self.sent,
        )
        self.ctx.links.forget(self)
        self.closed.set()

    # --- packets from the peer ------------------------------------------------------------

    def _prepare(self, event: PrepareReceived) -> None:
        ctx = self.ctx
        request_id = event.request_id
        prepare = event.prepare
        self.incoming[request_id] = (prepare.expires_at, self._monotonic())
        if self._debug:
            self.log.debug(
                "btp_message_received",
                requestId=request_id,
                destination=prepare.destination,
                amount=prepare.amount,
            )
        stats = self.stats
        if stats is not None:
            stats.amount += prepare.amount
        if self._close is not None or self.account is None or self._retiring is not None:
            # We are closing this connection: it takes nothing more to forward, since no answer
            # could reach the peer after our close frame.
            self._answer_with(request_id, IlpErrorCode.T03_CONNECTOR_BUSY, "connection closing")
        elif ctx.links.draining:
            self._answer_with(
                request_id, IlpErrorCode.T03_CONNECTOR_BUSY, "connector shutting down"
            )
        elif len(self.incoming) > ctx.limits.max_in_flight:
            self._answer_with(
                request_id, IlpErrorCode.T03_CONNECTOR_BUSY, "too many requests in flight"
            )
        else:
            if stats is not None:
                stats.working += 1
            ctx.pipeline.handle(self._origin, request_id, self.account, prepare, event.packet)

    def answer(self, request_id: int, reply: Reply, raw: bytes | None) -> None:
        """The one answer to the peer's Prepare ``request_id`` (the pipeline's ``Origin``)."""
        started = self.incoming.pop(request_id, None)
        if started is None or not self.session.awaits_answer(request_id):
            if self._debug:
                self.log.debug("btp_reply_dropped", requestId=request_id)
            return
        self.session.send_result(request_id, raw if raw is not None else reply)
        fulfilled = type(reply) is Fulfill
        if fulfilled:
            self.fulfilled += 1
        else:
            self.rejected += 1
        stats = self.stats
        if stats is not None:
            stats.answered(
                None if fulfilled else reply.code,  # type: ignore[union-attr]
                self._monotonic() - started[1],
            )
        if self._debug:
            self.log.debug(
                "btp_response_sent",
                requestId=request_id,
                responseType="FULFILL" if fulfilled else "REJECT",
                code=None if fulfilled else reply.code,  # type: ignore[union-attr]
            )
        if self.ctx.links.draining:
            self.ctx.links.answered_while_draining()
        self._flush()
        if self._retiring is not None:
            self._retired_when_idle()

    def _answer_with(self, request_id: int, code: IlpErrorCode, message: str) -> None:
        self.answer(request_id, Reject(code, self.ctx.ilp_address, message), None)

    def _answer_all(self, code: IlpErrorCode, message: str) -> None:
        for request_id in sorted(self.incoming):
            self._answer_with(request_id, code, message)

    # --- our requests to the peer ---------------------------------------------------------

    def request(self, req: PacketRequest) -> Reject | None:
        """Send ``req``'s outgoing Prepare; its reply resumes ``req``. A Reject when we cannot."""
        ctx = self.ctx
        if self.conn.congested:
            return Reject(
                IlpErrorCode.T03_CONNECTOR_BUSY, ctx.ilp_address, f"peer {self.peer_id} is busy"
            )
        if req.packet is not None:
            packet = codec.patch_prepare(req.packet, req.amount_out, req.expires_out)
        else:
            packet = codec.encode_prepare(
                req.prepare.__class__(
                    req.amount_out,
                    req.expires_out,
                    req.prepare.execution_condition,
                    req.prepare.destination,
                    req.prepare.data,
                )
            )
        request_id = self.session.send_prepare(packet)
        self.outgoing[request_id] = req
        self.sent += 1
        self._flush()
        return None

    def _replied(self, event: ReplyReceived) -> None:
        req = self.outgoing.pop(event.request_id, None)
        if req is not None:
            req.resume(event.reply, event.packet)
            if self._retiring is not None:
                self._retired_when_idle()

    def _failed(self, event: RequestFailed) -> None:
        req = self.outgoing.pop(event.request_id, None)
        if req is not None:
            req.resume(
                Reject(
                    IlpErrorCode.T01_PEER_UNREACHABLE,
                    self.ctx.ilp_address,
                    f"peer {self.peer_id}: {event.code}: {event.reason}",
                )
            )

    # --- time -----------------------------------------------------------------------------

    def sweep(self, now: datetime) -> None:
        """Answer what has expired: the peer's Prepares (R00), ours to the peer (R00 to the
        request that sent it), and a peer that has not authenticated in time."""
        if self._received != self._seen_at_sweep:
            self._seen_at_sweep = self._received
            self.last_seen = now
        if self.session.auth_pending:
            if (
                not self._refusing
                and self._close is None
                and (now - self.started_at).total_seconds() >= self.ctx.limits.auth_timeout
            ):
                self._auth_timed_out()
            return
        if self.incoming:
            for request_id in [r for r, (expiry, _) in self.incoming.items() if expiry <= now]:
                self._answer_with(request_id, IlpErrorCode.R00_TRANSFER_TIMED_OUT, _R00_EXPIRED)
        if self.outgoing:
            expired = [r for r, req in self.outgoing.items() if req.expires_out <= now]
            for request_id in expired:
                req = self.outgoing.pop(request_id)
                self.session.forget_request(request_id)
                req.resume(
                    Reject(
                        IlpErrorCode.R00_TRANSFER_TIMED_OUT, self.ctx.ilp_address, "packet expired"
                    )
                )
        retiring = self._retiring
        if retiring is not None and self._close is None:
            if self._monotonic() >= retiring[2]:
                self.stop(retiring[1], retiring[0])  # what is left gets T03, and it closes
            else:
                self._retired_when_idle()

    # --- auth -----------------------------------------------------------------------------

    def _authenticate(self, event: AuthRequested) -> None:
        ctx = self.ctx
        host = host_of(self.conn.remote_address)
        decision = ctx.admission.decide(
            host, event.username, event.token, ctx.clock.now().timestamp()
        )
        if decision.peer_id is not None:
            self.session.accept_auth(decision.peer_id)
            self._opened(decision.peer_id)
            self.log.info("btp_auth", success=True, requestId=event.request_id)
            return
        assert decision.failure is not None
        ctx.observer.auth_failed(decision.failure)
        self.log.warning(
            "btp_auth",
            success=False,
            reason=decision.reason,
            username=event.username[:64],
            requestId=event.request_id,
            failures=decision.failures,
            delay=decision.delay,
        )
        if decision.delay > 0:
            # A host that keeps failing waits for its answer, outside the auth deadline so the
            # refusal still reaches it.
            self._refusing = True
            ctx.clock.call_later(decision.delay, lambda: self._refuse(decision.reason))
        else:
            self._refuse(decision.reason)

    def _refuse(self, reason: str) -> None:
        if self.session.state is not State.AWAITING_AUTH:
            return
        self._refusing = True
        self.session.reject_auth(reason)
        for event in self.session.events_received():
            self._event(event)
        self._flush()

    def _opened(self, peer_id: str) -> None:
        ctx = self.ctx
        if self.peer_id is None:
            self.peer_id = peer_id
            self.log = self.log.bind(peerId=peer_id)
        self.account = ctx.accounts.get(peer_id)
        self.opened_at = self.last_seen = ctx.clock.now()
        self.conn.set_max_message_size(None)
        self.stats = ctx.observer.peer(peer_id)
        ctx.links.attach(self)
        self.opened.set()

    def _auth_timed_out(self) -> None:
        reason = (
            "authentication timed out" if self.role is Role.SERVER else "no auth response in time"
        )
        self.log.warning("btp_auth", success=False, reason=reason)
        if self.role is Role.SERVER:
            self.ctx.observer.auth_failed(AuthFailure.TIMEOUT)
        self._close_transport(CloseCode.POLICY_VIOLATION, reason)

    # --- other events ---------------------------------------------------------------------

    def _event(self, event: Event) -> None:
        if isinstance(event, AuthRequested):
            self._authenticate(event)
        elif isinstance(event, Authenticated):
            assert self.peer_id is not None
            self.log.info("btp_auth", success=True, direction="client")
            self._opened(self.peer_id)
        elif isinstance(event, RequestFailed):
            if self.role is Role.CLIENT and self.opened_at is None:
                self.log.warning("btp_auth", success=False, reason=event.reason)
            self._failed(event)
        elif isinstance(event, InvalidPrepareReceived):
            self.log.warning("btp_invalid_prepare", requestId=event.request_id, reason=event.reason)
            self.incoming[event.request_id] = (self.ctx.clock.now(), self._monotonic())
            self._answer_with(event.request_id, IlpErrorCode.F01_INVALID_PACKET, event.reason)
        elif isinstance(event, FrameRejected):
            if self.role is Role.SERVER and self.opened_at is None and not self._refusing:
                self.ctx.observer.auth_failed(AuthFailure.MALFORMED)  # not an auth MESSAGE
            self.ctx.observer.frame_rejected(self.peer_id, event.answered)
            self.log.warning(
                "btp_error",
                code=event.code,
                reason=event.reason,
                requestId=event.request_id,
                answered=event.answered,
                violations=event.violations,
            )
        elif isinstance(event, CloseRequested):
            # Too many bad frames: no new Prepare from it, but those in flight still get their
            # real answers (a next hop may fulfill them) before the close.
            self.retire(event.reason, event.code)
        elif isinstance(event, ResponseIgnored | RequestIgnored) and self._debug:
            self.log.debug("btp_response_ignored", requestId=event.request_id)

    # --- transport ------------------------------------------------------------------------

    def _flush(self) -> None:
        session = self.session
        if session.has_output:
            send = self.conn.send
            for data in session.messages_to_send():
                send(data)

    def _close_transport(self, code: int, reason: str) -> None:
        self._flush()
        if self._close is None:
            self._close = (code, reason)
        self.conn.close(code, reason)
