"""Accounts: who each peer is to this node, parsed once from the configuration.

An ``Account`` is everything the pipeline needs to know of one peer (relation, asset, limits,
routing flags); nothing downstream of the configuration reads a dict. ``Accounts`` looks them up
and derives the static routes in one place: a route ``<ilp_address>.<id>`` per child, the first
parent as the default route, then the configured routes (which win on equal prefixes).

With no configuration file the node is in *open mode*: any peer with a secret may connect, as a
child, and gets its child route while connected (``Accounts.open_children``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from connector.domain.buckets import RateLimit
from connector.domain.routing import RoutingTable


class Relation(StrEnum):
    CHILD = "child"
    PEER = "peer"
    PARENT = "parent"


@dataclass(frozen=True, slots=True)
class Asset:
    code: str = "USD"
    scale: int = 9


@dataclass(frozen=True, slots=True)
class Account:
    """One peer's account. Amounts are integers in the account's own asset units."""

    id: str
    relation: Relation
    asset: Asset = field(default_factory=Asset)
    #: Larger Prepares to or from this peer are rejected F08 (RFC-0027 §F08).
    max_packet_amount: int | None = None
    #: Prepares *from* this peer beyond this rate get T05 (``domain/limits.py``); None: no limit.
    rate_limit: RateLimit | None = None
    #: Balance limits (what the peer may owe us, how far we may owe it): room for the accounts
    #: step; ``None`` is unlimited.
    balance_minimum: int | None = None
    balance_maximum: int | None = None
    #: Route exchange: whether we send routes to and accept routes from this peer.
    send_routes: bool = False
    receive_routes: bool = False

    @classmethod
    def of(
        cls, account_id: str, relation: Relation | str, asset: Asset | None = None, **kw: object
    ) -> Account:
        """An account with the routing flags ilp-connector gives each relation by default: peers
        and parents exchange routes, children neither."""
        rel = Relation(relation)
        exchanges = rel is not Relation.CHILD
        kw.setdefault("send_routes", exchanges)
        kw.setdefault("receive_routes", exchanges)
        return cls(account_id, rel, asset or Asset(), **kw)  # type: ignore[arg-type]


def canonical_peer_id(peer_id: str) -> str:
    """One spelling per secret variable (``BTP_PEER_{ID}_SECRET`` upper-cases the id and turns
    every other character into ``_``): lower case, with ``-`` for ``_`` and ``~``."""
    return peer_id.lower().replace("_", "-").replace("~", "-")


class Accounts:
    """The configured accounts, and the static routes they imply."""

    def __init__(
        self,
        ilp_address: str,
        accounts: Iterable[Account],
        routes: Iterable[tuple[str, str]] = (),
        *,
        open_children: bool = False,
        asset: Asset | None = None,
    ) -> None:
        #: "" until known: a node with no address configured asks its parent over IL-DCP.
        self.ilp_address = ilp_address
        self.open_children = open_children
        self.asset = asset or Asset()
        self._accounts: dict[str, Account] = {}
        for account in accounts:
            if account.id in self._accounts:
                raise ValueError(f"duplicate account {account.id!r}")
            self._accounts[account.id] = account
        self._static_routes = tuple(routes)
        for _, peer in self._static_routes:
            if peer not in self._accounts:
                raise ValueError(f"route to unknown account {peer!r}")
        self._open: dict[str, Account] = {}

    def replace(self, other: Accounts) -> None:
        """Take ``other``'s accounts and routes (a reload), in place: everything holding this
        object sees the new accounts from the next lookup on. The address, the node's asset and
        open mode stay (they need a restart)."""
        self._accounts = dict(other._accounts)
        self._static_routes = other._static_routes

    def set_ilp_address(self, address: str) -> None:
        """The address became known (IL-DCP): children are ``<address>.<id>`` from now on."""
        self.ilp_address = address

    @property
    def configured(self) -> Mapping[str, Account]:
        return self._accounts

    @property
    def static_routes(self) -> tuple[tuple[str, str], ...]:
        """The configured routes: (prefix, peer id)."""
        return self._static_routes

    def get(self, account_id: str) -> Account | None:
        """The account of ``account_id``; in open mode any id is a child."""
        account = self._accounts.get(account_id)
        if account is None and self.open_children:
            account = self._open.get(account_id)
            if account is None:
                account = Account.of(account_id, Relation.CHILD, self.asset)
                if len(self._open) < 100_000:  # ids come from authenticated peers only
                    self._open[account_id] = account
        return account

    def is_known(self, account_id: str) -> bool:
        """A configured peer; in open mode, any id in its one canonical spelling (see
        ``canonical_peer_id``), so that ``Alice`` or ``alice_1`` never becomes a second peer
        with ``alice``'s or ``alice-1``'s secret (the secret's variable name cannot tell them
        apart)."""
        if account_id in self._accounts:
            return True
        return self.open_children and account_id == canonical_peer_id(account_id)

    def child_address(self, account_id: str) -> str:
        return f"{self.ilp_address}.{account_id}"

    def routing_table(self, connected_open_children: Iterable[str] = ()) -> RoutingTable:
        """Children, then the default parent, then configured routes (last wins on a prefix)."""
        table = RoutingTable()
        children = [a.id for a in self._accounts.values() if a.relation is Relation.CHILD]
        children += [c for c in connected_open_children if c not in self._accounts]
        for child in children if self.ilp_address else ():  # no address: no child routes yet
            table.add(self.child_address(child), child)
        parents = [a.id for a in self._accounts.values() if a.relation is Relation.PARENT]
        if parents:
            table.add("", parents[0])
        for prefix, peer in self._static_routes:
            table.add(prefix, peer)
        return table
