"""The steps of the pipeline that forward a Prepare, with the RFC-0027 connector rules (ILP.md §6).

In pipeline order (``app/container.py`` lists them; the order test reads that list), after the
sender's limits (``limits.py``: ``rate_limit``, ``incoming_max_packet_amount``):

- ``AddressPending`` (not in the list: ``Pipeline.hold`` runs it alone while a node waits for
  its address over IL-DCP): T00 for everything;
- ``PeerProtocols``: ``peer.*`` is answered here, never forwarded (IL-DCP for children);
- ``Route``: the next hop, by longest prefix (F02 when none, or when it is the sender);
- ``MaxPacketAmount``: the next hop's ``max_packet_amount`` (F08 with both amounts; the same
  key limits what the peer sends us, in ``limits.py``);
- ``Expiry``: the outgoing expiry, a window earlier and capped by the hold time (R02);
- ``FulfillmentCheck``: on the way back, a Fulfill whose preimage is wrong becomes F05;
- ``Send``: hands the Prepare to the next hop's link (T01 when it is not connected, T03 when it
  does not read); the link answers R00 when the outgoing expiry passes first.

The ``rate`` step (``rates.py``) sits between ``Route`` and ``MaxPacketAmount``: it sets the
outgoing amount in the next hop's asset. Rejects created here carry ``triggeredBy`` = this node;
Rejects from downstream go back unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar, Protocol

from connector.domain.accounts import Accounts, Relation
from connector.domain.ccp import CONTROL_DESTINATION, UPDATE_DESTINATION, RouteControl, RouteUpdate
from connector.domain.errors import IlpCodecError
from connector.domain.ildcp import DESTINATION as ILDCP_DESTINATION
from connector.domain.ildcp import PEER_CONDITION, PEER_FULFILLMENT, IldcpResponse
from connector.domain.ilp.packets import (
    Fulfill,
    IlpErrorCode,
    Reject,
    Reply,
    fulfillment_matches,
)
from connector.domain.pipeline import WAIT, MakesRejects, PacketRequest, StepResult
from connector.domain.ports import Clock, LogSink, NullSink
from connector.domain.route_exchange import RouteExchange
from connector.domain.routing import Routes


@dataclass(frozen=True, slots=True)
class ForwardingRules:
    """ilp-connector's defaults: ``minMessageWindow`` 1 s, ``maxHoldTime`` 30 s."""

    min_message_window: float = 1.0
    max_hold_time: float = 30.0


class NextHops(Protocol):
    """The links to the next hops, as the ``Send`` step uses them."""

    def send(self, peer_id: str, req: PacketRequest) -> Reject | None:
        """Send ``req``'s outgoing Prepare to ``peer_id``; its reply arrives by ``req.resume``.
        Returns a Reject at once when it cannot be sent."""
        ...


class AddressPending:
    """What runs instead of the steps while the node waits for its address from its parent
    (``Pipeline.hold``): every Prepare gets T00, IL-DCP and route messages too (a child would
    learn a wrong address; routes cannot be checked against ours). ``triggeredBy`` is empty:
    we have no address to put there."""

    name: ClassVar[str] = "address_pending"

    def __init__(self) -> None:
        self._refusal = Reject(IlpErrorCode.T00_INTERNAL_ERROR, "", "ILP address not known yet")

    def on_prepare(self, req: PacketRequest) -> StepResult:
        return self._refusal


class PeerProtocols(MakesRejects):
    """Answers ``peer.*`` destinations locally (RFC-0015: connectors MUST NOT forward them)."""

    name: ClassVar[str] = "peer_protocols"

    def __init__(
        self, accounts: Accounts, clock: Clock, routing: RouteExchange | None = None
    ) -> None:
        self._accounts = accounts
        self._address = accounts.ilp_address
        self._clock = clock
        self._routing = routing

    def on_prepare(self, req: PacketRequest) -> StepResult:
        prepare = req.prepare
        if not prepare.destination.startswith("peer."):
            return None
        if prepare.execution_condition != PEER_CONDITION:
            return self._reject(
                IlpErrorCode.F01_INVALID_PACKET, "peer protocol needs the peer condition"
            )
        if prepare.destination in (CONTROL_DESTINATION, UPDATE_DESTINATION):
            return self._route_message(req)
        if prepare.destination != ILDCP_DESTINATION:
            return self._reject(IlpErrorCode.F01_INVALID_PACKET, "unknown peer protocol")
        if prepare.expires_at <= self._clock.now():
            return self._reject(IlpErrorCode.R00_TRANSFER_TIMED_OUT, "IL-DCP request expired")
        source = req.source
        if source.relation is not Relation.CHILD:
            return self._reject(IlpErrorCode.F00_BAD_REQUEST, "IL-DCP is served to children only")
        response = IldcpResponse(
            self._accounts.child_address(source.id), source.asset.scale, source.asset.code
        )
        return Fulfill(PEER_FULFILLMENT, response.encode())

    def _route_message(self, req: PacketRequest) -> Reply:
        """CCP (``peer.route.*``): answered here; the route exchange decides."""
        routing = self._routing
        prepare = req.prepare
        if routing is None:
            return self._reject(IlpErrorCode.F01_INVALID_PACKET, "route exchange is off")
        if prepare.expires_at <= self._clock.now():
            return self._reject(IlpErrorCode.R00_TRANSFER_TIMED_OUT, "route message expired")
        now = self._clock.monotonic()
        try:
            if prepare.destination == CONTROL_DESTINATION:
                why = routing.handle_control(req.source.id, RouteControl.decode(prepare.data), now)
            else:
                why = routing.handle_update(req.source.id, RouteUpdate.decode(prepare.data), now)
        except IlpCodecError as exc:
            return self._reject(IlpErrorCode.F01_INVALID_PACKET, f"invalid route message: {exc}")
        if why is not None:
            return self._reject(IlpErrorCode.F00_BAD_REQUEST, why)
        return Fulfill(PEER_FULFILLMENT, b"")

    def _reject(self, code: IlpErrorCode, message: str) -> Reject:
        return Reject(code, self._address, message)


