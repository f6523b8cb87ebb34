"""A node with no address configured gets it from its first parent over IL-DCP.

    alice (child) ── P: test.p ══ C: (no address; P is its parent, C dials P) ── kid (child)

C learns ``test.p.c`` (P's address and C's username at P), becomes ready only then, gives its
own child ``test.p.c.kid``, and P's packets for ``test.p.c.kid.…`` reach kid. With a scripted
parent that dials C: a Reject, then no answer at all, then a dropped link are each retried, on
the virtual clock, until the parent answers; until then C forwards nothing and serves no IL-DCP.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from connector.adapters.memory_transport import MemoryNetwork
from connector.app.container import Container
from connector.app.health import Health
from connector.domain.btp import frames
from connector.domain.ildcp import DESTINATION, PEER_CONDITION, PEER_FULFILLMENT, IldcpResponse
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Fulfill, Prepare, Reject
from tests.contract import test_three_connectors as three
from tests.contract.conftest import GUARD, Peer
from tests.fakes import FakeClock, RecordingLogSink

FULFILLMENT = b"\x09" * 32
CONDITION = hashlib.sha256(FULFILLMENT).digest()

P = {
    "node_id": "p",
    "ilp_address": "test.p",
    "peers": [{"id": "alice", "relation": "child"}, {"id": "c", "relation": "child"}],
}
C = {
    "node_id": "c",
    "peers": [
        {"id": "p", "relation": "parent", "url": "ws://p.memory"},
        {"id": "kid", "relation": "child"},
    ],
}
#: C with a parent that dials it (no url), and a second parent that is never asked.
C_DIALED = {
    "node_id": "c",
    "peers": [
        # no route exchange with the scripted parent: its only messages are IL-DCP's
        {"id": "p", "relation": "parent", "routing": {"send": False, "receive": False}},
        {"id": "q", "relation": "parent"},
        {"id": "kid", "relation": "child"},
    ],
}
SECRETS = {
    "p": {"alice": "alice-secret", "c": "pc-secret"},
    "c": {"p": "pc-secret", "q": "q-secret", "kid": "kid-secret"},
}


def build(
    name: str, config: dict[str, Any], clock: FakeClock, network: MemoryNetwork
) -> tuple[Container, RecordingLogSink]:
    return three.build(name, clock, network, {name: config}, SECRETS[name])


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(GUARD):
        while not condition():  # noqa: ASYNC110 - bounded polling of node state
            await asyncio.sleep(0.001)


async def stop(clock: FakeClock, *containers: Container) -> None:
    async with asyncio.timeout(GUARD):
        for container in containers:
            task = asyncio.create_task(container.node().shutdown())
            while not task.done():
                clock.advance(1)  # let shutdown deadlines pass on the fake clock
                await asyncio.sleep(0.001)
            await task


def ready(container: Container) -> tuple[int, dict[str, Any]]:
    node = container.node()
    return Health(node.status, node.metrics).ready()


def ildcp_request(clock: FakeClock) -> Prepare:
    return Prepare(0, clock.now() + timedelta(seconds=30), PEER_CONDITION, DESTINATION, b"")


def payment(clock: FakeClock, destination: str) -> Prepare:
    return Prepare(100, clock.now() + timedelta(seconds=30), CONDITION, destination, b"for the kid")


async def test_a_child_node_learns_its_address_from_its_parent_and_routes_under_it() -> None:
    clock, network = FakeClock(), MemoryNetwork()
    c, c_log = build("c", C, clock, network)
    await c.node().start()
    # P is not there yet: C is started, its dial failed, and it waits for its address.
    await until(lambda: c.node().state != "starting")
    code, body = ready(c)
    assert (code, body["status"], body["ilpAddress"]) == (503, "waiting", None)
    assert body["waitingFor"] == ["ilp address from parent p"]
    (started,) = c_log.events("connector_started")
    assert started["ilpAddress"] is None

    p, _ = build("p", P, clock, network)
    await p.node().start()
    seen: list[tuple[str, str]] = []

    def learned() -> bool:
        if not c.links().is_connected("p"):
            clock.advance(0.5)  # C's redial backoff runs on the virtual clock
        seen.append((c.node().state, c.accounts().ilp_address))
        return c.node().state == "ready"

    await until(learned)
    assert all(address == "test.p.c" for state, address in seen if state == "ready")
    code, body = ready(c)
    assert (code, body["ilpAddress"]) == (200, "test.p.c")
    (event,) = c_log.events("ildcp_address")
    assert (event["level"], event["ilpAddress"], event["parent"]) == ("info", "test.p.c", "p")
    assert not c_log.events("ildcp_asset_mismatch")  # both sides USD/9

    # C's own child gets an address under C's, over IL-DCP
    kid = await three.child(c, "kid", "kid-secret")
    await kid.send_prepare(ildcp_request(clock))
    _, reply = await kid.recv_reply()
    assert isinstance(reply, Fulfill)
    assert IldcpResponse.decode(reply.data) == IldcpResponse("test.p.c.kid", 9, "USD")

    # a packet from P's side for test.p.c.kid.x reaches C's child
    alice = await three.child(p, "alice", "alice-secret")
    request_id = await alice.send_prepare(payment(clock, "test.p.c.kid.x"))
    frame = await kid.recv_frame()
    assert isinstance(frame, frames.Message)
    packet = frames.ilp_entry(frame)
    assert packet is not None
    received = codec.decode_prepare(packet)
    assert (received.destination, received.amount) == ("test.p.c.kid.x", 100)
    await kid.send_frame(frames.ilp_response(frame.request_id, codec.encode(Fulfill(FULFILLMENT))))
    assert await alice.recv_reply() == (request_id, Fulfill(FULFILLMENT))
    # and C's routes now carry its address: its own and its child's
    prefixes = {entry.prefix: entry.next_hop for entry in c.route_exchange().best_routes()}
    assert prefixes["test.p.c"] == ""
    assert prefixes["test.p.c.kid"] == "kid"
    await stop(clock, c, p)


@dataclass
class Scripted:
    clock: FakeClock
    c: Container
    log: RecordingLogSink
    kid: Peer

    async def parent(self) -> Peer:
        """The parent dials C."""
        return await three.child(self.c, "p", "pc-secret")

    async def asked(self, parent: Peer) -> frames.Message:
        frame = await parent.recv_frame()
        assert isinstance(frame, frames.Message)
        packet = frames.ilp_entry(frame)
        assert packet is not None
        prepare = codec.decode_prepare(packet)
        assert (prepare.destination, prepare.amount) == (DESTINATION, 0)
        assert prepare.execution_condition == PEER_CONDITION
        return frame

    def failures(self) -> list[dict[str, Any]]:
        return self.log.events("ildcp_failed")

    async def after_backoff(self, failures: int) -> None:
        """Wait until the ``failures``-th failure is logged, then let the backoff pass."""
        await until(lambda: len(self.failures()) == failures)
        self.clock.advance(31)  # longer than any backoff delay (at most 30 s)


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    clock, network = FakeClock(), MemoryNetwork()
    c, log = build("c", C_DIALED, clock, network)
    await c.node().start()
    kid = await three.child(c, "kid", "kid-secret")
    yield Scripted(clock, c, log, kid)
    await stop(clock, c)


async def test_until_the_parent_answers_nothing_is_forwarded_and_every_failure_is_retried(
    scripted: Scripted,
) -> None:
    s = scripted
    parent = await s.parent()
    first = await s.asked(parent)  # asked as soon as the parent's link is authenticated

    # Meanwhile: not ready, C's child gets no address and nothing is forwarded (T00).
    assert s.c.node().state == "waiting"
    assert ready(s.c)[1]["waitingFor"] == ["ilp address from parent p"]
    await s.kid.send_prepare(ildcp_request(s.clock))
    _, reply = await s.kid.recv_reply()
    assert isinstance(reply, Reject)
    assert (reply.code, reply.triggered_by) == ("T00", "")
    await s.kid.send_prepare(payment(s.clock, "test.elsewhere.x"))
    _, reply = await s.kid.recv_reply()
    assert isinstance(reply, Reject)
    assert reply.code == "T00"

    # 1. a Reject: logged, retried after the backoff
    reject = Reject("F00", "test.p", "not now")
    await parent.send_frame(frames.ilp_response(first.request_id, codec.encode(reject)))
    await s.after_backoff(1)
    second = await s.asked(parent)
    (failed,) = s.failures()
    assert (failed["level"], failed["parent"], failed["attempt"]) == ("warning", "p", 1)
    assert "F00" in failed["error"]

    # 2. no answer: the request expires (R00 from our own link, on the virtual clock), retried
    del second
    s.clock.advance(11)
    await s.after_backoff(2)
    third = await s.asked(parent)
    assert "R00" in s.failures()[1]["error"]

    # 3. the link drops: T01, and the next authenticated link to the parent is asked
    del third
    await parent.close()
    await s.after_backoff(3)
    assert "T01" in s.failures()[2]["error"]
    assert s.c.node().state == "waiting"
    parent = await s.parent()
    fourth = await s.asked(parent)

    # 4. an answer at last, in another asset than C's account of its parent: a warning only
    answer = Fulfill(PEER_FULFILLMENT, IldcpResponse("test.p.c", 2, "EUR").encode())
    await parent.send_frame(frames.ilp_response(fourth.request_id, codec.encode(answer)))
    await until(lambda: s.c.node().state == "ready")
    assert s.c.accounts().ilp_address == "test.p.c"
    (mismatch,) = s.log.events("ildcp_asset_mismatch")
    assert (mismatch["assetCode"], mismatch["assetScale"], mismatch["configured"]) == (
        "EUR",
        2,
        "USD/9",
    )
    account = s.c.accounts().get("p")
    assert account is not None
    assert account.asset.code == "USD"
    # the second parent was never asked, and C's child now gets its address
    assert {e["parent"] for e in s.failures()} == {"p"}
    await s.kid.send_prepare(ildcp_request(s.clock))
    _, reply = await s.kid.recv_reply()
    assert isinstance(reply, Fulfill)
    assert IldcpResponse.decode(reply.data).client_address == "test.p.c.kid"
