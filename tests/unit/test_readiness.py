"""ConnectorNode.state and status(): what readiness and the health endpoint read.

Nodes are built by the real Container on the in-memory transport; only the clock, the secrets,
the log and the memory network are swapped. A remote peer the node dials is a raw-frame peer on
a memory server transport, so a test decides when (and whether) it answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest

from connector.adapters.memory_transport import (
    MemoryConnection,
    MemoryNetwork,
    MemoryServerTransport,
)
from connector.app.config import ConnectorConfig
from connector.app.container import Container
from connector.app.node import ConnectorNode
from connector.app.settings import Settings, runtime_config
from connector.app.status import NodeStatus, PeerStatus
from connector.domain.btp import frames
from connector.domain.ilp.packets import Prepare, Reject
from connector.domain.ports import Connection
from tests.contract.conftest import GUARD, Peer
from tests.fakes import CONDITION, FakeClock, FakeSecretStore, RecordingLogSink

SECRETS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret", "b": "b-secret"}


class RemoteNode:
    """Something the node dials: accepts connections and answers only when the test says."""

    def __init__(self) -> None:
        self.transport = MemoryServerTransport()
        self.accepted: list[Connection] = []

    async def start(self, network: MemoryNetwork, url: str) -> None:
        await self.transport.start(self.accepted.append)
        network.listen(url, self.transport)

    def peer(self, index: int = 0) -> Peer:
        conn = self.accepted[index]
        assert isinstance(conn, MemoryConnection)
        return Peer(conn, None)


class Env:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.network = MemoryNetwork()
        self.containers: list[Container] = []

    def build(self, config: dict[str, Any] | None) -> Container:
        """A node with ``config`` as its file; ``None``: no file (open mode)."""
        container = Container()
        container.config.from_dict(
            runtime_config(
                Settings(transport="memory", shutdown_timeout=1, store_url="memory://"),
                None if config is None else ConnectorConfig.model_validate(config),
            )
        )
        container.clock.override(self.clock)
        node_id = "connector" if config is None else config.get("node_id", "connector")
        container.log.override(RecordingLogSink(nodeId=node_id))
        container.secret_store.override(FakeSecretStore(SECRETS))
        container.memory_network.override(self.network)
        self.containers.append(container)
        return container

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(GUARD):
            while not condition():  # noqa: ASYNC110 - bounded polling of node state
                await asyncio.sleep(0.001)

    async def shutdown(self, node: ConnectorNode) -> None:
        """Shut ``node`` down, moving the fake clock so that its deadlines pass."""
        async with asyncio.timeout(GUARD):
            task = asyncio.create_task(node.shutdown())
            while not task.done():
                self.clock.advance(1)
                await asyncio.sleep(0.001)
            await task


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e = Env()
    yield e
    for container in e.containers:
        await e.shutdown(container.node())


def transport_of(container: Container) -> MemoryServerTransport:
    transport = container.transport()
    assert isinstance(transport, MemoryServerTransport)
    return transport


async def child(container: Container, peer_id: str) -> Peer:
    peer = Peer(await transport_of(container).connect(), None)
    assert isinstance(await peer.authenticate(peer_id, SECRETS[peer_id]), frames.Response)
    return peer


def ready_body(container: Container) -> tuple[int, dict[str, Any]]:
    code, _, body = transport_of(container).get("/health/ready")
    return code, json.loads(body)


CHILDREN_ONLY = {
    "node_id": "a",
    "ilp_address": "test.a",
    "peers": [{"id": "alice", "relation": "child"}, {"id": "bob", "relation": "child"}],
}

WITH_OUTGOING = {
    "node_id": "a",
    "ilp_address": "test.a",
    "peers": [
        {"id": "alice", "relation": "child"},
        {"id": "b", "relation": "peer", "url": "ws://b.memory"},
        {"id": "carol", "relation": "child", "url": "ws://carol.memory"},
    ],
    "routes": [{"prefix": "test.b", "peer": "b"}],
}


# --- state --------------------------------------------------------------------------------------


async def test_starting_before_start_and_ready_after_start_without_outgoing_peers(
    env: Env,
) -> None:
    container = env.build(CHILDREN_ONLY)
    node = container.node()
    assert node.state == "starting"
    assert node.status().state == "starting"
    await node.start()
    assert node.state == "ready"
    assert ready_body(container)[0] == 200


async def test_ready_only_once_every_outgoing_peer_has_been_tried(env: Env) -> None:
    remote = RemoteNode()
    await remote.start(env.network, "ws://b.memory")  # carol's address: nothing listens
    container = env.build(WITH_OUTGOING)
    node = container.node()
    tried = {p.peer_id: p.tried for p in node.outgoing}
    await node.start()

    async with asyncio.timeout(GUARD):
        await tried["carol"].wait()  # its dial failed: that counts as tried
    await env.until(lambda: len(remote.accepted) == 1)
    far_b = remote.peer()
    auth = await far_b.recv_frame()  # b's first attempt waits for this answer
    assert node.state == "starting"
    code, body = ready_body(container)
    assert (code, body["status"]) == (503, "starting")

    await far_b.send_frame(frames.Response(auth.request_id))
    async with asyncio.timeout(GUARD):
        await tried["b"].wait()
    assert node.state == "ready"
    assert ready_body(container)[0] == 200


async def test_ready_when_the_only_outgoing_peer_cannot_be_reached(env: Env) -> None:
    container = env.build(
        {
            "node_id": "a",
            "ilp_address": "test.a",
            "peers": [{"id": "b", "relation": "peer", "url": "ws://b.memory"}],
        }
    )
    node = container.node()
    await node.start()
    [b] = node.outgoing
    async with asyncio.timeout(GUARD):
        await b.tried.wait()
    assert not container.links().is_connected("b")
    assert node.state == "ready"


async def test_stopping_from_the_first_moment_of_shutdown_before_any_connection_closes(
    env: Env,
) -> None:
    container = env.build(CHILDREN_ONLY)
    node = container.node()
    await node.start()
    alice = await child(container, "alice")
    bob = await child(container, "bob")
    links = container.links()
    states_at_disconnect: list[str] = []
    links.on_change(lambda peer_id, up: states_at_disconnect.append(node.state))

    # A Prepare in flight (bob stays silent) keeps the drain waiting on the fake clock.
    await alice.send_prepare(
        Prepare(100, env.clock.now() + timedelta(seconds=30), CONDITION, "test.a.bob")
    )
    frame = await bob.recv_frame()
    assert isinstance(frame, frames.Message)

    shutdown = asyncio.create_task(node.shutdown())
    await env.until(lambda: links.draining)
    assert node.state == "stopping"
    assert node.status().state == "stopping"
    assert (ready_body(container)[0], ready_body(container)[1]["status"]) == (503, "stopping")
    assert links.is_connected("alice")
    assert links.is_connected("bob")
    assert alice.pending() == 0  # no answer and no close yet

    async with asyncio.timeout(GUARD):
        while not shutdown.done():
            env.clock.advance(1)
            await asyncio.sleep(0.001)
        await shutdown
    _, reply = await alice.recv_reply()
    assert isinstance(reply, Reject)
    assert (reply.code[0], reply.triggered_by) == ("T", "test.a")
    assert states_at_disconnect == ["stopping", "stopping"]
    assert node.state == "stopping"


# --- status -------------------------------------------------------------------------------------


async def test_status_is_a_frozen_snapshot_of_the_configured_peers(env: Env) -> None:
    remote = RemoteNode()
    await remote.start(env.network, "ws://b.memory")
    container = env.build(WITH_OUTGOING)
    node = container.node()
    await node.start()
    await env.until(lambda: len(remote.accepted) == 1)
    far_b = remote.peer()
    auth = await far_b.recv_frame()
    await far_b.send_frame(frames.Response(auth.request_id))
    await env.until(lambda: node.state == "ready")  # b authenticated, carol's dial failed
    alice = await child(container, "alice")

    # alice's Prepare goes to b, which holds it: one in flight for alice.
    await alice.send_prepare(
        Prepare(100, env.clock.now() + timedelta(seconds=30), CONDITION, "test.b.x")
    )
    frame = await far_b.recv_frame()
    assert isinstance(frame, frames.Message)

    status = node.status()
    assert isinstance(status, NodeStatus)
    assert (status.state, status.node_id, status.ilp_address) == ("ready", "a", "test.a")
    now = env.clock.now()
    assert status.peers == (
        PeerStatus("alice", "child", True, "accepted", now, now, 1),
        PeerStatus("b", "peer", True, "dialed", now, now, 0),
        PeerStatus("carol", "child", False, None, None, None, 0),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.state = "stopping"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.peers[0].in_flight = 0  # type: ignore[misc]

    _, body = ready_body(container)
    assert [
        (p["id"], p["relation"], p["connected"], p["direction"], p["inFlight"])
        for p in body["peers"]
    ] == [
        ("alice", "child", True, "accepted", 1),
        ("b", "peer", True, "dialed", 0),
        ("carol", "child", False, None, 0),
    ]


async def test_status_is_a_snapshot_that_does_not_follow_later_changes(env: Env) -> None:
    container = env.build(CHILDREN_ONLY)
    node = container.node()
    await node.start()
    before = node.status()
    alice = await child(container, "alice")
    after = node.status()
    assert [p.connected for p in before.peers] == [False, False]
    assert [(p.id, p.connected) for p in after.peers] == [("alice", True), ("bob", False)]
    await alice.close()


async def test_open_mode_knows_every_peer_with_a_secret_connected_or_not(env: Env) -> None:
    container = env.build(None)
    node = container.node()
    await node.start()
    log = container.log()
    assert isinstance(log, RecordingLogSink)
    (started,) = log.events("connector_started")
    assert started["peers"] == len(SECRETS)  # the peers that may connect
    metrics = container.metrics()

    def connected(peer_id: str) -> str | None:
        """The gauge's sample for ``peer_id``, or None when it is not exported at all."""
        wanted = f'connector_peer_connected{{peer="{peer_id}"}} '
        text = metrics.render().decode()
        return next(
            (line[len(wanted) :] for line in text.splitlines() if line.startswith(wanted)), None
        )

    assert connected("alice") == "0.0"
    alice = await child(container, "alice")
    assert connected("alice") == "1.0"
    await alice.close()
    await env.until(lambda: not node.server.peers)
    assert connected("alice") == "0.0"  # gone to 0, not vanished
    assert [p.id for p in node.status().peers] == sorted(SECRETS)
