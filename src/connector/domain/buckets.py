"""Token buckets: how many Prepares a peer may send us, at once and per second.

``RateLimit`` is the value an ``Account`` carries; ``TokenBucket`` is the state the
``rate_limit`` step keeps per sending account (``limits.py``). No timer refills a bucket: each
packet adds what the time since the last one earned, a few float operations, on the injected
clock's monotonic seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Float refill: 5 per second over 0.2 s must make a whole token even when it sums to 0.999…
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``burst`` Prepares at once, refilled at ``packets_per_second``."""

    packets_per_second: int
    burst: int

    def __post_init__(self) -> None:
        if self.packets_per_second < 1 or self.burst < 1:
            raise ValueError("a rate limit needs packets_per_second and burst of at least 1")


class TokenBucket:
    """One account's tokens at monotonic time ``at``; starts full."""

    __slots__ = ("at", "limit", "tokens")

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.limit = limit
        self.tokens = float(limit.burst)
        self.at = now

    def _refill(self, now: float) -> float:
        limit = self.limit
        tokens = self.tokens + (now - self.at) * limit.packets_per_second
        self.at = now
        return tokens if tokens < limit.burst else float(limit.burst)

    def take(self, now: float) -> bool:
        """One token, if there is one at ``now``."""
        tokens = self._refill(now)
        if tokens >= 1 - _EPSILON:
            self.tokens = tokens - 1
            return True
        self.tokens = tokens
        return False

    def retune(self, limit: RateLimit, now: float) -> None:
        """A new limit from ``now`` on: what the old one earned so far stays, up to the new
        burst, so a reload never hands out a fresh burst (a larger one fills at the new rate)."""
        tokens = self._refill(now)
        self.limit = limit
        self.tokens = min(tokens, float(limit.burst))

    def full(self, now: float) -> bool:
        """As good as a new bucket: dropping it changes nothing."""
        limit = self.limit
        return self.tokens + (now - self.at) * limit.packets_per_second >= limit.burst
