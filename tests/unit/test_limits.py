"""Limits on what a peer sends us (README, "Forwarding"): the token bucket on a virtual clock,
and the two incoming steps in a pipeline with the real balance step behind them."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from connector.app.check_config import check
from connector.app.config import load_config
from connector.app.container import build_accounts
from connector.domain.accounts import Account, Accounts, Asset, Relation
from connector.domain.buckets import RateLimit, TokenBucket
from connector.domain.errors import ConfigurationError
from connector.domain.forwarding import PeerProtocols
from connector.domain.ildcp import PEER_CONDITION
from connector.domain.ilp.packets import Fulfill, Prepare, Reject, Reply
from connector.domain.ledger import IncomingBalance, Ledger
from connector.domain.limits import MAX_BUCKETS, IncomingMaxPacketAmount, PacketRateLimit
from connector.domain.pipeline import Pipeline
from tests.fakes import FakeClock, FakeProcessor, make_prepare
from tests.unit.test_forwarding import Answers

NODE = "test.me"


def takes(bucket: TokenBucket, now: float, count: int) -> list[bool]:
    return [bucket.take(now) for _ in range(count)]


def test_a_bucket_starts_full_and_gives_its_burst_at_once() -> None:
    bucket = TokenBucket(RateLimit(packets_per_second=5, burst=3), now=100.0)
    assert takes(bucket, 100.0, 5) == [True, True, True, False, False]


def test_a_bucket_refills_with_elapsed_time_up_to_its_burst() -> None:
    bucket = TokenBucket(RateLimit(packets_per_second=5, burst=3), now=0.0)
    assert takes(bucket, 0.0, 4) == [True, True, True, False]
    assert takes(bucket, 0.1, 1) == [False]  # half a token
    assert takes(bucket, 0.2, 2) == [True, False]  # two halves make one
    assert takes(bucket, 0.6, 3) == [True, True, False]
    fast = TokenBucket(RateLimit(packets_per_second=10, burst=1), now=0.2)
    assert takes(fast, 0.2, 2) == [True, False]
    assert takes(fast, 0.3, 2) == [True, False]  # (0.3 - 0.2) x 10 is 0.99999… in floats
    assert takes(bucket, 3600.0, 4) == [True, True, True, False]  # an hour gives only the burst


def test_a_retuned_bucket_keeps_what_it_had_up_to_the_new_burst() -> None:
    bucket = TokenBucket(RateLimit(10, 10), now=0.0)
    assert all(takes(bucket, 0.0, 8))  # 2 left
    bucket.retune(RateLimit(1, 5), now=0.0)
    assert takes(bucket, 0.0, 3) == [True, True, False]  # no fresh burst from a reload
    assert takes(bucket, 1.0, 2) == [True, False]  # refilled at the new rate: 1 per second
    bucket.retune(RateLimit(100, 1), now=1.0)
    assert takes(bucket, 1.5, 2) == [True, False]  # capped at the new burst


def test_a_rate_limit_needs_positive_numbers() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RateLimit(0, 5)
    with pytest.raises(ValueError, match="at least 1"):
        RateLimit(5, 0)


ALICE = Account.of("alice", Relation.CHILD, rate_limit=RateLimit(2, 2), max_packet_amount=1000)


class Node:
    """The incoming steps as ``build_steps`` orders them, then a step that fulfills."""

    def __init__(self, accounts: Accounts, clock: FakeClock, max_buckets: int = MAX_BUCKETS):
        self.answers = Answers()
        self.ledger = Ledger()
        self.rate_limit = PacketRateLimit(NODE, clock, max_buckets)
        self.end = FakeProcessor()
        self.pipeline = Pipeline(
            [
                self.rate_limit,
                IncomingMaxPacketAmount(NODE),
                PeerProtocols(accounts, clock),
                IncomingBalance(self.ledger, NODE),
                self.end,
            ],
            NODE,
            spawn=lambda coro: coro.close(),
        )
        self.accounts = accounts
        self._ids = iter(range(1, 1_000_000))

    def send(self, prepare: Prepare, source: str = "alice") -> Reply:
        """Every step here answers synchronously."""
        request_id = next(self._ids)
        account = self.accounts.get(source)
        assert account is not None
        self.pipeline.handle(self.answers, request_id, account, prepare)
        return self.answers.replies[request_id]


def codes(replies: list[Reply]) -> list[str]:
    return ["ok" if isinstance(r, Fulfill) else r.code for r in replies]


def test_beyond_the_bucket_a_prepare_gets_t05_before_anything_is_held() -> None:
    clock = FakeClock()
    node = Node(Accounts(NODE, [ALICE]), clock)
    replies = [node.send(make_prepare(clock, amount=10)) for _ in range(4)]
    assert codes(replies) == ["ok", "ok", "T05", "T05"]
    reject = replies[2]
    assert isinstance(reject, Reject)
    assert reject.triggered_by == NODE
    assert len(node.end.seen) == 2
    assert node.ledger.position("alice").refused_incoming == 0  # refused before the balance
    clock.advance(0.5)
    assert codes([node.send(make_prepare(clock)) for _ in range(2)]) == ["ok", "T05"]


def test_zero_amounts_and_peer_protocols_count_too() -> None:
    clock = FakeClock()
    node = Node(Accounts(NODE, [ALICE]), clock)
    ildcp = Prepare(0, clock.now().replace(year=2031), PEER_CONDITION, "peer.config", b"")
    assert codes([node.send(ildcp), node.send(make_prepare(clock, amount=0))]) == ["ok", "ok"]
    assert codes([node.send(ildcp), node.send(make_prepare(clock, amount=0))]) == ["T05", "T05"]


def test_each_peer_has_its_own_bucket_and_a_peer_without_a_limit_has_none() -> None:
    clock = FakeClock()
    bob = replace(ALICE, id="bob")
    carol = Account.of("carol", Relation.CHILD)
    node = Node(Accounts(NODE, [ALICE, bob, carol]), clock)
    for peer in ("alice", "bob"):
        assert codes([node.send(make_prepare(clock), peer) for _ in range(3)]) == [
            "ok",
            "ok",
            "T05",
        ]
    assert all(isinstance(node.send(make_prepare(clock), "carol"), Fulfill) for _ in range(50))
    assert len(node.rate_limit) == 2


def test_an_account_replaced_with_another_limit_is_limited_by_the_new_one() -> None:
    clock = FakeClock()
    accounts = Accounts(NODE, [ALICE])
    node = Node(accounts, clock)
    assert codes([node.send(make_prepare(clock)) for _ in range(3)]) == ["ok", "ok", "T05"]
    # What a configuration reload does: the same Accounts, another Account value.
    accounts._accounts["alice"] = replace(ALICE, rate_limit=RateLimit(1, 4))
    assert codes([node.send(make_prepare(clock))]) == ["T05"]  # no fresh burst of 4
    clock.advance(1)  # 1 token at the new rate, not 2 at the old one
    assert codes([node.send(make_prepare(clock)) for _ in range(2)]) == ["ok", "T05"]
    accounts._accounts["alice"] = replace(ALICE, rate_limit=None)
    assert all(isinstance(node.send(make_prepare(clock)), Fulfill) for _ in range(10))
    # An equal limit in a new Account (a reload that changed something else) keeps the bucket.
    accounts._accounts["alice"] = replace(ALICE, rate_limit=RateLimit(1, 4))
    assert codes([node.send(make_prepare(clock)) for _ in range(1)]) == ["T05"]


def test_buckets_stay_bounded_and_full_ones_go_first() -> None:
    clock = FakeClock()
    limited = RateLimit(1, 2)
    accounts = Accounts(
        NODE, [Account.of(f"p{i}", Relation.CHILD, rate_limit=limited) for i in range(100)]
    )
    node = Node(accounts, clock, max_buckets=8)
    steps = node.rate_limit
    for i in range(100):
        node.send(make_prepare(clock), f"p{i}")  # each leaves a bucket one token short
        assert len(steps) <= 8
    clock.advance(10)
    node = Node(accounts, clock, max_buckets=8)
    steps = node.rate_limit
    for i in range(8):
        node.send(make_prepare(clock), f"p{i}")
    clock.advance(2)  # every bucket full again; p0, the oldest, then empties its own
    assert codes([node.send(make_prepare(clock), "p0") for _ in range(3)]) == ["ok", "ok", "T05"]
    node.send(make_prepare(clock), "p8")  # the ninth: the full ones go, p0 stays
    assert len(steps) == 2
    assert codes([node.send(make_prepare(clock), "p0")]) == ["T05"]


def test_a_prepare_larger_than_the_senders_maximum_gets_f08_with_both_amounts() -> None:
    clock = FakeClock()
    node = Node(Accounts(NODE, [replace(ALICE, rate_limit=None)]), clock)
    assert isinstance(node.send(make_prepare(clock, amount=1000)), Fulfill)  # equal passes
    reject = node.send(make_prepare(clock, amount=1001))
    assert isinstance(reject, Reject)
    assert (reject.code, reject.triggered_by) == ("F08", NODE)
    assert reject.data == (1001).to_bytes(8, "big") + (1000).to_bytes(8, "big")
    assert reject.message == "packet size too large. maxAmount=1000 actualAmount=1001"
    assert node.ledger.position("alice").incoming == 0  # nothing held
    assert len(node.end.seen) == 1


def test_the_files_rate_limit_is_the_default_for_peers_without_their_own() -> None:
    accounts = build_accounts(
        "test.me",
        [
            {"id": "a", "relation": "child"},
            {"id": "b", "relation": "child", "rate_limit": {"packets_per_second": 7}},
        ],
        [],
        Asset(),
        open_children=False,
        rate_limit={"packets_per_second": 3, "burst": 9},
    )
    a, b = accounts.get("a"), accounts.get("b")
    assert a is not None
    assert b is not None
    assert a.rate_limit == RateLimit(3, 9)
    assert b.rate_limit == RateLimit(7, 7)  # burst: one second's worth
    unlimited = build_accounts("test.me", [{"id": "a", "relation": "child"}], [], Asset(), False)
    assert unlimited.configured["a"].rate_limit is None


@pytest.mark.parametrize(
    ("rate_limit", "problem"),
    [
        ("{packets_per_second: 0}", "peers.0.rate_limit.packets_per_second"),
        ("{packets_per_second: 2.5}", "peers.0.rate_limit.packets_per_second"),
        ("{packets_per_second: 5, burst: 0}", "peers.0.rate_limit.burst"),
        ("{burst: 5}", "peers.0.rate_limit.packets_per_second: Field required"),
        ("{packets_per_second: 5, per: minute}", "peers.0.rate_limit.per"),
    ],
)
def test_bad_rate_limits_are_refused_naming_the_field(
    tmp_path: Path, rate_limit: str, problem: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"peers: [{{id: a, relation: child, rate_limit: {rate_limit}}}]\n")
    with pytest.raises(ConfigurationError, match=re.escape(problem)):
        load_config(path)


def test_check_config_shows_each_peers_rate_limit(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "rate_limit: {packets_per_second: 100}\n"
        "peers:\n"
        "  - {id: alice, relation: child, max_packet_amount: 7}\n"
        "  - {id: bob, relation: child, rate_limit: {packets_per_second: 5, burst: 20}}\n"
    )
    code, lines = check(path, {"BTP_PEER_ALICE_SECRET": "a", "BTP_PEER_BOB_SECRET": "b"})
    text = "\n".join(lines)
    assert code == 0, text
    assert "child   dials us, max 7, rate 100/s burst 100, secret" in text
    assert "child   dials us, rate 5/s burst 20, secret" in text
