"""Balances survive a crash: the real process on a SQLite store, killed with SIGKILL right after
its Fulfills went upstream, then started again on the same file."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from connector.adapters.websockets_transport import WebsocketsDialer
from connector.app.endpoint import Endpoint
from connector.domain.btp import frames
from connector.domain.ilp.packets import Fulfill, Prepare, Reply
from connector.domain.secret import Secret
from tests.fakes import FULFILLMENT, make_prepare
from tests.integration.helpers import GUARD, BtpClient, connector_process

CONFIG = """
node_id: durable
ilp_address: test.durable
peers:
  - {id: alice, relation: child, balance: {maximum: 1000}}
  - {id: bob, relation: child}
"""


def fulfill(prepare: Prepare) -> Reply:
    return Fulfill(FULFILLMENT, b"")


async def balances(port: int) -> dict[str, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(GUARD):
        text = (await reader.read()).decode()
    writer.close()
    return {
        p: int(float(v)) for p, v in re.findall(r'connector_balance\{peer="(\w+)"\} (\S+)', text)
    }


async def test_every_fulfill_a_sender_received_is_in_its_balance_after_kill_9(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    env = {
        "CONNECTOR_CONFIG": str(config),
        "CONNECTOR_STORE_URL": f"sqlite:///{tmp_path / 'balances.sqlite3'}",
        "BTP_PEER_ALICE_SECRET": "alice-secret",
        "BTP_PEER_BOB_SECRET": "bob-secret",
    }
    async with connector_process(**env) as node:
        url = f"ws://127.0.0.1:{node.port}"
        bob = Endpoint(await WebsocketsDialer(max_frame_size=1 << 20).dial(url), "test.b", fulfill)
        await bob.open("bob", Secret(b"bob-secret"), GUARD)
        async with BtpClient.connect(node.port) as alice:
            assert isinstance(await alice.authenticate("alice", "alice-secret"), frames.Response)
            for _ in range(3):
                await alice.send_prepare(make_prepare(destination="test.durable.bob.x", amount=10))
            replies = [await alice.recv_reply() for _ in range(3)]
            assert all(isinstance(reply, Fulfill) for _, reply in replies)
            node.proc.kill()  # SIGKILL: no shutdown, nothing flushed on the way out
            assert await node.wait() != 0
        bob.stop("done")
    async with connector_process(**env) as node:
        assert await balances(node.port) == {"alice": 30, "bob": -30}
