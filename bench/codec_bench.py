"""Codec throughput: ILP Prepare and the BTP MESSAGE carrying it, encode and decode per second.

One process, full validation on decode. The Prepare has a 50-byte destination and 100 bytes of
data, the size the project set for this benchmark. Run: ``.venv/bin/python bench/codec_bench.py``
(add ``--seconds N``).
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime

from connector.domain.btp import frames
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Prepare

DESTINATION = "g." + "a" * 20 + "." + "b" * 20 + "." + "c" * 6  # 50 characters
PREPARE = Prepare(
    amount=1_000_000,
    expires_at=datetime(2030, 1, 15, 12, 34, 56, 789000, tzinfo=UTC),
    execution_condition=bytes(range(32)),
    destination=DESTINATION,
    data=bytes(100),
)


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn``: batches of 10,000 until ``seconds`` have passed; best batch."""
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(10_000):
            fn()
        best = max(best, 10_000 / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per row")
    args = parser.parse_args()
    assert len(DESTINATION) == 50
    prepare_bytes = codec.encode(PREPARE)
    message = frames.ilp_message(7, prepare_bytes)
    message_bytes = frames.encode(message)

    def btp_decode() -> object:
        frame = frames.decode(message_bytes)
        inner = frames.ilp_entry(frame)
        assert inner is not None
        return codec.decode_prepare(inner)

    rows = [
        ("ILP Prepare", "decode", lambda: codec.decode_prepare(prepare_bytes)),
        ("ILP Prepare", "encode", lambda: codec.encode(PREPARE)),
        ("BTP MESSAGE (frame only)", "decode", lambda: frames.decode(message_bytes)),
        ("BTP MESSAGE (frame only)", "encode", lambda: frames.encode(message)),
        ("BTP MESSAGE + Prepare", "decode", btp_decode),
        (
            "BTP MESSAGE + Prepare",
            "encode",
            lambda: frames.encode_ilp_frame(frames.FrameType.MESSAGE, 7, codec.encode(PREPARE)),
        ),
    ]
    print(f"Python {platform.python_version()} on {platform.machine()}, one process")
    print(f"Prepare {len(prepare_bytes)} bytes, MESSAGE {len(message_bytes)} bytes\n")
    print(f"| {'what':<26} | {'op':<6} | {'per second':>12} | {'µs each':>8} |")
    print(f"|{'-' * 28}|{'-' * 8}|{'-' * 14}|{'-' * 10}|")
    for what, op, fn in rows:
        r = rate(fn, args.seconds)
        print(f"| {what:<26} | {op:<6} | {r:>12,.0f} | {1e6 / r:>8.2f} |")


if __name__ == "__main__":
    main()
