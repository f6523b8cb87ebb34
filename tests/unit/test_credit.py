"""Credit leases (``domain/credit.py``) with a fake store and a fake clock: what is held in
memory, what waits for the store, and what a lease may no longer cover."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from connector.domain.accounts import Account, Relation
from connector.domain.credit import Leases, StoreUnavailable
from connector.domain.ilp.packets import Fulfill, IlpErrorCode, Reject
from connector.domain.ledger import IncomingBalance, Ledger
from connector.domain.pipeline import PacketRequest, Pipeline
from tests.fakes import FULFILLMENT, make_prepare
from tests.unit.test_pipeline import RecordingOrigin, no_spawn

ALICE = Account.of("alice", Relation.CHILD, balance_maximum=1000)


class Refuse:
    """A claimant that notes nothing and refuses with T04."""

    def held(self, token: object, amount: int) -> None:
        pass

    def refusal(self, account: Account) -> Reject:
        return Reject(IlpErrorCode.T04_INSUFFICIENT_LIQUIDITY, "test.me", "no")


refuse = Refuse()


class FakeStore:
    """One account's credit, as the database would grant it (no half-of-the-rest rule)."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.asked: list[tuple[int, int]] = []
        self.pending: list[tuple[asyncio.Future[Any], int, int]] = []
        self.fail = False
        self.lease = 0

    def acquire(
        self, account_id: str, incoming: bool, need: int, want: int, unit: int, limit: int
    ) -> asyncio.Future[Any]:
        self.asked.append((need, want))
        future = asyncio.get_running_loop().create_future()
        self.pending.append((future, need, want))
        return future

    def grant(self) -> None:
        for future, need, want in self.pending:
            if self.fail:
                future.set_exception(OSError("gone"))
                continue
            grant = min(want, self.free) if self.free >= need else self.free
            self.free -= grant
            self.lease += grant
            future.set_result((self.lease, 0, self.free < need))
        self.pending.clear()

    def renew(self, targets: list[tuple[str, int, int]]) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        for _, keep_in, _ in targets:
            self.free += self.lease - min(self.lease, keep_in)
            self.lease = min(self.lease, keep_in)
        future.set_result({"alice": (0, self.lease, 0)})
        return future


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ledger_with(store: FakeStore, clock: Clock) -> Ledger:
    loop = asyncio.get_running_loop()
    return Ledger(leases=Leases(store, clock, loop.create_future, ttl=60, hold_window=35))


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_packets_wait_for_one_request_and_the_lease_then_serves_them_in_memory() -> None:
    store, clock = FakeStore(1000), Clock()
    ledger = ledger_with(store, clock)
    waiting = [ledger.hold_incoming(ALICE, 10, refuse) for _ in range(3)]
    assert all(isinstance(w, asyncio.Future) for w in waiting)
    assert store.asked == [(10, 20)]  # one request, for the first; the others wait on it
    store.grant()
    await settle()
    # The lease (20: twice what was needed) served two; the third asked for the rest, and for
    # more than before (the lease grows while the peer keeps sending).
    assert [w.done() for w in waiting] == [True, True, False]
    assert store.asked[1] == (10, 30)
    store.grant()
    await settle()
    assert all(w.result() is None for w in waiting)
    assert ledger.position("alice").incoming == 30
    assert ledger.hold_incoming(ALICE, 10, refuse) is True  # inside the lease: no future


async def test_when_the_store_has_no_more_the_waiting_packets_are_refused() -> None:
    store, clock = FakeStore(25), Clock()
    ledger = ledger_with(store, clock)
    waiting = [ledger.hold_incoming(ALICE, 10, refuse) for _ in range(3)]
    store.grant()  # 20 of 25 to the first ask
    await settle()
    store.grant()  # 5 left: not enough for 10
    await settle()
    answers = [w.result() for w in waiting]
    assert answers[:2] == [None, None]
    assert isinstance(answers[2], Reject)
    p = ledger.position("alice")
    assert (p.incoming, p.refused_incoming) == (20, 1)


