"""The registry of links: replacement, accepted and dialed links side by side, connection events,
and where packets go. Real ``BtpLink``s over the in-memory transport; peers speak raw frames."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from connector.adapters.memory_transport import MemoryServerTransport, connection_pair
from connector.app.link import RETIRE_LIMIT, BtpLink
from connector.app.links import Links, ServerLimits
from connector.domain.accounts import Account, Relation
from connector.domain.auth import AuthThrottle
from connector.domain.btp import frames
from connector.domain.btp.session import Role
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Fulfill, IlpErrorCode, Reject, Reply
from connector.domain.pipeline import PacketRequest, Pipeline
from connector.domain.secret import Secret
from tests.contract.conftest import GUARD, NODE, SECRETS, Peer, build_server
from tests.fakes import FULFILLMENT, FakeClock, FakeProcessor, RecordingLogSink, make_prepare

REPLACED = "replaced by a newer connection for this peer"
FULFILL = Fulfill(FULFILLMENT, b"over the link")


class RecordingOrigin:
    def __init__(self) -> None:
        self.answers: list[tuple[int, Reply]] = []
        self.answered = asyncio.Event()

    def answer(self, request_id: int, reply: Reply, raw: bytes | None) -> None:
        self.answers.append((request_id, reply))
        self.answered.set()


class Node:
    """A real BtpServer (memory transport, fake clock) whose links a test inspects."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.log = RecordingLogSink()
        self.processor = FakeProcessor()
        self.transport = MemoryServerTransport()
        self.server = build_server(
            self.transport, self.processor, AuthThrottle(), self.clock, self.log, ServerLimits()
        )
        self.links: Links = self.server.links
        self.events: list[tuple[str, bool]] = []
        self.links.on_change(lambda peer_id, up: self.events.append((peer_id, up)))
        self._ports = iter(range(4000, 5000))

    async def accepted(self, peer_id: str = "alice") -> Peer:
        """A peer that dials us and authenticates."""
        peer = Peer(await self.transport.connect(), None)
        reply = await peer.authenticate(peer_id, SECRETS[peer_id])
        assert isinstance(reply, frames.Response)
        return peer

    async def dialed(self, peer_id: str = "alice") -> tuple[Peer, BtpLink]:
        """A link we dial to ``peer_id``; the far end (a raw peer) accepts our auth."""
        ours, theirs = connection_pair("127.0.0.1:3000", f"10.0.0.9:{next(self._ports)}")
        link = BtpLink(self.server.ctx, ours, Role.CLIENT, peer_id=peer_id)
        link.start(NODE, Secret(b"our-secret"))
        peer = Peer(theirs, None)
        auth = await peer.recv_frame()
        assert isinstance(auth, frames.Message)
        await peer.send_frame(frames.Response(auth.request_id))
        async with asyncio.timeout(GUARD):
            await link.opened.wait()
        return peer, link

    def request(self, origin: RecordingOrigin, request_id: int = 1) -> PacketRequest:
        pipeline = Pipeline([], NODE, self.links.spawn)
        source = Account.of("carol", Relation.CHILD)
        return PacketRequest(pipeline, origin, request_id, source, make_prepare(self.clock), None)

    async def until(self, condition: object, what: str) -> None:
        async with asyncio.timeout(GUARD):
            while not condition():  # type: ignore[operator]  # noqa: ASYNC110 - bounded
                await asyncio.sleep(0.001)


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    n = Node()
    await n.server.start()
    yield n
    n.processor.released.set()
    async with asyncio.timeout(GUARD):
        await n.server.shutdown()


async def receives_prepare(peer: Peer) -> int:
    """The next frame the peer gets is one of our Prepares; returns its request id."""
    frame = await peer.recv_frame()
    assert isinstance(frame, frames.Message)
    packet = frames.ilp_entry(frame)
    assert packet is not None
    codec.decode_prepare(packet)
    return frame.request_id


async def no_message_for(peer: Peer) -> bool:
    for _ in range(5):  # a few turns of the loop: memory delivery takes one
        await asyncio.sleep(0)
    return peer.pending() == 0


# --- replacement --------------------------------------------------------------------------------


