"""One account's position: its committed balance, the holds on it, and (with a shared store)
this instance's leases of its credit. Plain integers, read and written by ``ledger.py`` and
``credit.py``."""

from __future__ import annotations


class Position:
    """One account's balance and the sums of its holds in each direction (all integers)."""

    __slots__ = (
        "balance",
        "incoming",
        "lease_in",
        "lease_out",
        "lease_until",
        "outgoing",
        "refused_incoming",
        "refused_outgoing",
        "used_in",
        "used_out",
    )

    def __init__(self, balance: int = 0) -> None:
        self.balance = balance
        self.incoming = 0  # holds of Prepares from the peer, not settled yet (>= 0)
        self.outgoing = 0  # holds of Prepares to the peer, not settled yet (>= 0, applied as -)
        self.refused_incoming = 0  # T04s for its maximum
        self.refused_outgoing = 0  # T04s for its minimum
        # With a shared store only (``domain/credit.py``): this instance's leases of the
        # account's credit, until when they may be used, and what was held since the last renewal.
        self.lease_in = 0
        self.lease_out = 0
        self.lease_until = 0.0
        self.used_in = 0
        self.used_out = 0

    def __repr__(self) -> str:
        return (
            f"Position(balance={self.balance}, incoming={self.incoming}, outgoing={self.outgoing})"
        )
