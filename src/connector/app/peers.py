"""Which peers are connected, over which links: the ``PeerLink`` port the forwarder sends with.

A peer is one peer whoever dialed: it may have an accepted link, a dialed link, or both, and
packets go over the newest link that is open. Accepted links of the same peer replace each other
(the server closes the older one); a dialed link never replaces an accepted one or the reverse,
which would make two connectors that both dial each other flap forever.
"""

from __future__ import annotations

from collections.abc import Callable

from connector.app.btp_link import BtpLink
from connector.domain.errors import PeerUnreachable
from connector.domain.ilp.packets import Prepare, Reply


class PeerRegistry:
    def __init__(self) -> None:
        self._links: dict[str, list[BtpLink]] = {}
        self._listeners: list[Callable[[str, bool], None]] = []

    def on_change(self, listener: Callable[[str, bool], None]) -> None:
        """Call ``listener(peer_id, connected)`` when a peer's first link opens or last closes."""
        self._listeners.append(listener)

    def attach(self, peer_id: str, link: BtpLink) -> list[BtpLink]:
        """Register an authenticated link; returns the older accepted links it replaces."""
        links = self._links.setdefault(peer_id, [])
        replaced = [old for old in links if old.role is link.role and old is not link]
        for old in replaced:
            links.remove(old)
        was_connected = any(old.is_open for old in links)
        links.append(link)
        if not was_connected:
            for listener in self._listeners:
                listener(peer_id, True)
        return replaced

    def detach(self, peer_id: str, link: BtpLink) -> None:
        links = self._links.get(peer_id)
        if links is None or link not in links:
            return
        links.remove(link)
        if not links:
            del self._links[peer_id]
            for listener in self._listeners:
                listener(peer_id, False)

    def link_for(self, peer_id: str) -> BtpLink | None:
        for link in reversed(self._links.get(peer_id, ())):
            if link.is_open:
                return link
        return None

    def is_connected(self, peer_id: str) -> bool:
        return self.link_for(peer_id) is not None

    async def send_prepare(self, peer_id: str, prepare: Prepare) -> Reply:
        link = self.link_for(peer_id)
        if link is None:
            raise PeerUnreachable(f"peer {peer_id} is not connected")
        return await link.send_prepare(prepare)

    def links_of(self, peer_id: str) -> list[BtpLink]:
        return list(self._links.get(peer_id, ()))

    def in_flight(self, peer_id: str) -> int:
        """The peer's Prepares we are still working on, over all its links."""
        return sum(len(link.tasks) for link in self._links.get(peer_id, ()))

    def connected_peers(self) -> list[str]:
        return sorted(p for p in self._links if self.is_connected(p))

    def all_links(self) -> list[BtpLink]:
        return [link for links in self._links.values() for link in links]
