"""A node with no address configured asks its first parent for one over IL-DCP (RFC-0031), as
ilp-connector does: ``peer.config`` as soon as a link to the parent is authenticated, whoever
dialed, and again after a Reject, a timeout or a dropped link, with backoff, until it has one.

The request is a ``PacketRequest`` of an empty pipeline sent with ``Links.send`` (as the route
broadcaster's are), whose ``Origin`` is this object: the link answers it R00 at its expiry (the
sweep, on the injected clock) and T01 when the link drops, so no wait is unbounded and none
needs a timer of its own. One timer waits out the backoff. Nothing here is on a packet's path.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from connector.app.links import Links
from connector.domain.accounts import Account, Accounts, Relation
from connector.domain.backoff import Backoff
from connector.domain.errors import IlpCodecError
from connector.domain.ildcp import DESTINATION, PEER_CONDITION, IldcpResponse
from connector.domain.ilp.address import is_valid_address
from connector.domain.ilp.packets import Fulfill, Prepare, Reply, fulfillment_matches
from connector.domain.pipeline import PacketRequest, Pipeline, Spawn
from connector.domain.ports import Cancellable, Clock, LogSink

#: How long the parent has to answer one request (the link answers R00 then, and we retry).
ASK_WITHIN = timedelta(seconds=10)


class AddressFromParent:
    def __init__(
        self,
        parent: str,
        accounts: Accounts,
        links: Links,
        clock: Clock,
        log: LogSink,
        spawn: Spawn,
        backoff: Backoff | None = None,
    ) -> None:
        self.parent = parent
        #: None until the parent told us.
        self.address: str | None = None
        self.attempts = 0
        #: Called once with the address, before it is logged (the node's ``set_ilp_address``).
        self.on_known: Callable[[str], None] = lambda address: None
        self._accounts = accounts
        self._links = links
        self._clock = clock
        self._log = log
        self._backoff = backoff or Backoff()
        # The answer comes back to this object (the Origin); the empty pipeline only carries it.
        self._pipeline = Pipeline((), "", spawn, log)
        self._self = Account.of("self", Relation.PEER)
        self._asking: int | None = None  # the request id in flight
        self._timer: Cancellable | None = None
        self._running = False
        links.on_attach(self._attached)

    def start(self) -> None:
        self._running = True
        if self._links.is_connected(self.parent):
            self._ask()

    def stop(self) -> None:
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _attached(self, peer_id: str) -> None:
        # While a backoff runs, its timer asks (a parent that keeps reconnecting is not asked
        # faster than the backoff allows).
        if peer_id == self.parent and self._timer is None:
            self._ask()

    def _retry(self) -> None:
        self._timer = None
        if self._links.is_connected(self.parent):
            self._ask()  # otherwise the next authenticated link to the parent asks

    def _ask(self) -> None:
        if not self._running or self.address is not None or self._asking is not None:
            return
        self.attempts += 1
        request_id = self.attempts
        self._asking = request_id
        prepare = Prepare(0, self._clock.now() + ASK_WITHIN, PEER_CONDITION, DESTINATION, b"")
        req = PacketRequest(self._pipeline, self, request_id, self._self, prepare, None)
        refused = self._links.send(self.parent, req)
        if refused is not None:  # T01 (gone meanwhile) or T03 (not reading)
            self.answer(request_id, refused, None)

    # --- Origin: the parent's answer ------------------------------------------------------

    def answer(self, request_id: int, reply: Reply, raw: bytes | None) -> None:
        if request_id != self._asking:
            return
        self._asking = None
        if not self._running or self.address is not None or self._links.draining:
            return  # a shutdown's T03 is no failure to retry
        error = self._learn(reply)
        if error is None:
            return
        self._log.warning("ildcp_failed", parent=self.parent, error=error, attempt=self.attempts)
        self._timer = self._clock.call_later(self._backoff.next(), self._retry)

    def _learn(self, reply: Reply) -> str | None:
        """Takes the address from a good answer; otherwise says what was wrong with it."""
        if not isinstance(reply, Fulfill):
            return f"{reply.code} {reply.message}"[:200]
        if not fulfillment_matches(reply.fulfillment, PEER_CONDITION):
            return "the fulfillment does not match the peer-protocol condition"
        try:
            response = IldcpResponse.decode(reply.data)
        except IlpCodecError as exc:
            return f"invalid IL-DCP response: {exc}"[:200]
        address = response.client_address
        if not is_valid_address(address):
            return "invalid IL-DCP response: not a valid ILP address"
        self.address = address
        self.on_known(address)
        self._log.info("ildcp_address", ilpAddress=address, parent=self.parent)
        account = self._accounts.get(self.parent)
        if account is not None and (account.asset.code, account.asset.scale) != (
            response.asset_code,
            response.asset_scale,
        ):
            # Assets stay as configured: amounts to and from the parent are in those units.
            self._log.warning(
                "ildcp_asset_mismatch",
                parent=self.parent,
                assetCode=response.asset_code,
                assetScale=response.asset_scale,
                configured=f"{account.asset.code}/{account.asset.scale}",
            )
        return None
