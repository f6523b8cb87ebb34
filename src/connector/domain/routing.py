"""The routing table: longest-prefix match of ILP addresses on whole segments (RFC-0027).

Pure and synchronous. ``test.a`` matches ``test.a`` and ``test.a.b`` but not ``test.ab``; the
empty prefix is the default route (a parent's).
"""

from __future__ import annotations

from collections.abc import Iterable


class RoutingTable:
    def __init__(self, routes: Iterable[tuple[str, str]] = ()) -> None:
        self._routes: dict[str, str] = {}
        for prefix, peer_id in routes:
            self.add(prefix, peer_id)

    def add(self, prefix: str, peer_id: str) -> None:
        """Route ``prefix`` (an address, an address prefix, or ``""`` for default) to a peer."""
        if prefix.startswith(".") or prefix.endswith(".") or ".." in prefix:
            raise ValueError(f"invalid route prefix {prefix!r}")
        self._routes[prefix] = peer_id

    def copy(self) -> RoutingTable:
        table = RoutingTable()
        table._routes = dict(self._routes)
        return table

    def remove(self, prefix: str) -> None:
        self._routes.pop(prefix, None)

    def resolve(self, destination: str) -> str | None:
        """The peer of the longest prefix that matches ``destination`` on segment boundaries."""
        routes = self._routes
        candidate = destination
        while True:
            peer = routes.get(candidate)
            if peer is not None:
                return peer
            cut = candidate.rfind(".")
            if cut < 0:
                return routes.get("")
            candidate = candidate[:cut]

    def items(self) -> list[tuple[str, str]]:
        return sorted(self._routes.items())

    def __len__(self) -> int:
        return len(self._routes)


class Routes:
    """The routing table in use: replaced whole, never changed in place, so a packet routes on
    one consistent snapshot however the routes change meanwhile."""

    __slots__ = ("table",)

    def __init__(self, table: RoutingTable | None = None) -> None:
        self.table = table or RoutingTable()

    def replace(self, table: RoutingTable) -> None:
        self.table = table