class Route(MakesRejects):
    """Chooses the next hop: the longest matching prefix of the current routing table."""

    name: ClassVar[str] = "route"

    def __init__(self, accounts: Accounts, routes: Routes) -> None:
        self._accounts = accounts
        self._address = accounts.ilp_address
        self._routes = routes

    def on_prepare(self, req: PacketRequest) -> StepResult:
        destination = req.prepare.destination
        next_hop = self._routes.table.resolve(destination)
        if not next_hop:  # None: no route; "": this node's own address, nobody to send it to
            return Reject(IlpErrorCode.F02_UNREACHABLE, self._address, f"no route to {destination}")
        if next_hop == req.source.id:
            return Reject(
                IlpErrorCode.F02_UNREACHABLE, self._address, "refusing to route back to the sender"
            )
        account = self._accounts.get(next_hop)
        if account is None:
            return Reject(IlpErrorCode.F02_UNREACHABLE, self._address, f"no route to {destination}")
        req.next_hop = account
        return None


class MaxPacketAmount(MakesRejects):
    """The next hop's largest packet (RFC-0027 §F08: the data carries both amounts)."""

    name: ClassVar[str] = "max_packet_amount"

    def __init__(self, ilp_address: str) -> None:
        self._address = ilp_address

    def on_prepare(self, req: PacketRequest) -> StepResult:
        assert req.next_hop is not None
        maximum = req.next_hop.max_packet_amount
        amount = req.amount_out
        if maximum is not None and amount > maximum:
            return self._too_large(amount, maximum)
        return None


class Expiry(MakesRejects):
    """The outgoing expiry: ``min_message_window`` earlier than the incoming one, never more
    than ``max_hold_time`` from now, in whole milliseconds (R02 when too little is left)."""

    name: ClassVar[str] = "expiry"

    def __init__(self, ilp_address: str, clock: Clock, rules: ForwardingRules) -> None:
        self._address = ilp_address
        self._clock = clock
        self._window = timedelta(seconds=rules.min_message_window)
        self._hold = timedelta(seconds=rules.max_hold_time)

    def on_prepare(self, req: PacketRequest) -> StepResult:
        now = self._clock.now()
        expires_at = req.prepare.expires_at
        if expires_at <= now:
            return Reject(
                IlpErrorCode.R02_INSUFFICIENT_TIMEOUT,
                self._address,
                "source transfer has already expired",
            )
        expiry = min(expires_at - self._window, now + self._hold)
        if expiry.microsecond % 1000:
            expiry = expiry.replace(microsecond=expiry.microsecond // 1000 * 1000)
        if expiry - now < self._window:
            return Reject(
                IlpErrorCode.R02_INSUFFICIENT_TIMEOUT,
                self._address,
                "source transfer expires too soon",
            )
        req.expires_out = expiry
        return None


class FulfillmentCheck(MakesRejects):
    """On the way back: a Fulfill whose sha256 is not the condition becomes F05 (as
    ilp-connector does), so no step outside it ever sees an invalid Fulfill."""

    name: ClassVar[str] = "fulfillment_check"

    def __init__(self, ilp_address: str, log: LogSink | None = None) -> None:
        self._address = ilp_address
        self._log = log or NullSink()

    def on_prepare(self, req: PacketRequest) -> StepResult:
        return None

    def on_reply(self, req: PacketRequest, reply: Reply) -> Reply:
        if type(reply) is Fulfill and not fulfillment_matches(
            reply.fulfillment, req.prepare.execution_condition
        ):
            self._log.warning("invalid_fulfillment", nextHop=req.next_hop and req.next_hop.id)
            return Reject(
                IlpErrorCode.F05_WRONG_CONDITION,
                self._address,
                "fulfillment did not match condition",
            )
        return reply


class Send:
    """The last step: the Prepare goes to the next hop's link, and the pipeline waits."""

    name: ClassVar[str] = "send"

    def __init__(self, next_hops: NextHops) -> None:
        self._next_hops = next_hops

    def on_prepare(self, req: PacketRequest) -> StepResult:
        assert req.next_hop is not None
        refusal = self._next_hops.send(req.next_hop.id, req)
        return WAIT if refusal is None else refusal
