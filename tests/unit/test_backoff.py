from __future__ import annotations

import random

from connector.domain.backoff import Backoff


def test_backoff_grows_exponentially_with_jitter_and_caps() -> None:
    backoff = Backoff(base=1.0, factor=2.0, cap=8.0, rng=random.Random(7))
    delays = [backoff.next() for _ in range(6)]
    ceilings = [1, 2, 4, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next() <= 1.0


def test_jitter_spreads_peers_apart() -> None:
    delays = {round(Backoff(rng=random.Random(seed)).next(), 6) for seed in range(20)}
    assert len(delays) > 15
