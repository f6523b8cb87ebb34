"""Our node as a CHILD of ilp-connector@23.0.2, with no address of its own: it asks over IL-DCP.

    carol (child) ── ref: test.ref (ilp-connector) ══ ours: (no address; ref is its parent) ── alice

ilp-connector hands a child account ``<its ilpAddress>.<account id>`` (``getChildAddress``,
no ``ilpAddressSegment`` set): ``test.ref.ours``. We take it, become ready, give our child
``test.ref.ours.alice``, and carol's packets to it arrive through ref and us.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.integration.helpers import connector_process, free_port
from tests.interop.peers import btp_account, receiver, reference_connector, run_client, summary
from tests.interop.test_route_exchange_interop import http_json

pytestmark = pytest.mark.interop

REF_ADDRESS = "test.ref"
OUR_ACCOUNT_AT_REF = "ours"


async def test_ilp_connector_gives_us_our_address_over_ildcp(tmp_path: Path) -> None:
    port, ref_port, carol_port = free_port(), free_port(), free_port()
    path = tmp_path / "ours.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "node_id": "ours",
                "btp_server": {"host": "127.0.0.1", "port": port},
                "peers": [
                    {"id": "ref", "relation": "parent", "url": f"ws://127.0.0.1:{ref_port}"},
                    {"id": "alice", "relation": "child"},
                ],
            }
        )
    )
    accounts = {
        OUR_ACCOUNT_AT_REF: btp_account(
            "child", {"listener": {"port": ref_port, "secret": "ref-s"}}
        ),
        "carol": btp_account("child", {"listener": {"port": carol_port, "secret": "carol-s"}}),
    }
    expected = f"{REF_ADDRESS}.{OUR_ACCOUNT_AT_REF}"
    secrets = {"BTP_PEER_REF_SECRET": "ref-s", "BTP_PEER_ALICE_SECRET": "alice-s"}
    async with (
        reference_connector(REF_ADDRESS, accounts, []),
        connector_process(port, CONNECTOR_CONFIG=str(path), **secrets) as ours,
    ):
        (learned,) = await ours.wait_for("ildcp_address")
        assert (learned["ilpAddress"], learned["parent"]) == (expected, "ref")
        assert not ours.records("ildcp_asset_mismatch")  # both USD/9
        status = await http_json(port, "/health/ready")  # 200 only
        assert (status["status"], status["ilpAddress"]) == ("ready", expected)

        # our child gets an address under ours, from the real IL-DCP client
        code, lines = await run_client(f"btp+ws://alice:alice-s@127.0.0.1:{port}", "--ildcp")
        assert code == 0, lines
        (info,) = [x for x in lines if x.get("event") == "ildcp"]
        assert info["clientAddress"] == f"{expected}.alice"

        # carol -> ref -> ours -> alice, under the address ref gave us
        async with receiver(f"btp+ws://alice:alice-s@127.0.0.1:{port}"):
            code, lines = await run_client(
                f"btp+ws://:carol-s@127.0.0.1:{carol_port}",
                "--destination", f"{expected}.alice.x", "--count", "20", "--summary",
            )  # fmt: skip
            assert code == 0, lines
            assert summary(lines)["fulfilled"] == 20
