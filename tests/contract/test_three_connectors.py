"""Three connectors in one process, joined by the in-memory transport.

    alice (child) ── A: test.a ══ B: test.b ══ C: test.c ── bob (child, fulfills)

A dials B and C dials B (outgoing peers with urls); alice and bob are scripted raw-BTP children.
Every node is built by the real container; only the transport, secrets and clock are swapped.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from connector.adapters.memory_transport import MemoryNetwork, MemoryServerTransport
from connector.app.config import ConnectorConfig
from connector.app.container import Container
from connector.app.settings import Settings, runtime_config
from connector.domain.btp import frames
from connector.domain.ildcp import PEER_CONDITION, IldcpResponse
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Fulfill, Prepare, Reject
from tests.contract.conftest import GUARD, Peer
from tests.fakes import FakeClock, FakeSecretStore, RecordingLogSink

SHARED = {
    ("a", "b"): "ab-secret",
    ("c", "b"): "cb-secret",
    ("a", "alice"): "alice-secret",
    ("c", "bob"): "bob-secret",
}


def secrets_of(node: str) -> dict[str, str]:
    out = {}
    for (x, y), secret in SHARED.items():
        if x == node:
            out[y] = secret
        if y == node:
            out[x] = secret
    return out


CONFIGS: dict[str, dict[str, Any]] = {
    "a": {
        "node_id": "a",
        "ilp_address": "test.a",
        "peers": [
            {"id": "alice", "relation": "child"},
            {"id": "b", "relation": "peer", "url": "ws://b.memory", "max_packet_amount": 10_000},
        ],
        "routes": [{"prefix": "test.c", "peer": "b"}, {"prefix": "test.b", "peer": "b"}],
    },
    "b": {
        "node_id": "b",
        "ilp_address": "test.b",
        "peers": [{"id": "a", "relation": "peer"}, {"id": "c", "relation": "peer"}],
        "routes": [{"prefix": "test.a", "peer": "a"}, {"prefix": "test.c", "peer": "c"}],
    },
    "c": {
        "node_id": "c",
        "ilp_address": "test.c",
        "peers": [
            {"id": "bob", "relation": "child"},
            {"id": "b", "relation": "peer", "url": "ws://b.memory"},
        ],
        "routes": [{"prefix": "test.a", "peer": "b"}],
    },
}


@dataclass
class Network:
    clock: FakeClock
    nodes: dict[str, Container]
    logs: dict[str, RecordingLogSink]
    alice: Peer
    bob: Peer
    memory: MemoryNetwork

    async def settle(self, condition: Any) -> None:
        async with asyncio.timeout(GUARD):
            while not condition():  # noqa: ASYNC110 - bounded polling of node state
                await asyncio.sleep(0.001)

    def connected(self, node: str, peer: str) -> bool:
        return self.nodes[node].links().is_connected(peer)


def build(
    name: str,
    clock: FakeClock,
    network: MemoryNetwork,
    configs: dict[str, dict[str, Any]] | None = None,
    secrets: dict[str, str] | None = None,
) -> tuple[Container, RecordingLogSink]:
    """Node ``name`` of ``configs`` (default: this file's), on the shared clock and network,
    with ``secrets`` (default: its share of this file's)."""
    container = Container()
    config = ConnectorConfig.model_validate((configs or CONFIGS)[name])
    container.config.from_dict(
        runtime_config(
            Settings(transport="memory", shutdown_timeout=1, store_url="memory://"), config
        )
    )
    log = RecordingLogSink(nodeId=name)
    container.clock.override(clock)
    container.log.override(log)
    container.secret_store.override(FakeSecretStore(secrets or secrets_of(name)))
    container.memory_network.override(network)
    transport = container.transport()
    assert isinstance(transport, MemoryServerTransport)
    network.listen(f"ws://{name}.memory", transport)
    return container, log


async def child(container: Container, peer_id: str, secret: str) -> Peer:
    transport = container.transport()
    assert isinstance(transport, MemoryServerTransport)
    peer = Peer(await transport.connect(), None)
    assert isinstance(await peer.authenticate(peer_id, secret), frames.Response)
    return peer


@pytest.fixture
async def net() -> AsyncIterator[Network]:
    clock = FakeClock()
    memory = MemoryNetwork()
    built = {name: build(name, clock, memory) for name in ("b", "a", "c")}
    nodes = {name: c for name, (c, _) in built.items()}
    for container in nodes.values():
        await container.node().start()
    alice = await child(nodes["a"], "alice", "alice-secret")
    bob = await child(nodes["c"], "bob", "bob-secret")
    network = Network(clock, nodes, {n: log for n, (_, log) in built.items()}, alice, bob, memory)
    await network.settle(lambda: network.connected("a", "b") and network.connected("c", "b"))
    yield network
    async with asyncio.timeout(GUARD):
        for container in network.nodes.values():
            task = asyncio.create_task(container.node().shutdown())
            while not task.done():
                clock.advance(1)  # let shutdown deadlines pass on the fake clock
                await asyncio.sleep(0.001)
            await task


FULFILLMENT = b"\x07" * 32
CONDITION = hashlib.sha256(FULFILLMENT).digest()


def prepare(
    clock: FakeClock,
    destination: str = "test.c.bob.inbox",
    amount: int = 500,
    expires_in: float = 30,
) -> Prepare:
    return Prepare(
        amount, clock.now() + timedelta(seconds=expires_in), CONDITION, destination, b"end-to-end"
    )


async def bob_answers(net: Network, reply: Fulfill | Reject | None = None) -> Prepare:
    """Bob receives one Prepare and answers it (fulfills by default)."""
    frame = await net.bob.recv_frame()
    assert isinstance(frame, frames.Message)
    packet = frames.ilp_entry(frame)
    assert packet is not None
    received = codec.decode_prepare(packet)
    answer = reply or Fulfill(FULFILLMENT, b"thanks")
    await net.bob.send_frame(frames.ilp_response(frame.request_id, codec.encode(answer)))
    return received


async def test_a_prepare_crosses_three_hops_and_the_fulfill_comes_back(net: Network) -> None:
    sent = prepare(net.clock)
    request_id = await net.alice.send_prepare(sent)
    received = await bob_answers(net)
    assert (received.amount, received.destination, received.data) == (
        500,
        sent.destination,
        sent.data,
    )
    assert received.execution_condition == CONDITION
    assert received.expires_at == sent.expires_at - timedelta(seconds=3)  # 1 s less at each hop
    assert await net.alice.recv_reply() == (request_id, Fulfill(FULFILLMENT, b"thanks"))


async def test_a_downstream_reject_comes_back_unchanged(net: Network) -> None:
    request_id = await net.alice.send_prepare(prepare(net.clock))
    original = Reject("F99", "test.c.bob", "no thanks", b"\x01")
    await bob_answers(net, original)
    assert await net.alice.recv_reply() == (request_id, original)


async def test_a_wrong_fulfillment_is_turned_into_f05_by_the_last_hop(net: Network) -> None:
    await net.alice.send_prepare(prepare(net.clock))
    await bob_answers(net, Fulfill(b"\x00" * 32))
    _, reply = await net.alice.recv_reply()
    assert isinstance(reply, Reject)
    assert (reply.code, reply.triggered_by) == ("F05", "test.c")


@pytest.mark.parametrize(
    ("kwargs", "code", "node"),
    [
        ({"destination": "test.zzz"}, "F02", "test.a"),
        ({"destination": "test.b.nobody"}, "F02", "test.b"),
        ({"amount": 10_001}, "F08", "test.a"),
        ({"expires_in": 1.5}, "R02", "test.a"),
        ({"expires_in": 2.5}, "R02", "test.b"),
        ({"destination": "test.c.carol"}, "F02", "test.c"),
    ],
)
async def test_rejects_created_on_the_way_name_the_node(
    net: Network, kwargs: dict[str, Any], code: str, node: str
) -> None:
    await net.alice.send_prepare(prepare(net.clock, **kwargs))
    _, reply = await net.alice.recv_reply()
    assert isinstance(reply, Reject)
    assert (reply.code, reply.triggered_by) == (code, node)


async def test_a_silent_receiver_gets_r00_from_the_last_hop_at_its_expiry(net: Network) -> None:
    request_id = await net.alice.send_prepare(prepare(net.clock, expires_in=10))
    frame = await net.bob.recv_frame()  # bob never answers
    assert isinstance(frame, frames.Message)
    net.clock.advance(7)  # C's outgoing expiry: 10 s less three 1 s windows
    got_id, reply = await net.alice.recv_reply()
    assert got_id == request_id
    assert isinstance(reply, Reject)
    assert (reply.code, reply.triggered_by) == ("R00", "test.c")


async def test_a_disconnected_receiver_gets_t01(net: Network) -> None:
    await net.bob.close()
    await net.settle(lambda: not net.connected("c", "bob"))
    await net.alice.send_prepare(prepare(net.clock))
    _, reply = await net.alice.recv_reply()
    assert isinstance(reply, Reject)
    assert (reply.code, reply.triggered_by) == ("T01", "test.c")


async def test_losing_the_middle_node_gives_quick_rejects_and_the_link_comes_back(
    net: Network,
) -> None:
    await net.alice.send_prepare(prepare(net.clock))
    await net.bob.recv_frame()  # in flight at C when B goes away; bob stays silent
    shutdown = asyncio.create_task(net.nodes["b"].node().shutdown())
    await net.settle(lambda: net.nodes["b"].btp_server().draining)
    net.clock.advance(1)  # B's shutdown deadline: what is still in flight gets rejected
    _, reply = await net.alice.recv_reply()
    assert isinstance(reply, Reject)
    assert (reply.code, reply.triggered_by) == ("T03", "test.b")
    async with asyncio.timeout(GUARD):
        await shutdown
    await net.settle(lambda: not net.connected("a", "b"))
    await net.alice.send_prepare(prepare(net.clock))
    _, reply = await net.alice.recv_reply()
    assert isinstance(reply, Reject)
    assert (reply.code, reply.triggered_by) == ("T01", "test.a")

    # B comes back on the same address: A and C redial it after their backoff delays.
    restarted, _ = build("b", net.clock, net.memory)
    net.nodes["b"] = restarted
    await restarted.node().start()
    for _ in range(120):
        if net.connected("a", "b") and net.connected("c", "b"):
            break
        net.clock.advance(0.5)
        await asyncio.sleep(0.005)
    assert net.connected("a", "b")
    assert net.connected("c", "b")
    request_id = await net.alice.send_prepare(prepare(net.clock))
    await bob_answers(net)
    assert await net.alice.recv_reply() == (request_id, Fulfill(FULFILLMENT, b"thanks"))


async def test_ildcp_tells_a_child_its_address(net: Network) -> None:
    request = Prepare(0, net.clock.now() + timedelta(seconds=60), PEER_CONDITION, "peer.config")
    await net.alice.send_prepare(request)
    _, reply = await net.alice.recv_reply()
    assert isinstance(reply, Fulfill)
    assert IldcpResponse.decode(reply.data) == IldcpResponse("test.a.alice", 9, "USD")


async def test_many_packets_in_flight_through_three_hops(net: Network) -> None:
    count = 300
    ids = [await net.alice.send_prepare(prepare(net.clock)) for _ in range(count)]
    for _ in range(count):
        await bob_answers(net)
    replies = [await net.alice.recv_reply() for _ in range(count)]
    assert sorted(i for i, _ in replies) == sorted(ids)
    assert all(isinstance(r, Fulfill) for _, r in replies)
