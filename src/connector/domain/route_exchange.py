"""Route exchange (CCP): the routes this node knows, and what it tells and hears from its peers.

Pure: events in (a peer's link comes up or goes down, a route message arrives, an answer to one
of ours arrives, time passes), messages out (``outbox``: controls and updates for the app to
send), and the routing table the ``route`` step reads (``Routes``, replaced whole).

**Best route** for a prefix: a configured route (``routes`` in the file) wins, then a local one
(our own address, a child's address), then a learned one by its next hop's relation (child, then
peer, then parent), then the shorter path, then the lower peer id.

**Receiving** (peers with ``receive_routes``): a SYNC control on every link that comes up; a new
routing table id from the peer clears what it told us before; an update that skips epochs is not
applied and asks for a resync (a SYNC control with the epoch we have); the routes of a peer go
when its last link goes; imported only under the global prefix (not the prefix itself) and only
when our address is not on the path.

**Sending** (peers with ``send_routes``, once they asked with SYNC): our changes as a log of
epochs, each peer's last acknowledged epoch, at most 50 epochs and at most the ILP data limit per
update, advanced only on a Fulfill; a route through that peer goes to it as a withdrawal, and a
route learned from a peer or parent is never sent to a parent; our address is prepended to every
path; our children are covered by our own address; a heartbeat every ``broadcast_interval``;
changes go out at once, at most one update per ``min_interval`` and one in flight per peer. The
table id is new at every start, so a restart resyncs cleanly.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from connector.domain.accounts import Accounts, Relation
from connector.domain.ccp import CcpRoute, Mode, RouteControl, RouteUpdate
from connector.domain.ilp.address import is_valid_address
from connector.domain.routing import Routes, RoutingTable

#: ilp-connector's limit of epochs per update.
MAX_EPOCHS_PER_UPDATE = 50
#: The largest ILP Prepare data (RFC-0027): an update must fit in one.
MAX_UPDATE_BYTES = 32767
#: Routes one peer may have told us at once: new ones beyond are dropped (memory stays bounded
#: whatever a peer sends), withdrawals still apply.
MAX_ROUTES_PER_PEER = 10_000
#: The longest path we import (hops), and the longest address (RFC-0015).
MAX_PATH = 32
MAX_ADDRESS = 1023
#: After a transport failure (T01, T03, a link that went), our message goes again this soon.
RETRY_SOON = 2.0
_RELATION_RANK = {Relation.CHILD: 0, Relation.PEER: 1, Relation.PARENT: 2}


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """A route of the local table: ``next_hop`` is a peer id ("" for this node itself);
    ``path`` the addresses beyond it, as it told us; ``source`` why we have it."""

    prefix: str
    next_hop: str
    path: tuple[str, ...]
    auth: bytes
    source: str  # "configured" | "local" | "learned"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message for the app to send to ``peer_id``; its answer goes back with ``token``."""

    peer_id: str
    message: RouteControl | RouteUpdate
    token: int


@dataclass(slots=True)
class _Receiver:
    table_id: bytes = bytes(16)
    epoch: int = 0
    routes: dict[str, CcpRoute] = field(default_factory=dict)
    control_due: float | None = 0.0  # when to (re)send our control; None: sent, answered


@dataclass(slots=True)
class _Sender:
    mode: Mode = Mode.IDLE
    last_known_epoch: int = 0
    in_flight: int | None = None  # token of the update awaiting its answer
    in_flight_to: int = 0
    last_sent: float = float("-inf")
    not_before: float = float("-inf")  # after a refusal: wait a heartbeat


