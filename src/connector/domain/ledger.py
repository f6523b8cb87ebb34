"""Balances and credit limits: what each peer owes us, and the pipeline steps that keep it.

Signs and units (the README has a worked example): a peer's ``balance`` is what that peer owes
us, in integer units of that peer's asset. An incoming Prepare from X of amount ``a`` holds
``+a`` on X; an outgoing Prepare to Y of amount ``b`` holds ``-b`` on Y. A Fulfill commits both
holds into the balances; a Reject, an expiry or any failure releases them. Zero amounts (IL-DCP,
route exchange) touch nothing.

Limits, both optional, are checked against the worst case, so no interleaving of packets can
break them: an incoming Prepare is refused (T04) when ``balance + incoming holds + a`` would be
above the peer's ``maximum``; an outgoing one is refused (T04) *before it is sent* when
``balance - outgoing holds - b`` would be below the next hop's ``minimum``. Holds in the other
direction are not counted in the peer's favour, since they may still be released.

The positions live in memory. A ``Committer`` makes committed balances durable: on a Fulfill,
both sides of the packet go to it together, and the Fulfill goes upstream only once they are
committed (a failed commit releases the holds, changes nothing and answers T00). Holds are never
stored: a restart releases them all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator, Mapping
from functools import partial
from typing import Any, ClassVar, Protocol

from connector.domain.accounts import Account
from connector.domain.credit import Claimant, Leases
from connector.domain.positions import Position

__all__ = ["Committer", "IncomingBalance", "Ledger", "OutgoingBalance", "Position"]
from connector.domain.ilp.packets import Fulfill, IlpErrorCode, Reject, Reply
from connector.domain.pipeline import MakesRejects, PacketRequest, StepResult

Side = tuple[str, int]  # (account id, amount held)


class Committer(Protocol):
    """Makes balance changes durable (``app/store.py``): ``(account, delta)`` pairs committed
    together. Returns a future (``add_done_callback``), or None when nothing needs waiting for."""

    def commit(self, deltas: list[tuple[str, int]]) -> Awaitable[None] | None: ...

    def set(self, account_id: str, balance: int) -> Awaitable[None] | None:
        """Make ``balance`` the account's balance, in order with the commits around it."""
        ...


class Ledger:
    """Every account's position; durable through an optional ``Committer``."""

    def __init__(
        self,
        balances: Mapping[str, int] | None = None,
        committer: Committer | None = None,
        leases: Leases | None = None,
    ) -> None:
        self._positions = {k: Position(v) for k, v in (balances or {}).items()}
        self.committer = committer
        #: Set when instances share the store: limits are checked against this instance's
        #: leases of the credit instead of the balance it sees (``domain/credit.py``).
        self.leases = leases

    def load(self, balances: Mapping[str, int]) -> None:
        """The committed balances, read from the store at start-up (holds stay)."""
        for account_id, balance in balances.items():
            self.position(account_id).balance = balance

    def renew_leases(self) -> None:
        if self.leases is not None:
            self.leases.renew(self)

    def position(self, account_id: str) -> Position:
        position = self._positions.get(account_id)
        if position is None:
            position = self._positions[account_id] = Position()
        return position

    def find(self, account_id: str) -> Position | None:
        return self._positions.get(account_id)

    def positions(self) -> Iterator[tuple[str, Position]]:
        return iter(sorted(self._positions.items()))

    def hold_incoming(
        self, account: Account, amount: int, claimant: Claimant | None = None, token: Any = None
    ) -> bool | Any:
        """Hold ``amount`` from ``account``: True when held, False (nothing held) when over its
        maximum; with leases, a future when the store must be asked first (``Leases.wait``)."""
        p = self.position(account.id)
        maximum = account.balance_maximum
        if maximum is not None:
            # First against this instance's own view, also with leases: a lease granted under a
            # higher maximum (before a reload lowered it) must not let the peer past the new one.
            if p.balance + p.incoming + amount > maximum:
                p.refused_incoming += 1
                return False
            leases = self.leases
            if leases is not None:
                if leases.take(p, True, amount):
                    return True
                assert claimant is not None
                return leases.wait(account, p, True, amount, claimant, token)
        p.incoming += amount
        return True

    def hold_outgoing(
        self, account: Account, amount: int, claimant: Claimant | None = None, token: Any = None
    ) -> bool | Any:
        """Hold ``amount`` to ``account``; False (nothing held) when under its minimum (with
        leases, possibly a future, as ``hold_incoming``)."""
        p = self.position(account.id)
        minimum = account.balance_minimum
        if minimum is not None:
            if p.balance - p.outgoing - amount < minimum:  # as above
                p.refused_outgoing += 1
                return False
            leases = self.leases
            if leases is not None:
                if leases.take(p, False, amount):
                    return True
                assert claimant is not None
                return leases.wait(account, p, False, amount, claimant, token)
        p.outgoing += amount
        return True

    def settle_incoming(self, account_id: str, amount: int, fulfilled: bool) -> None:
        """The hold of an incoming Prepare ends: committed on a Fulfill, else released."""
        p = self.position(account_id)
        p.incoming -= amount
        if fulfilled:
            p.balance += amount
            if p.lease_in:  # the credit it used is balance now (the store did the same)
                p.lease_in = max(p.lease_in - amount, 0)

    def settle_outgoing(self, account_id: str, amount: int, fulfilled: bool) -> None:
        p = self.position(account_id)
        p.outgoing -= amount
        if fulfilled:
            p.balance -= amount
            if p.lease_out:
                p.lease_out = max(p.lease_out - amount, 0)

    def release(self, incoming: Side | None, outgoing: Side | None) -> None:
        """A packet that was not fulfilled: both of its holds end, no balance changes."""
        self._settle(incoming, outgoing, False)

    def fulfilled(self, incoming: Side | None, outgoing: Side | None) -> Awaitable[None] | None:
        """A packet that was fulfilled: both sides commit together. None when done at once;
        else a future that the holds and balances follow when it resolves (they are settled by
        a callback registered here, before whoever awaits the future sees it done)."""
        deltas = []
        if incoming is not None:
            deltas.append((incoming[0], incoming[1]))
        if outgoing is not None:
            deltas.append((outgoing[0], -outgoing[1]))
        pending = self.committer.commit(deltas) if self.committer and deltas else None
        if pending is None:
            self._settle(incoming, outgoing, True)
            return None
        pending.add_done_callback(partial(self._committed, incoming, outgoing))  # type: ignore[attr-defined]
        return pending

    def set_balance(self, account_id: str, balance: int) -> Awaitable[None] | None:
        """An operator's correction: the committed balance becomes ``balance`` (holds stay).
        None when done at once; else a future the balance follows when it resolves."""
        pending = self.committer.set(account_id, balance) if self.committer else None
        if pending is None:
            self.position(account_id).balance = balance
            return None
        pending.add_done_callback(partial(self._adjusted, account_id, balance))  # type: ignore[attr-defined]
        return pending

    def _adjusted(self, account_id: str, balance: int, done: Any) -> None:
        if not done.cancelled() and done.exception() is None:
            self.position(account_id).balance = balance

    def _committed(self, incoming: Side | None, outgoing: Side | None, done: Any) -> None:
        ok = not done.cancelled() and done.exception() is None
        self._settle(incoming, outgoing, ok)
        if not ok:
            # A shared store may have applied a commit whose answer was lost, and moved the
            # credit out of the lease: count it gone (the next renewal brings the exact figure).
            if incoming is not None:
                p = self.position(incoming[0])
                p.lease_in = max(p.lease_in - incoming[1], 0)
            if outgoing is not None:
                p = self.position(outgoing[0])
                p.lease_out = max(p.lease_out - outgoing[1], 0)

    def _settle(self, incoming: Side | None, outgoing: Side | None, fulfilled: bool) -> None:
        if incoming is not None:
            self.settle_incoming(incoming[0], incoming[1], fulfilled)
        if outgoing is not None:
            self.settle_outgoing(outgoing[0], outgoing[1], fulfilled)