async def test_a_newer_accepted_link_replaces_the_older(node: Node) -> None:
    node.processor.hold = True
    older = await node.accepted("alice")
    [old_link] = node.links.links_of("alice")
    request_id = await older.send_prepare(make_prepare(node.clock))
    await node.until(lambda: node.processor.started == 1, "the Prepare is in flight")

    await node.accepted("alice")
    # The older connection takes no new Prepare ...
    late = await older.send_prepare(make_prepare(node.clock))
    got_id, reply = await older.recv_reply()
    assert got_id == late
    assert isinstance(reply, Reject)
    assert (reply.code, reply.triggered_by) == (IlpErrorCode.T03_CONNECTOR_BUSY, NODE)
    # ... but the one in flight gets its real answer (a next hop may fulfill it: a T03 now
    # would lose that value), and then the connection closes.
    node.processor.released.set()
    got_id, reply = await older.recv_reply()
    assert got_id == request_id
    assert isinstance(reply, Fulfill)
    assert await older.closed() == (1000, REPLACED)
    [new_link] = node.links.links_of("alice")
    assert new_link is not old_link
    assert node.links.link_for("alice") is new_link
    assert old_link not in node.links.all
    assert len(node.log.events("btp_connection_replaced")) == 1


async def test_replacing_a_link_is_not_reported_as_a_disconnect(node: Node) -> None:
    older = await node.accepted("alice")
    await node.accepted("alice")
    await older.closed()
    assert node.events == [("alice", True)]
    assert node.links.is_connected("alice")


# --- accepted and dialed side by side -----------------------------------------------------------


async def test_a_dialed_link_does_not_replace_an_accepted_one(node: Node) -> None:
    accepted = await node.accepted("alice")
    dialed, dialed_link = await node.dialed("alice")

    assert [link.direction for link in node.links.links_of("alice")] == ["accepted", "dialed"]
    assert all(link.is_open for link in node.links.links_of("alice"))
    assert node.links.link_for("alice") is dialed_link

    origin = RecordingOrigin()
    assert node.links.send("alice", node.request(origin)) is None
    request_id = await receives_prepare(dialed)
    assert await no_message_for(accepted)
    await dialed.send_frame(frames.ilp_response(request_id, codec.encode(FULFILL)))
    async with asyncio.timeout(GUARD):
        await origin.answered.wait()
    assert origin.answers == [(1, FULFILL)]
    assert node.log.events("btp_connection_replaced") == []


async def test_an_accepted_link_does_not_replace_a_dialed_one(node: Node) -> None:
    dialed, dialed_link = await node.dialed("alice")
    accepted = await node.accepted("alice")

    assert [link.direction for link in node.links.links_of("alice")] == ["dialed", "accepted"]
    assert dialed_link.is_open
    assert node.links.link_for("alice").direction == "accepted"  # type: ignore[union-attr]

    assert node.links.send("alice", node.request(RecordingOrigin())) is None
    await receives_prepare(accepted)
    assert await no_message_for(dialed)
    assert node.log.events("btp_connection_replaced") == []


async def test_packets_fall_back_to_the_older_link_when_the_newest_closes(node: Node) -> None:
    accepted = await node.accepted("alice")
    dialed, dialed_link = await node.dialed("alice")
    await dialed.close()
    async with asyncio.timeout(GUARD):
        await dialed_link.closed.wait()

    assert node.links.link_for("alice").direction == "accepted"  # type: ignore[union-attr]
    assert node.links.send("alice", node.request(RecordingOrigin())) is None
    await receives_prepare(accepted)


# --- connection events --------------------------------------------------------------------------


async def test_on_change_fires_when_the_first_link_opens_and_when_the_last_closes(
    node: Node,
) -> None:
    accepted = await node.accepted("alice")
    assert node.events == [("alice", True)]

    dialed, dialed_link = await node.dialed("alice")
    assert node.events == [("alice", True)]

    await accepted.close()
    await node.until(lambda: len(node.links.links_of("alice")) == 1, "the accepted link is gone")
    assert node.events == [("alice", True)]
    assert node.links.is_connected("alice")

    await dialed.close()
    async with asyncio.timeout(GUARD):
        await dialed_link.closed.wait()
    assert node.events == [("alice", True), ("alice", False)]
    assert not node.links.is_connected("alice")


class SilentHandler:
    """The far end of a connection that reads nothing: a close reaches it on a later turn."""

    def on_message(self, data: bytes | str) -> None:
        pass

    def on_closing(self, code: int, reason: str) -> None:
        pass

    def on_closed(self, code: int, reason: str) -> None:
        pass


