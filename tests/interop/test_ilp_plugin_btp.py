"""Interop with the reference JavaScript client, ilp-plugin-btp@1.5.0 from npm (interop/).

These run in CI and never skip: scripts/test installs the npm packages from the lock file.
"""

from __future__ import annotations

import pytest

from connector.adapters.clock import SystemClock
from connector.adapters.websockets_transport import WebsocketsServerTransport
from connector.app.btp_server import ServerLimits
from connector.domain.auth import AuthThrottle
from connector.domain.ilp.packets import Fulfill
from tests.contract.conftest import build_server
from tests.fakes import FakeProcessor, RecordingLogSink
from tests.integration.helpers import connector_process
from tests.interop.peers import run_client

SECRET = "interop-secret-9d2e"


async def test_reference_client_authenticates_and_gets_our_reject() -> None:
    async with connector_process(
        BTP_PEER_ALICE_SECRET=SECRET, CONNECTOR_ILP_ADDRESS="test.ours"
    ) as node:
        code, lines = await run_client(
            f"btp+ws://alice:{SECRET}@127.0.0.1:{node.port}",
            "--count",
            "5",
            "--destination",
            "test.ours.bob",
        )
        assert code == 0, lines
        assert lines[0] == {"event": "connected"}
        replies = [line for line in lines if line["event"] == "reply"]
        assert len(replies) == 5
        for reply in replies:
            assert (reply["type"], reply["code"], reply["triggeredBy"]) == (
                "reject",
                "F02",
                "test.ours",
            )
        (auth,) = node.records("btp_auth")
        assert auth["success"] is True
        assert auth["peerId"] == "alice"


async def test_reference_client_with_a_wrong_secret_does_not_get_in() -> None:
    async with connector_process(BTP_PEER_ALICE_SECRET=SECRET) as node:
        code, lines = await run_client(
            f"btp+ws://alice:wrong-secret@127.0.0.1:{node.port}", "--timeout-ms", "5000"
        )
        assert code == 2
        assert {"event": "connected"} not in lines
        auths = await node.wait_for("btp_auth")
        assert auths[0]["success"] is False
        assert auths[0]["reason"] == "invalid auth_token"
        assert "wrong-secret" not in node.output


@pytest.mark.parametrize("count", [1, 200])
async def test_reference_client_decodes_our_fulfills(count: int) -> None:
    processor = FakeProcessor()
    transport = WebsocketsServerTransport("127.0.0.1", 0, max_frame_size=256 * 1024)
    server = build_server(
        transport,
        processor,
        AuthThrottle(),
        SystemClock(),
        RecordingLogSink(),
        ServerLimits(),
        {"alice": SECRET},
        "test.ours",
    )
    await server.start()
    try:
        code, lines = await run_client(
            f"btp+ws://alice:{SECRET}@127.0.0.1:{transport.port}", "--count", str(count)
        )
    finally:
        await server.shutdown()
    assert code == 0, lines
    replies = [line for line in lines if line["event"] == "reply"]
    assert len(replies) == count
    expected = Fulfill(bytes(range(32)), b"ok")
    assert all(r["type"] == "fulfill" for r in replies)
    assert replies[0]["fulfillment"] == expected.fulfillment.hex()
    assert replies[0]["data"] == expected.data.hex()
    assert len(processor.seen) == count
