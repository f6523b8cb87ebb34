"""Forwarding a Prepare to the next hop, with the RFC-0027 connector rules (ILP.md §6).

``PeerProtocols`` answers ``peer.*`` locally (IL-DCP for children) and never forwards it;
``Forwarder`` routes everything else. Amounts pass 1:1 (no exchange rates yet). Every branch
returns a value: a Fulfill checked against the condition, a Reject relayed unchanged, or a Reject
created here with ``triggeredBy`` = this node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from connector.domain.errors import TransportError
from connector.domain.ildcp import DESTINATION as ILDCP_DESTINATION
from connector.domain.ildcp import PEER_CONDITION, PEER_FULFILLMENT, IldcpResponse
from connector.domain.ilp.packets import (
    Fulfill,
    IlpErrorCode,
    Prepare,
    Reject,
    Reply,
    amount_too_large_data,
    fulfillment_matches,
    trusted_prepare,
)
from connector.domain.ports import Clock, LogSink, NullSink, PacketProcessor, PeerLink
from connector.domain.routing import RoutingTable


class Relation(StrEnum):
    CHILD = "child"
    PEER = "peer"
    PARENT = "parent"


@dataclass(frozen=True, slots=True)
class PeerPolicy:
    """What the connector knows of one peer."""

    relation: Relation
    max_packet_amount: int | None = None


@dataclass(frozen=True, slots=True)
class ForwardingRules:
    """ilp-connector's defaults: ``minMessageWindow`` 1 s, ``maxHoldTime`` 30 s."""

    min_message_window: float = 1.0
    max_hold_time: float = 30.0


@dataclass(frozen=True, slots=True)
class Asset:
    code: str = "USD"
    scale: int = 9


PolicyLookup = Callable[[str], PeerPolicy | None]


class PeerProtocols:
    """Answers ``peer.*`` destinations locally (RFC-0015: connectors MUST NOT forward them)."""

    def __init__(
        self,
        inner: PacketProcessor,
        ilp_address: str,
        policies: PolicyLookup,
        asset: Asset,
        clock: Clock,
    ) -> None:
        self._inner = inner
        self._address = ilp_address
        self._policies = policies
        self._asset = asset
        self._clock = clock

    async def process(self, prepare: Prepare, peer_id: str) -> Reply:
        if not prepare.destination.startswith("peer."):
            return await self._inner.process(prepare, peer_id)
        if prepare.execution_condition != PEER_CONDITION:
            return self._reject(
                IlpErrorCode.F01_INVALID_PACKET, "peer protocol needs the peer condition"
            )
        if prepare.destination != ILDCP_DESTINATION:
            return self._reject(IlpErrorCode.F01_INVALID_PACKET, "unknown peer protocol")
        if prepare.expires_at <= self._clock.now():
            return self._reject(IlpErrorCode.R00_TRANSFER_TIMED_OUT, "IL-DCP request expired")
        policy = self._policies(peer_id)
        if policy is None or policy.relation is not Relation.CHILD:
            return self._reject(IlpErrorCode.F00_BAD_REQUEST, "IL-DCP is served to children only")
        response = IldcpResponse(f"{self._address}.{peer_id}", self._asset.scale, self._asset.code)
        return Fulfill(PEER_FULFILLMENT, response.encode())

    def _reject(self, code: IlpErrorCode, message: str) -> Reject:
        return Reject(code, self._address, message)


class Forwarder:
    """Routes a Prepare to the next hop and returns its answer (RFC-0027 §Connector)."""

    def __init__(
        self,
        ilp_address: str,
        routes: RoutingTable,
        policies: PolicyLookup,
        links: PeerLink,
        clock: Clock,
        rules: ForwardingRules,
        log: LogSink | None = None,
    ) -> None:
        self._address = ilp_address
        self._routes = routes
        self._policies = policies
        self._links = links
        self._clock = clock
        self._window = timedelta(seconds=rules.min_message_window)
        self._hold = timedelta(seconds=rules.max_hold_time)
        self._log = log or NullSink()

    async def process(self, prepare: Prepare, peer_id: str) -> Reply:
        next_hop = self._routes.resolve(prepare.destination)
        if next_hop is None:
            return self._reject(IlpErrorCode.F02_UNREACHABLE, f"no route to {prepare.destination}")
        if next_hop == peer_id:
            return self._reject(
                IlpErrorCode.F02_UNREACHABLE, "refusing to route back to the sender"
            )
        policy = self._policies(next_hop)
        maximum = policy.max_packet_amount if policy is not None else None
        if maximum is not None and prepare.amount > maximum:
            return Reject(
                IlpErrorCode.F08_AMOUNT_TOO_LARGE,
                self._address,
                f"packet size too large. maxAmount={maximum} actualAmount={prepare.amount}",
                amount_too_large_data(prepare.amount, maximum),
            )
        now = self._clock.now()
        if prepare.expires_at <= now:
            return self._reject(
                IlpErrorCode.R02_INSUFFICIENT_TIMEOUT, "source transfer has already expired"
            )
        expiry = min(prepare.expires_at - self._window, now + self._hold)
        expiry = expiry.replace(microsecond=expiry.microsecond // 1000 * 1000)
        if expiry - now < self._window:
            return self._reject(
                IlpErrorCode.R02_INSUFFICIENT_TIMEOUT, "source transfer expires too soon"
            )
        if not self._links.is_connected(next_hop):
            return self._reject(
                IlpErrorCode.T01_PEER_UNREACHABLE, f"peer {next_hop} is not connected"
            )
        # Every field comes from a valid Prepare and the expiry is earlier: no re-validation.
        outgoing = trusted_prepare(
            prepare.amount, expiry, prepare.execution_condition, prepare.destination, prepare.data
        )
        try:
            async with self._clock.timeout((expiry - now).total_seconds()):
                reply = await self._links.send_prepare(next_hop, outgoing)
        except TimeoutError:
            return self._reject(IlpErrorCode.R00_TRANSFER_TIMED_OUT, "packet expired")
        except TransportError as exc:
            return self._reject(IlpErrorCode.T01_PEER_UNREACHABLE, f"peer {next_hop}: {exc}")
        if isinstance(reply, Fulfill) and not fulfillment_matches(
            reply.fulfillment, prepare.execution_condition
        ):
            self._log.warning("invalid_fulfillment", nextHop=next_hop)
            return self._reject(
                IlpErrorCode.F05_WRONG_CONDITION, "fulfillment did not match condition"
            )
        return reply

    def _reject(self, code: IlpErrorCode, message: str) -> Reject:
        return Reject(code, self._address, message)
