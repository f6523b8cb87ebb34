"""Behind a reverse proxy, on the real entrypoint: X-Forwarded-For names the client when the
direct peer (here 127.0.0.1) is a trusted proxy, and is ignored from anyone else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from websockets.asyncio.client import connect

from connector.domain.btp import frames
from tests.integration.helpers import GUARD, BtpClient, ConnectorProcess, connector_process

SECRET = "proxy-secret-77b1"


@asynccontextmanager
async def node(tmp_path: Path, proxies: str, **env: str) -> AsyncIterator[ConnectorProcess]:
    config = tmp_path / "c.yaml"
    config.write_text(
        f"btp_server: {{trusted_proxies: {proxies}}}\npeers:\n  - {{id: alice, relation: child}}\n"
    )
    async with connector_process(
        CONNECTOR_CONFIG=str(config), BTP_PEER_ALICE_SECRET=SECRET, **env
    ) as process:
        yield process


@asynccontextmanager
async def forwarded(port: int, client: str) -> AsyncIterator[BtpClient]:
    """A client whose upgrade request says it was forwarded for ``client``."""
    async with asyncio.timeout(GUARD):
        ws = await connect(f"ws://127.0.0.1:{port}", additional_headers={"X-Forwarded-For": client})
    try:
        yield BtpClient(ws)
    finally:
        await ws.close()


async def test_from_a_trusted_proxy_the_forwarded_client_is_the_remote_address(
    tmp_path: Path,
) -> None:
    async with node(tmp_path, "[10.0.0.0/8, 127.0.0.1/32]") as process:
        async with forwarded(process.port, "198.51.100.1, 203.0.113.7, 10.9.9.9") as client:
            assert isinstance(await client.authenticate("alice", SECRET), frames.Response)
        (connection,) = await process.wait_for("btp_connection")
        assert connection["remoteAddress"] == "203.0.113.7"
        (auth,) = process.records("btp_auth")
        assert auth["remoteAddress"] == "203.0.113.7"


async def test_from_anyone_else_the_header_is_ignored(tmp_path: Path) -> None:
    async with node(tmp_path, "[10.0.0.0/8]") as process:
        async with forwarded(process.port, "203.0.113.7") as client:
            assert isinstance(await client.authenticate("alice", SECRET), frames.Response)
        (connection,) = await process.wait_for("btp_connection")
        assert connection["remoteAddress"].startswith("127.0.0.1:")


async def test_clients_behind_one_proxy_are_throttled_and_limited_each_on_its_own(
    tmp_path: Path,
) -> None:
    async with node(tmp_path, "[127.0.0.1/32]", CONNECTOR_MAX_PENDING_PER_HOST="1") as process:
        for _ in range(2):
            async with forwarded(process.port, "203.0.113.7") as guesser:
                assert isinstance(await guesser.authenticate("alice", "guess"), frames.Error)
        async with forwarded(process.port, "203.0.113.8") as other:
            assert isinstance(await other.authenticate("alice", "guess"), frames.Error)
        auths = await process.wait_for("btp_auth", 3)
        assert [(a["remoteAddress"], a["failures"]) for a in auths] == [
            ("203.0.113.7", 1),
            ("203.0.113.7", 2),
            ("203.0.113.8", 1),  # one proxy's address would have made it the third
        ]
        # One connection waiting to authenticate per client host, not per proxy; and a
        # socket of the proxy's still in its handshake does not hold the proxy's "host" slot.
        async with asyncio.timeout(GUARD):
            _, idle = await asyncio.open_connection("127.0.0.1", process.port)
        try:
            async with forwarded(process.port, "203.0.113.7") as first:
                async with forwarded(process.port, "203.0.113.8") as second:
                    async with forwarded(process.port, "203.0.113.7") as third:
                        assert await third.close_code() == (
                            1013,
                            "too many connections from your host waiting to authenticate",
                        )
                    assert isinstance(await second.authenticate("alice", SECRET), frames.Response)
                assert isinstance(await first.authenticate("alice", SECRET), frames.Response)
        finally:
            idle.close()
        assert not process.records("btp_handshake_refused")
