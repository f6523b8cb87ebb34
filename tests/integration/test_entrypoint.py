"""The real ``python -m connector`` process: settings, logs, signals and exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import pytest

from connector.domain.btp import frames
from connector.domain.ilp.packets import Reject
from tests.fakes import make_prepare
from tests.integration.helpers import ROOT, BtpClient, connector_process

SECRET = "alice-real-secret-4f9a"
WRONG = "presented-wrong-token-77c1"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_serves_a_peer_logs_every_event_without_secrets_and_exits_0_on_signal(
    sig: signal.Signals,
) -> None:
    async with connector_process(
        BTP_PEER_ALICE_SECRET=SECRET,
        CONNECTOR_NODE_ID="node-x",
        CONNECTOR_ILP_ADDRESS="test.x",
        LOG_LEVEL="debug",
    ) as node:
        async with BtpClient.connect(node.port) as client:
            assert isinstance(await client.authenticate("alice", SECRET), frames.Response)
            request_id = await client.send_prepare(make_prepare(destination="test.x.bob"))
            got_id, reply = await client.recv_reply()
            assert got_id == request_id
            assert reply == Reject("F02", "test.x", "no route to test.x.bob")
        async with BtpClient.connect(node.port) as intruder:
            assert isinstance(await intruder.authenticate("alice", WRONG), frames.Error)
            assert (await intruder.close_code())[0] == 1008
        await node.wait_for("btp_disconnect", 2)
        node.signal(sig)
        assert await node.wait() == 0

    records = node.records()
    assert len(records) == len([line for line in node.lines if line.strip()]), node.output
    assert all(r["nodeId"] == "node-x" for r in records)
    events = [r["event"] for r in records]
    for name in (
        "btp_server_started",
        "btp_connection",
        "btp_auth",
        "btp_message_received",
        "btp_response_sent",
        "btp_error",
        "btp_disconnect",
        "btp_server_shutdown",
    ):
        assert name in events, name
    (sent,) = node.records("btp_response_sent")
    assert (sent["peerId"], sent["requestId"], sent["responseType"]) == (
        "alice",
        request_id,
        "REJECT",
    )
    assert SECRET not in node.output
    assert WRONG not in node.output


async def test_a_bad_setting_exits_2_naming_it() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector",
        env={
            "BTP_SERVER_PORT": "not-a-port",
            "PATH": "/usr/bin:/bin",
            "CONNECTOR_STORE_URL": "memory://",
        },
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(20):
        _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"BTP_SERVER_PORT" in err or b"btp_server_port" in err


async def test_a_port_in_use_exits_1_with_a_log_line() -> None:
    async with connector_process() as first:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "connector",
            env={
                "BTP_SERVER_HOST": "127.0.0.1",
                "BTP_SERVER_PORT": str(first.port),
                "LOG_FORMAT": "json",
                "PATH": "/usr/bin:/bin",
                "CONNECTOR_STORE_URL": "memory://",
                "PYTHONPATH": os.environ.get("PYTHONPATH", ""),  # the sources under test
            },
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(20):
            _, err = await proc.communicate()
        assert proc.returncode == 1
        events = [json.loads(line)["event"] for line in err.decode().splitlines()]
        assert events[-1] == "connector_failed", events
        assert events.count("connector_failed") == 1
        # Nothing about a server that never listened.
        assert not [e for e in events if e.startswith("btp_server_")], events
        first.signal(signal.SIGTERM)
        assert await first.wait() == 0
