"""Credit leases: how several connector instances share one peer's limits without a database
round trip per packet.

With a shared store (PostgreSQL), the store is the only place that sees every instance's holds.
Asking it about every Prepare would put a round trip on the packet path; instead each instance
*leases* part of a limited account's credit and holds packets against its lease in memory:

- the store grants a lease only from credit nobody else holds, under a lock on the account:
  ``balance + every instance's incoming lease <= maximum`` (and ``balance - outgoing leases >=
  minimum``) holds whatever the instances do;
- a hold is taken locally when it fits in the lease (the common case: no I/O, no future);
- a Fulfill's commit turns the hold into balance and shrinks the lease by the same amount, in one
  statement, so the sum above never grows; a Reject just frees the hold for the next packet;
- when a packet does not fit, it waits for the store to lease more (one request per account and
  direction at a time, for every packet waiting); when the store has no more, it gets T04;
- every second, unused credit goes back (the lease shrinks to the holds plus what was used in
  the last second) and the rest is renewed. A lease expires in the store ``ttl`` after it was
  last renewed, so an instance that died gives its credit back by itself; an instance takes no
  hold that could outlive its lease (``hold_window`` before the lease's end it stops).

The store's side is ``CreditSource`` (``app/postgres_store.py``). Amounts are integers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from connector.domain.positions import Position

if TYPE_CHECKING:
    from connector.domain.accounts import Account
    from connector.domain.ilp.packets import Reply


class Positions(Protocol):
    """The ledger, as the leases see it."""

    def positions(self) -> Iterator[tuple[str, Position]]: ...

    def position(self, account_id: str) -> Position: ...

    def find(self, account_id: str) -> Position | None: ...


class Claimant(Protocol):
    """Who asked for a hold that had to wait (a balance step): told when it is taken, asked for
    the T04 when it is refused. ``token`` is what the step passed along (its request)."""

    def held(self, token: Any, amount: int) -> None: ...

    def refusal(self, account: Account) -> Reply: ...


class CreditSource(Protocol):
    """The shared store's side of the leases. Both calls return a future (``add_done_callback``)."""

    def acquire(
        self, account_id: str, incoming: bool, need: int, want: int, unit: int, limit: int
    ) -> Any:
        """Grow this instance's lease on ``account_id`` (the ``incoming`` direction, checked
        against ``limit``, else the outgoing one) by ``need``, and by up to ``want`` when credit
        is plentiful (never more than half of what nobody holds, in multiples of ``unit``).
        Resolves to ``(lease_in, lease_out, exhausted)``: the account's leases now, and whether
        ``need`` could not be met (then the lease grew by what was left, in ``unit``s)."""
        ...

    def renew(self, targets: list[tuple[str, int, int]]) -> Any:
        """Shrink each ``(account, incoming, outgoing)`` lease to at most those amounts and
        renew what is left. Resolves to ``{account: (balance, lease_in, lease_out)}`` for every
        account in the store (balances include other instances' commits)."""
        ...


#: A packet waiting for credit: (future, account, amount, claimant, token).
_Waiter = tuple[Any, "Account", int, Claimant, Any]

#: A renewal target that shrinks nothing (above any lease: leases are sums of u64 amounts).
KEEP = 2**127

#: Grants in a row that served no waiting packet without the store saying it ran out: then the
#: packets are refused rather than asking for ever.
_MAX_FRUITLESS = 3


class StoreUnavailable(Exception):
    """The shared store could not be asked: the packet gets T00, nothing is held."""


