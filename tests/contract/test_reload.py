"""Reloading the configuration file under traffic: peers added, removed and changed, routes and
prices, an invalid file refused; sessions of unchanged peers never notice."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.adapters.memory_transport import MemoryNetwork, MemoryServerTransport
from connector.app.container import Container
from connector.app.effective_config import load_effective
from connector.app.reload import Reloader
from connector.domain.btp import frames
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Fulfill, Prepare, Reject
from tests.contract.conftest import GUARD, Peer
from tests.fakes import FakeClock, FakeSecretStore, RecordingLogSink

ENV = {
    "CONNECTOR_TRANSPORT": "memory",
    "CONNECTOR_STORE_URL": "memory://",
    "CONNECTOR_SHUTDOWN_TIMEOUT": "1",
}
SECRETS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}
FULFILLMENT = b"\x05" * 32
CONDITION = hashlib.sha256(FULFILLMENT).digest()

BASE: dict[str, Any] = {
    "node_id": "a",
    "ilp_address": "test.a",
    "rates": {"prices": {"USD": "1", "EUR": "2"}},
    "peers": [{"id": "alice", "relation": "child"}, {"id": "bob", "relation": "child"}],
}


@dataclass
class Node:
    container: Container
    reloader: Reloader
    clock: FakeClock
    log: RecordingLogSink
    path: Path

    def write(self, config: dict[str, Any]) -> None:
        self.path.write_text(yaml.safe_dump(config))

    async def connect(self, peer_id: str) -> Peer:
        transport = self.container.transport()
        assert isinstance(transport, MemoryServerTransport)
        peer = Peer(await transport.connect(), None)
        reply = await peer.authenticate(peer_id, SECRETS[peer_id])
        assert isinstance(reply, frames.Response), reply
        return peer

    async def refused(self, peer_id: str) -> bool:
        transport = self.container.transport()
        assert isinstance(transport, MemoryServerTransport)
        peer = Peer(await transport.connect(), None)
        return isinstance(await peer.authenticate(peer_id, SECRETS[peer_id]), frames.Error)

    def prepare(self, destination: str, amount: int = 10) -> Prepare:
        expires = self.clock.now() + timedelta(seconds=30)
        return Prepare(amount, expires, CONDITION, destination, b"")

    async def until(self, condition: Any) -> None:
        async with asyncio.timeout(GUARD):
            while not condition():  # noqa: ASYNC110 - bounded polling of node state
                await asyncio.sleep(0.001)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    path = tmp_path / "connector.yaml"
    path.write_text(yaml.safe_dump(BASE))
    secrets = FakeSecretStore(SECRETS)
    effective = load_effective(ENV, path, secrets)
    container = Container()
    container.config.from_dict(effective.runtime())
    clock = FakeClock()
    log = RecordingLogSink(nodeId="a")
    container.clock.override(clock)
    container.log.override(log)
    container.secret_store.override(secrets)
    container.memory_network.override(MemoryNetwork())
    await container.node().start()
    yield Node(container, Reloader(container, effective, environ=ENV), clock, log, path)
    async with asyncio.timeout(GUARD):
        task = asyncio.create_task(container.node().shutdown())
        while not task.done():
            clock.advance(1)
            await asyncio.sleep(0.001)
        await task


async def forward_one(node: Node, sender: Peer, receiver: Peer, destination: str) -> frames.Message:
    """``sender`` sends a Prepare that reaches ``receiver``, which holds it unanswered."""
    await sender.send_prepare(node.prepare(destination))
    frame = await receiver.recv_frame()
    assert isinstance(frame, frames.Message)
    return frame


async def test_peers_added_removed_and_changed_while_the_others_keep_their_sessions(
    node: Node,
) -> None:
    alice = await node.connect("alice")
    bob = await node.connect("bob")
    links = node.container.links()
    alice_link = links.link_for("alice")
    held = await forward_one(node, alice, bob, "test.a.bob.inbox")  # in flight to bob

    node.write(
        {
            **BASE,
            "peers": [
                {"id": "alice", "relation": "child", "balance": {"maximum": 100}},
                {"id": "carol", "relation": "child"},
            ],
        }
    )
    answer = await node.reloader.reload("test")
    assert answer == {
        "status": "reloaded",
        "added": ["carol"],
        "removed": ["bob"],
        "changed": ["alice"],
        "reconnected": [],
        "restartRequired": [],
        "warnings": [
            "peer 'bob' was removed with a balance of 0 (holds +0/-10): it stays in the store "
            "until the peer is configured again and settled"
        ],
    }
    assert node.log.events("config_reloaded")

    # alice's session is the same one, and her new limit applies to her next Prepare
    assert links.link_for("alice") is alice_link
    request_id = await alice.send_prepare(node.prepare("test.a.carol.x", amount=101))
    assert (await alice.recv_reply())[1].code == "T04"  # type: ignore[union-attr]
    assert request_id

    # bob is gone for new logins and new packets, but what he holds gets its real answer
    assert await node.refused("bob")
    await bob.send_frame(
        frames.ilp_response(held.request_id, codec.encode(Fulfill(FULFILLMENT, b"")))
    )
    _, reply = await alice.recv_reply()
    assert reply == Fulfill(FULFILLMENT, b"")
    assert await bob.closed() == (1000, "peer removed or changed by a configuration reload")

    carol = await node.connect("carol")  # added: she may log in and be paid
    await forward_one(node, alice, carol, "test.a.carol.x")


async def test_an_invalid_file_is_refused_and_the_running_configuration_stays(
    node: Node,
) -> None:
    alice = await node.connect("alice")
    bob = await node.connect("bob")
    for text in ("peers: [{id: alice, relation: kid}]\nroutes: [{prefix: test.x, peer: z}]\n", "{"):
        node.path.write_text(text)
        answer = await node.reloader.reload("test")
        assert answer["status"] == "invalid"
        assert answer["problems"]
        (failed, *_) = node.log.events("config_reload_failed")
        assert failed["problems"]
    assert "peers.0.relation: must be 'child', 'peer' or 'parent'" in "\n".join(
        node.log.events("config_reload_failed")[0]["problems"]
    )
    await forward_one(node, alice, bob, "test.a.bob.still-here")
    node.path.unlink()
    assert (await node.reloader.reload("test"))["status"] == "invalid"
    assert node.reloader.effective.config.peers[1].id == "bob"


async def test_routes_prices_and_keys_that_need_a_restart(node: Node) -> None:
    alice = await node.connect("alice")
    bob = await node.connect("bob")
    node.write(
        {
            **BASE,
            "node_id": "renamed",
            "btp_server": {"port": 4444},
            "rates": {"prices": {"USD": "1", "GBP": "3"}, "spread": "0.01"},
            "routes": [{"prefix": "test.elsewhere", "peer": "bob"}],
        }
    )
    answer = await node.reloader.reload("test")
    assert answer["status"] == "reloaded"
    assert answer["restartRequired"] == ["node_id", "btp_server"]
    again = await node.reloader.reload("test")  # still not applied: still named
    assert again["restartRequired"] == ["node_id", "btp_server"]
    await forward_one(node, alice, bob, "test.elsewhere.x")  # the new static route
    prices = node.container.rate_book().prices()
    assert sorted(prices) == ["GBP", "USD"]  # EUR was the file's: gone with it
    assert node.container.rate_book().spread == pytest.approx(0.01)


async def test_a_peer_whose_relation_changes_is_reconnected_after_its_work(node: Node) -> None:
    alice = await node.connect("alice")
    bob = await node.connect("bob")
    held = await forward_one(node, alice, bob, "test.a.bob.inbox")
    node.write({**BASE, "peers": [BASE["peers"][0], {"id": "bob", "relation": "peer"}]})
    answer = await node.reloader.reload("test")
    assert answer["reconnected"] == ["bob"]
    await bob.send_frame(
        frames.ilp_response(held.request_id, codec.encode(Reject("F99", "test.a.bob", "no", b"")))
    )
    _, reply = await alice.recv_reply()
    assert isinstance(reply, Reject)
    assert reply.code == "F99"  # the real answer, not a T03
    assert (await bob.closed())[0] == 1000
    await node.connect("bob")  # and back, as a peer now
    account = node.container.accounts().get("bob")
    assert account is not None
    assert account.relation.value == "peer"


async def test_readiness_waits_for_required_peers_and_a_reload_changes_them(node: Node) -> None:
    node_ = node.container.node()
    assert node_.state == "ready"
    node.write({**BASE, "health": {"require_peers": ["bob"]}})
    assert (await node.reloader.reload("test"))["status"] == "reloaded"
    assert node_.state == "waiting"
    assert node_.status().waiting_for == ("peer bob",)
    bob = await node.connect("bob")
    assert node_.state == "ready"
    await bob.close()
    await node.until(lambda: node_.state == "waiting")


async def test_nothing_to_reload_in_open_mode_or_before_the_node_runs(node: Node) -> None:
    open_mode = load_effective(ENV, None, FakeSecretStore(SECRETS))
    reloader = Reloader(node.container, open_mode, environ=ENV)
    answer = await reloader.reload("test")
    assert answer["status"] == "unavailable"
    assert "open mode" in answer["problems"][0]
    container = Container()
    container.config.from_dict(node.reloader.effective.runtime())
    container.log.override(RecordingLogSink())
    container.memory_network.override(MemoryNetwork())
    unstarted = Reloader(container, node.reloader.effective, environ=ENV)
    assert (await unstarted.reload("test"))["status"] == "unavailable"