async def test_a_reconnect_while_the_old_link_is_still_closing_reports_connected_once(
    node: Node,
) -> None:
    def authenticated_link(port: int) -> BtpLink:
        theirs, ours = connection_pair(f"127.0.0.1:{port}", "127.0.0.1:3000")
        theirs.start(SilentHandler())
        link = BtpLink(node.server.ctx, ours, Role.SERVER)
        link.start()
        # What the transport pushes: the peer's auth MESSAGE.
        link.on_message(frames.encode(frames.auth_message(1, "alice", SECRETS["alice"].encode())))
        assert link.is_open
        return link

    old = authenticated_link(50001)
    old.stop("protocol violation")  # the close handshake completes on a later turn
    authenticated_link(50002)  # the peer is back before it does

    assert node.events == [("alice", True)]


# --- sending ------------------------------------------------------------------------------------


async def test_send_to_a_peer_that_is_not_connected_is_a_t01_reject(node: Node) -> None:
    reply = node.links.send("bob", node.request(RecordingOrigin()))
    assert isinstance(reply, Reject)
    assert (reply.code, reply.triggered_by) == (IlpErrorCode.T01_PEER_UNREACHABLE, NODE)
    assert "bob" in reply.message


async def test_send_after_the_peers_last_link_closed_is_a_t01_reject(node: Node) -> None:
    alice = await node.accepted("alice")
    await alice.close()
    await node.until(lambda: not node.links.is_connected("alice"), "alice is gone")
    reply = node.links.send("alice", node.request(RecordingOrigin()))
    assert isinstance(reply, Reject)
    assert reply.code == IlpErrorCode.T01_PEER_UNREACHABLE


# --- the sweep ----------------------------------------------------------------------------------


async def test_one_sweep_answers_expired_prepares_on_every_link_with_r00(node: Node) -> None:
    node.processor.hold = True
    alice = await node.accepted("alice")
    bob = await node.accepted("bob")
    await alice.send_prepare(make_prepare(node.clock, expires_in=5))
    await bob.send_prepare(make_prepare(node.clock, expires_in=5))
    await node.until(lambda: node.processor.started == 2, "both Prepares are in flight")
    assert node.links.total_in_flight == 2

    node.clock.advance(5)

    for peer in (alice, bob):
        _, reply = await peer.recv_reply()
        assert isinstance(reply, Reject)
        assert (reply.code, reply.triggered_by) == (IlpErrorCode.R00_TRANSFER_TIMED_OUT, NODE)
    assert node.links.total_in_flight == 0


async def test_work_still_running_for_a_peer_that_disconnected_is_counted(node: Node) -> None:
    node.processor.hold = True
    peer = await node.accepted("alice")
    await peer.send_prepare(make_prepare(node.clock))
    await node.until(lambda: node.processor.started == 1, "the Prepare is in the pipeline")
    stats = node.server.ctx.observer.peer("alice")
    assert stats.working == 1
    await peer.close()
    await node.until(lambda: not node.links.is_connected("alice"), "alice gone")
    assert stats.working == 1  # the next hop may still answer it: it is still work
    node.processor.released.set()
    await node.until(lambda: stats.working == 0, "the pipeline finished it")


async def test_a_replaced_link_waits_for_its_own_requests_to_be_answered(node: Node) -> None:
    older = await node.accepted("alice")
    [old] = node.links.links_of("alice")
    origin = RecordingOrigin()
    assert node.links.send("alice", node.request(origin)) is None
    request_id = await receives_prepare(older)
    await node.accepted("alice")  # alice connects again: the older link is replaced
    assert not old.is_open  # nothing new goes over it ...
    assert not old.closed.is_set()  # ... but it stays for alice's answer to what it carries
    await older.send_frame(
        frames.ilp_response(request_id, codec.encode(Fulfill(FULFILLMENT, b"paid")))
    )
    await node.until(lambda: origin.answers, "alice's answer")
    assert isinstance(origin.answers[0][1], Fulfill)  # the value alice delivered is not lost
    await node.until(old.closed.is_set, "then it closes")


async def test_a_retiring_link_gives_up_after_its_limit(node: Node) -> None:
    node.processor.hold = True
    older = await node.accepted("alice")
    request_id = await older.send_prepare(make_prepare(node.clock, expires_in=3600))
    await node.until(lambda: node.processor.started == 1, "in flight")
    await node.accepted("alice")
    node.clock.advance(RETIRE_LIMIT + 1)
    got_id, reply = await older.recv_reply()
    assert (got_id, getattr(reply, "code", None)) == (request_id, "T03")
    assert await older.closed() == (1000, REPLACED)
