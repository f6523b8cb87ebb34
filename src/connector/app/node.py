"""One connector node: the BTP server, its outgoing peers, and what peers are known.

``PeerDirectory`` answers "who is this peer to us" (relation, limits) and builds the routing
table from the configuration. ``ConnectorNode`` starts and stops the server and the outgoing peers
in the right order: on shutdown nothing redials while the server drains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.app.btp_client import OutgoingPeer
from connector.app.btp_server import BtpServer
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
    ) -> None:
        self.server = server
        self.outgoing = outgoing
        self.directory = directory
        self.log = log
        directory.watch(server.registry)

    async def start(self) -> None:
        await self.server.start()
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
        self.server.ctx.draining = True  # before anything closes: no redialing from here on
        await self.server.shutdown()
        for peer in self.outgoing:
            await peer.stop()

    def when_all_tried(self) -> Callable[[], bool]:
        return lambda: all(p.tried.is_set() for p in self.outgoing)
