from __future__ import annotations

from typing import Any

import pytest

from connector.domain.ilp.address import is_valid_address, scheme_of
from tests.vectors import cases


@pytest.mark.parametrize(
    "entry", cases("addresses.json", "valid") + cases("addresses.json", "invalid")
)
def test_address_verdict_matches_rfc0015(entry: dict[str, Any]) -> None:
    assert is_valid_address(entry["address"]) is entry["valid"]


@pytest.mark.parametrize("entry", cases("addresses.json", "scheme_of"))
def test_scheme_of(entry: dict[str, Any]) -> None:
    assert scheme_of(entry["address"]) == entry["scheme"]