async def test_a_store_that_fails_fails_the_waiting_packets_and_holds_nothing() -> None:
    store, clock = FakeStore(1000), Clock()
    store.fail = True
    ledger = ledger_with(store, clock)
    waiting = ledger.hold_incoming(ALICE, 10, refuse)
    store.grant()
    await settle()
    assert isinstance(waiting.exception(), StoreUnavailable)
    assert ledger.position("alice").incoming == 0


async def test_a_packet_given_up_while_waiting_holds_nothing() -> None:
    store, clock = FakeStore(1000), Clock()
    ledger = ledger_with(store, clock)
    waiting = ledger.hold_incoming(ALICE, 10, refuse)
    waiting.cancel()  # what Pipeline.abandon does at shutdown
    store.grant()
    await settle()
    assert ledger.position("alice").incoming == 0


async def test_no_hold_is_taken_that_could_outlive_the_lease() -> None:
    store, clock = FakeStore(1000), Clock()
    ledger = ledger_with(store, clock)
    first = ledger.hold_incoming(ALICE, 10, refuse)
    store.grant()
    await settle()
    assert first.result() is None
    clock.now += 24  # 60 s lease, 35 s holds: 1 s of margin left
    assert ledger.hold_incoming(ALICE, 10, refuse) is True
    clock.now += 2  # a hold now could outlive the lease: ask the store again
    assert isinstance(ledger.hold_incoming(ALICE, 10, refuse), asyncio.Future)


async def test_renewal_gives_back_what_was_not_used_and_keeps_what_is_held() -> None:
    store, clock = FakeStore(1000), Clock()
    ledger = ledger_with(store, clock)
    waiting = ledger.hold_incoming(ALICE, 10, refuse)
    store.grant()
    await settle()
    assert waiting.result() is None
    assert ledger.position("alice").lease_in == 20
    ledger.renew_leases()  # used 10 in the period: keeps the hold and what was used
    await settle()
    assert ledger.position("alice").lease_in == 20
    ledger.renew_leases()  # nothing used since: shrinks to what is held
    await settle()
    assert ledger.position("alice").lease_in == 10
    ledger.release(("alice", 10), None)
    ledger.renew_leases()
    await settle()
    assert (ledger.position("alice").lease_in, store.free) == (0, 1000)


async def test_a_fulfill_turns_the_held_credit_into_balance() -> None:
    store, clock = FakeStore(1000), Clock()
    ledger = ledger_with(store, clock)
    waiting = ledger.hold_incoming(ALICE, 10, refuse)
    store.grant()
    await settle()
    assert waiting.result() is None
    ledger.settle_incoming("alice", 10, fulfilled=True)
    p = ledger.position("alice")
    assert (p.balance, p.incoming, p.lease_in) == (10, 0, 10)


class Fulfills:
    name: ClassVar[str] = "fulfills"

    def on_prepare(self, req: PacketRequest) -> Fulfill:
        return Fulfill(FULFILLMENT, b"")


async def test_a_prepare_waiting_for_credit_at_shutdown_is_answered_and_holds_nothing() -> None:
    store, clock = FakeStore(1000), Clock()
    ledger = ledger_with(store, clock)
    pipeline = Pipeline([IncomingBalance(ledger, "test.me"), Fulfills()], "test.me", no_spawn)
    origin = RecordingOrigin()
    pipeline.handle(origin, 1, ALICE, make_prepare(amount=10), None)
    assert origin.answers == []  # waiting for the store, without a task
    assert pipeline.abandon() == 1
    assert [reply.code for reply in origin.replies] == ["T00"]  # type: ignore[union-attr]
    store.grant()  # the store answers after all: nobody waits, nothing is held
    await settle()
    assert ledger.position("alice").incoming == 0