class IncomingBalance(MakesRejects):
    """The sender's side: hold on the way in (T04 over its maximum), settle on the way out."""

    name: ClassVar[str] = "incoming_balance"

    def __init__(self, ledger: Ledger, ilp_address: str) -> None:
        self._ledger = ledger
        self._address = ilp_address

    def refusal(self, account: Account) -> Reject:
        return Reject(
            IlpErrorCode.T04_INSUFFICIENT_LIQUIDITY, self._address, "exceeded maximum balance"
        )

    def held(self, token: Any, amount: int) -> None:
        """The incoming hold is the Prepare's amount: nothing to note."""

    def on_prepare(self, req: PacketRequest) -> StepResult:
        amount = req.prepare.amount
        if amount:
            held = self._ledger.hold_incoming(req.source, amount, self)
            if held is not True:
                return self.refusal(req.source) if held is False else held
        return None

    def on_reply(self, req: PacketRequest, reply: Reply) -> Any:
        """Settles both sides of the packet, together: the outgoing hold too (``held_out``)."""
        amount = req.prepare.amount
        incoming = (req.source.id, amount) if amount else None
        outgoing = (req.next_hop.id, req.held_out) if req.held_out and req.next_hop else None
        if type(reply) is not Fulfill:
            self._ledger.release(incoming, outgoing)
            return reply
        pending = self._ledger.fulfilled(incoming, outgoing)
        return reply if pending is None else pending  # resolves to None: the reply, unchanged


class OutgoingBalance(MakesRejects):
    """The next hop's side: hold before the Prepare is sent (T04 under its minimum: never sent,
    so never fulfilled-then-refused). ``incoming_balance`` settles the hold with the sender's, in
    one commit; both sit outside ``fulfillment_check``, so a committed Fulfill has been checked."""

    name: ClassVar[str] = "outgoing_balance"

    def __init__(self, ledger: Ledger, ilp_address: str) -> None:
        self._ledger = ledger
        self._address = ilp_address

    def refusal(self, account: Account) -> Reject:
        return Reject(
            IlpErrorCode.T04_INSUFFICIENT_LIQUIDITY,
            self._address,
            f"insufficient balance with {account.id}",
        )

    def held(self, token: Any, amount: int) -> None:
        """A hold that waited for credit is taken: ``incoming_balance`` settles it."""
        token.held_out = amount

    def on_prepare(self, req: PacketRequest) -> StepResult:
        next_hop = req.next_hop
        assert next_hop is not None
        amount = req.amount_out
        if amount:
            held = self._ledger.hold_outgoing(next_hop, amount, self, req)
            if held is not True:
                return self.refusal(next_hop) if held is False else held
            req.held_out = amount
        return None
