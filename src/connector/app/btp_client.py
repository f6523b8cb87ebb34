"""Outgoing peers: dial, authenticate, serve, and reconnect with backoff until stopped.

Each ``OutgoingPeer`` keeps one dialed ``BtpLink`` to a peer that has a ``url``. WebSocket pings
(the transport's keepalive) detect a dead peer; when the link drops, its requests in flight fail
at once (the pipeline answers T01) and the peer is dialed again after an exponential delay with
jitter, reset by every successful auth. The secret comes from the store at every dial, so a
rotated secret is presented from the next reconnect on; with none to present, the attempt fails
(``btp_secret_unavailable``) and backs off like a refused dial.
"""

from __future__ import annotations

import asyncio
import contextlib

from connector.app.link import BtpLink
from connector.app.links import LinkContext
from connector.domain.backoff import Backoff
from connector.domain.btp.session import Role
from connector.domain.ports import Dialer, SecretStore


class OutgoingPeer:
    def __init__(
        self,
        ctx: LinkContext,
        dialer: Dialer,
        peer_id: str,
        url: str,
        username: str,
        secrets: SecretStore,
        backoff: Backoff | None = None,
    ) -> None:
        self._ctx = ctx
        self._dialer = dialer
        self.peer_id = peer_id
        self.url = url
        self._username = username
        self._secrets = secrets
        self._backoff = backoff or Backoff()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.link: BtpLink | None = None
        self.attempts = 0
        self.tried = asyncio.Event()
        self.log = ctx.log.bind(peerId=peer_id, url=url)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        if self.link is not None:
            self.link.stop("connector shutting down")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def retire(self, reason: str) -> None:
        """Stop for good without cutting anything short (a reload removed or changed this
        peer): the link takes no new Prepare, its requests in flight get their real answers,
        then it closes with 1000 (``BtpLink.retire``, bounded); nothing redials."""
        self._stopping = True
        link = self.link
        if link is not None:
            link.retire(reason)
            await link.closed.wait()
        await self.stop()

    async def _run(self) -> None:
        ctx = self._ctx
        while not self._stopping and not ctx.links.draining:
            self.attempts += 1
            secret = self._secrets.secret_for(self.peer_id)  # each dial: rotations reach it
            if secret is None:
                self.log.warning(
                    "btp_secret_unavailable",
                    attempt=self.attempts,
                    reason=self._secrets.missing_reason(self.peer_id),
                )
                await self._retry()
                continue
            ctx.observer.dialing(self.peer_id)
            try:
                async with ctx.clock.timeout(ctx.limits.auth_timeout * 2):
                    conn = await self._dialer.dial(self.url)
            except Exception as exc:  # refused, timed out, HTTP handshake refused, bad URL: retry
                self.log.warning(
                    "btp_dial_failed",
                    attempt=self.attempts,
                    error=f"{type(exc).__name__}: {exc}"[:200],
                )
            else:
                if self._stopping or ctx.links.draining:  # the dial ended after shutdown began
                    conn.abort()
                    return
                link = BtpLink(ctx, conn, Role.CLIENT, peer_id=self.peer_id)
                self.link = link
                try:
                    link.start(self._username, secret)
                    await self._opened_or_closed(link)
                    await link.closed.wait()
                finally:
                    self.link = None
            await self._retry()

    async def _retry(self) -> None:
        """Count the attempt as tried, then wait for the backoff delay (unless stopping)."""
        self.tried.set()
        if self._stopping or self._ctx.links.draining:
            return
        delay = self._backoff.next()
        self.log.info("btp_reconnect_scheduled", attempt=self.attempts, delay=round(delay, 3))
        await self._ctx.clock.sleep(delay)

    async def _opened_or_closed(self, link: BtpLink) -> None:
        opened = asyncio.ensure_future(link.opened.wait())
        closed = asyncio.ensure_future(link.closed.wait())
        try:
            await asyncio.wait([opened, closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            opened.cancel()
            closed.cancel()
        if link.opened.is_set():
            self._backoff.reset()
            self.tried.set()
