"""The BTP server: pumps one ``BtpSession`` per accepted connection, over any ``ServerTransport``.

Everything here goes through ports (transport, clock, processor, secrets, logs), so the same code
runs on real WebSockets and on the in-memory transport. Per connection it:

1. waits for the auth MESSAGE until ``auth_timeout`` (RFC-0023: close when auth does not come
   "within a reasonable time"), slowing down hosts that keep failing;
2. answers each Prepare in its own task, so a slow packet never holds up the next, with at most
   ``max_in_flight`` per peer (T03 beyond that) and the Prepare's own expiry as the final bound
   (R00), so every accepted Prepare gets exactly one Fulfill or Reject;
3. on shutdown stops accepting, lets requests in flight finish until ``shutdown_timeout``,
   rejects whatever is left, and closes every connection with 1000.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from connector.domain.auth import AuthPolicy, AuthThrottle
from connector.domain.btp.events import (
    AuthRequested,
    CloseRequested,
    Event,
    FrameRejected,
    InvalidPrepareReceived,
    PrepareReceived,
    ResponseIgnored,
)
from connector.domain.btp.session import BtpSession, CloseCode, Role, State
from connector.domain.errors import PeerDisconnected
from connector.domain.ilp.packets import Fulfill, IlpErrorCode, Prepare, Reject, Reply
from connector.domain.ports import Clock, Connection, LogSink, PacketProcessor, ServerTransport
from connector.domain.processing import ErrorBoundary


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Every bound the server enforces; each has a setting (see README, "Limits")."""

    auth_timeout: float = 5.0
    max_in_flight: int = 4096
    max_violations: int = 3
    shutdown_timeout: float = 10.0
    max_connections: int = 1000


def _host_of(remote_address: str) -> str:
    host, _, _ = remote_address.rpartition(":")
    return host or remote_address


class BtpServer:
    """Accepts BTP peers on a transport and hands their Prepares to a ``PacketProcessor``."""

    def __init__(
        self,
        transport: ServerTransport,
        processor: PacketProcessor,
        auth: AuthPolicy,
        throttle: AuthThrottle,
        clock: Clock,
        log: LogSink,
        ilp_address: str,
        limits: ServerLimits,
    ) -> None:
        self.transport = transport
        # The one outermost step that turns an exception (or a non-reply) into a T00 Reject:
        # applied here, so no chain a caller builds can leave a Prepare unanswered.
        self.processor: PacketProcessor = ErrorBoundary(processor, ilp_address, log)
        self.auth = auth
        self.throttle = throttle
        self.clock = clock
        self.log = log
        self.ilp_address = ilp_address
        self.limits = limits
        self.connections: set[PeerConnection] = set()
        self.peers: dict[str, PeerConnection] = {}
        self.draining = False
        self._stopped = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()

    @property
    def active_connections(self) -> int:
        return len(self.connections)

    def reject(self, code: IlpErrorCode, message: str) -> Reject:
        """A Reject created by this node (triggeredBy our address)."""
        return Reject(code, self.ilp_address, message)

    async def start(self) -> None:
        await self.transport.start(self._accept)
        self.log.info(
            "btp_server_started",
            address=self.transport.address,
            ilpAddress=self.ilp_address,
            authTimeout=self.limits.auth_timeout,
            maxInFlight=self.limits.max_in_flight,
        )

    async def shutdown(self) -> None:
        """Graceful stop: see the module docstring. Idempotent; returns when all is closed."""
        if self.draining:
            await self._stopped.wait()
            return
        self.draining = True
        in_flight = sum(c.session.incoming_in_flight for c in self.connections)
        self.log.info(
            "btp_server_shutdown",
            activeConnections=self.active_connections,
            inFlight=in_flight,
        )
        await self.transport.stop_accepting()
        tasks = [t for c in self.connections for t in c.tasks]
        if tasks:
            with contextlib.suppress(TimeoutError):
                async with self.clock.timeout(self.limits.shutdown_timeout):
                    await asyncio.wait(tasks)
        await asyncio.gather(
            *(c.stop("connector shutting down") for c in list(self.connections)), *self._background
        )
        wait_closed = getattr(self.transport, "wait_closed", None)
        if wait_closed is not None:
            with contextlib.suppress(TimeoutError):
                async with self.clock.timeout(self.limits.shutdown_timeout):
                    await wait_closed()
        self.log.info("btp_server_stopped")
        self._stopped.set()

    async def _accept(self, conn: Connection) -> None:
        if self.draining or len(self.connections) >= self.limits.max_connections:
            reason = "connector shutting down" if self.draining else "server at capacity"
            self.log.warning(
                "btp_connection_refused", remoteAddress=conn.remote_address, reason=reason
            )
            await conn.close(CloseCode.TRY_AGAIN_LATER, reason)
            return
        connection = PeerConnection(self, conn)
        self.connections.add(connection)
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)
            if connection.peer_id is not None and self.peers.get(connection.peer_id) is connection:
                del self.peers[connection.peer_id]

    def _register(self, connection: PeerConnection, peer_id: str) -> None:
        """One connection per peer: a newer authenticated connection replaces the older one.

        Replacing (rather than refusing) lets a peer whose old socket died silently reconnect at
        once, as ilp-plugin-btp's own server does.
        """
        old = self.peers.get(peer_id)
        self.peers[peer_id] = connection
        if old is not None and old is not connection:
            self.log.info("btp_connection_replaced", peerId=peer_id)
            # In the background: closing a dead socket can take close_timeout, and the new
            # connection must not wait for that.
            task = asyncio.create_task(old.stop("replaced by a newer connection for this peer"))
            self._background.add(task)
            task.add_done_callback(self._background.discard)