async def test_a_prepare_served_after_waiting_goes_on_down_the_pipeline() -> None:
    store, clock = FakeStore(1000), Clock()
    ledger = ledger_with(store, clock)
    pipeline = Pipeline([IncomingBalance(ledger, "test.me"), Fulfills()], "test.me", no_spawn)
    origin = RecordingOrigin()
    pipeline.handle(origin, 1, ALICE, make_prepare(amount=10), None)
    store.grant()
    await settle()
    assert [type(reply) for reply in origin.replies] == [Fulfill]
    assert ledger.position("alice").balance == 10


async def test_a_renewal_shrinks_the_lease_here_before_the_store_answers() -> None:
    store, clock = FakeStore(1000), Clock()
    ledger = ledger_with(store, clock)
    waiting = ledger.hold_incoming(ALICE, 60, refuse)
    store.grant()
    await settle()
    assert waiting.result() is None
    p = ledger.position("alice")
    p.used_in = 0  # a quiet second: the renewal gives back all but the holds
    assert p.lease_in > 60
    ledger.renew_leases()
    # Before the store has answered, a Prepare must already fit in what it will have left.
    assert ledger.hold_incoming(ALICE, 30, refuse) is not True
    await settle()
    assert p.incoming <= p.lease_in == store.lease


async def test_a_hold_taken_just_before_shutdown_is_released_by_its_own_step() -> None:
    store, clock = FakeStore(1000), Clock()
    ledger = ledger_with(store, clock)
    pipeline = Pipeline([IncomingBalance(ledger, "test.me"), Fulfills()], "test.me", no_spawn)
    origin = RecordingOrigin()
    pipeline.handle(origin, 1, ALICE, make_prepare(amount=10), None)
    store.grant()
    await asyncio.sleep(0)  # the grant is in: the hold is taken, the pipeline not told yet
    assert ledger.position("alice").incoming == 10
    assert pipeline.abandon() == 1
    assert [reply.code for reply in origin.replies] == ["T00"]  # type: ignore[union-attr]
    assert ledger.position("alice").incoming == 0


async def test_a_failed_commit_counts_the_credit_it_may_have_used_as_gone() -> None:
    class Failing:
        def commit(self, deltas: list[tuple[str, int]]) -> asyncio.Future[None]:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.set_exception(ConnectionError("lost mid-commit"))
            return future

        def set(self, account_id: str, balance: int) -> None:
            return None

    store, clock = FakeStore(1000), Clock()
    ledger = ledger_with(store, clock)
    waiting = ledger.hold_incoming(ALICE, 10, refuse)
    store.grant()
    await settle()
    assert waiting.result() is None
    lease = ledger.position("alice").lease_in
    ledger.committer = Failing()
    pending = ledger.fulfilled(("alice", 10), None)
    assert pending is not None
    with pytest.raises(ConnectionError):
        await pending
    await settle()
    p = ledger.position("alice")
    # The store may have applied it: the credit is not used again before a renewal says so.
    assert (p.balance, p.incoming, p.lease_in) == (0, 0, lease - 10)


async def test_a_maximum_lowered_by_a_reload_applies_at_once_despite_the_lease() -> None:
    store, clock = FakeStore(10_000), Clock()
    ledger = ledger_with(store, clock)
    old = Account.of("alice", Relation.CHILD, balance_maximum=10_000)
    waiting = ledger.hold_incoming(old, 100, refuse)
    store.grant()
    await settle()
    assert waiting.result() is None
    assert ledger.position("alice").lease_in > 150  # room under the old maximum
    lowered = Account.of("alice", Relation.CHILD, balance_maximum=50)
    assert ledger.hold_incoming(lowered, 50, refuse) is False  # 100 held + 50 > 50
    raised = Account.of("alice", Relation.CHILD, balance_maximum=10_000, balance_minimum=-10)
    assert ledger.hold_outgoing(raised, 11, refuse) is False  # and the minimum likewise
