"""Three connectors that learn each other's routes (CCP), no static route anywhere:

    alice (child) ── A: test.a ══ B: test.b ══ C: test.c ── bob (child, fulfills)

A and C dial B; all three are peers (peers exchange routes both ways). Built by the real
container over the in-memory transport, on a fake clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from connector.adapters.memory_transport import MemoryNetwork
from connector.app.container import Container
from connector.domain.ccp import CcpRoute, RouteUpdate, update_prepare
from connector.domain.ilp.packets import Fulfill, IlpErrorCode, Reject
from tests.contract.conftest import GUARD
from tests.contract.test_three_connectors import bob_answers, build, child, prepare
from tests.fakes import FakeClock

INTERVAL = 30.0

CONFIGS: dict[str, dict[str, Any]] = {
    "a": {
        "node_id": "a",
        "ilp_address": "test.a",
        "peers": [
            {"id": "alice", "relation": "child"},
            {"id": "b", "relation": "peer", "url": "ws://b.memory"},
        ],
    },
    "b": {
        "node_id": "b",
        "ilp_address": "test.b",
        "peers": [{"id": "a", "relation": "peer"}, {"id": "c", "relation": "peer"}],
    },
    "c": {
        "node_id": "c",
        "ilp_address": "test.c",
        "peers": [
            {"id": "bob", "relation": "child"},
            {"id": "b", "relation": "peer", "url": "ws://b.memory"},
        ],
    },
}


class Bob:
    def __init__(self, bob: Any) -> None:
        self.bob = bob


class Net:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.memory = MemoryNetwork()
        self.nodes: dict[str, Container] = {}

    def build(self, name: str) -> Container:
        container, _ = build(name, self.clock, self.memory, CONFIGS)
        self.nodes[name] = container
        return container

    def routes(self, name: str) -> dict[str, tuple[str, tuple[str, ...]]]:
        exchange = self.nodes[name].route_exchange()
        return {e.prefix: (e.next_hop, e.path) for e in exchange.best_routes()}

    async def until(self, condition: Any, advance: float = 0.05) -> None:
        """Let time pass (fake clock, in steps) until ``condition()`` holds."""
        async with asyncio.timeout(GUARD):
            while not condition():
                self.clock.advance(advance)
                await asyncio.sleep(0.001)

    async def stop(self, name: str) -> None:
        container = self.nodes.pop(name)
        task = asyncio.create_task(container.node().shutdown())
        while not task.done():
            self.clock.advance(1)
            await asyncio.sleep(0.001)
        await task
        self.memory.servers.pop(f"ws://{name}.memory", None)


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    network = Net()
    for name in ("b", "a", "c"):
        await network.build(name).node().start()
    yield network
    for name in list(network.nodes):
        await network.stop(name)


async def test_each_node_learns_the_others_and_a_packet_crosses_without_static_routes(
    net: Net,
) -> None:
    await net.until(lambda: "test.c" in net.routes("a") and "test.a" in net.routes("c"))
    assert net.routes("a")["test.c"] == ("b", ("test.b", "test.c"))
    assert net.routes("a")["test.b"] == ("b", ("test.b",))
    assert net.routes("b")["test.a"] == ("a", ("test.a",))
    assert net.routes("c")["test.a"] == ("b", ("test.b", "test.a"))
    # Children are covered by their parent node's address, not advertised one by one.
    assert "test.a.alice" not in net.routes("b")
    alice = await child(net.nodes["a"], "alice", "alice-secret")
    bob = await child(net.nodes["c"], "bob", "bob-secret")
    await alice.send_prepare(prepare(net.clock, "test.c.bob.inbox"))
    await bob_answers(Bob(bob))  # type: ignore[arg-type]
    _, reply = await alice.recv_reply()
    assert isinstance(reply, Fulfill)


async def test_a_node_that_goes_away_is_withdrawn_everywhere_and_relearned_after_restart(
    net: Net,
) -> None:
    await net.until(lambda: "test.c" in net.routes("a"))
    await net.stop("c")
    # B drops c's routes when its link goes, and tells A at once.
    await net.until(lambda: "test.c" not in net.routes("a"))
    alice = await child(net.nodes["a"], "alice", "alice-secret")
    await alice.send_prepare(prepare(net.clock, "test.c.bob.inbox"))
    _, reply = await alice.recv_reply()
    assert isinstance(reply, Reject)
    assert reply.code == IlpErrorCode.F02_UNREACHABLE
    # C comes back with a new routing table id: relearned within one broadcast interval.
    started = net.clock.monotonic()
    await net.build("c").node().start()
    await net.until(lambda: "test.c" in net.routes("a") and "test.a" in net.routes("c"))
    assert net.clock.monotonic() - started < INTERVAL


async def test_route_messages_from_a_child_are_refused_and_change_nothing(net: Net) -> None:
    await net.until(lambda: "test.c" in net.routes("a"))
    alice = await child(net.nodes["a"], "alice", "alice-secret")
    update = RouteUpdate(
        bytes(16), 1, 0, 1, 30000, "test.evil", (CcpRoute("test.c", ("test.evil",), bytes(32)),)
    )
    before = net.routes("a")
    await alice.send_prepare(update_prepare(update, net.clock.now()))
    _, reply = await alice.recv_reply()
    assert isinstance(reply, Reject)
    assert reply.code == IlpErrorCode.F00_BAD_REQUEST
    assert net.routes("a") == before
