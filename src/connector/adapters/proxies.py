"""Which client a connection is from when it came through a reverse proxy we trust.

Behind a proxy every TCP connection comes from the proxy, so the client's own address is taken
from the ``X-Forwarded-For`` header of its upgrade request, but only when the direct peer is one
of ``btp_server.trusted_proxies``: from anyone else the header is ignored, since anyone can write
it. The header lists the client, then every proxy the request went through, each proxy appending
the address it got the request from. So it is read from the right: the entries that are
themselves trusted proxies are skipped, and the first one that is not is the client (when every
entry is a trusted proxy, the leftmost). An entry that is not an IP address (an optional port
aside) makes the whole header untrustworthy: the direct address is used.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(cidr: str) -> Network:
    """``10.0.0.0/8``, ``2001:db8::/32``, or one address; raises ``ValueError`` with a reason
    (host bits set: the mask would silently cover another network than the one written)."""
    try:
        return ipaddress.ip_network(cidr.strip(), strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{cidr!r} is not an IP network such as 10.0.0.0/8") from None
        raise ValueError(f"{cidr!r} has host bits set (did you mean {loose}?)") from exc


def parse_address(text: str) -> IPAddress | None:
    """An address as a transport or a proxy writes it (``1.2.3.4``, ``1.2.3.4:80``, ``::1``,
    ``[::1]``, ``[::1]:80``); ``None`` when it is not one. An IPv4-mapped IPv6 address (a
    dual-stack listener's view of an IPv4 peer) is the IPv4 address."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def format_host(address: IPAddress) -> str:
    """As the transport writes hosts: brackets around IPv6 (``host_of`` reads it back)."""
    return f"[{address}]" if address.version == 6 else str(address)


class TrustedProxies:
    """The networks of ``btp_server.trusted_proxies``; empty: every header is ignored."""

    def __init__(self, cidrs: Iterable[str] = ()) -> None:
        self.networks: tuple[Network, ...] = tuple(parse_network(c) for c in cidrs)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, host: str) -> bool:
        address = parse_address(host) if self.networks else None
        return address is not None and self._contains(address)

    def _contains(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)

    def forwarded_host(self, direct_host: str, forwarded_for: Sequence[str]) -> str | None:
        """The client's host from ``forwarded_for`` (every ``X-Forwarded-For`` header, in
        order), when ``direct_host`` is a trusted proxy; ``None`` when the direct peer's own
        address stands (not a trusted proxy, no header, a malformed one)."""
        if not self.trusts(direct_host):
            return None
        client: IPAddress | None = None
        for entry in reversed([entry for header in forwarded_for for entry in header.split(",")]):
            client = parse_address(entry)
            if client is None:
                return None
            if not self._contains(client):
                break
        return None if client is None else format_host(client)
