"""The real container and real WebSockets on 127.0.0.1: many peers, signals, shutdown mid-flight."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import pytest

from connector.app.container import Container
from connector.app.main import serve
from connector.app.settings import Settings, runtime_config
from connector.domain.btp import frames
from connector.domain.ilp.packets import Fulfill, Reject
from tests.fakes import FULFILLMENT, FakeProcessor, FakeSecretStore, RecordingLogSink, make_prepare
from tests.integration.helpers import GUARD, BtpClient, free_port

PEERS = {f"peer-{i}": f"secret-{i}-xyz" for i in range(24)}


@pytest.fixture
async def node() -> AsyncIterator[tuple[Container, FakeProcessor, RecordingLogSink]]:
    """A container wired as in production, with the processor, secrets and log overridden."""
    container = Container()
    container.config.from_dict(
        runtime_config(
            Settings(
                btp_server_host="127.0.0.1",
                btp_server_port=free_port(),
                ilp_address="test.node",
                node_id="node-1",
                shutdown_timeout=5.0,
                store_url="memory://",
            ),
            None,
        )
    )
    processor = FakeProcessor()
    log = RecordingLogSink(nodeId="node-1")
    container.steps.override([processor])
    container.secret_store.override(FakeSecretStore(PEERS))
    container.log.override(log)
    yield container, processor, log
    processor.released.set()
    async with asyncio.timeout(GUARD):
        await container.btp_server().shutdown()


async def test_many_concurrent_peers_each_get_their_own_replies(
    node: tuple[Container, FakeProcessor, RecordingLogSink],
) -> None:
    container, processor, log = node
    server = container.btp_server()
    await server.start()
    port = container.config.btp_server_port()
    packets_each = 25

    async def one_peer(peer_id: str, secret: str) -> list[int]:
        async with BtpClient.connect(port) as client:
            assert isinstance(await client.authenticate(peer_id, secret), frames.Response)
            sent = [await client.send_prepare(make_prepare()) for _ in range(packets_each)]
            replies = [await client.recv_reply() for _ in sent]
            assert all(isinstance(r, Fulfill) for _, r in replies)
            assert sorted(i for i, _ in replies) == sorted(sent)
            return sent

    async def intruder() -> tuple[int, str]:
        async with BtpClient.connect(port) as client:
            assert isinstance(await client.authenticate("peer-0", "guess"), frames.Error)
            return await client.close_code()

    async def garbage() -> tuple[int, str]:
        async with BtpClient.connect(port) as client:
            assert isinstance(
                await client.authenticate("peer-23", PEERS["peer-23"]), frames.Response
            )
            for _ in range(3):
                await client.ws.send(b"\xde\xad")
            return await client.close_code()

    async with asyncio.timeout(GUARD):
        results = await asyncio.gather(
            *(one_peer(p, s) for p, s in list(PEERS.items())[:22]), intruder(), garbage()
        )
    assert results[-2][0] == 1008
    assert results[-1][0] == 1002
    assert len(processor.seen) == 22 * packets_each
    assert {peer for peer, _ in processor.seen} == set(list(PEERS)[:22])
    assert all(r["nodeId"] == "node-1" for r in log.records)
    assert len(log.events("btp_connection")) == 24


async def test_sigterm_with_packets_in_flight_answers_them_and_closes_normally(
    node: tuple[Container, FakeProcessor, RecordingLogSink],
) -> None:
    container, processor, log = node
    processor.hold = True
    task = asyncio.create_task(serve(container))
    port = container.config.btp_server_port()
    async with asyncio.timeout(GUARD):
        while not log.events("btp_server_started"):  # noqa: ASYNC110 - bounded start-up wait
            await asyncio.sleep(0.01)
    async with BtpClient.connect(port) as client:
        await client.authenticate("peer-1", PEERS["peer-1"])
        ids = [await client.send_prepare(make_prepare()) for _ in range(10)]
        async with asyncio.timeout(GUARD):
            while processor.started < 10:  # noqa: ASYNC110 - bounded wait for the processor
                await asyncio.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)
        async with asyncio.timeout(GUARD):
            while not container.btp_server().draining:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        processor.released.set()
        replies = [await client.recv_reply() for _ in ids]
        assert sorted(i for i, _ in replies) == sorted(ids)
        assert all(r == Fulfill(FULFILLMENT, b"ok") for _, r in replies)
        assert await client.close_code() == (1000, "connector shutting down")
    async with asyncio.timeout(GUARD):
        await task
    (shutdown,) = log.events("btp_server_shutdown")
    assert shutdown["activeConnections"] == 1
    assert shutdown["inFlight"] == 10


async def test_pending_packets_are_rejected_at_the_shutdown_deadline(
    node: tuple[Container, FakeProcessor, RecordingLogSink],
) -> None:
    container, processor, _ = node
    container.limits.override(
        container.limits.cls(shutdown_timeout=0.2)  # a real clock here: keep the wait short
    )
    processor.hold = True
    server = container.btp_server()
    await server.start()
    async with BtpClient.connect(container.config.btp_server_port()) as client:
        await client.authenticate("peer-2", PEERS["peer-2"])
        request_id = await client.send_prepare(make_prepare())
        async with asyncio.timeout(GUARD):
            while processor.started < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        shutdown = asyncio.create_task(server.shutdown())
        got_id, reply = await client.recv_reply()
        assert got_id == request_id
        assert isinstance(reply, Reject)
        assert reply.code == "T03"
        assert (await client.close_code())[0] == 1000
        async with asyncio.timeout(GUARD):
            await shutdown
