"""What the node is doing, at one moment: the frozen value the readiness endpoint reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PeerStatus:
    id: str
    relation: str | None
    connected: bool
    direction: str | None  # "dialed" or "accepted"
    since: datetime | None
    last_seen: datetime | None
    in_flight: int


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What the node is doing, at one moment: health and metrics read this, nothing else."""

    state: str  # "starting", "waiting", "ready" or "stopping"
    node_id: str
    ilp_address: str | None  # None: not known yet (asked of the parent over IL-DCP)
    peers: tuple[PeerStatus, ...]
    #: What keeps a started node from being ready ("waiting"): required peers that are down,
    #: the address not known yet.
    waiting_for: tuple[str, ...] = ()
