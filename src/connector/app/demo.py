"""``connector demo``: three processes on loopback, a sender, this connector, and a receiver.

The orchestrator writes a configuration, starts ``python -m connector`` with the sender and the
receiver as children, starts the receiver (which fulfills every Prepare whose fulfillment is
sha256 of its data), runs the sender (which sends the packets, checks every Fulfill against its
condition, and reports), prints the counts and packets per second, then stops everything.

The sender and receiver are ``Endpoint``s, built from this package's own ``BtpLink`` in the
client role: ``python -m connector.app.demo sender|receiver --url ws://...`` (the secret in
DEMO_SECRET).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connector.adapters.websockets_transport import WebsocketsDialer
from connector.app.endpoint import Endpoint
from connector.domain.ilp.packets import Fulfill, IlpErrorCode, Prepare, Reject, Reply
from connector.domain.secret import Secret

GUARD = 60.0  # seconds: no step of the demo may hang longer than this


def fulfill_by_hash(prepare: Prepare) -> Reply:
    """The demo receiver: fulfillment = sha256(data), when that matches the condition."""
    fulfillment = hashlib.sha256(prepare.data).digest()
    if hashlib.sha256(fulfillment).digest() != prepare.execution_condition:
        return Reject(IlpErrorCode.F06_UNEXPECTED_PAYMENT, "test.demo.receiver", "unexpected")
    return Fulfill(fulfillment, b"thanks")


async def _endpoint(url: str, username: str, answer: Any = None) -> Endpoint:
    conn = await WebsocketsDialer(max_frame_size=1 << 20).dial(url)
    endpoint = Endpoint(conn, f"test.demo.{username}", answer)
    await endpoint.open(username, Secret(os.environ["DEMO_SECRET"].encode()), GUARD)
    return endpoint


async def run_receiver(url: str) -> None:
    endpoint = await _endpoint(url, "receiver", fulfill_by_hash)
    print(json.dumps({"event": "ready"}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    closed = asyncio.create_task(endpoint.link.closed.wait())
    await asyncio.wait([closed, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED")
    endpoint.stop("demo over")


async def run_sender(url: str, destination: str, count: int, in_flight: int) -> dict[str, Any]:
    endpoint = await _endpoint(url, "sender")
    gate = asyncio.Semaphore(in_flight)
    codes: dict[str, int] = {}
    fulfilled = invalid = 0
    latencies: list[float] = []

    async def one(i: int) -> None:
        nonlocal fulfilled, invalid
        data = i.to_bytes(4, "big") + secrets.token_bytes(16)
        condition = hashlib.sha256(hashlib.sha256(data).digest()).digest()
        expiry = datetime.now(UTC) + timedelta(seconds=30)
        prepare = Prepare(
            10,
            expiry.replace(microsecond=expiry.microsecond // 1000 * 1000),
            condition,
            destination,
            data,
        )
        async with gate:
            started = time.perf_counter()
            reply = await endpoint.send(prepare)
            latencies.append(time.perf_counter() - started)
        if isinstance(reply, Fulfill):
            if hashlib.sha256(reply.fulfillment).digest() == condition:
                fulfilled += 1
            else:
                invalid += 1
        else:
            codes[reply.code] = codes.get(reply.code, 0) + 1

    started = time.perf_counter()
    async with asyncio.timeout(GUARD):
        await asyncio.gather(*(one(i) for i in range(count)))
    seconds = time.perf_counter() - started
    endpoint.stop("demo over")
    latencies.sort()
    return {
        "sent": count,
        "fulfilled": fulfilled,
        "invalidFulfills": invalid,
        "rejected": sum(codes.values()),
        "rejectCodes": codes,
        "seconds": round(seconds, 3),
        "packetsPerSecond": round(count / seconds),
        "p50ms": round(latencies[len(latencies) // 2] * 1000, 2) if latencies else None,
        "p99ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2) if latencies else None,
    }


# --- the orchestrator ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_port(port: int, proc: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(GUARD):
        while True:
            if proc.returncode is not None:
                raise RuntimeError("the connector exited during start-up")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            await asyncio.sleep(0.05)


async def _stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(20):
            return await proc.wait()
    except TimeoutError:
        proc.kill()
        return await proc.wait()


async def orchestrate(count: int, in_flight: int) -> int:
    port = _free_port()
    secret_sender, secret_receiver = secrets.token_hex(16), secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="connector-demo-") as tmp:
        config = Path(tmp) / "connector.yaml"
        config.write_text(
            "node_id: demo-connector\nilp_address: test.demo\n"
            f"btp_server: {{host: 127.0.0.1, port: {port}}}\n"
            "peers:\n  - {id: sender, relation: child}\n  - {id: receiver, relation: child}\n"
        )
        base = {k: v for k, v in os.environ.items() if not k.startswith(("BTP_", "CONNECTOR_"))}
        connector = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "connector",
            "--config",
            str(config),
            env={
                **base,
                "BTP_PEER_SENDER_SECRET": secret_sender,
                "BTP_PEER_RECEIVER_SECRET": secret_receiver,
                "LOG_LEVEL": "warning",
                "LOG_FORMAT": "json",
                "CONNECTOR_STORE_URL": "memory://",  # the demo leaves no file behind
            },
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        receiver = sender = None
        url = f"ws://127.0.0.1:{port}"
        try:
            await _wait_port(port, connector)
            receiver = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "connector.app.demo",
                "receiver",
                "--url",
                url,
                env={**base, "DEMO_SECRET": secret_receiver},
                stdout=asyncio.subprocess.PIPE,
            )
            assert receiver.stdout is not None
            async with asyncio.timeout(GUARD):
                await receiver.stdout.readline()  # {"event": "ready"}
            sender = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "connector.app.demo",
                "sender",
                "--url",
                url,
                "--count",
                str(count),
                "--in-flight",
                str(in_flight),
                env={**base, "DEMO_SECRET": secret_sender},
                stdout=asyncio.subprocess.PIPE,
            )
            async with asyncio.timeout(GUARD):
                out, _ = await sender.communicate()
            result = json.loads(out.decode().strip().splitlines()[-1])
        finally:
            for proc in (sender, receiver, connector):
                if proc is not None:
                    await _stop(proc)
    print(f"demo: sender -> connector (127.0.0.1:{port}, separate processes) -> receiver")
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(result["rejectCodes"].items()))
    print(
        f"sent {result['sent']}, fulfilled {result['fulfilled']}, rejected {result['rejected']}"
        + (f" ({codes})" if codes else "")
        + f", invalid fulfills {result['invalidFulfills']}"
    )
    print(
        f"{result['packetsPerSecond']} packets/s with {in_flight} in flight "
        f"(p50 {result['p50ms']} ms, p99 {result['p99ms']} ms, {result['seconds']} s)"
    )
    return 0 if result["fulfilled"] == count else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="connector demo",
        description="Three processes on loopback: a sender, this connector and a receiver that "
        "fulfills. The sender sends Prepares through the connector, checks every Fulfill "
        "against its condition, and the counts and packets per second are printed. Needs only "
        "the runtime; everything it starts is stopped.",
    )
    parser.add_argument(
        "role",
        nargs="?",
        choices=["orchestrate", "sender", "receiver"],
        default="orchestrate",
        help="orchestrate (default) runs the demo; sender and receiver are the processes it starts",
    )
    parser.add_argument("--url", help="sender and receiver: the connector to dial")
    parser.add_argument("--count", type=int, default=1000, help="Prepares to send (%(default)s)")
    parser.add_argument(
        "--in-flight",
        type=int,
        default=50,
        help="Prepares the sender keeps in flight (%(default)s)",
    )
    parser.add_argument(
        "--destination",
        default="test.demo.receiver.inbox",
        help="sender: where to send (%(default)s)",
    )
    args = parser.parse_args(argv)
    if args.role == "receiver":
        asyncio.run(run_receiver(args.url))
        return 0
    if args.role == "sender":
        result = asyncio.run(run_sender(args.url, args.destination, args.count, args.in_flight))
        print(json.dumps(result), flush=True)
        return 0
    return asyncio.run(orchestrate(args.count, args.in_flight))


if __name__ == "__main__":
    sys.exit(main())