class RouteExchange:
    def __init__(
        self,
        accounts: Accounts,
        routes: Routes,
        table_id: bytes,
        *,
        broadcast_interval: float = 30.0,
        min_interval: float = 0.15,
        hold_down_ms: int = 45_000,
    ) -> None:
        self._accounts = accounts
        self._routes = routes
        self.table_id = table_id
        #: "" until known (IL-DCP): no global prefix then, so nothing is imported or
        #: advertised, and no local route exists but the default parent's.
        self.address = accounts.ilp_address
        self.global_prefix = self.address.split(".", 1)[0]
        self.broadcast_interval = broadcast_interval
        self.min_interval = min_interval
        self.hold_down_ms = hold_down_ms
        self.outbox: list[Outgoing] = []
        #: Called when ``outbox`` gets something (the app schedules a flush).
        self.wake: Callable[[], None] = lambda: None
        self._tokens = 0
        self._pending: dict[int, tuple[str, str, int]] = {}  # token -> (peer, kind, to_epoch)
        self._configured = dict(accounts.static_routes)
        self._local: dict[str, RouteEntry] = {}
        self._receivers: dict[str, _Receiver] = {}
        self._senders: dict[str, _Sender] = {}
        self._best: dict[str, RouteEntry] = {}
        # What we advertise: a sparse log of epochs, oldest first. Each change of a prefix takes
        # the next epoch and removes the prefix's earlier entry, so the log holds each prefix's
        # latest state only: routes, and withdrawals until every peer has them. A peer catching
        # up gets 50 entries per update, not 50 epoch numbers.
        self._epoch = 0
        self._log: dict[int, tuple[str, RouteEntry | None]] = {}
        self._advertised: dict[str, tuple[int, RouteEntry | None]] = {}
        self._withdrawals: deque[int] = deque()
        self._forgotten = 0  # withdrawals below this epoch were dropped (everyone had them)
        self._dirty: set[str] = set()  # prefixes whose best route changed since the last publish
        #: New routes dropped because a peer had told us MAX_ROUTES_PER_PEER already.
        self.dropped_routes = 0
        if self.address:
            self._add_locals()
        for prefix in list(self._local) + list(self._configured):
            self._update_prefix(prefix)
        self._publish(rebuild=True)

    def _add_locals(self) -> None:
        """Our own address (nothing to forward to) and a route per configured child."""
        self._add_local(self.address, "")
        for account in self._accounts.configured.values():
            if account.relation is Relation.CHILD:
                self._add_local(self._accounts.child_address(account.id), account.id)

    def set_address(self, address: str, now: float) -> None:
        """Our address became known (IL-DCP; ``Accounts`` has it already): our own route and
        our children's are created and advertised, and routes under the global prefix count
        from now on."""
        self.address = address
        self.global_prefix = address.split(".", 1)[0]
        self._add_locals()
        for prefix in list(self._local):
            self._update_prefix(prefix)
        self._publish()
        self.tick(now)

    # --- what the rest of the node reads --------------------------------------------------

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def log_size(self) -> int:
        return len(self._log)

    def best_routes(self) -> list[RouteEntry]:
        """The local table, sorted by prefix (the default route, "", first when there is one)."""
        entries = list(self._best.values())
        default = self._default()
        if default is not None and "" not in self._best:
            entries.append(default)
        return sorted(entries, key=lambda e: e.prefix)

    def candidates(self, prefix: str) -> list[RouteEntry]:
        """Every route this node has for exactly ``prefix``, best first."""
        found: list[RouteEntry] = []
        peer = self._configured.get(prefix)
        if peer is not None and self._accounts.get(peer) is not None:
            found.append(RouteEntry(prefix, peer, (), self._auth(prefix), "configured"))
        local = self._local.get(prefix)
        if local is not None:
            found.append(local)
        learned = [
            RouteEntry(prefix, peer_id, route.path, route.auth, "learned")
            for peer_id, receiver in self._receivers.items()
            if (route := receiver.routes.get(prefix)) is not None
        ]
        learned.sort(key=self._rank)
        return found + learned

    def _rank(self, entry: RouteEntry) -> tuple[int, int, str]:
        account = self._accounts.get(entry.next_hop)
        rank = _RELATION_RANK.get(account.relation, 3) if account else 3
        return (rank, len(entry.path), entry.next_hop)

    def _relation(self, peer_id: str) -> str:
        account = self._accounts.get(peer_id)
        return account.relation.value if account else "unknown"

    def explain(self, destination: str) -> dict[str, object]:
        """Which route ``destination`` takes and why: the longest prefix with a route, every
        route this node has for that prefix, best first, and what made the first win."""
        prefix: str | None = destination
        while prefix is not None and prefix not in self._best:
            cut = prefix.rfind(".")
            prefix = prefix[:cut] if cut > 0 else ("" if prefix else None)
        default = self._default()
        if prefix is None or (prefix == "" and "" not in self._best):
            if default is None:
                return {"destination": destination, "prefix": None, "nextHop": None,
                        "reason": "no route matches: F02", "candidates": []}  # fmt: skip
            found = [default]
            prefix = ""
        else:
            found = self.candidates(prefix)
        best = found[0]
        return {
            "destination": destination,
            "prefix": prefix,
            "nextHop": best.next_hop or None,
            "path": list(best.path),
            "source": best.source,
            "reason": self._why(best, found[1:], prefix),
            "candidates": [
                {
                    "nextHop": e.next_hop or None,
                    "path": list(e.path),
                    "source": e.source,
                    "relation": self._relation(e.next_hop) if e.next_hop else "local",
                }
                for e in found
            ],
        }

    def _why(self, best: RouteEntry, others: list[RouteEntry], prefix: str) -> str:
        where = f"longest matching prefix {prefix!r}" if prefix else "the default route (a parent)"
        if not best.next_hop:
            return f"{where}: this node's own address, nothing to forward to (F02)"
        if best.source == "configured":
            return f"{where}: a configured route, which wins over any other"
        if best.source == "local":
            return f"{where}: a local route (a child of this node)"
        if best.source == "parent":
            return f"{where}: no more specific route"
        if not others:
            return f"{where}: learned from {best.next_hop}, the only route"
        other = others[0]
        a, b = self._rank(best), self._rank(other)
        if a[0] != b[0]:
            return (
                f"{where}: learned from {best.next_hop} ({self._relation(best.next_hop)}), "
                f"preferred to {self._relation(other.next_hop)} {other.next_hop}"
            )
        if a[1] != b[1]:
            return (
                f"{where}: learned from {best.next_hop}, the shorter path "
                f"({a[1]} hops against {b[1]} via {other.next_hop})"
            )
        return f"{where}: learned from {best.next_hop}, the lower peer id of equal routes"

    def peers_status(self) -> dict[str, dict[str, object]]:
        status: dict[str, dict[str, object]] = {}
        for peer_id, receiver in self._receivers.items():
            status.setdefault(peer_id, {})["receive"] = {
                "tableId": receiver.table_id.hex(),
                "epoch": receiver.epoch,
                "routes": len(receiver.routes),
            }
        for peer_id, sender in self._senders.items():
            status.setdefault(peer_id, {})["send"] = {
                "mode": sender.mode.name,
                "epoch": sender.last_known_epoch,
            }
        return status

    # --- links ----------------------------------------------------------------------------

    def peer_up(self, peer_id: str, now: float) -> None:
        """A link of ``peer_id`` is authenticated (every link: a reconnect resyncs)."""
        account = self._accounts.get(peer_id)
        if account is None:
            return
        if account.receive_routes:
            receiver = self._receivers.get(peer_id)
            if receiver is None:
                receiver = self._receivers[peer_id] = _Receiver()
            receiver.control_due = now
        if account.send_routes and peer_id not in self._senders:
            self._senders[peer_id] = _Sender()
        child = self._accounts.child_address(peer_id)
        if (
            self.address
            and account.relation is Relation.CHILD
            and peer_id not in self._accounts.configured
            and self._add_local(child, peer_id)
        ):
            self._update_prefix(child)
            self._publish()
        self.tick(now)

    def peer_down(self, peer_id: str, now: float) -> None:
        """The last link of ``peer_id`` is gone: its routes go (withdrawn to the others at
        once), and what it was told resets."""
        sender = self._senders.pop(peer_id, None)
        if sender is not None and sender.in_flight is not None:
            self._pending.pop(sender.in_flight, None)
        receiver = self._receivers.pop(peer_id, None)
        changed = False
        if receiver is not None:
            for prefix in receiver.routes:
                changed = self._update_prefix(prefix) or changed
        child = self._accounts.child_address(peer_id)
        if peer_id not in self._accounts.configured and self._local.pop(child, None) is not None:
            changed = self._update_prefix(child) or changed
        if changed:
            self._publish()
        self._forget_withdrawals()
        self.tick(now)

    def reconfigure(self, now: float) -> None:
        """The accounts changed (a reload): the configured routes, our children's routes and
        who exchanges routes with us are recomputed. Peers still exchanging keep their learned
        routes and epochs; a peer gone, or no longer exchanging, is forgotten as if its last
        link dropped. A peer that starts exchanging does so from its next link (a reload
        reconnects a peer whose relation or routing changed)."""
        accounts = self._accounts
        prefixes = set(self._best) | set(self._local) | set(self._configured) | {""}
        self._configured = dict(accounts.static_routes)
        for peer_id in list(self._receivers):
            account = accounts.get(peer_id)
            if account is None or not account.receive_routes:
                prefixes |= set(self._receivers.pop(peer_id).routes)
        for peer_id in list(self._senders):
            account = accounts.get(peer_id)
            if account is None or not account.send_routes:
                sender = self._senders.pop(peer_id)
                if sender.in_flight is not None:
                    self._pending.pop(sender.in_flight, None)
        self._local = {
            prefix: entry
            for prefix, entry in self._local.items()
            if not entry.next_hop
            or (entry.next_hop not in accounts.configured and accounts.open_children)
        }
        if self.address:
            self._add_locals()
        for prefix in prefixes | set(self._local) | set(self._configured):
            self._update_prefix(prefix)
        self._publish(rebuild=True)
        self._forget_withdrawals()
        self.tick(now)

    # --- messages from peers --------------------------------------------------------------

    def handle_control(self, peer_id: str, control: RouteControl, now: float) -> str | None:
        """A peer's ``peer.route.control``: None when accepted, else why not (a Reject)."""
        sender = self._senders.get(peer_id)
        if sender is None:
            return "not configured to send routes to you"
        sender.mode = control.mode
        if (
            control.table_id != self.table_id
            or control.last_known_epoch > self._epoch
            or control.last_known_epoch < self._forgotten
        ):
            sender.last_known_epoch = 0
        else:
            sender.last_known_epoch = control.last_known_epoch
        sender.not_before = float("-inf")
        if sender.in_flight is not None:  # what it answers no longer matters
            self._pending.pop(sender.in_flight, None)
            sender.in_flight = None
        self.tick(now)
        return None

    def handle_update(self, peer_id: str, update: RouteUpdate, now: float) -> str | None:
        """A peer's ``peer.route.update``: None when applied (or harmlessly old), else why not."""
        receiver = self._receivers.get(peer_id)
        if receiver is None:
            return "not configured to receive routes from you"
        changed = False
        if update.table_id != receiver.table_id:
            # A new table (the peer restarted): what it said before is void.
            for prefix in list(receiver.routes):
                del receiver.routes[prefix]
                changed = self._update_prefix(prefix) or changed
            receiver.table_id = update.table_id
            receiver.epoch = 0
        if update.from_epoch > receiver.epoch:
            if changed:
                self._publish()
            receiver.control_due = now  # a gap: ask for everything since our epoch
            self.tick(now)
            return f"epochs {receiver.epoch} to {update.from_epoch} missing; resync requested"
        if update.to_epoch < receiver.epoch:
            return None  # old news
        if not update.from_epoch <= update.to_epoch <= update.current_epoch:
            if changed:
                self._publish()
            return "invalid epochs"
        for prefix in update.withdrawn:
            if receiver.routes.pop(prefix, None) is not None:
                changed = self._update_prefix(prefix) or changed
        for route in update.new_routes:
            known = route.prefix in receiver.routes
            if not self._importable(route):
                if not known:
                    continue
                del receiver.routes[route.prefix]  # its route changed to one we refuse
            elif known or len(receiver.routes) < MAX_ROUTES_PER_PEER:
                receiver.routes[route.prefix] = route
            else:
                self.dropped_routes += 1
                continue
            changed = self._update_prefix(route.prefix) or changed
        receiver.epoch = update.to_epoch
        if changed:
            self._publish()
            self.tick(now)
        return None

    def _importable(self, route: CcpRoute) -> bool:
        """Under the global prefix (not the prefix itself), a valid address, not ours nor under
        ours (our children are ours to route), and a path without our address (no loops)."""
        prefix = route.prefix
        address = self.address
        return (
            prefix.startswith(self.global_prefix + ".")
            and len(prefix) <= MAX_ADDRESS
            and is_valid_address(prefix)
            and prefix != address
            and not prefix.startswith(address + ".")
            and len(route.path) <= MAX_PATH
            and address not in route.path
            and all(len(hop) <= MAX_ADDRESS and is_valid_address(hop) for hop in route.path)
        )

    # --- answers to our messages ----------------------------------------------------------

    def answered(self, token: int, fulfilled: bool, now: float, transient: bool = False) -> None:
        """The answer to one of our messages: fulfilled, or not (``transient``: the link could
        not carry it, T-class, so it goes again soon rather than after a heartbeat)."""
        pending = self._pending.pop(token, None)
        if pending is None:
            return
        peer_id, kind, to_epoch = pending
        if kind == "control":
            receiver = self._receivers.get(peer_id)
            if receiver is not None and not fulfilled:
                # Refused (the peer may not know us yet): again after a while.
                wait = RETRY_SOON if transient else min(self.broadcast_interval, 5.0)
                receiver.control_due = now + wait
            return
        sender = self._senders.get(peer_id)
        if sender is None or sender.in_flight != token:
            return
        sender.in_flight = None
        if fulfilled:
            sender.last_known_epoch = max(sender.last_known_epoch, to_epoch)
            self._forget_withdrawals()
        else:
            sender.not_before = now + (RETRY_SOON if transient else self.broadcast_interval)
        self.tick(now)

    # --- time -----------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Queue what is due: controls to (re)send, updates for peers behind, heartbeats."""
        for peer_id, receiver in self._receivers.items():
            if receiver.control_due is not None and receiver.control_due <= now:
                receiver.control_due = None
                control = RouteControl(Mode.SYNC, receiver.table_id, receiver.epoch)
                self._send(peer_id, control, "control", 0)
        for peer_id, sender in self._senders.items():
            due = self._sender_due(sender)
            if due is not None and due <= now:
                update = self._update_for(peer_id, sender)
                sender.last_sent = now
                sender.in_flight = self._send(peer_id, update, "update", update.to_epoch)
        # Always: something may have become due sooner than the app's timer thinks.
        self.wake()

    def _sender_due(self, sender: _Sender) -> float | None:
        """When this sender's next update is due (None: not while IDLE or one is in flight).
        One expression for ``tick`` and ``next_due``, so the two never disagree."""
        if sender.mode is not Mode.SYNC or sender.in_flight is not None:
            return None
        behind = sender.last_known_epoch < self._epoch
        wait = self.min_interval if behind else self.broadcast_interval
        return max(sender.last_sent + wait, sender.not_before)

    def next_due(self, now: float) -> float:
        """When ``tick`` next has something to do (at most a broadcast interval away)."""
        due = now + self.broadcast_interval
        for receiver in self._receivers.values():
            if receiver.control_due is not None:
                due = min(due, receiver.control_due)
        for sender in self._senders.values():
            sender_due = self._sender_due(sender)
            if sender_due is not None:
                due = min(due, sender_due)
        return max(due, now)

    def _send(self, peer_id: str, message: RouteControl | RouteUpdate, kind: str, to: int) -> int:
        self._tokens += 1
        self._pending[self._tokens] = (peer_id, kind, to)
        self.outbox.append(Outgoing(peer_id, message, self._tokens))
        return self._tokens

    def _update_for(self, peer_id: str, sender: _Sender) -> RouteUpdate:
        """The next update for a peer: up to 50 log entries from its epoch, fewer if they would
        not fit in one packet's data (a single entry that cannot fit goes as a withdrawal)."""
        start = sender.last_known_epoch
        entries: list[tuple[int, tuple[str, RouteEntry | None]]] = []
        end = self._epoch
        for epoch, item in self._log.items():
            if epoch < start:
                continue
            if len(entries) == MAX_EPOCHS_PER_UPDATE:
                end = epoch
                break
            entries.append((epoch, item))
        while True:
            update = self._build(peer_id, start, end, entries)
            if len(update.encode()) <= MAX_UPDATE_BYTES:
                return update
            if len(entries) == 1:
                prefix = entries[0][1][0]
                return self._build(peer_id, start, end, [(entries[0][0], (prefix, None))])
            half = len(entries) // 2
            end = entries[half][0]
            entries = entries[:half]

    def _build(
        self,
        peer_id: str,
        start: int,
        end: int,
        entries: list[tuple[int, tuple[str, RouteEntry | None]]],
    ) -> RouteUpdate:
        account = self._accounts.get(peer_id)
        to_parent = account is not None and account.relation is Relation.PARENT
        new: list[CcpRoute] = []
        withdrawn: list[str] = []
        for _, (prefix, entry) in entries:
            if (
                entry is None
                or entry.next_hop == peer_id
                or (to_parent and self._from_peers(entry))
            ):
                withdrawn.append(prefix)
            else:
                new.append(CcpRoute(prefix, entry.path, entry.auth))
        return RouteUpdate(
            self.table_id,
            self._epoch,
            start,
            end,
            self.hold_down_ms,
            self.address,
            tuple(new),
            tuple(withdrawn),
        )

    def _from_peers(self, entry: RouteEntry) -> bool:
        account = self._accounts.get(entry.next_hop)
        return account is not None and account.relation in (Relation.PEER, Relation.PARENT)

    # --- the table ------------------------------------------------------------------------

    def _add_local(self, prefix: str, next_hop: str) -> bool:
        if prefix in self._local:
            return False
        self._local[prefix] = RouteEntry(prefix, next_hop, (), self._auth(prefix), "local")
        return True

    def _auth(self, prefix: str) -> bytes:
        return hashlib.sha256(self.table_id + prefix.encode()).digest()

    def _update_prefix(self, prefix: str) -> bool:
        """Recompute the best route of ``prefix``; True when it changed."""
        found = self.candidates(prefix)
        best = found[0] if found else None
        current = self._best.get(prefix)
        if best == current:
            return False
        if best is None:
            del self._best[prefix]
        else:
            self._best[prefix] = best
        self._dirty.add(prefix)
        self._advertise(prefix, best)
        return True

    def _advertise(self, prefix: str, best: RouteEntry | None) -> None:
        entry = None
        if best is not None and self._advertisable(prefix, best):
            entry = RouteEntry(
                prefix,
                best.next_hop,
                (self.address, *best.path),
                hashlib.sha256(best.auth).digest(),
                best.source,
            )
        previous = self._advertised.get(prefix)
        if previous is None and entry is None:
            return
        if previous is not None:
            old = previous[1]
            if old is None and entry is None:
                return
            if (
                old is not None
                and entry is not None
                and (old.next_hop, old.path) == (entry.next_hop, entry.path)
            ):
                return
            self._log.pop(previous[0], None)
        epoch = self._epoch
        self._epoch += 1
        self._advertised[prefix] = (epoch, entry)
        self._log[epoch] = (prefix, entry)
        if entry is None:
            self._withdrawals.append(epoch)

    def _forget_withdrawals(self) -> None:
        """Drop the withdrawals every peer in SYNC has acknowledged: a peer that asks later
        starts from nothing and never had those routes."""
        floor = min(
            (s.last_known_epoch for s in self._senders.values() if s.mode is Mode.SYNC),
            default=self._epoch,
        )
        withdrawals = self._withdrawals
        while withdrawals and withdrawals[0] < floor:
            epoch = withdrawals.popleft()
            item = self._log.get(epoch)
            if item is not None and item[1] is None:
                del self._log[epoch]
                if self._advertised.get(item[0], (None,))[0] == epoch:
                    del self._advertised[item[0]]
            self._forgotten = max(self._forgotten, epoch + 1)

    def _advertisable(self, prefix: str, best: RouteEntry) -> bool:
        if not prefix.startswith(self.global_prefix + "."):
            return False
        # Our children are reached through our own address, which we advertise.
        return not (prefix.startswith(self.address + ".") and best.source == "local")

    def _default(self) -> RouteEntry | None:
        if "" in self._configured:
            return None  # a configured default is in _best already
        parents = [
            a.id for a in self._accounts.configured.values() if a.relation is Relation.PARENT
        ]
        if not parents:
            return None
        return RouteEntry("", parents[0], (), b"", "parent")

    def _publish(self, rebuild: bool = False) -> None:
        """Replace the table in use with one that has the changed prefixes (a copy: the old
        table never changes under a packet). This node's own address routes to "" (F02)."""
        if rebuild:
            table = RoutingTable()
            for entry in self.best_routes():
                table.add(entry.prefix, entry.next_hop)
        else:
            if not self._dirty:
                return
            table = self._routes.table.copy()
            for prefix in self._dirty:
                best = self._best.get(prefix)
                if best is not None:
                    table.add(prefix, best.next_hop)
                elif prefix == "" and (default := self._default()) is not None:
                    table.add("", default.next_hop)
                else:
                    table.remove(prefix)
        self._dirty.clear()
        self._routes.replace(table)
