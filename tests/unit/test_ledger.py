"""Balances and credit limits (README, "Balances"): the ledger's rules, and the two pipeline
steps that keep it, with a fake clock and fake next hops."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.domain.accounts import Account, Accounts, Relation
from connector.domain.forwarding import (
    Expiry,
    ForwardingRules,
    FulfillmentCheck,
    MaxPacketAmount,
    PeerProtocols,
    Route,
    Send,
)
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Fulfill, Prepare, Reject, Reply
from connector.domain.ledger import IncomingBalance, Ledger, OutgoingBalance
from connector.domain.pipeline import Pipeline
from connector.domain.routing import Routes
from tests.fakes import FULFILLMENT, FakeClock, make_prepare
from tests.unit.test_forwarding import Answers, FakeNextHops

NODE = "test.me"
ALICE = Account.of("alice", Relation.CHILD, balance_maximum=1000)
BOB = Account.of("bob", Relation.PEER, balance_minimum=-500)


def test_an_incoming_hold_counts_against_the_maximum_until_it_is_settled() -> None:
    ledger = Ledger()
    assert ledger.hold_incoming(ALICE, 600)
    assert not ledger.hold_incoming(ALICE, 401)  # 600 held + 401 > 1000
    assert ledger.hold_incoming(ALICE, 400)
    ledger.settle_incoming("alice", 600, fulfilled=False)  # released
    assert ledger.position("alice").balance == 0
    ledger.settle_incoming("alice", 400, fulfilled=True)  # committed: alice owes us 400
    p = ledger.position("alice")
    assert (p.balance, p.incoming, p.refused_incoming) == (400, 0, 1)
    assert not ledger.hold_incoming(ALICE, 601)


def test_an_outgoing_hold_counts_against_the_minimum_and_incoming_holds_do_not_help() -> None:
    ledger = Ledger()
    assert ledger.hold_incoming(BOB, 1000)  # bob may pay us; not yet: it does not count
    assert ledger.hold_outgoing(BOB, 500)
    assert not ledger.hold_outgoing(BOB, 1)  # -500 is the floor
    ledger.settle_outgoing("bob", 500, fulfilled=True)
    p = ledger.position("bob")
    assert (p.balance, p.outgoing, p.refused_outgoing) == (-500, 0, 1)


class Node:
    """The real forwarding steps with balances, fake next hops, and a given ledger."""

    def __init__(
        self, clock: FakeClock, hops: FakeNextHops, ledger: Ledger, bob: Account = BOB
    ) -> None:
        accounts = Accounts(NODE, [ALICE, bob], [("test.bob", "bob")])
        self.answers = Answers()
        self.pipeline = Pipeline(
            [
                PeerProtocols(accounts, clock),
                IncomingBalance(ledger, NODE),
                Route(accounts, Routes(accounts.routing_table())),
                MaxPacketAmount(NODE),
                Expiry(NODE, clock, ForwardingRules()),
                OutgoingBalance(ledger, NODE),
                FulfillmentCheck(NODE),
                Send(hops),
            ],
            NODE,
            spawn=asyncio.ensure_future,
        )
        self.ids = iter(range(1, 1_000_000))

    def send(self, prepare: Prepare, source: Account = ALICE) -> int:
        request_id = next(self.ids)
        self.pipeline.handle(self.answers, request_id, source, prepare, codec.encode(prepare))
        return request_id

    async def settled(self, count: int) -> dict[int, Reply]:
        async with asyncio.timeout(5):
            while len(self.answers.replies) < count:  # noqa: ASYNC110 - bounded polling
                await asyncio.sleep(0)
        return self.answers.replies


def to_bob(clock: FakeClock, amount: int) -> Prepare:
    return make_prepare(clock, destination="test.bob.x", amount=amount)


async def test_200_prepares_at_once_against_a_maximum_of_1000_give_exactly_100_fulfills() -> None:
    clock, hops, ledger = FakeClock(), FakeNextHops(hang=True), Ledger()
    node = Node(clock, hops, ledger, bob=Account.of("bob", Relation.PEER))  # no minimum
    for _ in range(200):
        node.send(to_bob(clock, 10))
    refused = await node.settled(100)  # answered at once: T04, never forwarded
    assert {r.code for r in refused.values() if isinstance(r, Reject)} == {"T04"}
    assert len(hops.sent) == 100
    assert ledger.position("alice").incoming == 1000
    replies = await _fulfill_all(node, hops)  # the next hop fulfills every Prepare it got
    assert sum(isinstance(r, Fulfill) for r in replies.values()) == 100
    assert sum(isinstance(r, Reject) and r.code == "T04" for r in replies.values()) == 100
    alice, bob = ledger.position("alice"), ledger.position("bob")
    assert (alice.balance, alice.incoming) == (1000, 0)
    assert (bob.balance, bob.outgoing) == (-1000, 0)  # the two sides agree, 1:1


async def _fulfill_all(node: Node, hops: FakeNextHops) -> dict[int, Reply]:
    for req in list(hops.requests):
        req.resume(Fulfill(FULFILLMENT, b"ok"))
    return await node.settled(200)


@pytest.mark.parametrize(
    ("reply", "alice_balance"),
    [(Fulfill(FULFILLMENT, b"ok"), 100), (Reject("F99", "test.bob", "no"), 0)],
)
async def test_a_fulfill_commits_both_sides_and_a_reject_releases_both(
    reply: Reply, alice_balance: int
) -> None:
    clock, ledger = FakeClock(), Ledger()
    node = Node(clock, FakeNextHops(reply=reply), ledger)
    node.send(to_bob(clock, 100))
    await node.settled(1)
    alice, bob = ledger.position("alice"), ledger.position("bob")
    assert (alice.balance, bob.balance) == (alice_balance, -alice_balance)
    assert (alice.incoming, bob.outgoing) == (0, 0)


async def test_a_wrong_fulfillment_is_never_committed() -> None:
    clock, ledger = FakeClock(), Ledger()
    node = Node(clock, FakeNextHops(reply=Fulfill(bytes(32))), ledger)
    node.send(to_bob(clock, 100))
    (reply,) = (await node.settled(1)).values()
    assert isinstance(reply, Reject)
    assert reply.code == "F05"
    assert (ledger.position("alice").balance, ledger.position("bob").balance) == (0, 0)


async def test_below_the_next_hops_minimum_gets_t04_before_it_is_sent() -> None:
    clock, hops, ledger = FakeClock(), FakeNextHops(), Ledger({"bob": -450})
    node = Node(clock, hops, ledger)
    node.send(to_bob(clock, 100))  # -450 - 100 < -500
    (reply,) = (await node.settled(1)).values()
    assert isinstance(reply, Reject)
    assert (reply.code, reply.triggered_by) == ("T04", NODE)
    assert hops.sent == []  # never fulfilled-then-refused
    assert ledger.position("alice").incoming == 0  # the sender's hold was released


async def test_zero_amounts_touch_no_balance() -> None:
    clock, ledger = FakeClock(), Ledger({"alice": 1000})  # at its maximum already
    node = Node(clock, FakeNextHops(), ledger)
    node.send(to_bob(clock, 0))
    (reply,) = (await node.settled(1)).values()
    assert isinstance(reply, Fulfill)
    assert ledger.position("alice").balance == 1000


@given(
    st.lists(
        st.tuples(st.sampled_from(["hold_in", "hold_out", "settle"]), st.integers(0, 400)),
        max_size=60,
    ),
    st.randoms(use_true_random=False),
)
def test_no_sequence_of_holds_and_settlements_breaks_a_limit(
    steps: list[tuple[str, int]], rnd: random.Random
) -> None:
    """Whatever arrives and however each ends, the committed balance stays within the limits,
    and holds return to zero once everything is settled."""
    ledger = Ledger()
    peer = Account.of("p", Relation.PEER, balance_minimum=-700, balance_maximum=900)
    open_in: list[int] = []
    open_out: list[int] = []
    for kind, amount in steps:
        if kind == "hold_in" and ledger.hold_incoming(peer, amount):
            open_in.append(amount)
        elif kind == "hold_out" and ledger.hold_outgoing(peer, amount):
            open_out.append(amount)
        elif kind == "settle" and (open_in or open_out):
            side = open_in if open_in and (not open_out or rnd.random() < 0.5) else open_out
            held = side.pop(rnd.randrange(len(side)))
            fulfilled = rnd.random() < 0.7
            if side is open_in:
                ledger.settle_incoming("p", held, fulfilled)
            else:
                ledger.settle_outgoing("p", held, fulfilled)
        p = ledger.position("p")
        # The worst cases the limits guard: every open hold on one side fulfilled.
        assert p.balance + p.incoming <= 900
        assert p.balance - p.outgoing >= -700
    for held in open_in:
        ledger.settle_incoming("p", held, True)
    for held in open_out:
        ledger.settle_outgoing("p", held, True)
    p = ledger.position("p")
    assert (p.incoming, p.outgoing) == (0, 0)
    assert -700 <= p.balance <= 900  # everything fulfilled at once still lands within the limits
