"""The BTP server: accepts peers on any ``ServerTransport`` and gives each a ``BtpLink``.

Everything goes through ports (transport, clock, secrets, logs), so the same code runs on real
WebSockets and on the in-memory transport. The server also owns graceful shutdown: refuse new
sessions (the listener stays open for health probes), let requests in flight finish until
``shutdown_timeout``, answer whatever is left (T03), close every connection (accepted or dialed)
with 1000, then close the listener.
"""

from __future__ import annotations

import asyncio
import contextlib

from connector.app.link import BtpLink, host_of
from connector.app.links import LinkContext, Links, ServerLimits
from connector.domain.btp.session import CloseCode, Role
from connector.domain.ports import Connection, HttpHandler, ServerTransport

__all__ = ["BtpServer", "ServerLimits"]


class _Refused:
    """The handler of a connection refused before it was served: it only waits for the close."""

    def on_message(self, data: bytes | str) -> None:
        pass

    def on_closing(self, code: int, reason: str) -> None:
        pass

    def on_closed(self, code: int, reason: str) -> None:
        pass


class BtpServer:
    """Accepts BTP peers and hands their Prepares to the pipeline."""

    def __init__(self, transport: ServerTransport, ctx: LinkContext, links: Links) -> None:
        self.transport = transport
        self.ctx = ctx
        self.links = links
        self.log = ctx.log
        self._shutdown_started = False
        self._stopped = False
        self._listening = False

    @property
    def limits(self) -> ServerLimits:
        return self.ctx.limits

    @property
    def draining(self) -> bool:
        return self.links.draining

    @property
    def connections(self) -> list[BtpLink]:
        """Accepted connections still open, authenticated or not."""
        return [link for link in self.links.all if link.role is Role.SERVER]

    @property
    def peers(self) -> dict[str, BtpLink]:
        """Authenticated peers and the link packets to each go over."""
        links = self.links
        return {p: link for p in links.connected_peers() if (link := links.link_for(p))}

    async def start(self, http: HttpHandler | None = None) -> None:
        """Listen; ``http`` answers plain HTTP GETs on the same port (health, metrics)."""
        await self.transport.start(self._accept, http)
        self._listening = True
        self.log.info(
            "btp_server_started",
            address=self.transport.address,
            tls=self.transport.tls,
            ilpAddress=self.ctx.ilp_address or None,  # None: still to come from the parent
            authTimeout=self.limits.auth_timeout,
            maxInFlight=self.limits.max_in_flight,
        )

    def _accept(self, conn: Connection) -> None:
        links = self.links
        host = host_of(conn.remote_address)
        reason = None
        if links.draining:
            reason = "connector shutting down"
        elif len(self.connections) >= self.limits.max_connections:
            reason = "server at capacity"
        elif self._pending_from(host) >= self.limits.max_pending_per_host:
            # One host may not hold the slots of everyone else with connections it never
            # authenticates (each one lasts until its auth timeout).
            reason = "too many connections from your host waiting to authenticate"
        if reason is not None:
            self.log.warning(
                "btp_connection_refused", remoteAddress=conn.remote_address, reason=reason
            )
            conn.start(_Refused(), max_message_size=1024)
            conn.close(CloseCode.TRY_AGAIN_LATER, reason)
            return
        BtpLink(self.ctx, conn, Role.SERVER).start()

    def _pending_from(self, host: str) -> int:
        return sum(
            1
            for link in self.links.all
            if link.role is Role.SERVER
            and link.opened_at is None
            and host_of(link.conn.remote_address) == host
        )

    async def shutdown(self) -> None:
        """Graceful stop: see the module docstring. Idempotent."""
        if self._shutdown_started:
            return
        self._shutdown_started = True
        if not self._listening:
            # It never started (its port was taken): nothing to drain, and no log line about a
            # server that never ran; the caller reports the failure itself.
            self.links.draining = True
            self._stopped = True
            return
        links = self.links
        limits = self.limits
        self.log.info(
            "btp_server_shutdown",
            activeConnections=len(links.all),
            inFlight=links.total_in_flight,
        )
        # The listener stays open while draining: new BTP connections are refused (1013) and
        # health probes see 503 "stopping" before any connection closes.
        await links.drain(limits.shutdown_timeout)
        await links.close_all("connector shutting down", limits.shutdown_timeout)
        self.ctx.pipeline.abandon()  # steps whose task was cancelled before it ever ran
        await self.transport.stop_accepting()
        with contextlib.suppress(TimeoutError):
            # Real time: sockets still in a handshake close by the transport's own bounds.
            async with asyncio.timeout(limits.shutdown_timeout):
                await self.transport.wait_closed()
        self.log.info("btp_server_stopped")
        self._stopped = True
