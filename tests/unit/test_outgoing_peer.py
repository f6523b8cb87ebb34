"""OutgoingPeer: dial, authenticate, redial after a backoff delay on the injected clock, stop.

The remote end is a real BtpServer on the in-memory transport, reached through a MemoryNetwork;
time is a FakeClock, so a redial happens exactly when the test moves time past the delay.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from connector.adapters.env_secret_store import EnvSecretStore
from connector.adapters.memory_transport import (
    MemoryConnection,
    MemoryDialer,
    MemoryNetwork,
    MemoryServerTransport,
)
from connector.app.btp_client import OutgoingPeer
from connector.app.btp_server import BtpServer
from connector.app.links import LinkContext, Links, ServerLimits
from connector.domain.accounts import Account, Accounts, Relation
from connector.domain.admission import Admission
from connector.domain.auth import AuthPolicy, AuthThrottle
from connector.domain.backoff import Backoff
from connector.domain.btp import frames
from connector.domain.pipeline import Pipeline
from connector.domain.ports import Connection
from tests.contract.conftest import GUARD, Peer, build_server
from tests.fakes import FakeClock, FakeProcessor, FakeSecretStore, RecordingLogSink

URL = "btp+ws://b.memory"
SECRET = "ab-secret"


class CeilingJitter(random.Random):
    """Jitter we can predict: every delay is the top of its range, base * factor**n."""

    def uniform(self, a: float, b: float) -> float:
        return b


class World:
    """Node A (the dialer: its LinkContext, assembled as build_server does) and node B."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.log = RecordingLogSink(nodeId="a")
        self.network = MemoryNetwork()
        self.links = links = Links(self.clock, self.log, "test.a")
        accounts = Accounts("test.a", [Account.of("b", Relation.PEER)])
        self.ctx = LinkContext(
            Pipeline([FakeProcessor()], "test.a", links.spawn, self.log),
            links,
            accounts,
            Admission(
                AuthPolicy(FakeSecretStore({"b": SECRET}), accounts.is_known), AuthThrottle()
            ),
            self.clock,
            self.log,
            "test.a",
            ServerLimits(),
        )
        self.backoff = Backoff(base=1.0, factor=2.0, cap=30.0, rng=CeilingJitter())
        self.peer = OutgoingPeer(
            self.ctx,
            MemoryDialer(self.network),
            "b",
            URL,
            "a",
            FakeSecretStore({"b": SECRET}),
            self.backoff,
        )
        self.remote_transport = MemoryServerTransport()
        self.remote: BtpServer = build_server(
            self.remote_transport,
            FakeProcessor(),
            AuthThrottle(base_delay=0),  # a refused auth is answered at once
            self.clock,
            RecordingLogSink(nodeId="b"),
            ServerLimits(),
            secrets={"a": SECRET},
            address="test.b",
        )

    async def listen(self) -> None:
        await self.remote.start()
        self.network.listen("ws://b.memory", self.remote_transport)

    def delays(self) -> list[float]:
        return [r["delay"] for r in self.log.events("btp_reconnect_scheduled")]

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(GUARD):
            while not condition():  # noqa: ASYNC110 - bounded polling of the peer's state
                await asyncio.sleep(0.001)

    async def sleeping_on_the_clock(self) -> None:
        """Until the peer waits for its backoff delay."""
        await self.until(lambda: self.clock.sleeping == 1)


async def a_few_turns() -> None:
    """Let anything that is ready run (memory delivery takes one turn of the loop)."""
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = World()
    yield w
    async with asyncio.timeout(GUARD):
        await w.peer.stop()
        await w.remote.shutdown()


# --- nothing listens ----------------------------------------------------------------------------


async def test_a_failed_dial_is_logged_and_retried_only_after_the_backoff_delay(
    world: World,
) -> None:
    world.peer.start()
    await world.sleeping_on_the_clock()
    assert world.peer.attempts == 1
    [failed] = world.log.events("btp_dial_failed")
    assert failed["attempt"] == 1
    assert failed["peerId"] == "b"
    assert failed["error"].startswith("ConnectionRefusedError")
    assert world.delays() == [1.0]

    world.clock.advance(0.999)
    await a_few_turns()
    assert world.peer.attempts == 1  # still waiting: the delay has not passed

    world.clock.advance(0.001)
    await world.until(lambda: world.peer.attempts == 2 and world.clock.sleeping == 1)
    assert len(world.log.events("btp_dial_failed")) == 2
    assert world.delays() == [1.0, 2.0]  # the next delay doubles


async def test_tried_is_set_after_the_first_attempt_even_when_it_fails(world: World) -> None:
    assert not world.peer.tried.is_set()
    world.peer.start()
    async with asyncio.timeout(GUARD):
        await world.peer.tried.wait()
    assert world.peer.attempts == 1
    assert world.log.events("btp_dial_failed") != []


# --- something listens --------------------------------------------------------------------------


async def test_tried_is_not_set_while_the_first_auth_is_unanswered(world: World) -> None:
    accepted: list[Connection] = []
    silent = MemoryServerTransport()
    await silent.start(accepted.append)
    world.network.listen("ws://b.memory", silent)

    world.peer.start()
    await world.until(lambda: len(accepted) == 1)
    conn = accepted[0]
    assert isinstance(conn, MemoryConnection)
    far = Peer(conn, None)
    auth = await far.recv_frame()
    assert frames.read_auth(auth).username == "a"
    await a_few_turns()
    assert not world.peer.tried.is_set()

    await far.send_frame(frames.Response(auth.request_id))
    async with asyncio.timeout(GUARD):
        await world.peer.tried.wait()
    assert world.links.is_connected("b")
    link = world.links.link_for("b")
    assert link is not None
    assert link.direction == "dialed"


