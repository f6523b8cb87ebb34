"""Forwarding against the reference JavaScript implementations. Never skipped.

(a) ilp-plugin-btp sender -> our connector -> ilp-plugin-btp listener that fulfills
(b) our connector peered with ilp-connector@23.0.2, each forwarding the other's packets, with the
    reference dialing us and with us dialing the reference
(c) a child using the npm ilp-protocol-ildcp client learns its address from us
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.integration.helpers import connector_process, free_port
from tests.interop.peers import btp_account, receiver, reference_connector, run_client, summary

SECRETS = {
    "BTP_PEER_ALICE_SECRET": "alice-s",
    "BTP_PEER_BOB_SECRET": "bob-s",
    "BTP_PEER_REF_SECRET": "ref-s",
}


def write_config(
    tmp_path: Path, port: int, peers: list[dict[str, Any]], routes: list[dict[str, str]]
) -> str:
    path = tmp_path / "connector.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "node_id": "ours",
                "ilp_address": "test.ours",
                "btp_server": {"host": "127.0.0.1", "port": port},
                "peers": peers,
                "routes": routes,
            }
        )
    )
    return str(path)


async def test_a_sender_through_us_to_a_reference_listener(tmp_path: Path) -> None:
    listener_port, port = free_port(), free_port()
    config = write_config(
        tmp_path,
        port,
        [
            {"id": "alice", "relation": "child"},
            {"id": "bob", "relation": "child", "url": f"ws://127.0.0.1:{listener_port}"},
        ],
        [],
    )
    async with (
        receiver("--listen", str(listener_port), "--secret", "bob-s"),
        connector_process(port, CONNECTOR_CONFIG=config, **SECRETS) as node,
    ):
        auths = await node.wait_for("btp_auth")
        assert auths[0]["peerId"] == "bob"
        assert auths[0]["success"] is True
        code, lines = await run_client(
            f"btp+ws://alice:alice-s@127.0.0.1:{port}",
            "--destination",
            "test.ours.bob.inbox",
            "--count",
            "500",
            "--summary",
        )
    assert code == 0, lines
    result = summary(lines)
    assert (result["fulfilled"], result["rejected"], result["invalidFulfills"]) == (500, 0, 0)


async def test_b_peered_with_ilp_connector_which_dials_us(tmp_path: Path) -> None:
    port, carol_port, dave_port = free_port(), free_port(), free_port()
    config = write_config(
        tmp_path,
        port,
        [
            {"id": "alice", "relation": "child"},
            {"id": "bob", "relation": "child"},
            {"id": "ref", "relation": "peer"},
        ],
        [{"prefix": "test.ref", "peer": "ref"}],
    )
    accounts = {
        "ours": btp_account("peer", {"server": f"btp+ws://ref:ref-s@127.0.0.1:{port}"}),
        "carol": btp_account("child", {"listener": {"port": carol_port, "secret": "carol-s"}}),
        "dave": btp_account("child", {"listener": {"port": dave_port, "secret": "dave-s"}}),
    }
    async with (
        connector_process(port, CONNECTOR_CONFIG=config, **SECRETS) as node,
        reference_connector(
            "test.ref", accounts, [{"targetPrefix": "test.ours", "peerId": "ours"}]
        ),
    ):
        await node.wait_for("btp_auth")
        async with (
            receiver(f"btp+ws://:carol-s@127.0.0.1:{carol_port}"),
            receiver(f"btp+ws://bob:bob-s@127.0.0.1:{port}"),
        ):
            # alice -> ours -> ref -> carol
            code, lines = await run_client(
                f"btp+ws://alice:alice-s@127.0.0.1:{port}",
                "--destination",
                "test.ref.carol.x",
                "--count",
                "200",
                "--summary",
            )
            assert code == 0, lines
            assert summary(lines)["fulfilled"] == 200
            # dave -> ref -> ours -> bob
            code, lines = await run_client(
                f"btp+ws://:dave-s@127.0.0.1:{dave_port}",
                "--destination",
                "test.ours.bob.y",
                "--count",
                "200",
                "--summary",
            )
            assert code == 0, lines
            assert summary(lines)["fulfilled"] == 200
            # Rejects we create reach senders on the other side, triggered by us.
            code, lines = await run_client(
                f"btp+ws://:dave-s@127.0.0.1:{dave_port}", "--destination", "test.ours.nobody"
            )
            (reply,) = [x for x in lines if x.get("event") == "reply"]
            assert (reply["code"], reply["triggeredBy"]) == ("F02", "test.ours")


async def test_b_peered_with_ilp_connector_which_we_dial(tmp_path: Path) -> None:
    port, ref_port, carol_port = free_port(), free_port(), free_port()
    config = write_config(
        tmp_path,
        port,
        [
            {"id": "alice", "relation": "child"},
            {"id": "bob", "relation": "child"},
            {"id": "ref", "relation": "peer", "url": f"ws://127.0.0.1:{ref_port}"},
        ],
        [{"prefix": "test.ref", "peer": "ref"}],
    )
    accounts = {
        "ours": btp_account("peer", {"listener": {"port": ref_port, "secret": "ref-s"}}),
        "carol": btp_account("child", {"listener": {"port": carol_port, "secret": "carol-s"}}),
    }
    async with (
        reference_connector(
            "test.ref", accounts, [{"targetPrefix": "test.ours", "peerId": "ours"}]
        ) as ref,
        connector_process(port, CONNECTOR_CONFIG=config, **SECRETS) as node,
    ):
        auths = await node.wait_for("btp_auth")
        assert (auths[0]["peerId"], auths[0]["success"]) == ("ref", True)
        async with (
            receiver(f"btp+ws://:carol-s@127.0.0.1:{carol_port}"),
            receiver(f"btp+ws://bob:bob-s@127.0.0.1:{port}"),
        ):
            code, lines = await run_client(
                f"btp+ws://alice:alice-s@127.0.0.1:{port}",
                "--destination",
                "test.ref.carol.x",
                "--count",
                "200",
                "--summary",
            )
            assert code == 0, lines
            assert summary(lines)["fulfilled"] == 200
            # A sender on the reference side reaches our child over the link we dialed.
            code, lines = await run_client(
                f"btp+ws://:carol-s@127.0.0.1:{carol_port}",
                "--destination",
                "test.ours.bob.z",
                "--count",
                "50",
                "--summary",
            )
            assert code == 0, lines
            assert summary(lines)["fulfilled"] == 50
    assert ref.proc.returncode is not None


async def test_c_ildcp_client_learns_its_address(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, [{"id": "alice", "relation": "child"}], [])
    async with connector_process(port, CONNECTOR_CONFIG=config, **SECRETS):
        code, lines = await run_client(f"btp+ws://alice:alice-s@127.0.0.1:{port}", "--ildcp")
    assert code == 0, lines
    (info,) = [x for x in lines if x.get("event") == "ildcp"]
    assert (info["clientAddress"], info["assetCode"], info["assetScale"]) == (
        "test.ours.alice",
        "USD",
        9,
    )
