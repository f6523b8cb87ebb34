"""One BTP connection, in either role: pumps a ``BtpSession`` over a ``Connection`` port.

After auth both sides are symmetric (RFC-0023): the link answers the peer's Prepares through the
packet processor and sends our own Prepares to the peer (``send_prepare``). It enforces, with the
injected clock: the auth deadline, at most ``max_in_flight`` Prepares of the peer's at once (T03
beyond), and each Prepare's own expiry as the final bound (R00), so every Prepare the peer sent
gets exactly one Fulfill or Reject. When the connection drops, our requests in flight fail at once
(``PeerUnreachable``) instead of hanging.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from connector.app.metrics import Metrics, auth_reason_label
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
    ResponseIgnored,
)
from connector.domain.btp.session import BtpSession, CloseCode, Role, State
from connector.domain.errors import PeerDisconnected, PeerUnreachable
from connector.domain.ilp.packets import Fulfill, IlpErrorCode, Prepare, Reject, Reply
from connector.domain.ports import Clock, Connection, LogSink, PacketProcessor
from connector.domain.secret import Secret

if TYPE_CHECKING:
    from connector.app.btp_server import BtpServer


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Every bound a link or the server enforces; each has a setting (see README, "Limits")."""

    auth_timeout: float = 5.0
    max_in_flight: int = 4096
    max_violations: int = 3
    shutdown_timeout: float = 10.0
    max_connections: int = 1000


@dataclass(slots=True)
class LinkContext:
    """What every link of this node shares."""

    processor: PacketProcessor
    clock: Clock
    log: LogSink
    ilp_address: str
    limits: ServerLimits
    metrics: Metrics = field(default_factory=Metrics)
    draining: bool = False

    def reject(self, code: IlpErrorCode, message: str) -> Reject:
        """A Reject created by this node (triggeredBy our address)."""
        return Reject(code, self.ilp_address, message)


