"""A STREAM payment (ilp-protocol-stream@2.7.1 on both ends) from a USD child to a EUR child
through our connector: the receiver gets the converted amount, within the spread, and a price set
with PUT /rates applies to the next payment."""

from __future__ import annotations

import asyncio
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from tests.integration.helpers import GUARD, connector_process, free_port
from tests.interop.peers import INTEROP, node_binary

TOKEN = "rates-token"


async def pay(port: int, amount: int) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        node_binary(),
        str(INTEROP / "stream.js"),
        "--sender", f"btp+ws://usd:usd-s@127.0.0.1:{port}",
        "--receiver", f"btp+ws://eur:eur-s@127.0.0.1:{port}",
        "--amount", str(amount),
        cwd=INTEROP,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(GUARD * 2):
        out, _ = await proc.communicate()
    lines = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
    assert proc.returncode == 0, out.decode()[-2000:]
    (paid,) = [x for x in lines if x["event"] == "paid"]
    return paid


async def put_rates(port: int, prices: dict[str, str]) -> None:
    body = json.dumps(prices).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"PUT /rates HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    async with asyncio.timeout(GUARD):
        answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


async def test_stream_from_a_usd_child_to_a_eur_child_gets_the_converted_amount(
    tmp_path: Path,
) -> None:
    port, admin = free_port(), free_port()
    config = tmp_path / "fx.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "node_id": "fx",
                "ilp_address": "test.fx",
                "admin": {"host": "127.0.0.1", "port": admin},
                "rates": {"prices": {"USD": "1", "EUR": "1.25"}, "spread": "0.01"},
                "peers": [
                    {"id": "usd", "relation": "child", "asset": {"code": "USD", "scale": 2}},
                    {"id": "eur", "relation": "child", "asset": {"code": "EUR", "scale": 2}},
                ],
            }
        )
    )
    env = {
        "CONNECTOR_CONFIG": str(config),
        "BTP_PEER_USD_SECRET": "usd-s",
        "BTP_PEER_EUR_SECRET": "eur-s",
        "CONNECTOR_ADMIN_TOKEN": TOKEN,
    }
    async with connector_process(port, **env) as node:
        paid = await pay(port, 10_000)  # $100.00
        # Each side learned its own asset from the connector (IL-DCP).
        assert paid["senderAsset"] == {"code": "USD", "scale": 2}
        assert paid["receiverAsset"] == {"code": "EUR", "scale": 2}
        assert int(paid["sent"]) == 10_000
        received = int(paid["received"])
        assert received == int(paid["delivered"])
        # $100 at 1.25 USD/EUR is EUR 80.00; less the 1% spread, EUR 79.20; every packet rounds
        # down, never up.
        ideal = Fraction(10_000) / Fraction("1.25")
        assert ideal * Fraction("0.99") - 10 <= received <= ideal * Fraction("0.99")
        # An operator changes a price: the next payment converts at it.
        await put_rates(admin, {"EUR": "2"})
        await node.wait_for("admin_rate_set")
        paid = await pay(port, 10_000)
        assert int(paid["received"]) <= 10_000 // 2 * Fraction("0.99")
        assert int(paid["received"]) >= 10_000 // 2 * Fraction("0.99") - 10
