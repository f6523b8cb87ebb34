"""Route exchange (CCP) with ilp-connector@23.0.2: no static route on either side.

    alice, bob (children) ── ours: test.ours ══ ref: test.ref (ilp-connector) ── carol, dave
                                   ║
                             zed: test.zed (another of ours, dials ours)

ref learns test.ours and test.zed from us (its admin API, GET /routing, shows them), we learn
test.ref from it (our admin API, GET /routes); packets go both ways; when zed goes, our update
withdraws test.zed at ref while we stay connected, and when zed comes back ref relearns it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import yaml

from tests.integration.helpers import GUARD, connector_process, free_port
from tests.interop.peers import btp_account, receiver, reference_connector, run_client, summary

TOKEN = "admin-token"
INTERVAL_MS = 2000


async def http_json(port: int, path: str, token: str | None = None) -> Any:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n".encode())
    async with asyncio.timeout(GUARD):
        raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], raw[:300]
    if b"chunked" in head.lower():
        body = _unchunk(body)
    return json.loads(body)


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


async def eventually(check: Any, what: str) -> None:
    async with asyncio.timeout(GUARD):
        while True:
            try:
                if await check():
                    return
            except (OSError, AssertionError):
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(what)


def config(tmp_path: Path, name: str, port: int, admin_port: int, peers: list[Any]) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "node_id": name,
                "ilp_address": f"test.{name}",
                "btp_server": {"host": "127.0.0.1", "port": port},
                "admin": {"host": "127.0.0.1", "port": admin_port},
                "routing": {"broadcast_interval_ms": INTERVAL_MS},
                "peers": peers,
            }
        )
    )
    return str(path)


async def test_routes_with_ilp_connector_both_ways_withdrawn_and_relearned(tmp_path: Path) -> None:
    port, admin, ref_port, ref_admin = free_port(), free_port(), free_port(), free_port()
    carol_port, dave_port, zed_port, zed_admin = free_port(), free_port(), free_port(), free_port()
    ours = config(
        tmp_path,
        "ours",
        port,
        admin,
        [
            {"id": "alice", "relation": "child"},
            {"id": "bob", "relation": "child"},
            {"id": "ref", "relation": "peer", "url": f"ws://127.0.0.1:{ref_port}"},
            {"id": "zed", "relation": "peer"},
        ],
    )
    zed = config(
        tmp_path,
        "zed",
        zed_port,
        zed_admin,
        [{"id": "ours", "relation": "peer", "url": f"ws://127.0.0.1:{port}", "username": "zed"}],
    )
    accounts = {
        "ours": btp_account("peer", {"listener": {"port": ref_port, "secret": "ref-s"}}),
        "carol": btp_account("child", {"listener": {"port": carol_port, "secret": "carol-s"}}),
        "dave": btp_account("child", {"listener": {"port": dave_port, "secret": "dave-s"}}),
    }
    ref_env = {
        "CONNECTOR_ADMIN_API": "true",
        "CONNECTOR_ADMIN_API_PORT": str(ref_admin),
        "CONNECTOR_ROUTE_BROADCAST_INTERVAL": str(INTERVAL_MS),
    }
    secrets = {
        "BTP_PEER_ALICE_SECRET": "alice-s",
        "BTP_PEER_BOB_SECRET": "bob-s",
        "BTP_PEER_REF_SECRET": "ref-s",
        "BTP_PEER_ZED_SECRET": "zed-s",
        "CONNECTOR_ADMIN_TOKEN": TOKEN,
    }

    async def ref_routes() -> dict[str, Any]:
        status = await http_json(ref_admin, "/routing")
        table: dict[str, Any] = status["localRoutingTable"]
        return table

    async def our_routes() -> dict[str, Any]:
        status = await http_json(admin, "/routes", TOKEN)
        return {r["prefix"]: r for r in status["routes"]}

    async with (
        reference_connector("test.ref", accounts, [], ref_env),
        connector_process(port, CONNECTOR_CONFIG=ours, **secrets),
    ):
        zed_env = {"CONNECTOR_CONFIG": zed, "BTP_PEER_OURS_SECRET": "zed-s"}
        async with connector_process(zed_port, **zed_env):
            # ref learns us (and zed, through us); we learn ref.
            async def ref_knows_us() -> bool:
                table = await ref_routes()
                return (
                    table.get("test.ours", {}).get("nextHop") == "ours"
                    and table.get("test.zed", {}).get("path") == "test.ours test.zed"
                )

            await eventually(ref_knows_us, "ilp-connector never learned test.ours and test.zed")

            async def we_know_ref() -> bool:
                routes = await our_routes()
                ref = routes.get("test.ref")
                return ref is not None and (ref["nextHop"], ref["source"]) == ("ref", "learned")

            await eventually(we_know_ref, "we never learned test.ref")
            explained = await http_json(
                admin, "/routes/explain?destination=test.ref.carol.x", TOKEN
            )
            assert (explained["prefix"], explained["nextHop"]) == ("test.ref", "ref")
            async with (
                receiver(f"btp+ws://:carol-s@127.0.0.1:{carol_port}"),
                receiver(f"btp+ws://bob:bob-s@127.0.0.1:{port}"),
            ):
                # alice -> ours -> ref -> carol, and dave -> ref -> ours -> bob
                code, lines = await run_client(
                    f"btp+ws://alice:alice-s@127.0.0.1:{port}",
                    "--destination", "test.ref.carol.x", "--count", "50", "--summary",
                )  # fmt: skip
                assert code == 0, lines
                assert summary(lines)["fulfilled"] == 50
                code, lines = await run_client(
                    f"btp+ws://:dave-s@127.0.0.1:{dave_port}",
                    "--destination", "test.ours.bob.y", "--count", "50", "--summary",
                )  # fmt: skip
                assert code == 0, lines
                assert summary(lines)["fulfilled"] == 50

        # zed is gone: our update withdraws test.zed at ref, while we stay connected to it.
        async def ref_forgot_zed() -> bool:
            table = await ref_routes()
            return "test.zed" not in table and "test.ours" in table

        await eventually(ref_forgot_zed, "ilp-connector kept test.zed after zed went away")
        async with connector_process(zed_port, **zed_env):

            async def ref_relearned_zed() -> bool:
                return "test.zed" in await ref_routes()

            await eventually(ref_relearned_zed, "ilp-connector did not relearn test.zed")


async def test_after_ilp_connector_restarts_each_side_relearns_the_other(tmp_path: Path) -> None:
    port, admin, ref_port, ref_admin = free_port(), free_port(), free_port(), free_port()
    ours = config(
        tmp_path,
        "ours",
        port,
        admin,
        [{"id": "ref", "relation": "peer", "url": f"ws://127.0.0.1:{ref_port}"}],
    )
    accounts = {"ours": btp_account("peer", {"listener": {"port": ref_port, "secret": "ref-s"}})}
    ref_env = {
        "CONNECTOR_ADMIN_API": "true",
        "CONNECTOR_ADMIN_API_PORT": str(ref_admin),
        "CONNECTOR_ROUTE_BROADCAST_INTERVAL": str(INTERVAL_MS),
    }

    async def both_know() -> bool:
        theirs = (await http_json(ref_admin, "/routing"))["localRoutingTable"]
        mine = {r["prefix"] for r in (await http_json(admin, "/routes", TOKEN))["routes"]}
        return "test.ours" in theirs and "test.ref" in mine

    async def we_forgot() -> bool:
        mine = {r["prefix"] for r in (await http_json(admin, "/routes", TOKEN))["routes"]}
        return "test.ref" not in mine

    async with connector_process(
        port, CONNECTOR_CONFIG=ours, BTP_PEER_REF_SECRET="ref-s", CONNECTOR_ADMIN_TOKEN=TOKEN
    ):
        async with reference_connector("test.ref", accounts, [], ref_env):
            await eventually(both_know, "the two never learned each other")
        await eventually(we_forgot, "we kept test.ref after ilp-connector stopped")
        async with reference_connector("test.ref", accounts, [], ref_env):
            await eventually(both_know, "not relearned after ilp-connector restarted")
