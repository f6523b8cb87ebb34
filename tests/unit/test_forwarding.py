"""The forwarder's rules, with a fake clock and a fake next hop (ILP.md §6)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from connector.domain.errors import PeerUnreachable
from connector.domain.forwarding import (
    Asset,
    Forwarder,
    ForwardingRules,
    PeerPolicy,
    PeerProtocols,
    Relation,
)
from connector.domain.ildcp import PEER_CONDITION, IldcpResponse
from connector.domain.ilp.packets import Fulfill, Prepare, Reject, Reply
from connector.domain.routing import RoutingTable
from tests.fakes import FULFILLMENT, FakeClock, make_prepare

NODE = "test.me"


@dataclass
class FakeLinks:
    """The next hops: records what was sent, answers by a rule, may hang or be down."""

    connected: set[str] = field(default_factory=lambda: {"bob", "alice", "parent"})
    reply: Reply | Exception = field(default_factory=lambda: Fulfill(FULFILLMENT, b"ok"))
    hang: bool = False
    sent: list[tuple[str, Prepare]] = field(default_factory=list)

    def is_connected(self, peer_id: str) -> bool:
        return peer_id in self.connected

    async def send_prepare(self, peer_id: str, prepare: Prepare) -> Reply:
        self.sent.append((peer_id, prepare))
        if self.hang:
            await asyncio.Event().wait()
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


POLICIES = {
    "alice": PeerPolicy(Relation.CHILD),
    "bob": PeerPolicy(Relation.PEER, max_packet_amount=1000),
    "parent": PeerPolicy(Relation.PARENT),
}


def make_forwarder(links: FakeLinks, clock: FakeClock) -> Forwarder:
    routes = RoutingTable([("test.me.alice", "alice"), ("test.bob", "bob"), ("", "parent")])
    return Forwarder(NODE, routes, POLICIES.get, links, clock, ForwardingRules())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def links() -> FakeLinks:
    return FakeLinks()


def rejected(reply: Reply, code: str) -> Reject:
    assert isinstance(reply, Reject), reply
    assert reply.code == code, reply
    assert reply.triggered_by == NODE
    return reply


async def test_forwards_with_an_earlier_expiry_and_returns_the_fulfill(
    links: FakeLinks, clock: FakeClock
) -> None:
    prepare = make_prepare(clock, expires_in=20, destination="test.bob.x", amount=500)
    reply = await make_forwarder(links, clock).process(prepare, "alice")
    assert reply == Fulfill(FULFILLMENT, b"ok")
    ((peer, sent),) = links.sent
    assert peer == "bob"
    assert sent.expires_at == prepare.expires_at - timedelta(seconds=1)
    assert (sent.amount, sent.destination, sent.data) == (500, "test.bob.x", prepare.data)
    assert sent.execution_condition == prepare.execution_condition


async def test_expiry_is_capped_at_the_maximum_hold_time(
    links: FakeLinks, clock: FakeClock
) -> None:
    prepare = make_prepare(clock, expires_in=3600, destination="test.bob.x")
    await make_forwarder(links, clock).process(prepare, "alice")
    assert links.sent[0][1].expires_at == clock.now() + timedelta(seconds=30)


@pytest.mark.parametrize(
    ("expires_in", "reason"), [(0, "already expired"), (-5, "already expired"), (1.9, "too soon")]
)
async def test_too_little_time_gets_r02_and_is_never_forwarded(
    links: FakeLinks, clock: FakeClock, expires_in: float, reason: str
) -> None:
    prepare = make_prepare(clock, expires_in=expires_in, destination="test.bob.x")
    reply = await make_forwarder(links, clock).process(prepare, "alice")
    assert reason in rejected(reply, "R02").message
    assert links.sent == []


async def test_no_route_gets_f02(links: FakeLinks, clock: FakeClock) -> None:
    forwarder = Forwarder(NODE, RoutingTable(), POLICIES.get, links, clock, ForwardingRules())
    rejected(await forwarder.process(make_prepare(clock, destination="test.x"), "alice"), "F02")


async def test_routing_back_to_the_sender_gets_f02(links: FakeLinks, clock: FakeClock) -> None:
    reply = await make_forwarder(links, clock).process(
        make_prepare(clock, destination="test.bob.q"), "bob"
    )
    assert "back" in rejected(reply, "F02").message
    assert links.sent == []


async def test_amount_above_the_next_hops_maximum_gets_f08_with_amounts(
    links: FakeLinks, clock: FakeClock
) -> None:
    prepare = make_prepare(clock, destination="test.bob.x", amount=1001)
    reply = rejected(await make_forwarder(links, clock).process(prepare, "alice"), "F08")
    assert reply.data == (1001).to_bytes(8, "big") + (1000).to_bytes(8, "big")
    assert links.sent == []


async def test_next_hop_not_connected_gets_t01(links: FakeLinks, clock: FakeClock) -> None:
    links.connected.discard("bob")
    reply = await make_forwarder(links, clock).process(
        make_prepare(clock, destination="test.bob.x"), "alice"
    )
    rejected(reply, "T01")


async def test_connection_lost_in_flight_gets_t01(links: FakeLinks, clock: FakeClock) -> None:
    links.reply = PeerUnreachable("connection lost")
    reply = await make_forwarder(links, clock).process(
        make_prepare(clock, destination="test.bob.x"), "alice"
    )
    rejected(reply, "T01")


async def test_silent_next_hop_gets_r00_at_the_outgoing_expiry(
    links: FakeLinks, clock: FakeClock
) -> None:
    links.hang = True
    prepare = make_prepare(clock, expires_in=10, destination="test.bob.x")
    task = asyncio.create_task(make_forwarder(links, clock).process(prepare, "alice"))
    while not clock.waiting:  # noqa: ASYNC110 - yields until the forwarder waits on the clock
        await asyncio.sleep(0)
    clock.advance(8.9)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(0.1)  # the outgoing expiry: 10 s minus the 1 s window
    rejected(await asyncio.wait_for(task, 5), "R00")


async def test_fulfillment_that_does_not_match_gets_f05(links: FakeLinks, clock: FakeClock) -> None:
    links.reply = Fulfill(bytes(32))
    reply = await make_forwarder(links, clock).process(
        make_prepare(clock, destination="test.bob.x"), "alice"
    )
    rejected(reply, "F05")


async def test_downstream_reject_is_relayed_unchanged(links: FakeLinks, clock: FakeClock) -> None:
    downstream = Reject("F99", "test.bob.receiver", "app says no \udcff", b"\x01\x02")
    links.reply = downstream
    reply = await make_forwarder(links, clock).process(
        make_prepare(clock, destination="test.bob.x"), "alice"
    )
    assert reply is downstream


async def test_default_route_goes_to_the_parent(links: FakeLinks, clock: FakeClock) -> None:
    await make_forwarder(links, clock).process(
        make_prepare(clock, destination="g.far.away"), "alice"
    )
    assert links.sent[0][0] == "parent"


# --- peer.* -------------------------------------------------------------------------------------


def peer_request(
    clock: FakeClock, destination: str = "peer.config", condition: bytes = PEER_CONDITION
) -> Prepare:
    return Prepare(0, clock.now() + timedelta(seconds=60), condition, destination)


def protocols(links: FakeLinks, clock: FakeClock) -> PeerProtocols:
    return PeerProtocols(make_forwarder(links, clock), NODE, POLICIES.get, Asset("XRP", 6), clock)


async def test_ildcp_gives_a_child_its_address_and_asset(
    links: FakeLinks, clock: FakeClock
) -> None:
    reply = await protocols(links, clock).process(peer_request(clock), "alice")
    assert isinstance(reply, Fulfill)
    assert reply.fulfillment == bytes(32)
    assert IldcpResponse.decode(reply.data) == IldcpResponse("test.me.alice", 6, "XRP")


@pytest.mark.parametrize(
    ("destination", "condition", "peer", "code"),
    [
        ("peer.config", PEER_CONDITION, "bob", "F00"),  # not a child
        ("peer.config", bytes(32), "alice", "F01"),  # wrong condition
        ("peer.route.control", PEER_CONDITION, "bob", "F01"),  # CCP: not served
    ],
)
async def test_peer_protocol_refusals_are_never_forwarded(
    links: FakeLinks, clock: FakeClock, destination: str, condition: bytes, peer: str, code: str
) -> None:
    reply = await protocols(links, clock).process(peer_request(clock, destination, condition), peer)
    rejected(reply, code)
    assert links.sent == []


async def test_expired_ildcp_request_is_refused(links: FakeLinks, clock: FakeClock) -> None:
    request = peer_request(clock)
    clock.advance(61)
    rejected(await protocols(links, clock).process(request, "alice"), "R00")


async def test_other_destinations_pass_through_to_the_forwarder(
    links: FakeLinks, clock: FakeClock
) -> None:
    reply = await protocols(links, clock).process(
        make_prepare(clock, destination="test.bob.x"), "alice"
    )
    assert isinstance(reply, Fulfill)
