"""The BTP server: accepts peers on any ``ServerTransport`` and runs a ``BtpLink`` for each.

Everything goes through ports (transport, clock, processor, secrets, logs), so the same code runs
on real WebSockets and on the in-memory transport. The server also owns graceful shutdown: refuse
new sessions (the listener stays open for health probes), let requests in flight finish until
``shutdown_timeout``, reject whatever is left, close every connection (accepted or dialed) with
1000, then close the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from connector.app.btp_link import BtpLink, LinkContext, ServerLimits
from connector.app.metrics import Metrics
from connector.app.peers import PeerRegistry
from connector.domain.auth import AuthPolicy, AuthThrottle
from connector.domain.btp.session import CloseCode, Role
from connector.domain.ports import (
    Clock,
    Connection,
    HttpHandler,
    LogSink,
    PacketProcessor,
    ServerTransport,
)
from connector.domain.processing import ErrorBoundary

__all__ = ["BtpServer", "ServerLimits"]


class BtpServer:
    """Accepts BTP peers and hands their Prepares to a ``PacketProcessor``."""

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
        registry: PeerRegistry | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.transport = transport
        self.auth = auth
        self.throttle = throttle
        self.log = log
        self.registry = registry or PeerRegistry()
        # The one outermost step that turns an exception (or a non-reply) into a T00 Reject:
        # applied here, so no chain a caller builds can leave a Prepare unanswered.
        self.ctx = LinkContext(
            ErrorBoundary(processor, ilp_address, log),
            clock,
            log,
            ilp_address,
            limits,
            metrics or Metrics(),
        )
        self.connections: set[BtpLink] = set()
        self._stopped = asyncio.Event()
        self._shutting_down = False
        self._background: set[asyncio.Task[None]] = set()

    @property
    def processor(self) -> PacketProcessor:
        return self.ctx.processor

    @property
    def limits(self) -> ServerLimits:
        return self.ctx.limits

    @property
    def draining(self) -> bool:
        return self.ctx.draining

    @property
    def peers(self) -> dict[str, BtpLink]:
        """Authenticated peers and the link packets to each go over."""
        return {
            p: link for p in self.registry.connected_peers() if (link := self.registry.link_for(p))
        }

    async def start(self, http: HttpHandler | None = None) -> None:
        """Listen; ``http`` answers plain HTTP GETs on the same port (health, metrics)."""
        await self.transport.start(self._accept, http)
        self.log.info(
            "btp_server_started",
            address=self.transport.address,
            ilpAddress=self.ctx.ilp_address,
            authTimeout=self.limits.auth_timeout,
            maxInFlight=self.limits.max_in_flight,
        )

    def attach(self, link: BtpLink) -> None:
        """An accepted link authenticated. One accepted connection per peer: a newer one
        replaces the older, which lets a peer whose old socket died silently reconnect at once,
        as ilp-plugin-btp's own server does."""
        assert link.peer_id is not None
        for old in self.registry.attach(link.peer_id, link):
            self.log.info("btp_connection_replaced", peerId=link.peer_id)
            # In the background: closing a dead socket can take close_timeout, and the new
            # connection must not wait for that.
            self.in_background(old.stop("replaced by a newer connection for this peer"))

    def in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def shutdown(self) -> None:
        """Graceful stop: see the module docstring. Idempotent; returns when all is closed."""
        if self._shutting_down:
            await self._stopped.wait()
            return
        self._shutting_down = True
        self.ctx.draining = True
        links = self.connections | set(self.registry.all_links())
        self.log.info(
            "btp_server_shutdown",
            activeConnections=len(links),
            inFlight=sum(len(link.tasks) for link in links),
        )
        # The listener stays open while draining: new BTP connections are refused (1013) and
        # health probes see 503 "stopping" before any connection closes.
        tasks = [t for link in links for t in link.tasks]
        if tasks:
            with contextlib.suppress(TimeoutError):
                async with self.ctx.clock.timeout(self.limits.shutdown_timeout):
                    await asyncio.wait(tasks)
        links = self.connections | set(self.registry.all_links())
        await asyncio.gather(
            *(link.stop("connector shutting down") for link in links), *self._background
        )
        await self.transport.stop_accepting()
        wait_closed = getattr(self.transport, "wait_closed", None)
        if wait_closed is not None:
            with contextlib.suppress(TimeoutError):
                async with self.ctx.clock.timeout(self.limits.shutdown_timeout):
                    await wait_closed()
        self.log.info("btp_server_stopped")
        self._stopped.set()

    async def _accept(self, conn: Connection) -> None:
        if self.ctx.draining or len(self.connections) >= self.limits.max_connections:
            reason = "connector shutting down" if self.ctx.draining else "server at capacity"
            self.log.warning(
                "btp_connection_refused", remoteAddress=conn.remote_address, reason=reason
            )
            await conn.close(CloseCode.TRY_AGAIN_LATER, reason)
            return
        link = BtpLink(self.ctx, conn, Role.SERVER)
        self.connections.add(link)
        try:
            await link.run_server(self)
        finally:
            self.connections.discard(link)
            if link.peer_id is not None:
                self.registry.detach(link.peer_id, link)
