"""Metrics and the link observer: plain counters on the per-packet path, Prometheus at scrape time.

Each peer has a ``PeerStats`` of plain integers that its links bump as they answer Prepares (a
dict increment and a bisect: no lock, no label lookup, no Prometheus call per packet). A collector
turns them into Prometheus families when ``/metrics`` is scraped, together with the gauges of
the node's state. Rare events (auth failures, BTP errors, dials) are ordinary Prometheus counters.

Label values are bounded: peer ids come from the configuration (or the secrets in the
environment), reject codes are the 21 of RFC-0027 or ``other``, auth failure reasons a fixed set.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from connector.domain.admission import AuthFailure, failure_of
from connector.domain.ilp.packets import IlpErrorCode
from connector.domain.ledger import Ledger

_KNOWN_CODES = frozenset(code.value for code in IlpErrorCode)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds from a Prepare's arrival to its answer.
LATENCY_BOUNDS = (
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
)
_MAX_PEERS = 10_000

# The *_created series double the output and no dashboard of ours uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]


def reject_code_label(code: str) -> str:
    return code if code in _KNOWN_CODES else "other"


def auth_reason_label(reason: str) -> str:
    return failure_of(reason).value


class PeerStats:
    """One peer's packet counters, over all its links and connections."""

    __slots__ = ("amount", "buckets", "codes", "latency_sum", "working")

    def __init__(self) -> None:
        self.codes: dict[str | None, int] = {}  # None: fulfilled
        self.amount = 0
        #: The peer's Prepares in the pipeline, not finished yet: counted until the pipeline's
        #: answer, even when the peer's connection went away meanwhile.
        self.working = 0
        self.buckets = [0] * (len(LATENCY_BOUNDS) + 1)
        self.latency_sum = 0.0

    def answered(self, code: str | None, seconds: float) -> None:
        """One Prepare answered: ``code`` is None for a Fulfill."""
        codes = self.codes
        if code is not None:
            code = reject_code_label(code)
        codes[code] = codes.get(code, 0) + 1
        self.buckets[bisect_left(LATENCY_BOUNDS, seconds)] += 1
        self.latency_sum += seconds


#: ``(peer, connected, in_flight)`` for every known peer, read at scrape time.
PeerState = Callable[[], Iterable[tuple[str, bool, int]]]


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        stats = sorted(self._metrics.peers.items())
        packets = CounterMetricFamily(
            "connector_packets",
            "Prepares received from a peer, by outcome and reject code",
            labels=["peer", "outcome", "code"],
        )
        amount = CounterMetricFamily(
            "connector_prepare_amount", "sum of the amounts of Prepares received", labels=["peer"]
        )
        latency = HistogramMetricFamily(
            "connector_packet_duration_seconds",
            "from a Prepare's arrival to its answer",
            labels=["peer"],
        )
        for peer, s in stats:
            for code, count in sorted(s.codes.items(), key=lambda item: item[0] or ""):
                outcome = "fulfilled" if code is None else "rejected"
                packets.add_metric([peer, outcome, code or ""], count)
            amount.add_metric([peer], s.amount)
            cumulative, buckets = 0, []
            for bound, count in zip((*LATENCY_BOUNDS, float("inf")), s.buckets, strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
            latency.add_metric([peer], buckets, s.latency_sum)
        yield packets
        yield amount
        yield latency
        ledger = self._metrics.ledger
        if ledger is not None:
            balance = GaugeMetricFamily(
                "connector_balance",
                "what the peer owes us, in its asset's units (negative: what we owe it)",
                labels=["peer"],
            )
            refused = CounterMetricFamily(
                "connector_balance_refusals",
                "Prepares refused T04 for a balance limit: incoming (the sender's maximum) or "
                "outgoing (the next hop's minimum)",
                labels=["peer", "direction"],
            )
            for peer, position in ledger.positions():
                balance.add_metric([peer], position.balance)
                refused.add_metric([peer, "incoming"], position.refused_incoming)
                refused.add_metric([peer, "outgoing"], position.refused_outgoing)
            yield balance
            yield refused
        state = self._metrics.state
        if state is None:
            return
        connected = GaugeMetricFamily(
            "connector_peer_connected", "1 when the peer has an open connection", labels=["peer"]
        )
        in_flight = GaugeMetricFamily(
            "connector_packets_in_flight",
            "Prepares from the peer still being worked on (its connection may be gone)",
            labels=["peer"],
        )
        total = 0
        for peer, is_connected, flying in state():
            connected.add_metric([peer], 1.0 if is_connected else 0.0)
            in_flight.add_metric([peer], float(flying))
            total += is_connected
        yield connected
        yield in_flight
        yield GaugeMetricFamily("connector_peers_connected", "peers with an open connection", total)
        yield GaugeMetricFamily(
            "connector_tasks", "asyncio tasks alive (a leak shows as growth)", _task_count()
        )


class Metrics:
    """The node's observer: what links report, exported for Prometheus."""

    def __init__(self, ledger: Ledger | None = None) -> None:
        self.ledger = ledger
        self.registry = CollectorRegistry()
        r = self.registry
        self.peers: dict[str, PeerStats] = {}
        self.state: PeerState | None = None
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
        r.register(_Collector(self))
        self._overflow = PeerStats()

    def watch(self, state: PeerState) -> None:
        """Export ``(peer, connected, in_flight)`` for every known peer at scrape time."""
        self.state = state

    def peer(self, peer_id: str) -> PeerStats:
        """The counters a link of ``peer_id`` bumps (created on first use, bounded)."""
        stats = self.peers.get(peer_id)
        if stats is None:
            if len(self.peers) >= _MAX_PEERS:
                return self._overflow
            stats = self.peers[peer_id] = PeerStats()
        return stats

    def packet(self, peer: str, amount: int, code: str | None, seconds: float) -> None:
        """One answered Prepare: ``code`` is None for a Fulfill."""
        stats = self.peer(peer)
        stats.amount += amount
        stats.answered(code, seconds)

    def auth_failed(self, failure: AuthFailure) -> None:
        self.auth_failures.labels(failure.value).inc()

    def frame_rejected(self, peer_id: str | None, answered: bool) -> None:
        counter = self.btp_errors if answered else self.violations
        counter.labels(peer_id or "unauthenticated").inc()

    def dialing(self, peer_id: str) -> None:
        self.reconnects.labels(peer_id).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _task_count() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # no running loop (a scrape from a test without one)
        return 0
