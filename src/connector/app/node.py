"""One connector node: the BTP server, its outgoing peers, the routes, and its status.

``ConnectorNode`` starts and stops the server and the outgoing peers in the right order (on
shutdown nothing redials while the server drains), keeps the routing table in step with who is
connected (open mode), and describes itself as a frozen ``NodeStatus`` for health and metrics.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from connector.app.btp_client import OutgoingPeer
from connector.app.btp_server import BtpServer
from connector.app.health import Health
from connector.app.ildcp_client import AddressFromParent
from connector.app.metrics import Metrics
from connector.app.routing import RouteBroadcaster
from connector.app.status import NodeStatus, PeerStatus
from connector.domain.accounts import Accounts
from connector.domain.forwarding import AddressPending
from connector.domain.ports import LogSink
from connector.domain.routing import Routes


class ConnectorNode:
    def __init__(
        self,
        server: BtpServer,
        outgoing: list[OutgoingPeer],
        accounts: Accounts,
        routes: Routes,
        metrics: Metrics,
        log: LogSink,
        node_id: str = "connector",
        routing: RouteBroadcaster | None = None,
        required_peers: Sequence[str] = (),
        open_peers: Iterable[str] = (),
        ildcp: AddressFromParent | None = None,
    ) -> None:
        self.server = server
        self.outgoing = outgoing
        self.accounts = accounts
        self.routes = routes
        self.log = log
        self.node_id = node_id
        #: Open mode: the unconfigured peers that may connect (those with a secret), known
        #: before they connect and after they leave, so their gauges read 0 rather than vanish.
        self._open_peers = frozenset(open_peers)
        self._started = False
        self._stopping = False
        #: Readiness waits for these peers to be connected (``health.require_peers``).
        self.required_peers = tuple(required_peers)
        self._links = server.links
        self.routing = routing
        if routing is None:  # routes from the file only (and connected open children)
            routes.replace(accounts.routing_table())
            if accounts.open_children:
                self._links.on_change(self._peer_changed)
        self.metrics = metrics
        metrics.watch(self._peer_state)
        #: With no address configured: the parent we ask; until it answers, every Prepare
        #: gets T00 (``AddressPending``) and readiness waits.
        self.ildcp = ildcp
        if ildcp is not None:
            server.ctx.pipeline.hold(AddressPending())
            ildcp.on_known = self.set_ilp_address

    @property
    def running(self) -> bool:
        """Started and not stopping: what a reload needs."""
        return self._started and not self._stopping

    @property
    def state(self) -> str:
        """``starting`` until listening with every outgoing peer tried, ``waiting`` while a
        required peer is not connected, then ``ready``; ``stopping`` from the first moment of
        shutdown."""
        if self._stopping:
            return "stopping"
        if not self._started or not all(p.tried.is_set() for p in self.outgoing):
            return "starting"
        return "waiting" if self.waiting_for() else "ready"

    def waiting_for(self) -> tuple[str, ...]:
        is_connected = self._links.is_connected
        reasons = tuple(f"peer {p}" for p in self.required_peers if not is_connected(p))
        if self.ildcp is not None and self.ildcp.address is None:
            reasons += (f"ilp address from parent {self.ildcp.parent}",)
        return reasons

    def set_ilp_address(self, address: str) -> None:
        """The address became known (IL-DCP): everything that captured it at construction takes
        it, the pipeline last, since that ends its hold: no Prepare is forwarded, and no child
        gets an address, before every part of the node has ours."""
        self.accounts.set_ilp_address(address)
        ctx = self.server.ctx
        ctx.ilp_address = address
        self._links.set_ilp_address(address)
        if self.routing is not None:
            self.routing.set_ilp_address(address)
        else:
            self.routes.replace(self.accounts.routing_table(self._links.connected_peers()))
        ctx.pipeline.set_ilp_address(address)

    def known_peers(self) -> list[str]:
        """Configured peers; in open mode also those with a secret and any connected now."""
        configured = self.accounts.configured  # read each time: a reload changes it
        return sorted(self._open_peers.union(configured, self._links.connected_peers()))

    def status(self) -> NodeStatus:
        links = self._links
        peers = []
        for peer_id in self.known_peers():
            account = self.accounts.get(peer_id)
            link = links.link_for(peer_id)
            seen = [x.last_seen for x in links.links_of(peer_id) if x.last_seen is not None]
            peers.append(
                PeerStatus(
                    peer_id,
                    account.relation.value if account else None,
                    link is not None,
                    None if link is None else link.direction,
                    link.opened_at if link else None,
                    max(seen) if seen else None,
                    self.metrics.peer(peer_id).working,
                )
            )
        return NodeStatus(
            self.state,
            self.node_id,
            self.accounts.ilp_address or None,
            tuple(peers),
            self.waiting_for() if self._started and not self._stopping else (),
        )

    def _peer_state(self) -> list[tuple[str, bool, int]]:
        """For the gauges: the work still running counts, even for a peer that disconnected."""
        links, metrics = self._links, self.metrics
        return [(p, links.is_connected(p), metrics.peer(p).working) for p in self.known_peers()]

    def _peer_changed(self, peer_id: str, connected: bool) -> None:
        """Open mode: a child has its route while it is connected."""
        if peer_id in self.accounts.configured:
            return
        self.routes.replace(self.accounts.routing_table(self._links.connected_peers()))

    async def start(self) -> None:
        await self.server.start(http=Health(self.status, self.metrics).http)
        if self.routing is not None:
            self.routing.start()
        self._started = True
        if self.ildcp is not None:
            self.ildcp.start()  # asks as soon as a link to the parent is authenticated
        for peer in self.outgoing:
            peer.start()
        self.log.info(
            "connector_started",
            ilpAddress=self.accounts.ilp_address or None,
            peers=len(self.known_peers()),
            dialing=[p.peer_id for p in self.outgoing],
            routes=len(self.routes.table),
        )

    async def shutdown(self) -> None:
        self._stopping = True  # readiness turns 503 before anything closes
        self._links.draining = True  # and nothing redials from here on
        await self.server.shutdown()
        if self.routing is not None:
            self.routing.stop()
        if self.ildcp is not None:
            self.ildcp.stop()
        for peer in self.outgoing:
            await peer.stop()
