"""The owner of every link: which peers are connected over which links, the draining flag, the
expiry sweep, and the ``NextHops`` port the ``Send`` step uses.

A peer is one peer whoever dialed: it may have an accepted link, a dialed link, or both, and
packets go over the newest link that is open. A newer link of the same direction replaces the
older (the older stops: its requests in flight are answered T03, then it closes 1000); a dialed
link never replaces an accepted one or the reverse, which would make two connectors that both
dial each other flap forever.

One sweep, a few times a second on the injected clock, answers every expired request of every
link: no timer per packet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from connector.app.link import BtpLink, LinkContext, ServerLimits
from connector.domain.accounts import Accounts
from connector.domain.ilp.packets import IlpErrorCode, Reject
from connector.domain.pipeline import PacketRequest
from connector.domain.ports import Cancellable, Clock, LogSink

__all__ = ["LinkContext", "Links", "ServerLimits"]

#: Seconds between sweeps: how late, at most, an expiry is answered.
SWEEP_INTERVAL = 0.1


class Links:
    def __init__(self, clock: Clock, log: LogSink, ilp_address: str) -> None:
        self._clock = clock
        self._log = log
        self._address = ilp_address
        self._by_peer: dict[str, list[BtpLink]] = {}
        self.all: set[BtpLink] = set()  # every link, authenticated or not
        self._listeners: list[Callable[[str, bool], None]] = []
        self._connected: set[str] = set()  # peers reported connected to the listeners
        self._attach_listeners: list[Callable[[str], None]] = []
        self._sweeper: Cancellable | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.draining = False
        self._idle: asyncio.Event | None = None

    def set_ilp_address(self, address: str) -> None:
        """The node's address became known (IL-DCP): the Rejects made here carry it."""
        self._address = address

    # --- membership -----------------------------------------------------------------------

    def on_change(self, listener: Callable[[str, bool], None]) -> None:
        """Call ``listener(peer_id, connected)`` when a peer's first link opens or last closes."""
        self._listeners.append(listener)

    def on_attach(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(peer_id)`` for every link that authenticates (a reconnect too)."""
        self._attach_listeners.append(listener)

    def track(self, link: BtpLink) -> None:
        """A new link, not yet authenticated: swept for its auth deadline."""
        self.all.add(link)
        if self._sweeper is None:
            self._sweeper = self._clock.call_later(SWEEP_INTERVAL, self._sweep)

    def attach(self, link: BtpLink) -> None:
        """An authenticated link: packets to its peer may go over it now."""
        peer_id = link.peer_id
        assert peer_id is not None
        links = self._by_peer.setdefault(peer_id, [])
        replaced = [old for old in links if old.role is link.role and old is not link]
        for old in replaced:
            links.remove(old)
        links.append(link)
        for old in replaced:
            self._log.info("btp_connection_replaced", peerId=peer_id)
            old.retire("replaced by a newer connection for this peer")
        if peer_id not in self._connected:
            self._connected.add(peer_id)
            for listener in self._listeners:
                listener(peer_id, True)
        for on_attach in self._attach_listeners:
            on_attach(peer_id)

    def forget(self, link: BtpLink) -> None:
        """The link's connection is gone."""
        self.all.discard(link)
        peer_id = link.peer_id
        links = self._by_peer.get(peer_id) if peer_id is not None else None
        if links is None or link not in links:
            return
        links.remove(link)
        if not links:
            del self._by_peer[peer_id]  # type: ignore[arg-type]
            self._connected.discard(peer_id)
            for listener in self._listeners:
                listener(peer_id, False)  # type: ignore[arg-type]
        self._maybe_idle()

    def link_for(self, peer_id: str) -> BtpLink | None:
        for link in reversed(self._by_peer.get(peer_id, ())):
            if link.is_open:
                return link
        return None

    def is_connected(self, peer_id: str) -> bool:
        return self.link_for(peer_id) is not None

    def links_of(self, peer_id: str) -> list[BtpLink]:
        return list(self._by_peer.get(peer_id, ()))

    def connected_peers(self) -> list[str]:
        return sorted(p for p in self._by_peer if self.is_connected(p))

    @property
    def total_in_flight(self) -> int:
        return sum(len(link.incoming) for link in self.all)

    def reconfigure(self, accounts: Accounts, retire: Collection[str], reason: str) -> int:
        """A reload: the links of the peers in ``retire`` close once nothing is in flight on
        them (``BtpLink.retire``); every other authenticated link takes its peer's new account
        for its next Prepare. Answers how many links retire."""
        retiring = 0
        for link in list(self.all):
            peer_id = link.peer_id
            if peer_id is None or link.account is None:
                continue
            if peer_id in retire:
                link.retire(reason)
                retiring += 1
            else:
                link.account = accounts.get(peer_id) or link.account
        return retiring

    # --- NextHops -------------------------------------------------------------------------

    def send(self, peer_id: str, req: PacketRequest) -> Reject | None:
        link = self.link_for(peer_id)
        if link is None:
            return Reject(
                IlpErrorCode.T01_PEER_UNREACHABLE, self._address, f"peer {peer_id} is not connected"
            )
        return link.request(req)

    # --- tasks (a step that awaits I/O) ---------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- time -----------------------------------------------------------------------------

    def _sweep(self) -> None:
        self._sweeper = None
        now = self._clock.now()
        for link in list(self.all):
            try:
                link.sweep(now)
            except Exception as exc:  # a bug in one link must not stop the sweeps of all
                self._log.error("sweep_failed", error=type(exc).__name__, detail=str(exc)[:200])
        if self.all:
            self._sweeper = self._clock.call_later(SWEEP_INTERVAL, self._sweep)

    # --- shutdown -------------------------------------------------------------------------

    def answered_while_draining(self) -> None:
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        if self._idle is not None and self.total_in_flight == 0:
            self._idle.set()

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109 - on the injected clock
        """Refuse new Prepares (T03) and wait, at most ``timeout``, for those in flight."""
        self.draining = True
        self._idle = asyncio.Event()
        self._maybe_idle()
        with contextlib.suppress(TimeoutError):
            async with self._clock.timeout(timeout):
                await self._idle.wait()

    async def close_all(self, reason: str, timeout: float) -> None:  # noqa: ASYNC109
        """Stop every link (what is still in flight gets T03), wait for them to close (bounded:
        each transport aborts a close that takes longer than its close timeout), then cancel
        what is left of steps that await I/O."""
        # Every link answers what it still owes first, so no Prepare in flight is failed by the
        # close of another link before its own answer (T03) is written.
        for link in list(self.all):
            link.answer_in_flight(reason)
        for link in list(self.all):
            link.stop(reason)
        closing = [link.closed.wait() for link in list(self.all)]
        if closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.gather(*closing)
        for link in list(self.all):  # the transport did not report a close in time
            link.conn.abort()
            link.on_closed(1006, "connection lost")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