class Leases:
    """This instance's leases: the fast check (``take``) and the slow path (``wait``)."""

    def __init__(
        self,
        source: CreditSource,
        clock: Callable[[], float],
        new_future: Callable[[], Any],
        ttl: float,
        hold_window: float,
    ) -> None:
        if ttl <= hold_window:
            raise ValueError("a lease must outlive the longest hold")
        self._source = source
        self._clock = clock
        self._new_future = new_future
        self.ttl = ttl
        self._window = hold_window
        self._waiting: dict[tuple[str, bool], deque[_Waiter]] = {}
        self._asking: set[tuple[str, bool]] = set()
        self._fruitless: dict[tuple[str, bool], int] = {}
        self._renewing = False

    def take(self, p: Position, incoming: bool, amount: int) -> bool:
        """Hold ``amount`` when it fits in the lease and the lease outlives the hold."""
        if self._clock() + self._window > p.lease_until:
            return False
        if incoming:
            if p.incoming + amount > p.lease_in:
                return False
            p.incoming += amount
            p.used_in += amount
        else:
            if p.outgoing + amount > p.lease_out:
                return False
            p.outgoing += amount
            p.used_out += amount
        return True

    def wait(
        self,
        account: Account,
        p: Position,
        incoming: bool,
        amount: int,
        claimant: Claimant,
        token: Any = None,
    ) -> Any:
        """A future that resolves to None once ``amount`` is held (``claimant.held`` was called
        first), or to ``claimant.refusal`` (T04) when the store has no credit left. Cancel it to
        give up: nothing is held then."""
        future = self._new_future()
        key = (account.id, incoming)
        queue = self._waiting.get(key)
        if queue is None:
            queue = self._waiting[key] = deque()
        queue.append((future, account, amount, claimant, token))
        if key not in self._asking:
            self._ask(key, p)
        return future

    def _ask(self, key: tuple[str, bool], p: Position) -> None:
        queue = self._waiting[key]
        amounts = [waiter[2] for waiter in queue if not waiter[0].done()]
        if not amounts:
            del self._waiting[key]
            return
        account = queue[0][1]
        incoming = key[1]
        held, lease = (p.incoming, p.lease_in) if incoming else (p.outgoing, p.lease_out)
        if self._clock() + self._window > p.lease_until:
            lease = 0  # expired here: whatever the store still has, ask as if for all of it
        need = max(held + sum(amounts) - lease, 0)
        # Room for what comes next: about as much as the peer used since the last renewal (a
        # second's worth), or doubling while it keeps sending faster. Commits consume a lease,
        # so its size alone would shrink to a round trip every packet or two.
        recent = p.used_in if incoming else p.used_out
        want = need + max(lease, recent, need)
        limit = account.balance_maximum if incoming else account.balance_minimum
        assert limit is not None
        self._asking.add(key)
        try:
            pending = self._source.acquire(key[0], incoming, need, want, min(amounts), limit)
        except Exception as exc:
            self._asking.discard(key)
            self._fail(key, exc)
            return
        pending.add_done_callback(partial(self._granted, key, p, self._clock()))

    def _granted(self, key: tuple[str, bool], p: Position, sent_at: float, done: Any) -> None:
        self._asking.discard(key)
        if done.cancelled() or done.exception() is not None:
            self._fail(key, done.exception() if not done.cancelled() else None)
            return
        lease_in, lease_out, exhausted = done.result()
        p.lease_in, p.lease_out = lease_in, lease_out
        p.lease_until = sent_at + self.ttl
        queue = self._waiting.get(key)
        if queue is None:
            return
        served = False
        while queue:
            future, _, amount, claimant, token = queue[0]
            if future.done():  # given up (shutdown)
                queue.popleft()
                continue
            if not self.take(p, key[1], amount):
                break
            queue.popleft()
            claimant.held(token, amount)
            future.set_result(None)
            served = True
        if not queue:
            del self._waiting[key]
            self._fruitless.pop(key, None)
        elif exhausted:
            self._fruitless.pop(key, None)
            self._refuse(key, p)
        else:
            # Packets that arrived meanwhile, or a grant smaller than asked (a renewal that ran
            # first shrank the lease it was computed from): ask again, a few times at most.
            fruitless = 0 if served else self._fruitless.get(key, 0) + 1
            if fruitless >= _MAX_FRUITLESS:
                self._fruitless.pop(key, None)
                self._refuse(key, p)
            else:
                self._fruitless[key] = fruitless
                self._ask(key, p)

    def _refuse(self, key: tuple[str, bool], p: Position) -> None:
        for future, account, _, claimant, _ in self._waiting.pop(key, ()):
            if not future.done():
                if key[1]:
                    p.refused_incoming += 1
                else:
                    p.refused_outgoing += 1
                future.set_result(claimant.refusal(account))

    def _fail(self, key: tuple[str, bool], exc: BaseException | None) -> None:
        for future, *_ in self._waiting.pop(key, ()):
            if not future.done():
                future.set_exception(StoreUnavailable(str(exc) if exc else "cancelled"))

    def renew(self, ledger: Positions) -> None:
        """Give back what was not used in the last period and renew the rest (one call to the
        store for every lease), unless the last renewal is still under way."""
        if self._renewing:
            return
        targets = []
        for account_id, p in ledger.positions():
            if p.lease_in or p.lease_out:
                keep_in = p.incoming + min(max(p.lease_in - p.incoming, 0), p.used_in)
                keep_out = p.outgoing + min(max(p.lease_out - p.outgoing, 0), p.used_out)
                # A grant still on its way is not in these figures: shrinking to them would
                # take back credit that waiting packets are about to hold. Keep it whole.
                if (account_id, True) in self._asking:
                    keep_in = KEEP
                if (account_id, False) in self._asking:
                    keep_out = KEEP
                targets.append((account_id, keep_in, keep_out))
                # Shrunk here already: a Prepare taken before the store has answered must fit
                # in what the store will have left.
                p.lease_in = min(p.lease_in, keep_in)
                p.lease_out = min(p.lease_out, keep_out)
            p.used_in = p.used_out = 0
        self._renewing = True
        try:
            pending = self._source.renew(targets)
        except Exception:
            self._renewing = False
            raise
        renewed = {account_id for account_id, _, _ in targets}
        pending.add_done_callback(partial(self._renewed, ledger, renewed, self._clock()))

    def _renewed(self, ledger: Positions, renewed: set[str], sent_at: float, done: Any) -> None:
        self._renewing = False
        if done.cancelled() or done.exception() is not None:
            return  # the leases run out by themselves; the next renewal tries again
        for account_id, (balance, lease_in, lease_out) in done.result().items():
            p = ledger.find(account_id)
            if p is None:
                continue  # another instance's peer, never seen here
            p.balance = balance
            p.lease_in, p.lease_out = lease_in, lease_out
            if account_id in renewed and (lease_in or lease_out):
                # Only what this renewal extended: a lease granted meanwhile keeps the end its
                # grant gave it.
                p.lease_until = sent_at + self.ttl
