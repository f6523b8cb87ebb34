"""Two connector processes on one PostgreSQL database, as behind a load balancer: the same peer
sends through both at once and never exceeds its maximum together; a `kill -9` of one loses no
Fulfill its senders received, and its restart gives back the credit it held."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from connector.adapters.websockets_transport import WebsocketsDialer
from connector.app.endpoint import Endpoint
from connector.domain.btp import frames
from connector.domain.ilp.packets import Fulfill, IlpErrorCode, Prepare, Reject, Reply
from connector.domain.secret import Secret
from tests.fakes import FULFILLMENT, make_prepare
from tests.integration.helpers import GUARD, BtpClient, ConnectorProcess, connector_process

CONFIG = """
node_id: shared
ilp_address: test.shared
peers:
  - {id: alice, relation: child, balance: {maximum: 1000}}
  - {id: bob, relation: child, balance: {minimum: -5000}}
"""


def fulfill(prepare: Prepare) -> Reply:
    return Fulfill(FULFILLMENT, b"")


@contextlib.asynccontextmanager
async def instance(
    tmp_path: Path, url: str, name: str
) -> AsyncIterator[tuple[ConnectorProcess, Endpoint]]:
    """One connector process, with bob (who fulfills everything) connected to it."""
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    async with connector_process(
        CONNECTOR_CONFIG=str(config),
        CONNECTOR_STORE_URL=url,
        CONNECTOR_STORE_INSTANCE=name,
        BTP_PEER_ALICE_SECRET="alice-secret",
        BTP_PEER_BOB_SECRET="bob-secret",
    ) as node:
        dialer = WebsocketsDialer(max_frame_size=1 << 20)
        bob = Endpoint(await dialer.dial(f"ws://127.0.0.1:{node.port}"), "test.b", fulfill)
        await bob.open("bob", Secret(b"bob-secret"), GUARD)
        try:
            yield node, bob
        finally:
            bob.stop("done")


async def send(port: int, count: int, amount: int) -> list[Reply]:
    """alice sends ``count`` Prepares at once and reads every answer."""
    async with BtpClient.connect(port) as alice:
        assert isinstance(await alice.authenticate("alice", "alice-secret"), frames.Response)
        for _ in range(count):
            await alice.send_prepare(make_prepare(destination="test.shared.bob.x", amount=amount))
        return [(await alice.recv_reply())[1] for _ in range(count)]


async def balance(url: str, account: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT balance FROM balances WHERE account = $1", account))
    finally:
        await conn.close()


async def test_one_peer_sending_through_two_instances_at_once_stays_under_its_maximum(
    tmp_path: Path, postgres_url: str
) -> None:
    async with (
        instance(tmp_path, postgres_url, "a") as (a, _),
        instance(tmp_path, postgres_url, "b") as (b, _),
    ):
        async with asyncio.timeout(GUARD):
            through_a, through_b = await asyncio.gather(
                send(a.port, 100, 10), send(b.port, 100, 10)
            )
        replies = through_a + through_b
        fulfills = sum(isinstance(r, Fulfill) for r in replies)
        refusals = [r for r in replies if isinstance(r, Reject)]
        assert {r.code for r in refusals} <= {IlpErrorCode.T04_INSUFFICIENT_LIQUIDITY}
        assert fulfills == 100  # exactly the maximum: none over it, none stranded
        assert await balance(postgres_url, "alice") == 1000
        assert await balance(postgres_url, "bob") == -1000


async def test_a_killed_instance_loses_no_fulfill_and_its_restart_gives_its_credit_back(
    tmp_path: Path, postgres_url: str
) -> None:
    async with instance(tmp_path, postgres_url, "b") as (b, _):
        async with instance(tmp_path, postgres_url, "a") as (a, _):
            replies = await send(a.port, 30, 10)
            assert all(isinstance(r, Fulfill) for r in replies)
            a.proc.kill()  # SIGKILL: no shutdown; its lease rows stay in the database
            assert await a.wait() != 0
        assert await balance(postgres_url, "alice") == 300  # every Fulfill alice received
        assert await balance(postgres_url, "bob") == -300  # and the other side of each
        # a leased more than it used; until a is back (or its lease expires) b cannot use it.
        async with instance(tmp_path, postgres_url, "a") as (a, _):
            await a.wait_for("store_opened")
            replies = await send(b.port, 70, 10)  # the 700 left, all through b
            assert all(isinstance(r, Fulfill) for r in replies)
        assert await balance(postgres_url, "alice") == 1000


async def test_a_database_that_cannot_be_reached_stops_start_up_without_showing_the_password(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    url = "postgresql://connector:hunter2@127.0.0.1:1/connector"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connector",
        env={**os.environ, "CONNECTOR_CONFIG": str(config), "CONNECTOR_STORE_URL": url,
             "BTP_PEER_ALICE_SECRET": "a", "BTP_PEER_BOB_SECRET": "b", "LOG_FORMAT": "json",
             "BTP_SERVER_PORT": "0"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(GUARD):
        out, err = await proc.communicate()
    assert proc.returncode == 1
    text = (out + err).decode()
    assert "connector_failed" in text
    assert "127.0.0.1" in text
    assert "hunter2" not in text


async def test_a_graceful_stop_gives_the_credit_back_at_once(
    tmp_path: Path, postgres_url: str
) -> None:
    async with instance(tmp_path, postgres_url, "a") as (a, _):
        assert all(isinstance(r, Fulfill) for r in await send(a.port, 5, 10))
        conn = await asyncpg.connect(postgres_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM leases WHERE instance = 'a'") == 2
            a.signal(signal.SIGTERM)
            assert await a.wait() == 0
            assert await conn.fetchval("SELECT count(*) FROM leases") == 0
        finally:
            await conn.close()
