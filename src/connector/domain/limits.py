"""Limits on what a peer sends us: the first steps of the pipeline, the cheapest refusals.

- ``PacketRateLimit`` (``rate_limit``): a token bucket per sending account; a Prepare beyond it
  gets ``T05`` (every Prepare counts, ``peer.*`` and zero amounts included: each costs us work);
- ``IncomingMaxPacketAmount`` (``incoming_max_packet_amount``): a Prepare larger than the
  sender's ``max_packet_amount`` gets ``F08`` with both amounts (RFC-0027), the same limit the
  ``max_packet_amount`` step applies to what we send that peer.

Both run before anything is held, and both read the limit from the sender's ``Account`` on every
packet, so an account replaced by a configuration reload takes effect at its next packet: a
bucket (``buckets.py``) remembers the ``RateLimit`` it was built for and retunes itself when
the account's differs.
"""

from __future__ import annotations

from typing import ClassVar

from connector.domain.buckets import RateLimit, TokenBucket
from connector.domain.ilp.packets import IlpErrorCode, Reject
from connector.domain.pipeline import MakesRejects, PacketRequest, StepResult
from connector.domain.ports import Clock

#: Buckets kept at most (open mode admits up to 100,000 ids; a reload may drop peers): beyond,
#: full buckets go first (one is the same as a new one), then the oldest.
MAX_BUCKETS = 100_000


class PacketRateLimit:
    """The sender's ``rate_limit``: beyond its bucket, ``T05`` before anything is held."""

    name: ClassVar[str] = "rate_limit"

    def __init__(self, ilp_address: str, clock: Clock, max_buckets: int = MAX_BUCKETS) -> None:
        self._clock = clock
        self._max = max_buckets
        self._buckets: dict[str, TokenBucket] = {}
        # Immutable, so one instance serves every refusal.
        self._refusal = Reject(
            IlpErrorCode.T05_RATE_LIMITED, ilp_address, "too many requests, throttling."
        )

    def set_ilp_address(self, address: str) -> None:
        self._refusal = Reject(self._refusal.code, address, self._refusal.message)

    def on_prepare(self, req: PacketRequest) -> StepResult:
        source = req.source
        limit = source.rate_limit
        if limit is None:
            return None
        now = self._clock.monotonic()
        bucket = self._buckets.get(source.id)
        if bucket is None:
            bucket = self._add(source.id, limit, now)
        elif bucket.limit is not limit and bucket.limit != limit:
            bucket.retune(limit, now)  # the account was replaced with another limit
        return None if bucket.take(now) else self._refusal

    def _add(self, account_id: str, limit: RateLimit, now: float) -> TokenBucket:
        buckets = self._buckets
        if len(buckets) >= self._max:
            self._shrink(now)
        bucket = buckets[account_id] = TokenBucket(limit, now)
        return bucket

    def _shrink(self, now: float) -> None:
        """Drop the full buckets, then the oldest until an eighth is free: a pass over the dict
        at most once every ``max_buckets / 8`` new buckets."""
        buckets = self._buckets
        for account_id in [k for k, b in buckets.items() if b.full(now)]:
            del buckets[account_id]
        excess = len(buckets) - (self._max - max(self._max // 8, 1))
        for account_id in list(buckets)[: max(excess, 0)]:
            del buckets[account_id]

    def __len__(self) -> int:
        """How many buckets are kept."""
        return len(self._buckets)


class IncomingMaxPacketAmount(MakesRejects):
    """The sender's ``max_packet_amount`` (RFC-0027 §F08: the data carries both amounts, in the
    sender's units), checked before anything is held."""

    name: ClassVar[str] = "incoming_max_packet_amount"

    def __init__(self, ilp_address: str) -> None:
        self._address = ilp_address

    def on_prepare(self, req: PacketRequest) -> StepResult:
        maximum = req.source.max_packet_amount
        amount = req.prepare.amount
        if maximum is not None and amount > maximum:
            return self._too_large(amount, maximum)
        return None
