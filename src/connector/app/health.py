"""Health, readiness and metrics, answered over plain HTTP on the BTP port.

- ``GET /health/live``: 200 while the event loop runs.
- ``GET /health/ready``: 200 ``{"status": "ready", ...}`` once the BTP server listens and every
  outgoing peer has been tried; 503 ``starting`` before that, ``waiting`` (with ``waitingFor``)
  while a peer of ``health.require_peers`` is not connected, and ``stopping`` from the moment
  shutdown begins, before any connection closes.
- ``GET /metrics``: Prometheus text format.

It reads a frozen ``NodeStatus`` and nothing else of the node. The peer list shows ids,
relations, directions and times, never a secret, a token, or the port of a client.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from connector.app.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from connector.app.metrics import Metrics
from connector.app.status import NodeStatus

JSON = "application/json"
HttpResponse = tuple[int, str, bytes]


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


class Health:
    def __init__(self, status: Callable[[], NodeStatus], metrics: Metrics) -> None:
        self._status = status
        self._metrics = metrics

    def ready(self) -> tuple[int, dict[str, Any]]:
        status = self._status()
        body: dict[str, Any] = {
            "status": status.state,
            "nodeId": status.node_id,
            "ilpAddress": status.ilp_address,
            "peers": [
                {
                    "id": p.id,
                    "relation": p.relation,
                    "connected": p.connected,
                    "direction": p.direction,
                    "since": _iso(p.since),
                    "lastSeen": _iso(p.last_seen),
                    "inFlight": p.in_flight,
                }
                for p in status.peers
            ],
        }
        if status.waiting_for:
            body["waitingFor"] = list(status.waiting_for)
        return (200 if status.state == "ready" else 503), body

    def http(self, path: str) -> HttpResponse | None:
        """The response for a plain GET of ``path``, or None when it is not ours."""
        if path == "/health/live":
            return 200, JSON, b'{"status": "live"}\n'
        if path == "/health/ready":
            code, body = self.ready()
            return code, JSON, json.dumps(body).encode() + b"\n"
        if path == "/metrics":
            return 200, METRICS_CONTENT_TYPE, self._metrics.render()
        return None
