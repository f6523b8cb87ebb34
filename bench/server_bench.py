"""BTP server round trips: a real connector process, a WebSocket client here, loopback only.

The connector runs ``python -m connector`` with its default processor (every Prepare rejected
F02), so this measures the BTP server path: WebSocket read, frame and Prepare decode, session,
processor task, Reject encode, write. The client keeps N Prepares in flight for a fixed time and
records each round trip. Run: ``.venv/bin/python bench/server_bench.py`` (``--seconds``,
``--in-flight``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from websockets.asyncio.client import connect

from connector.domain.btp import frames
from connector.domain.btp.frames import FrameType
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Prepare

SECRET = "bench-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run(port: int, in_flight: int, seconds: float) -> tuple[int, list[float]]:
    prepare = codec.encode(
        Prepare(
            1000,
            datetime.now(UTC) + timedelta(minutes=10),
            bytes(32),
            "test.connector.bob",
            bytes(100),
        )
    )
    latencies: list[float] = []
    async with connect(f"ws://127.0.0.1:{port}", max_size=None, compression=None) as ws:
        await ws.send(frames.encode(frames.auth_message(1, "bench", SECRET.encode())))
        assert isinstance(frames.decode(await ws.recv()), frames.Response)  # type: ignore[arg-type]
        sent_at: dict[int, float] = {}
        next_id = 2
        deadline = time.perf_counter() + seconds
        for _ in range(in_flight):
            sent_at[next_id] = time.perf_counter()
            await ws.send(frames.encode_ilp_frame(FrameType.MESSAGE, next_id, prepare))
            next_id += 1
        while sent_at:
            data = await ws.recv()
            now = time.perf_counter()
            request_id = int.from_bytes(data[1:5], "big")  # type: ignore[arg-type]
            latencies.append(now - sent_at.pop(request_id))
            if now < deadline:
                sent_at[next_id] = time.perf_counter()
                await ws.send(frames.encode_ilp_frame(FrameType.MESSAGE, next_id, prepare))
                next_id += 1
    return len(latencies), latencies


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--log-level", default="info", help="the connector's LOG_LEVEL")
    args = parser.parse_args()
    port = free_port()
    env = {
        **os.environ,
        "BTP_SERVER_HOST": "127.0.0.1",
        "BTP_SERVER_PORT": str(port),
        "BTP_PEER_BENCH_SECRET": SECRET,
        "LOG_LEVEL": args.log_level,
        "LOG_FORMAT": "json",
        "CONNECTOR_STORE_URL": os.environ.get("CONNECTOR_STORE_URL", "memory://"),
    }
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                await asyncio.sleep(0.1)
        print(
            f"Python {sys.version.split()[0]}, connector and client on loopback, "
            f"{os.cpu_count()} cores, LOG_LEVEL={args.log_level}"
        )
        print(f"| {'in flight':>9} | {'packets/s':>10} | {'p50 ms':>7} | {'p99 ms':>7} |")
        print(f"|{'-' * 11}|{'-' * 12}|{'-' * 9}|{'-' * 9}|")
        for n in args.in_flight:
            count, lat = await run(port, n, args.seconds)
            lat.sort()
            p50 = statistics.median(lat) * 1000
            p99 = lat[int(len(lat) * 0.99) - 1] * 1000
            print(f"| {n:>9} | {count / args.seconds:>10,.0f} | {p50:>7.2f} | {p99:>7.2f} |")
    finally:
        server.send_signal(signal.SIGTERM)
        await asyncio.wait_for(server.wait(), 20)


if __name__ == "__main__":
    asyncio.run(main())
