"""Every CCP vector in shared/protocol/vectors/ccp.json (ilp-protocol-ccp), both ways, and the
malformed messages the decoder refuses."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from connector.domain.ccp import (
    CcpRoute,
    Mode,
    RouteControl,
    RouteProp,
    RouteUpdate,
)
from connector.domain.errors import IlpCodecError
from connector.domain.ildcp import PEER_CONDITION, PEER_FULFILLMENT
from tests.vectors import cases, load


def _table_id(text: str) -> bytes:
    return uuid.UUID(text).bytes


def _update(fields: dict[str, Any]) -> RouteUpdate:
    return RouteUpdate(
        _table_id(fields["routingTableId"]),
        fields["currentEpochIndex"],
        fields["fromEpochIndex"],
        fields["toEpochIndex"],
        fields["holdDownTime"],
        fields["speaker"],
        tuple(
            CcpRoute(
                r["prefix"],
                tuple(r["path"]),
                bytes.fromhex(r["auth"]),
                tuple(
                    RouteProp(
                        p["id"],
                        p["value"].encode() if p["isUtf8"] else bytes.fromhex(p["value"]),
                        optional=p["isOptional"],
                        transitive=p["isTransitive"],
                        partial=p["isPartial"],
                        utf8=p["isUtf8"],
                    )
                    for p in r["props"]
                ),
            )
            for r in fields["newRoutes"]
        ),
        tuple(fields["withdrawnRoutes"]),
    )


def test_the_peer_protocol_condition_and_fulfillment() -> None:
    vectors = load("ccp.json")
    assert base64.b64encode(PEER_CONDITION).decode() == vectors["condition_base64"]
    assert PEER_FULFILLMENT.hex() == vectors["fulfillment_hex"]


@pytest.mark.parametrize("vector", cases("ccp.json", "control"))
def test_route_control_vectors(vector: dict[str, Any]) -> None:
    fields = vector["fields"]
    control = RouteControl(
        Mode(fields["mode"]),
        _table_id(fields["lastKnownRoutingTableId"]),
        fields["lastKnownEpoch"],
        tuple(fields["features"]),
    )
    assert control.encode().hex() == vector["payload_hex"]
    assert RouteControl.decode(bytes.fromhex(vector["payload_hex"])) == control


@pytest.mark.parametrize("vector", cases("ccp.json", "update"))
def test_route_update_vectors(vector: dict[str, Any]) -> None:
    update = _update(vector["fields"])
    assert update.encode().hex() == vector["payload_hex"]
    assert RouteUpdate.decode(bytes.fromhex(vector["payload_hex"])) == update


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ("02" + "00" * 16 + "00000000" + "0100", "mode"),
        ("01" + "00" * 16 + "000000", "truncated"),
        ("01" + "00" * 16 + "00000000" + "0100" + "ff", "after the end"),
        ("01" + "00" * 16 + "00000000" + "0105" + "01", "count"),
    ],
)
def test_malformed_controls_are_refused(payload: str, problem: str) -> None:
    with pytest.raises(IlpCodecError, match=problem):
        RouteControl.decode(bytes.fromhex(payload))


def test_a_huge_route_count_is_refused_before_anything_is_built() -> None:
    head = "00" * 16 + "00000000" * 4 + "0474657374"
    with pytest.raises(IlpCodecError, match="count"):
        RouteUpdate.decode(bytes.fromhex(head + "04ffffffff"))


def test_an_auth_of_the_wrong_size_is_never_encoded() -> None:
    update = RouteUpdate(bytes(16), 1, 0, 1, 30000, "test.a", (CcpRoute("test.a", (), b"x"),))
    with pytest.raises(IlpCodecError, match="32 bytes"):
        update.encode()
