"""Three connector processes on loopback.

    alice ── A (test.a) ── B (test.b) ── C (test.c) ── bob

A and C dial B. Stopping B with packets in flight gives alice quick rejects and no hang;
restarting B restores forwarding once A and C have redialed it.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from connector.domain.btp import frames
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Fulfill, Prepare, Reject
from tests.integration.helpers import (
    GUARD,
    BtpClient,
    ConnectorProcess,
    connector_process,
    free_port,
)

FULFILLMENT = b"\x42" * 32
CONDITION = hashlib.sha256(FULFILLMENT).digest()


def config(
    tmp_path: Path, name: str, peers: list[dict[str, Any]], routes: list[dict[str, str]]
) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {"node_id": name, "ilp_address": f"test.{name}", "peers": peers, "routes": routes}
        )
    )
    return str(path)


def prepare() -> Prepare:
    expiry = datetime.now(UTC) + timedelta(seconds=30)
    return Prepare(10, expiry.replace(microsecond=0), CONDITION, "test.c.bob.inbox", b"hi")


async def bob_reads(bob: BtpClient) -> int:
    frame = await bob.recv_frame()
    assert isinstance(frame, frames.Message)
    return frame.request_id


async def bob_fulfills(bob: BtpClient, request_id: int) -> None:
    reply = codec.encode(Fulfill(FULFILLMENT, b"ok"))
    await bob.ws.send(frames.encode(frames.ilp_response(request_id, reply)))


def linked(node: ConnectorProcess, peer: str) -> int:
    return len(
        [r for r in node.records("btp_auth") if r.get("peerId") == peer and r.get("success")]
    )


async def test_stopping_the_middle_node_rejects_quickly_and_restarting_it_restores_forwarding(
    tmp_path: Path,
) -> None:
    port_a, port_b, port_c = free_port(), free_port(), free_port()
    b_config = config(
        tmp_path,
        "b",
        [{"id": "a", "relation": "peer"}, {"id": "c", "relation": "peer"}],
        [{"prefix": "test.a", "peer": "a"}, {"prefix": "test.c", "peer": "c"}],
    )
    b_env = {
        "CONNECTOR_CONFIG": b_config,
        "BTP_PEER_A_SECRET": "ab",
        "BTP_PEER_C_SECRET": "cb",
        "CONNECTOR_SHUTDOWN_TIMEOUT": "0.5",
    }
    async with AsyncExitStack() as stack:
        b = await stack.enter_async_context(connector_process(port_b, **b_env))
        a = await stack.enter_async_context(
            connector_process(
                port_a,
                CONNECTOR_CONFIG=config(
                    tmp_path,
                    "a",
                    [
                        {"id": "alice", "relation": "child"},
                        {"id": "b", "relation": "peer", "url": f"ws://127.0.0.1:{port_b}"},
                    ],
                    [{"prefix": "test.c", "peer": "b"}],
                ),
                BTP_PEER_ALICE_SECRET="alice-s",
                BTP_PEER_B_SECRET="ab",
            )
        )
        c = await stack.enter_async_context(
            connector_process(
                port_c,
                CONNECTOR_CONFIG=config(
                    tmp_path,
                    "c",
                    [
                        {"id": "bob", "relation": "child"},
                        {"id": "b", "relation": "peer", "url": f"ws://127.0.0.1:{port_b}"},
                    ],
                    [{"prefix": "test.a", "peer": "b"}],
                ),
                BTP_PEER_BOB_SECRET="bob-s",
                BTP_PEER_B_SECRET="cb",
            )
        )
        alice = await stack.enter_async_context(BtpClient.connect(port_a))
        bob = await stack.enter_async_context(BtpClient.connect(port_c))
        assert isinstance(await alice.authenticate("alice", "alice-s"), frames.Response)
        assert isinstance(await bob.authenticate("bob", "bob-s"), frames.Response)
        async with asyncio.timeout(GUARD):
            while not (linked(a, "b") and linked(c, "b")):  # noqa: ASYNC110 - bounded
                await asyncio.sleep(0.05)

        # Through three processes and back.
        sent = [await alice.send_prepare(prepare()) for _ in range(20)]
        for _ in sent:
            await bob_fulfills(bob, await bob_reads(bob))
        replies = [await alice.recv_reply() for _ in sent]
        assert sorted(i for i, _ in replies) == sorted(sent)
        assert all(isinstance(r, Fulfill) for _, r in replies)

        # Ten packets in flight (bob holds them), then B is stopped.
        held = [await alice.send_prepare(prepare()) for _ in range(10)]
        for _ in held:
            await bob_reads(bob)
        b.signal(signal.SIGTERM)
        replies = [await alice.recv_reply() for _ in held]
        assert sorted(i for i, _ in replies) == sorted(held)
        for _, reply in replies:
            assert isinstance(reply, Reject)
            # T03 from B's drain, not R00 at expiry: nothing waited for the packets to expire.
            assert (reply.code, reply.triggered_by) == ("T03", "test.b")
        assert await b.wait() == 0

        # With B gone, A answers at once.
        async with asyncio.timeout(GUARD):
            while not [r for r in a.records("btp_disconnect") if r.get("peerId") == "b"]:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await alice.send_prepare(prepare())
        _, reply = await alice.recv_reply()
        assert isinstance(reply, Reject)
        assert (reply.code, reply.triggered_by) == ("T01", "test.a")

        # B comes back on the same port; A and C redial it with backoff.
        before_a, before_c = linked(a, "b"), linked(c, "b")
        await stack.enter_async_context(connector_process(port_b, **b_env))
        async with asyncio.timeout(GUARD):
            while linked(a, "b") == before_a or linked(c, "b") == before_c:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        request_id = await alice.send_prepare(prepare())
        await bob_fulfills(bob, await bob_reads(bob))
        assert await alice.recv_reply() == (request_id, Fulfill(FULFILLMENT, b"ok"))
        assert a.records("btp_reconnect_scheduled")
