"""Health, readiness and metrics, answered over plain HTTP on the BTP port.

- ``GET /health/live``: 200 while the event loop runs.
- ``GET /health/ready``: 200 ``{"status": "ready", ...}`` once the BTP server listens and every
  outgoing peer has been tried; 503 ``starting`` before that, and ``stopping`` from the moment
  shutdown begins, before any connection closes.
- ``GET /metrics``: Prometheus text format.

The peer list shows ids, relations, directions and times, never a secret, a token, or the port
of a client.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from connector.app.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from connector.domain.btp.session import Role

if TYPE_CHECKING:
    from connector.app.node import ConnectorNode

JSON = "application/json"
HttpResponse = tuple[int, str, bytes]


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


class Health:
    def __init__(self, node: ConnectorNode) -> None:
        self._node = node

    def peers(self) -> list[dict[str, Any]]:
        node = self._node
        registry = node.server.registry
        out = []
        for peer_id in node.known_peers():
            policy = node.directory.policy(peer_id)
            link = registry.link_for(peer_id)
            links = registry.links_of(peer_id)
            out.append(
                {
                    "id": peer_id,
                    "relation": policy.relation.value if policy else None,
                    "connected": link is not None,
                    "direction": None
                    if link is None
                    else ("dialed" if link.role is Role.CLIENT else "accepted"),
                    "since": _iso(link.opened_at) if link else None,
                    "lastSeen": _iso(max((x.last_seen or 0.0 for x in links), default=0.0) or None),
                    "inFlight": registry.in_flight(peer_id),
                }
            )
        return out

    def ready(self) -> tuple[int, dict[str, Any]]:
        node = self._node
        status = node.state
        body = {
            "status": status,
            "nodeId": node.node_id,
            "ilpAddress": node.server.ctx.ilp_address,
            "peers": self.peers(),
        }
        return (200 if status == "ready" else 503), body

    def http(self, path: str) -> HttpResponse | None:
        """The response for a plain GET of ``path``, or None when it is not ours."""
        if path == "/health/live":
            return 200, JSON, b'{"status": "live"}\n'
        if path == "/health/ready":
            status, body = self.ready()
            return status, JSON, json.dumps(body).encode() + b"\n"
        if path == "/metrics":
            return 200, METRICS_CONTENT_TYPE, self._node.server.ctx.metrics.render()
        return None
