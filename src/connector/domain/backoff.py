"""Reconnect delays: exponential backoff with jitter, pure (the randomness is injected)."""

from __future__ import annotations

import random


class Backoff:
    """``next()`` is uniform in [c/2, c) with c = min(cap, base * factor**n) for the n-th failure
    in a row; ``reset()`` after a success. The jitter spreads many peers' reconnects apart, and
    the half that is kept stops a fast failure from turning into a busy loop."""

    def __init__(
        self,
        base: float = 0.5,
        factor: float = 2.0,
        cap: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self._base = base
        self._factor = factor
        self._cap = cap
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.failures = 0

    def next(self) -> float:
        ceiling = min(self._cap, self._base * self._factor**self.failures)
        self.failures += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0
