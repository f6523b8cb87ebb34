"""Prometheus metrics, in a registry of their own per node (``prometheus-client``).

Label values are bounded: peer ids come from the configuration (or the secrets in the
environment), reject codes are the 21 of RFC-0027 or ``other``, auth failure reasons a fixed
set. Gauges that describe state (connected peers, packets in flight) are computed when scraped,
so they cost nothing per packet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from connector.domain.ilp.packets import IlpErrorCode

_KNOWN_CODES = frozenset(code.value for code in IlpErrorCode)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The *_created series double the output and no dashboard of ours uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

AUTH_REASONS = {
    "invalid auth_token": "invalid_token",
    "auth_username is required": "missing_username",
    "invalid auth_username": "invalid_username",
    "authentication timed out": "timeout",
}


def reject_code_label(code: str) -> str:
    return code if code in _KNOWN_CODES else "other"


def auth_reason_label(reason: str) -> str:
    return AUTH_REASONS.get(reason, "malformed")


class _StateCollector(Collector):
    """Gauges read from the node's state at scrape time."""

    def __init__(self, state: Callable[[], Iterable[tuple[str, bool, int]]]) -> None:
        self._state = state

    def collect(self) -> Iterable[Metric]:
        connected = GaugeMetricFamily(
            "connector_peer_connected", "1 when the peer has an open connection", labels=["peer"]
        )
        in_flight = GaugeMetricFamily(
            "connector_packets_in_flight",
            "Prepares from the peer not answered yet",
            labels=["peer"],
        )
        total = 0
        for peer, is_connected, flying in self._state():
            connected.add_metric([peer], 1.0 if is_connected else 0.0)
            in_flight.add_metric([peer], float(flying))
            total += is_connected
        yield connected
        yield in_flight
        yield GaugeMetricFamily("connector_peers_connected", "peers with an open connection", total)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.packets = Counter(
            "connector_packets",
            "Prepares received from a peer, by outcome and reject code",
            ["peer", "outcome", "code"],
            registry=r,
        )
        self.amount = Counter(
            "connector_prepare_amount",
            "sum of the amounts of Prepares received",
            ["peer"],
            registry=r,
        )
        self.latency = Histogram(
            "connector_packet_duration_seconds",
            "from a Prepare's arrival to its answer",
            ["peer"],
            buckets=(
                0.0005,
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                5,
                10,
                30,
            ),
            registry=r,
        )
        self.auth_failures = Counter(
            "connector_auth_failures",
            "failed BTP authentications, by reason",
            ["reason"],
            registry=r,
        )
        self.btp_errors = Counter(
            "connector_btp_errors",
            "BTP ERRORs we sent for requests we could not serve",
            ["peer"],
            registry=r,
        )
        self.violations = Counter(
            "connector_protocol_violations",
            "frames we could not read (no reply sent)",
            ["peer"],
            registry=r,
        )
        self.reconnects = Counter(
            "connector_reconnect_attempts", "dials to outgoing peers", ["peer"], registry=r
        )
        # Cached label children: labels() takes a lock and a dict lookup, on every packet.
        self._outcomes: dict[tuple[str, str], Counter] = {}
        self._per_peer: dict[str, tuple[Counter, Histogram]] = {}

    def watch(self, state: Callable[[], Iterable[tuple[str, bool, int]]]) -> None:
        """Export ``(peer, connected, in_flight)`` for every known peer at scrape time."""
        self.registry.register(_StateCollector(state))

    def packet(self, peer: str, amount: int, code: str | None, seconds: float) -> None:
        """One answered Prepare: ``code`` is None for a Fulfill."""
        key = (peer, code or "")
        child = self._outcomes.get(key)
        if child is None:
            outcome = "fulfilled" if code is None else "rejected"
            child = self.packets.labels(
                peer, outcome, "" if code is None else reject_code_label(code)
            )
            if len(self._outcomes) < 10_000:
                self._outcomes[key] = child
        child.inc()
        per_peer = self._per_peer.get(peer)
        if per_peer is None:
            per_peer = (self.amount.labels(peer), self.latency.labels(peer))
            if len(self._per_peer) < 10_000:
                self._per_peer[peer] = per_peer
        per_peer[0].inc(amount)
        per_peer[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
