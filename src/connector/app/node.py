"""One connector node: the BTP server, its outgoing peers, and what peers are known.

``PeerDirectory`` answers "who is this peer to us" (relation, limits) and builds the routing
table from the configuration. ``ConnectorNode`` starts and stops the server and the outgoing peers
in the right order: on shutdown nothing redials while the server drains.
"""

from __future__ import annotations

from typing import Any

from connector.app.btp_client import OutgoingPeer
from connector.app.btp_server import BtpServer
from connector.app.health import Health
from connector.app.peers import PeerRegistry
from connector.domain.forwarding import PeerPolicy, Relation
from connector.domain.ports import LogSink
from connector.domain.routing import RoutingTable


class PeerDirectory:
    """The configured peers. With no configuration file (``open_children``), any peer with a
    secret in the environment is accepted as a child, and gets its route when it connects."""

    def __init__(
        self,
        ilp_address: str,
        peers: list[dict[str, Any]],
        routes: list[dict[str, str]],
        *,
        open_children: bool,
    ) -> None:
        self.ilp_address = ilp_address
        self.open_children = open_children
        self.policies = {
            p["id"]: PeerPolicy(Relation(p["relation"]), p.get("max_packet_amount")) for p in peers
        }
        self.routes = RoutingTable()
        for peer in peers:
            if peer["relation"] == "child":
                self.routes.add(f"{ilp_address}.{peer['id']}", peer["id"])
        parents = [p["id"] for p in peers if p["relation"] == "parent"]
        if parents:
            self.routes.add("", parents[0])
        for route in routes:
            self.routes.add(route["prefix"], route["peer"])

    def policy(self, peer_id: str) -> PeerPolicy | None:
        policy = self.policies.get(peer_id)
        if policy is None and self.open_children:
            return PeerPolicy(Relation.CHILD)
        return policy

    def is_known(self, peer_id: str) -> bool:
        return self.open_children or peer_id in self.policies

    def watch(self, registry: PeerRegistry) -> None:
        """In open mode, route ``<ilp_address>.<id>`` to each child while it is connected."""
        if not self.open_children:
            return

        def changed(peer_id: str, connected: bool) -> None:
            if peer_id in self.policies:
                return
            prefix = f"{self.ilp_address}.{peer_id}"
            if connected:
                self.routes.add(prefix, peer_id)
            else:
                self.routes.remove(prefix)

        registry.on_change(changed)


class ConnectorNode:
    def __init__(
        self,
        server: BtpServer,
        outgoing: list[OutgoingPeer],
        directory: PeerDirectory,
        log: LogSink,
        node_id: str = "connector",
    ) -> None:
        self.server = server
        self.outgoing = outgoing
        self.directory = directory
        self.log = log
        self.node_id = node_id
        self._started = False
        self._stopping = False
        self.health = Health(self)
        directory.watch(server.registry)
        server.ctx.metrics.watch(self._peer_state)

    @property
    def state(self) -> str:
        """``starting`` until listening with every outgoing peer tried, then ``ready``, and
        ``stopping`` from the first moment of shutdown."""
        if self._stopping:
            return "stopping"
        if self._started and all(p.tried.is_set() for p in self.outgoing):
            return "ready"
        return "starting"

    def known_peers(self) -> list[str]:
        """Configured peers and any other peer connected now (open mode), sorted."""
        return sorted(set(self.directory.policies) | set(self.server.registry.connected_peers()))

    def _peer_state(self) -> list[tuple[str, bool, int]]:
        registry = self.server.registry
        return [(p, registry.is_connected(p), registry.in_flight(p)) for p in self.known_peers()]

    async def start(self) -> None:
        await self.server.start(http=self.health.http)
        self._started = True
        for peer in self.outgoing:
            peer.start()
        self.log.info(
            "connector_started",
            ilpAddress=self.server.ctx.ilp_address,
            peers=len(self.directory.policies),
            dialing=[p.peer_id for p in self.outgoing],
            routes=len(self.directory.routes),
        )

    async def shutdown(self) -> None:
        self._stopping = True  # readiness turns 503 before anything closes
        self.server.ctx.draining = True  # and nothing redials from here on
        await self.server.shutdown()
        for peer in self.outgoing:
            await peer.stop()
