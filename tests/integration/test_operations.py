"""Health, readiness and metrics on a running node, over the real BTP port."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from connector.app.config import ConnectorConfig
from connector.app.container import Container
from connector.app.settings import Settings, runtime_config
from connector.domain.btp import frames
from connector.domain.ilp.packets import Reject
from tests.fakes import FakeSecretStore, RecordingLogSink, make_prepare
from tests.integration.helpers import GUARD, BtpClient, free_port

SECRETS = {"alice": "alice-secret-A1", "bob": "bob-secret-B2", "up": "up-secret-U3"}


class BlockedDialer:
    """Holds the first dial until released, then refuses: lets a test see 'starting'."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.dials = 0

    async def dial(self, url: str) -> Any:
        self.dials += 1
        await self.release.wait()
        raise ConnectionRefusedError(f"nothing at {url}")


async def http_get(port: int, path: str) -> tuple[int, dict[str, str], str]:
    async with asyncio.timeout(GUARD):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await writer.drain()
        raw = await reader.read()
        writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    status_line, *header_lines = head.split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        match = re.fullmatch(r"([a-z_]+)(\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(3) or ""))
        if found == labels:
            return float(match.group(4))
    return 0.0


@pytest.fixture
async def node() -> AsyncIterator[tuple[Container, BlockedDialer, int]]:
    port = free_port()
    config = ConnectorConfig.model_validate(
        {
            "node_id": "ops",
            "ilp_address": "test.ops",
            "peers": [
                {"id": "alice", "relation": "child"},
                {"id": "bob", "relation": "child"},
                {"id": "up", "relation": "parent", "url": "ws://127.0.0.1:9/"},
            ],
        }
    )
    container = Container()
    settings = Settings(
        btp_server_host="127.0.0.1",
        btp_server_port=port,
        shutdown_timeout=1.0,
        store_url="memory://",
    )
    container.config.from_dict(runtime_config(settings, config))
    container.secret_store.override(FakeSecretStore(SECRETS))
    container.log.override(RecordingLogSink())
    dialer = BlockedDialer()
    container.dialer.override(dialer)
    yield container, dialer, port
    dialer.release.set()
    async with asyncio.timeout(GUARD):
        await container.node().shutdown()


async def test_readiness_metrics_and_peers_through_the_whole_lifecycle(
    node: tuple[Container, BlockedDialer, int],
) -> None:
    container, dialer, port = node
    await container.node().start()

    # Listening, but the outgoing parent has not been tried yet: live, not ready.
    assert (await http_get(port, "/health/live"))[0] == 200
    status, headers, body = await http_get(port, "/health/ready")
    assert (status, json.loads(body)["status"]) == (503, "starting")
    assert headers["content-type"] == "application/json"
    dialer.release.set()
    async with asyncio.timeout(GUARD):
        while (await http_get(port, "/health/ready"))[0] != 200:  # noqa: ASYNC110 - bounded
            await asyncio.sleep(0.02)
    status, _, body = await http_get(port, "/health/ready")
    report = json.loads(body)
    assert (report["status"], report["nodeId"], report["ilpAddress"]) == (
        "ready",
        "ops",
        "test.ops",
    )
    peers = {p["id"]: p for p in report["peers"]}
    assert set(peers) == {"alice", "bob", "up"}
    assert peers["up"]["relation"] == "parent"
    assert peers["up"]["connected"] is False

    async with BtpClient.connect(port) as alice:
        assert isinstance(await alice.authenticate("alice", SECRETS["alice"]), frames.Response)
        report = json.loads((await http_get(port, "/health/ready"))[2])
        alice_row = next(p for p in report["peers"] if p["id"] == "alice")
        assert alice_row["connected"] is True
        assert alice_row["direction"] == "accepted"
        assert alice_row["since"]
        assert alice_row["lastSeen"]
        assert alice_row["inFlight"] == 0

        before = (await http_get(port, "/metrics"))[2]
        sent = 7
        for _ in range(sent):
            await alice.send_prepare(make_prepare(destination="test.nowhere", amount=25))
        for _ in range(sent):
            _, reply = await alice.recv_reply()
            assert isinstance(reply, Reject)
        status, headers, after = await http_get(port, "/metrics")
        assert status == 200
        assert headers["content-type"].startswith("text/plain")
        # The parent is the default route and it is down: T01.
        labels = {"peer": "alice", "outcome": "rejected", "code": "T01"}
        moved = metric(after, "connector_packets_total", **labels) - metric(
            before, "connector_packets_total", **labels
        )
        assert moved == sent
        assert metric(after, "connector_prepare_amount_total", peer="alice") == 25 * sent
        assert metric(after, "connector_packet_duration_seconds_count", peer="alice") == sent
        assert metric(after, "connector_peer_connected", peer="alice") == 1
        assert metric(after, "connector_peers_connected") == 1
        assert metric(after, "connector_reconnect_attempts_total", peer="up") >= 1

    async with BtpClient.connect(port) as intruder:
        assert isinstance(await intruder.authenticate("bob", "guessed"), frames.Error)
        await intruder.close_code()
    text = (await http_get(port, "/metrics"))[2]
    assert metric(text, "connector_auth_failures_total", reason="invalid_token") == 1
    async with asyncio.timeout(GUARD):
        while metric((await http_get(port, "/metrics"))[2], "connector_peers_connected"):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert (await http_get(port, "/nope"))[0] == 404


async def test_readiness_turns_503_before_any_connection_closes(
    node: tuple[Container, BlockedDialer, int],
) -> None:
    container, dialer, port = node
    dialer.release.set()
    await container.node().start()
    async with BtpClient.connect(port) as alice, BtpClient.connect(port) as bob:
        await alice.authenticate("alice", SECRETS["alice"])
        await bob.authenticate("bob", SECRETS["bob"])
        await alice.send_prepare(make_prepare(destination="test.ops.bob.x"))
        await bob.recv_frame()  # in flight at bob, who stays silent
        shutdown = asyncio.create_task(container.node().shutdown())
        async with asyncio.timeout(GUARD):
            while True:
                status, _, body = await http_get(port, "/health/ready")
                if status == 503:
                    break
                await asyncio.sleep(0.01)
        assert json.loads(body)["status"] == "stopping"
        assert alice.ws.close_code is None  # both still open
        assert bob.ws.close_code is None
        _, reply = await alice.recv_reply()  # the drain deadline rejects what is in flight
        assert isinstance(reply, Reject)
        assert (await alice.close_code())[0] == 1000
        async with asyncio.timeout(GUARD):
            await shutdown


async def test_health_and_metrics_never_show_a_secret_a_token_or_a_client_port(
    node: tuple[Container, BlockedDialer, int],
) -> None:
    container, dialer, port = node
    dialer.release.set()
    await container.node().start()
    async with BtpClient.connect(port) as alice, BtpClient.connect(port) as bad:
        await alice.authenticate("alice", SECRETS["alice"])
        await bad.authenticate("bob", "presented-token-T9")
        client_port = alice.ws.local_address[1]
        texts = [(await http_get(port, path))[2] for path in ("/health/ready", "/metrics")]
    for text in texts:
        for secret in (*SECRETS.values(), "presented-token-T9"):
            assert secret not in text
        assert f":{client_port}" not in text
