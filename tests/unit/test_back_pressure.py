"""A next hop that does not read what we send gets no more Prepares (T03) until it reads again:
our memory for it stays bounded by the high-water mark."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from connector.adapters.memory_transport import MemoryServerTransport
from connector.app.btp_server import BtpServer
from connector.app.links import LinkContext, Links, ServerLimits
from connector.domain.accounts import Accounts
from connector.domain.admission import Admission
from connector.domain.auth import AuthPolicy, AuthThrottle
from connector.domain.btp import frames
from connector.domain.forwarding import Send
from connector.domain.ilp.packets import Reject
from connector.domain.pipeline import PacketRequest, Pipeline, StepResult
from tests.contract.conftest import GUARD, NODE, SECRETS, Peer
from tests.fakes import FakeClock, FakeSecretStore, RecordingLogSink, make_prepare


class ToBob:
    name: ClassVar[str] = "to_bob"

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    def on_prepare(self, req: PacketRequest) -> StepResult:
        req.next_hop = self._accounts.get("bob")
        return None


async def test_prepares_to_a_next_hop_that_does_not_read_get_t03_until_it_reads() -> None:
    clock, log = FakeClock(), RecordingLogSink()
    transport = MemoryServerTransport(max_frame_size=1 << 20, high_water=8 * 1024)
    links = Links(clock, log, NODE)
    accounts = Accounts(NODE, [], open_children=True)
    pipeline = Pipeline([ToBob(accounts), Send(links)], NODE, links.spawn, log)
    admission = Admission(AuthPolicy(FakeSecretStore(SECRETS)), AuthThrottle())
    ctx = LinkContext(pipeline, links, accounts, admission, clock, log, NODE, ServerLimits())
    server = BtpServer(transport, ctx, links)
    await server.start()
    alice = Peer(await transport.connect(), None)
    assert isinstance(await alice.authenticate("alice", SECRETS["alice"]), frames.Response)
    bob = Peer(await transport.connect(), None)
    assert isinstance(await bob.authenticate("bob", SECRETS["bob"]), frames.Response)

    # bob reads nothing: after about 8 KiB queued for him, alice's Prepares are refused at once.
    prepare = make_prepare(clock, data=b"d" * 1000)
    sent = 0
    async with asyncio.timeout(GUARD):
        while True:
            await alice.send_prepare(prepare)
            sent += 1
            await asyncio.sleep(0)
            if alice.pending():
                break
    _, reply = await alice.recv_reply()
    assert isinstance(reply, Reject)
    assert (reply.code, reply.message) == ("T03", "peer bob is busy")
    assert 8 <= sent - 1 <= 12  # what was forwarded: about the high-water mark, no more

    # bob reads what he was sent: the next Prepare goes through to him again.
    for _ in range(sent - 1):
        await bob.recv_frame()
    request_id = await alice.send_prepare(prepare)
    async with asyncio.timeout(GUARD):
        frame = await bob.recv_frame()
    assert isinstance(frame, frames.Message)
    assert alice.pending() == 0
    assert request_id  # still waiting for bob's answer, as it should
    await alice.close()
    await bob.close()
    await server.shutdown()
