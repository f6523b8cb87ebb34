"""The forwarding steps of the pipeline, with a fake clock and fake next hops (ILP.md §6)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from connector.domain.accounts import Account, Accounts, Asset, Relation
from connector.domain.forwarding import (
    Expiry,
    ForwardingRules,
    FulfillmentCheck,
    MaxPacketAmount,
    PeerProtocols,
    Route,
    Send,
)
from connector.domain.ildcp import PEER_CONDITION, IldcpResponse
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Fulfill, IlpErrorCode, Prepare, Reject, Reply
from connector.domain.pipeline import PacketRequest, Pipeline
from connector.domain.routing import Routes
from tests.fakes import FULFILLMENT, FakeClock, make_prepare

NODE = "test.me"


@dataclass
class FakeNextHops:
    """The next hops: records what was sent, answers by a rule (on a later turn of the loop, as
    a link does), may stay silent or be down."""

    connected: set[str] = field(default_factory=lambda: {"bob", "alice", "parent"})
    reply: Reply = field(default_factory=lambda: Fulfill(FULFILLMENT, b"ok"))
    hang: bool = False
    sent: list[tuple[str, Prepare]] = field(default_factory=list)
    requests: list[PacketRequest] = field(default_factory=list)

    def send(self, peer_id: str, req: PacketRequest) -> Reject | None:
        if peer_id not in self.connected:
            return Reject(IlpErrorCode.T01_PEER_UNREACHABLE, NODE, f"peer {peer_id} is down")
        outgoing = Prepare(
            req.amount_out,
            req.expires_out,
            req.prepare.execution_condition,
            req.prepare.destination,
            req.prepare.data,
        )
        self.sent.append((peer_id, outgoing))
        self.requests.append(req)
        if not self.hang:
            asyncio.get_running_loop().call_soon(req.resume, self.reply)
        return None


ACCOUNTS = Accounts(
    NODE,
    [
        Account.of("alice", Relation.CHILD, Asset("XRP", 6)),
        Account.of("bob", Relation.PEER, max_packet_amount=1000),
        Account.of("parent", Relation.PARENT),
    ],
    [("test.bob", "bob")],
)


class Answers:
    """The origin of the requests: collects each answer."""

    def __init__(self) -> None:
        self.replies: dict[int, Reply] = {}

    def answer(self, request_id: int, reply: Reply, raw: bytes | None) -> None:
        assert request_id not in self.replies, "answered twice"
        self.replies[request_id] = reply


class Forwarding:
    def __init__(self, hops: FakeNextHops, clock: FakeClock, routes: Routes | None = None):
        self.hops = hops
        self.answers = Answers()
        routes = routes or Routes(ACCOUNTS.routing_table())
        self.pipeline = Pipeline(
            [
                PeerProtocols(ACCOUNTS, clock),
                Route(ACCOUNTS, routes),
                MaxPacketAmount(NODE),
                Expiry(NODE, clock, ForwardingRules()),
                FulfillmentCheck(NODE),
                Send(hops),
            ],
            NODE,
            spawn=asyncio.ensure_future,
        )
        self._ids = iter(range(1, 1_000_000))

    async def process(self, prepare: Prepare, source: str) -> Reply:
        request_id = next(self._ids)
        account = ACCOUNTS.get(source)
        assert account is not None
        self.pipeline.handle(self.answers, request_id, account, prepare, codec.encode(prepare))
        async with asyncio.timeout(5):
            while request_id not in self.answers.replies:  # noqa: ASYNC110 - bounded
                await asyncio.sleep(0)
        return self.answers.replies[request_id]


def make_forwarder(links: FakeNextHops, clock: FakeClock) -> Forwarding:
    return Forwarding(links, clock)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def links() -> FakeNextHops:
    return FakeNextHops()


def rejected(reply: Reply, code: str) -> Reject:
    assert isinstance(reply, Reject), reply
    assert reply.code == code, reply
    assert reply.triggered_by == NODE
    return reply


async def test_forwards_with_an_earlier_expiry_and_returns_the_fulfill(
    links: FakeNextHops, clock: FakeClock
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
    links: FakeNextHops, clock: FakeClock
) -> None:
    prepare = make_prepare(clock, expires_in=3600, destination="test.bob.x")
    await make_forwarder(links, clock).process(prepare, "alice")
    assert links.sent[0][1].expires_at == clock.now() + timedelta(seconds=30)


@pytest.mark.parametrize(
    ("expires_in", "reason"), [(0, "already expired"), (-5, "already expired"), (1.9, "too soon")]
)
async def test_too_little_time_gets_r02_and_is_never_forwarded(
    links: FakeNextHops, clock: FakeClock, expires_in: float, reason: str
) -> None:
    prepare = make_prepare(clock, expires_in=expires_in, destination="test.bob.x")
    reply = await make_forwarder(links, clock).process(prepare, "alice")
    assert reason in rejected(reply, "R02").message
    assert links.sent == []


async def test_no_route_gets_f02(links: FakeNextHops, clock: FakeClock) -> None:
    forwarder = Forwarding(links, clock, Routes())
    rejected(await forwarder.process(make_prepare(clock, destination="test.x"), "alice"), "F02")


async def test_routing_back_to_the_sender_gets_f02(links: FakeNextHops, clock: FakeClock) -> None:
    reply = await make_forwarder(links, clock).process(
        make_prepare(clock, destination="test.bob.q"), "bob"
    )
    assert "back" in rejected(reply, "F02").message
    assert links.sent == []


async def test_amount_above_the_next_hops_maximum_gets_f08_with_amounts(
    links: FakeNextHops, clock: FakeClock
) -> None:
    prepare = make_prepare(clock, destination="test.bob.x", amount=1001)
    reply = rejected(await make_forwarder(links, clock).process(prepare, "alice"), "F08")
    assert reply.data == (1001).to_bytes(8, "big") + (1000).to_bytes(8, "big")
    assert links.sent == []


async def test_next_hop_not_connected_gets_t01(links: FakeNextHops, clock: FakeClock) -> None:
    links.connected.discard("bob")
    reply = await make_forwarder(links, clock).process(
        make_prepare(clock, destination="test.bob.x"), "alice"
    )
    rejected(reply, "T01")


async def test_a_reply_replaced_on_the_way_back_is_never_relayed_as_raw_bytes(
    links: FakeNextHops, clock: FakeClock
) -> None:
    links.reply = Fulfill(bytes(32))
    forwarding = make_forwarder(links, clock)
    raws: list[bytes | None] = []
    forwarding.answers.answer = lambda rid, reply, raw: raws.append(raw)  # type: ignore[method-assign]
    account = ACCOUNTS.get("alice")
    assert account is not None
    prepare = make_prepare(clock, destination="test.bob.x")
    req = forwarding.pipeline.handle(forwarding.answers, 1, account, prepare, codec.encode(prepare))
    req.resume(links.reply, b"the downstream bytes")
    assert raws == [None]  # F05 was made here: encoded, not the downstream's bytes


async def test_fulfillment_that_does_not_match_gets_f05(
    links: FakeNextHops, clock: FakeClock
) -> None:
    links.reply = Fulfill(bytes(32))
    reply = await make_forwarder(links, clock).process(
        make_prepare(clock, destination="test.bob.x"), "alice"
    )
    rejected(reply, "F05")


async def test_downstream_reject_is_relayed_unchanged(
    links: FakeNextHops, clock: FakeClock
) -> None:
    downstream = Reject("F99", "test.bob.receiver", "app says no \udcff", b"\x01\x02")
    links.reply = downstream
    reply = await make_forwarder(links, clock).process(
        make_prepare(clock, destination="test.bob.x"), "alice"
    )
    assert reply is downstream


async def test_default_route_goes_to_the_parent(links: FakeNextHops, clock: FakeClock) -> None:
    await make_forwarder(links, clock).process(
        make_prepare(clock, destination="g.far.away"), "alice"
    )
    assert links.sent[0][0] == "parent"


# --- peer.* -------------------------------------------------------------------------------------


def peer_request(
    clock: FakeClock, destination: str = "peer.config", condition: bytes = PEER_CONDITION
) -> Prepare:
    return Prepare(0, clock.now() + timedelta(seconds=60), condition, destination)


def protocols(links: FakeNextHops, clock: FakeClock) -> Forwarding:
    return Forwarding(links, clock)


async def test_ildcp_gives_a_child_its_address_and_asset(
    links: FakeNextHops, clock: FakeClock
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
    links: FakeNextHops, clock: FakeClock, destination: str, condition: bytes, peer: str, code: str
) -> None:
    reply = await protocols(links, clock).process(peer_request(clock, destination, condition), peer)
    rejected(reply, code)
    assert links.sent == []


async def test_expired_ildcp_request_is_refused(links: FakeNextHops, clock: FakeClock) -> None:
    request = peer_request(clock)
    clock.advance(61)
    rejected(await protocols(links, clock).process(request, "alice"), "R00")


async def test_other_destinations_pass_through_to_the_forwarder(
    links: FakeNextHops, clock: FakeClock
) -> None:
    reply = await protocols(links, clock).process(
        make_prepare(clock, destination="test.bob.x"), "alice"
    )
    assert isinstance(reply, Fulfill)
