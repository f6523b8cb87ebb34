"""Drives the route exchange (``domain/route_exchange.py``) over the links: tells it when a
peer's links come and go, sends what it queues as ILP Prepares (amount 0, ``peer.route.*``) and
hands the answers back, and wakes it when something is due. One timer, nothing per packet."""

from __future__ import annotations

from datetime import timedelta

from connector.app.links import Links
from connector.domain.accounts import Account, Relation
from connector.domain.ccp import RouteControl, control_prepare, update_prepare
from connector.domain.ildcp import PEER_FULFILLMENT
from connector.domain.ilp.packets import Fulfill, Reject, Reply
from connector.domain.pipeline import PacketRequest, Pipeline, Spawn
from connector.domain.ports import Cancellable, Clock, LogSink
from connector.domain.route_exchange import RouteExchange

#: The longest the exchange sleeps between looks at what is due.
_MAX_SLEEP = 1.0
#: How long a route message of ours may wait for its answer (ilp-connector times out an update
#: after its broadcast interval; the link answers R00 at this expiry).
_ANSWER_WITHIN = timedelta(seconds=20)


class RouteBroadcaster:
    def __init__(
        self,
        exchange: RouteExchange,
        links: Links,
        clock: Clock,
        log: LogSink,
        ilp_address: str,
        spawn: Spawn,
    ) -> None:
        self.exchange = exchange
        self._links = links
        self._clock = clock
        self._log = log
        # Our route messages are requests of their own, answered to this object (the Origin);
        # an empty pipeline only carries the answer back.
        self._pipeline = Pipeline((), ilp_address, spawn, log)
        self._self = Account.of("self", Relation.PEER)
        self._timer: Cancellable | None = None
        self._due = float("inf")
        self._flushing = False
        self._running = False
        exchange.wake = self._wake
        links.on_attach(self._attached)
        links.on_change(self._changed)

    def set_ilp_address(self, address: str) -> None:
        """The node's address became known (IL-DCP): our routes and our children's appear and
        go out to the peers."""
        self._pipeline.set_ilp_address(address)
        self.exchange.set_address(address, self._clock.monotonic())

    def start(self) -> None:
        self._running = True
        self._wake()

    def stop(self) -> None:
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- links ----------------------------------------------------------------------------

    def _attached(self, peer_id: str) -> None:
        self.exchange.peer_up(peer_id, self._clock.monotonic())

    def _changed(self, peer_id: str, connected: bool) -> None:
        if not connected:
            self.exchange.peer_down(peer_id, self._clock.monotonic())

    # --- sending --------------------------------------------------------------------------

    def _wake(self) -> None:
        if not self._running or self._flushing:
            return
        self._flushing = True
        try:
            self._flush()
        finally:
            self._flushing = False
        now = self._clock.monotonic()
        due = min(self.exchange.next_due(now), now + _MAX_SLEEP)
        if self._timer is None or due < self._due - 0.001:
            if self._timer is not None:
                self._timer.cancel()
            self._due = due
            self._timer = self._clock.call_later(max(due - now, 0.0), self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._due = float("inf")
        if not self._running:
            return
        try:
            self.exchange.tick(self._clock.monotonic())  # wakes us: flush and a new timer
        finally:
            if self._timer is None:  # whatever happened, the exchange keeps its clock
                self._wake()

    def _flush(self) -> None:
        exchange = self.exchange
        while exchange.outbox:
            batch, exchange.outbox = exchange.outbox, []
            now = self._clock.now()
            for out in batch:
                message = out.message
                try:
                    if isinstance(message, RouteControl):
                        prepare = control_prepare(message, now)
                    else:
                        prepare = update_prepare(message, now)
                except Exception as exc:  # never a stuck exchange: it is told, and goes on
                    self._log.error("route_message_failed", peerId=out.peer_id, error=repr(exc))
                    exchange.answered(out.token, False, self._clock.monotonic())
                    continue
                req = PacketRequest(self._pipeline, self, out.token, self._self, prepare, None)
                req.expires_out = min(prepare.expires_at, now + _ANSWER_WITHIN)
                refused = self._links.send(out.peer_id, req)
                if refused is not None:  # T01 (not connected) or T03 (not reading)
                    exchange.answered(out.token, False, self._clock.monotonic(), transient=True)

    # --- Origin: the answers to our route messages -----------------------------------------

    def answer(self, request_id: int, reply: Reply, raw: bytes | None) -> None:
        fulfilled = isinstance(reply, Fulfill) and reply.fulfillment == PEER_FULFILLMENT
        transient = isinstance(reply, Reject) and reply.code.startswith(("T", "R"))
        if not fulfilled:
            self._log.debug("route_message_refused", requestId=request_id, reply=repr(reply)[:200])
        self.exchange.answered(request_id, fulfilled, self._clock.monotonic(), transient)