def _host_of(remote_address: str) -> str:
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
        log: LogSink | None = None,
        on_open: Callable[[BtpLink], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.conn = conn
        self.role = role
        self.session = BtpSession(role, ctx.clock, max_violations=ctx.limits.max_violations)
        self.log = (log or ctx.log).bind(remoteAddress=conn.remote_address)
        self.peer_id = peer_id
        if peer_id is not None:
            self.log = self.log.bind(peerId=peer_id)
        self.tasks: set[asyncio.Task[None]] = set()
        self._waiting: dict[int, asyncio.Future[Reply]] = {}
        self._close: tuple[int, str] | None = None
        self.opened = asyncio.Event()
        self._on_open = on_open
        self.opened_at: float | None = None  # wall-clock seconds, for the health report
        self.last_seen: float | None = None
        self._started: dict[int, tuple[float, int]] = {}  # request id -> (perf_counter, amount)
        # For the one summary line per connection (btp_disconnect).
        self.fulfilled = self.rejected = self.sent = 0

    @property
    def is_open(self) -> bool:
        return self.session.state is State.OPEN and self._close is None

    # --- lifecycle ------------------------------------------------------------------------

    async def run_server(self, server: BtpServer) -> None:
        """Accepted connection: authenticate the peer, then serve until the connection ends."""
        await self._run(lambda: self._authenticate_peer(server))

    async def run_client(self, username: str, token: Secret) -> None:
        """Dialed connection: authenticate to the peer, then serve until the connection ends."""
        await self._run(lambda: self._authenticate_to_peer(username, token))

    async def _run(self, authenticate: Callable[[], Awaitable[bool]]) -> None:
        self.log.info("btp_connection", direction=self.role.name.lower())
        code, reason = 1006, "connection lost"
        try:
            if await authenticate():
                self.opened_at = self.last_seen = time.time()
                self.opened.set()
                if self._on_open is not None:
                    self._on_open(self)  # synchronously: no window where it is open but unknown
                await self._serve()
        except PeerDisconnected as exc:
            code, reason = exc.code, exc.reason
        finally:
            self.session.connection_lost()
            for event in self.session.events_received():
                self._settle(event)
            if self._close is not None:
                code, reason = self._close
            self.log.info(
                "btp_disconnect",
                code=code,
                reason=reason,
                inFlight=len(self.tasks),
                seconds=round(time.time() - self.opened_at, 3) if self.opened_at else 0,
                fulfilled=self.fulfilled,
                rejected=self.rejected,
                sent=self.sent,
            )

    async def stop(self, reason: str) -> None:
        """Close from our side: reject the peer's requests still in flight, then close 1000."""
        for request_id in sorted(self.session.incoming_request_ids):
            self._answer_now(request_id, self.ctx.reject(IlpErrorCode.T03_CONNECTOR_BUSY, reason))
        for task in list(self.tasks):
            task.cancel()
        await self._flush()
        await self._close_transport(CloseCode.NORMAL, reason)

    # --- auth -----------------------------------------------------------------------------

    async def _authenticate_peer(self, server: BtpServer) -> bool:
        ctx = self.ctx
        refusal: tuple[str, float] | None = None
        try:
            async with ctx.clock.timeout(ctx.limits.auth_timeout):
                while self.session.auth_pending and refusal is None:
                    self.session.receive_message(await self.conn.receive())
                    for event in self.session.events_received():
                        if isinstance(event, AuthRequested):
                            refusal = self._decide(server, event)
                        else:
                            if isinstance(event, FrameRejected):  # not an auth MESSAGE at all
                                ctx.metrics.auth_failures.labels("malformed").inc()
                            await self._handle_event(event)
                    await self._flush()
                    if self._close is not None:
                        return False
        except TimeoutError:
            self.log.warning("btp_auth", success=False, reason="authentication timed out")
            ctx.metrics.auth_failures.labels("timeout").inc()
            await self._close_transport(CloseCode.POLICY_VIOLATION, "authentication timed out")
            return False
        if refusal is not None:
            reason, delay = refusal
            if delay > 0:
                # Slow down a host that keeps failing, outside the auth deadline so the
                # refusal still reaches it.
                await ctx.clock.sleep(delay)
            self.session.reject_auth(reason)
            for event in self.session.events_received():
                await self._handle_event(event)
            await self._flush()
            return False
        return self.session.state is State.OPEN

    def _decide(self, server: BtpServer, event: AuthRequested) -> tuple[str, float] | None:
        """Accept the peer, or return the refusal reason and the delay before sending it."""
        host = _host_of(self.conn.remote_address)
        decision = server.auth.authenticate(event.username, event.token)
        if decision.peer_id is not None:
            server.throttle.success(host)
            self.peer_id = decision.peer_id
            self.log = self.log.bind(peerId=decision.peer_id)
            self.session.accept_auth(decision.peer_id)
            self.log.info("btp_auth", success=True, requestId=event.request_id)
            server.attach(self)
            return None
        self.ctx.metrics.auth_failures.labels(auth_reason_label(decision.reason)).inc()
        delay = server.throttle.failure(host, self.ctx.clock.now().timestamp())
        self.log.warning(
            "btp_auth",
            success=False,
            reason=decision.reason,
            username=event.username[:64],
            requestId=event.request_id,
            failures=server.throttle.failures(host),
            delay=delay,
        )
        return decision.reason, delay

    async def _authenticate_to_peer(self, username: str, token: Secret) -> bool:
        ctx = self.ctx
        self.session.send_auth(username, token)
        await self._flush()
        try:
            async with ctx.clock.timeout(ctx.limits.auth_timeout):
                while self.session.auth_pending and self._close is None:
                    self.session.receive_message(await self.conn.receive())
                    for event in self.session.events_received():
                        if isinstance(event, Authenticated):
                            self.log.info("btp_auth", success=True, direction="client")
                        elif isinstance(event, RequestFailed):
                            self.log.warning("btp_auth", success=False, reason=event.reason)
                        else:
                            await self._handle_event(event)
                    await self._flush()
        except TimeoutError:
            self.log.warning("btp_auth", success=False, reason="no auth response in time")
            await self._close_transport(CloseCode.POLICY_VIOLATION, "no auth response in time")
            return False
        if self._close is not None or self.session.state is not State.OPEN:
            await self._close_transport(CloseCode.POLICY_VIOLATION, "authentication failed")
            return False
        return True

    # --- serving --------------------------------------------------------------------------

    async def _serve(self) -> None:
        session = self.session
        while self._close is None:
            session.receive_message(await self.conn.receive())
            self.last_seen = time.time()
            for event in session.events_received():
                if isinstance(event, PrepareReceived):
                    self._accept_prepare(event.request_id, event.prepare)
                else:
                    await self._handle_event(event)
            await self._flush()

    def _accept_prepare(self, request_id: int, prepare: Prepare) -> None:
        ctx = self.ctx
        self._started[request_id] = (time.perf_counter(), prepare.amount)
        self.log.debug(
            "btp_message_received",
            requestId=request_id,
            destination=prepare.destination,
            amount=prepare.amount,
        )
        if ctx.draining:
            self._answer_now(
                request_id, ctx.reject(IlpErrorCode.T03_CONNECTOR_BUSY, "connector shutting down")
            )
        elif len(self.tasks) >= ctx.limits.max_in_flight:
            # Counts tasks, not unanswered requests: a reply waiting to be written to a peer
            # that does not read still holds memory, and must count against the bound.
            self._answer_now(
                request_id,
                ctx.reject(IlpErrorCode.T03_CONNECTOR_BUSY, "too many requests in flight"),
            )
        else:
            task = asyncio.create_task(self._process(request_id, prepare))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            # The final bound: at the Prepare's own expiry the peer gets R00 at once, whatever
            # the processor is doing. A plain timer costs less than a timeout scope per packet.
            remaining = (prepare.expires_at - ctx.clock.now()).total_seconds()
            timer = ctx.clock.call_later(
                max(remaining, 0.0), partial(self._expired, request_id, task)
            )
            task.add_done_callback(lambda _: timer.cancel())

    async def _process(self, request_id: int, prepare: Prepare) -> None:
        assert self.peer_id is not None
        reply = await self.ctx.processor.process(prepare, self.peer_id)
        self._answer_now(request_id, reply)
        await self._flush()

    def _expired(self, request_id: int, task: asyncio.Task[None]) -> None:
        if self.session.awaits_answer(request_id):
            self._answer_now(
                request_id,
                self.ctx.reject(IlpErrorCode.R00_TRANSFER_TIMED_OUT, "expired before a reply"),
            )
            flush = asyncio.create_task(self._flush())
            self.tasks.add(flush)
            flush.add_done_callback(self.tasks.discard)
        task.cancel()

    def _answer_now(self, request_id: int, reply: Reply) -> None:
        session = self.session
        if not session.awaits_answer(request_id):
            self.log.debug("btp_reply_dropped", requestId=request_id, state=session.state.name)
            return
        session.send_result(request_id, reply)
        if isinstance(reply, Fulfill):
            self.fulfilled += 1
        else:
            self.rejected += 1
        started, amount = self._started.pop(request_id, (time.perf_counter(), 0))
        self.ctx.metrics.packet(
            self.peer_id or "unauthenticated",
            amount,
            None if isinstance(reply, Fulfill) else reply.code,
            time.perf_counter() - started,
        )
        self.log.debug(
            "btp_response_sent",
            requestId=request_id,
            responseType="FULFILL" if isinstance(reply, Fulfill) else "REJECT",
            code=None if isinstance(reply, Fulfill) else reply.code,
        )

    # --- our requests ---------------------------------------------------------------------

    async def send_prepare(self, prepare: Prepare) -> Reply:
        """Send a Prepare to the peer and wait for its Fulfill or Reject. Raises
        ``PeerUnreachable`` on a BTP ERROR or when the connection drops. The caller bounds the
        wait (the Prepare's expiry); if it gives up, a late answer is ignored."""
        if not self.is_open:
            raise PeerUnreachable("connection is not open")
        request_id = self.session.send_prepare(prepare)
        self.sent += 1
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            await self._flush()
            return await future
        finally:
            if self._waiting.pop(request_id, None) is not None:
                self.session.forget_request(request_id)

    def _settle(self, event: Event) -> None:
        if isinstance(event, ReplyReceived):
            future = self._waiting.pop(event.request_id, None)
            if future is not None and not future.done():
                future.set_result(event.reply)
        elif isinstance(event, RequestFailed):
            future = self._waiting.pop(event.request_id, None)
            if future is not None and not future.done():
                future.set_exception(PeerUnreachable(f"{event.code}: {event.reason}"))

    # --- events and transport -------------------------------------------------------------

    async def _handle_event(self, event: Event) -> None:
        if isinstance(event, ReplyReceived | RequestFailed):
            self._settle(event)
        elif isinstance(event, InvalidPrepareReceived):
            self.log.warning("btp_invalid_prepare", requestId=event.request_id, reason=event.reason)
            self._answer_now(
                event.request_id, self.ctx.reject(IlpErrorCode.F01_INVALID_PACKET, event.reason)
            )
        elif isinstance(event, FrameRejected):
            peer = self.peer_id or "unauthenticated"
            counter = self.ctx.metrics.btp_errors if event.answered else self.ctx.metrics.violations
            counter.labels(peer).inc()
            self.log.warning(
                "btp_error",
                code=event.code,
                reason=event.reason,
                requestId=event.request_id,
                answered=event.answered,
                violations=event.violations,
            )
        elif isinstance(event, CloseRequested):
            await self._flush()
            await self._close_transport(event.code, event.reason)
        elif isinstance(event, ResponseIgnored):
            self.log.debug("btp_response_ignored", requestId=event.request_id)
        else:  # pragma: no cover - auth events are handled during auth
            self.log.debug("btp_event_ignored", kind=type(event).__name__)

    async def _flush(self) -> None:
        for data in self.session.messages_to_send():
            try:
                await self.conn.send(data)
            except PeerDisconnected:
                return  # the read loop sees the close and cleans up

    async def _close_transport(self, code: int, reason: str) -> None:
        if self._close is None:
            self._close = (code, reason)
        await self.conn.close(code, reason)