class PeerConnection:
    """One accepted connection: its session, its log context and its requests in flight."""

    def __init__(self, server: BtpServer, conn: Connection) -> None:
        self.server = server
        self.conn = conn
        self.session = BtpSession(
            Role.SERVER, server.clock, max_violations=server.limits.max_violations
        )
        self.log = server.log.bind(remoteAddress=conn.remote_address)
        self.peer_id: str | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self._close: tuple[int, str] | None = None

    async def run(self) -> None:
        self.log.info("btp_connection")
        code, reason = 1006, "connection lost"
        try:
            if await self._authenticate():
                await self._serve()
        except PeerDisconnected as exc:
            code, reason = exc.code, exc.reason
        finally:
            self.session.connection_lost()
            if self._close is not None:
                code, reason = self._close
            self.log.info("btp_disconnect", code=code, reason=reason, inFlight=len(self.tasks))

    async def stop(self, reason: str) -> None:
        """Close from our side: reject requests still in flight, then close with 1000."""
        for request_id in sorted(self.session.incoming_request_ids):
            self._answer_now(
                request_id, self.server.reject(IlpErrorCode.T03_CONNECTOR_BUSY, reason)
            )
        for task in list(self.tasks):
            task.cancel()
        await self._flush()
        await self._close_transport(CloseCode.NORMAL, reason)

    # --- auth -----------------------------------------------------------------------------

    async def _authenticate(self) -> bool:
        server = self.server
        refusal: tuple[str, float] | None = None
        try:
            async with server.clock.timeout(server.limits.auth_timeout):
                while self.session.auth_pending and refusal is None:
                    self.session.receive_message(await self.conn.receive())
                    for event in self.session.events_received():
                        if isinstance(event, AuthRequested):
                            refusal = await self._decide(event)
                        else:
                            await self._handle_event(event)
                    await self._flush()
                    if self._close is not None:
                        return False
        except TimeoutError:
            self.log.warning("btp_auth", success=False, reason="authentication timed out")
            await self._close_transport(CloseCode.POLICY_VIOLATION, "authentication timed out")
            return False
        if refusal is not None:
            reason, delay = refusal
            if delay > 0:
                # Slow down a host that keeps failing, outside the auth deadline so the
                # refusal still reaches it.
                await server.clock.sleep(delay)
            self.session.reject_auth(reason)
            for event in self.session.events_received():
                await self._handle_event(event)
            return False
        return self.session.state is State.OPEN

    async def _decide(self, event: AuthRequested) -> tuple[str, float] | None:
        """Accept the peer, or return the refusal reason and the delay before sending it."""
        server = self.server
        host = _host_of(self.conn.remote_address)
        decision = server.auth.authenticate(event.username, event.token)
        if decision.peer_id is not None:
            server.throttle.success(host)
            self.peer_id = decision.peer_id
            self.log = self.log.bind(peerId=decision.peer_id)
            self.session.accept_auth(decision.peer_id)
            self.log.info("btp_auth", success=True, requestId=event.request_id)
            server._register(self, decision.peer_id)
            return None
        delay = server.throttle.failure(host, server.clock.now().timestamp())
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

    # --- serving --------------------------------------------------------------------------

    async def _serve(self) -> None:
        session = self.session
        while self._close is None:
            session.receive_message(await self.conn.receive())
            for event in session.events_received():
                if isinstance(event, PrepareReceived):
                    self._accept_prepare(event.request_id, event.prepare)
                else:
                    await self._handle_event(event)
            await self._flush()

    def _accept_prepare(self, request_id: int, prepare: Prepare) -> None:
        server = self.server
        self.log.debug(
            "btp_message_received",
            requestId=request_id,
            destination=prepare.destination,
            amount=prepare.amount,
        )
        if server.draining:
            self._answer_now(
                request_id,
                server.reject(IlpErrorCode.T03_CONNECTOR_BUSY, "connector shutting down"),
            )
        elif len(self.tasks) >= server.limits.max_in_flight:
            # Counts tasks, not unanswered requests: a reply waiting to be written to a peer
            # that does not read still holds memory, and must count against the bound.
            self._answer_now(
                request_id,
                server.reject(IlpErrorCode.T03_CONNECTOR_BUSY, "too many requests in flight"),
            )
        else:
            task = asyncio.create_task(self._process(request_id, prepare))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _process(self, request_id: int, prepare: Prepare) -> None:
        server = self.server
        assert self.peer_id is not None
        remaining = (prepare.expires_at - server.clock.now()).total_seconds()
        try:
            async with server.clock.timeout(max(remaining, 0.0)):
                reply = await server.processor.process(prepare, self.peer_id)
        except TimeoutError:
            reply = server.reject(IlpErrorCode.R00_TRANSFER_TIMED_OUT, "expired before a reply")
        self._answer_now(request_id, reply)
        await self._flush()

    def _answer_now(self, request_id: int, reply: Reply) -> None:
        session = self.session
        if not session.awaits_answer(request_id):
            self.log.debug("btp_reply_dropped", requestId=request_id, state=session.state.name)
            return
        session.send_result(request_id, reply)
        self.log.debug(
            "btp_response_sent",
            requestId=request_id,
            responseType="FULFILL" if isinstance(reply, Fulfill) else "REJECT",
            code=None if isinstance(reply, Fulfill) else reply.code,
        )

    async def _handle_event(self, event: Event) -> None:
        if isinstance(event, InvalidPrepareReceived):
            self.log.warning("btp_invalid_prepare", requestId=event.request_id, reason=event.reason)
            self._answer_now(
                event.request_id,
                self.server.reject(IlpErrorCode.F01_INVALID_PACKET, event.reason),
            )
        elif isinstance(event, FrameRejected):
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
        else:  # pragma: no cover - events of the client role never reach a server session
            self.log.debug("btp_event_ignored", kind=type(event).__name__)

    # --- transport ------------------------------------------------------------------------

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
