from __future__ import annotations

import pytest

from connector.domain.routing import RoutingTable

TABLE = RoutingTable(
    [
        ("test.a", "alice"),
        ("test.a.b", "bob"),
        ("test.ab", "abe"),
        ("g", "global"),
    ]
)


@pytest.mark.parametrize(
    ("destination", "peer"),
    [
        ("test.a", "alice"),
        ("test.a.x.y", "alice"),
        ("test.a.b", "bob"),
        ("test.a.b.c", "bob"),
        ("test.ab.c", "abe"),  # segment boundaries: test.a does not match test.ab
        ("test.abc", None),
        ("test.b", None),
        ("g.us.x", "global"),
    ],
)
def test_longest_prefix_on_whole_segments(destination: str, peer: str | None) -> None:
    assert TABLE.resolve(destination) == peer


def test_default_route_catches_everything_else() -> None:
    table = RoutingTable([("", "parent"), ("test.a", "alice")])
    assert table.resolve("test.zzz") == "parent"
    assert table.resolve("test.a.q") == "alice"
    table.remove("")
    assert table.resolve("test.zzz") is None
    assert len(table) == 1
    assert table.items() == [("test.a", "alice")]


@pytest.mark.parametrize("prefix", [".test", "test.", "test..a"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid route prefix"):
        RoutingTable().add(prefix, "x")
