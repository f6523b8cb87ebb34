"""Limits on what a peer sends us, through the real container and real WebSockets on 127.0.0.1.

Time is a fake clock that never moves while packets flow, so a bucket cannot refill during the
test: which Prepares pass is exact, with no timing threshold.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from connector.app.config import ConnectorConfig
from connector.app.container import Container
from connector.app.settings import Settings, runtime_config
from connector.domain.btp import frames
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Fulfill, Prepare, Reject
from tests.fakes import CONDITION, FULFILLMENT, FakeClock, FakeSecretStore, RecordingLogSink
from tests.integration.helpers import GUARD, BtpClient, free_port

SECRETS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}
CONFIG = {
    "node_id": "limits",
    "ilp_address": "test.limits",
    "peers": [
        {"id": "alice", "relation": "child", "rate_limit": {"packets_per_second": 5, "burst": 5}},
        {"id": "bob", "relation": "child"},
        {"id": "carol", "relation": "child", "max_packet_amount": 1000},
    ],
}


@pytest.fixture
async def node() -> AsyncIterator[tuple[Container, FakeClock]]:
    clock = FakeClock()
    container = Container()
    settings = Settings(
        btp_server_host="127.0.0.1", btp_server_port=free_port(), store_url="memory://"
    )
    container.config.from_dict(runtime_config(settings, ConnectorConfig.model_validate(CONFIG)))
    container.clock.override(clock)
    container.log.override(RecordingLogSink(nodeId="limits"))
    container.secret_store.override(FakeSecretStore(SECRETS))
    await container.node().start()
    yield container, clock
    async with asyncio.timeout(GUARD):
        task = asyncio.create_task(container.node().shutdown())
        while not task.done():
            clock.advance(1)  # let shutdown deadlines pass on the fake clock
            await asyncio.sleep(0.001)
        await task


def to_bob(clock: FakeClock, amount: int) -> Prepare:
    return Prepare(
        amount, clock.now() + timedelta(seconds=30), CONDITION, "test.limits.bob.x", b"data"
    )


async def bob_fulfills(bob: BtpClient, count: int) -> None:
    for _ in range(count):
        frame = await bob.recv_frame()
        assert isinstance(frame, frames.Message)
        assert frames.ilp_entry(frame) is not None
        answer = codec.encode(Fulfill(FULFILLMENT, b"thanks"))
        await bob.ws.send(frames.encode(frames.ilp_response(frame.request_id, answer)))


async def authenticated(client: BtpClient, peer_id: str) -> BtpClient:
    assert isinstance(await client.authenticate(peer_id, SECRETS[peer_id]), frames.Response)
    return client


async def test_twenty_prepares_at_once_against_a_burst_of_five_give_five_through_and_15_t05(
    node: tuple[Container, FakeClock],
) -> None:
    container, clock = node
    port = container.config.btp_server_port()
    async with BtpClient.connect(port) as alice_ws, BtpClient.connect(port) as bob_ws:
        alice = await authenticated(alice_ws, "alice")
        bob = await authenticated(bob_ws, "bob")
        sent = [await alice.send_prepare(to_bob(clock, 10)) for _ in range(20)]
        await bob_fulfills(bob, 5)
        replies = dict([await alice.recv_reply() for _ in sent])
    assert sorted(replies) == sorted(sent)
    fulfilled = [r for r in replies.values() if isinstance(r, Fulfill)]
    refused = [r for r in replies.values() if isinstance(r, Reject)]
    assert len(fulfilled) == 5
    assert len(refused) == 15
    assert {(r.code, r.triggered_by) for r in refused} == {("T05", "test.limits")}
    metrics = container.metrics().render().decode()
    assert 'connector_packets_total{code="T05",outcome="rejected",peer="alice"} 15.0' in metrics
    assert 'connector_packets_total{code="",outcome="fulfilled",peer="alice"} 5.0' in metrics


async def test_a_prepare_over_the_senders_max_packet_amount_gets_f08_with_both_amounts(
    node: tuple[Container, FakeClock],
) -> None:
    container, clock = node
    port = container.config.btp_server_port()
    async with BtpClient.connect(port) as carol_ws, BtpClient.connect(port) as bob_ws:
        carol = await authenticated(carol_ws, "carol")
        bob = await authenticated(bob_ws, "bob")
        too_large = await carol.send_prepare(to_bob(clock, 1001))
        request_id, reply = await carol.recv_reply()
        assert request_id == too_large
        assert isinstance(reply, Reject)
        assert (reply.code, reply.triggered_by) == ("F08", "test.limits")
        assert reply.data == (1001).to_bytes(8, "big") + (1000).to_bytes(8, "big")
        largest = await carol.send_prepare(to_bob(clock, 1000))
        await bob_fulfills(bob, 1)  # the first Prepare bob sees is the one that fits
        assert await carol.recv_reply() == (largest, Fulfill(FULFILLMENT, b"thanks"))
    assert container.ledger().position("carol").balance == 1000  # the refused one held nothing