async def test_tried_is_set_once_the_first_dial_authenticates(world: World) -> None:
    await world.listen()
    world.peer.start()
    async with asyncio.timeout(GUARD):
        await world.peer.tried.wait()
    assert world.links.is_connected("b")
    assert world.remote.links.is_connected("a")
    assert world.log.events("btp_dial_failed") == []


async def test_a_successful_auth_resets_the_backoff(world: World) -> None:
    world.peer.start()
    await world.sleeping_on_the_clock()
    world.clock.advance(1)  # second attempt fails too: the next delay is 2
    await world.until(lambda: world.peer.attempts == 2 and world.clock.sleeping == 1)
    assert world.delays() == [1.0, 2.0]

    await world.listen()
    world.clock.advance(2)
    # The link is attached (connected) a few loop turns before the dial loop, woken by its
    # opening, resets the backoff: wait for both.
    await world.until(lambda: world.links.is_connected("b") and world.backoff.failures == 0)
    assert world.peer.attempts == 3

    remote_link = world.remote.links.link_for("a")
    assert remote_link is not None
    remote_link.stop("going away")
    await world.until(lambda: len(world.delays()) == 3)
    assert world.delays() == [1.0, 2.0, 1.0]  # back to the first delay, not 4


async def test_a_rejected_auth_counts_as_tried_and_keeps_backing_off(world: World) -> None:
    world.peer = OutgoingPeer(
        world.ctx,
        MemoryDialer(world.network),
        "b",
        URL,
        "a",
        FakeSecretStore({"b": "wrong secret"}),
        world.backoff,
    )
    await world.listen()
    world.peer.start()
    async with asyncio.timeout(GUARD):
        await world.peer.tried.wait()
    await world.sleeping_on_the_clock()
    assert not world.links.is_connected("b")
    world.clock.advance(1)
    await world.until(lambda: len(world.delays()) == 2)
    assert world.delays() == [1.0, 2.0]


# --- stopping -----------------------------------------------------------------------------------


async def test_stop_ends_the_loop_and_nothing_redials(world: World) -> None:
    world.peer.start()
    await world.sleeping_on_the_clock()
    async with asyncio.timeout(GUARD):
        await world.peer.stop()
    await world.listen()

    world.clock.advance(60)
    await a_few_turns()
    assert world.peer.attempts == 1
    assert world.clock.sleeping == 0
    assert world.remote.links.all == set()


async def test_stop_closes_the_dialed_link_and_nothing_redials(world: World) -> None:
    await world.listen()
    world.peer.start()
    await world.until(lambda: world.remote.links.is_connected("a"))

    async with asyncio.timeout(GUARD):
        await world.peer.stop()
    await world.until(lambda: not world.remote.links.is_connected("a"))
    assert not world.links.is_connected("b")

    world.clock.advance(60)
    await a_few_turns()
    assert world.peer.attempts == 1
    assert world.delays() == []
    assert world.remote.links.all == set()


async def test_a_link_lost_while_draining_is_not_redialed(world: World) -> None:
    await world.listen()
    world.peer.start()
    await world.until(lambda: world.remote.links.is_connected("a"))

    world.links.draining = True  # the node is shutting down
    remote_link = world.remote.links.link_for("a")
    assert remote_link is not None
    remote_link.stop("going away")
    await world.until(lambda: not world.links.is_connected("b"))

    world.clock.advance(60)
    await a_few_turns()
    assert world.peer.attempts == 1
    assert world.delays() == []


# --- the secret, read at every dial -------------------------------------------------------------


def peer_with_secret_file(world: World, path: Path) -> OutgoingPeer:
    store = EnvSecretStore({"BTP_PEER_B_SECRET_FILE": str(path)})
    return OutgoingPeer(world.ctx, MemoryDialer(world.network), "b", URL, "a", store, world.backoff)


async def test_a_rotated_secret_file_is_presented_at_the_next_dial(
    world: World, tmp_path: Path
) -> None:
    path = tmp_path / "b"
    path.write_bytes(b"the-old-secret\n")  # b no longer accepts it
    world.peer = peer_with_secret_file(world, path)
    await world.listen()
    world.peer.start()
    await world.sleeping_on_the_clock()
    assert not world.remote.links.is_connected("a")  # refused: the old secret

    path.write_bytes(f"{SECRET}\n".encode())  # the file replaced, no restart
    world.clock.advance(1)
    await world.until(lambda: world.remote.links.is_connected("a"))
    assert world.peer.attempts == 2


async def test_no_secret_at_dial_time_is_logged_and_retried_without_dialing(
    world: World, tmp_path: Path
) -> None:
    path = tmp_path / "b"
    world.peer = peer_with_secret_file(world, path)
    accepted: list[Connection] = []
    watcher = MemoryServerTransport()
    await watcher.start(accepted.append)
    world.network.listen("ws://b.memory", watcher)

    world.peer.start()
    async with asyncio.timeout(GUARD):
        await world.peer.tried.wait()
    await world.sleeping_on_the_clock()
    [unavailable] = world.log.events("btp_secret_unavailable")
    assert unavailable["peerId"] == "b"
    assert unavailable["reason"] == (
        f"BTP_PEER_B_SECRET_FILE={path}: cannot read the file: No such file or directory"
    )
    assert accepted == []  # nothing dialed without a secret to present
    assert world.delays() == [1.0]

    path.write_bytes(SECRET.encode())
    world.network.listen("ws://b.memory", world.remote_transport)
    await world.remote.start()
    world.clock.advance(1)
    await world.until(lambda: world.remote.links.is_connected("a"))
    assert len(world.log.events("btp_secret_unavailable")) == 1
