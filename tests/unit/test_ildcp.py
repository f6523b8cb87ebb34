from __future__ import annotations

from typing import Any

import pytest

from connector.domain.errors import IlpCodecError
from connector.domain.ildcp import PEER_CONDITION, IldcpResponse
from tests.vectors import cases


def _vector(name: str) -> dict[str, Any]:
    return next(c.values[0] for c in cases("ilp.json", "valid") if c.values[0]["name"] == name)


def test_response_matches_the_ilp_protocol_ildcp_vector() -> None:
    vector = _vector("ildcp_response")
    data = bytes.fromhex(vector["decoded"]["data"]["data"])
    response = IldcpResponse("test.parent.child1", 9, "XRP")
    assert response.encode() == data
    assert IldcpResponse.decode(data) == response


def test_peer_condition_is_the_vectors() -> None:
    vector = _vector("ildcp_request")
    assert PEER_CONDITION.hex() == vector["decoded"]["data"]["executionCondition"]


def test_truncated_response_is_refused() -> None:
    with pytest.raises(IlpCodecError):
        IldcpResponse.decode(b"\x05test")
    with pytest.raises(IlpCodecError):
        IldcpResponse.decode(b"\x01a\x09\x02\xff\xfe")
