"""Which client a connection is from behind a reverse proxy: X-Forwarded-For is read from the
right, trusted only from trusted proxies, and a malformed header counts for nothing."""

from __future__ import annotations

import pytest

from connector.adapters.proxies import TrustedProxies, parse_address, parse_network
from connector.app.link import host_of

PROXIES = TrustedProxies(["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"])


@pytest.mark.parametrize(
    ("direct", "headers", "client"),
    [
        # From a trusted proxy: the client it names.
        ("127.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        # Proxies in a chain are skipped from the right; the first untrusted entry is the client,
        # whatever the client itself claimed before it (the leftmost entry is its own to write).
        ("127.0.0.1", ["198.51.100.1, 203.0.113.7, 10.1.1.1"], "203.0.113.7"),
        ("127.0.0.1", ["198.51.100.1, 203.0.113.7", "10.1.1.1"], "203.0.113.7"),
        # Every entry a trusted proxy: the farthest one.
        ("127.0.0.1", ["10.2.2.2, 10.1.1.1"], "10.2.2.2"),
        # Ports and brackets as some proxies write them; IPv6 keeps its brackets, so that
        # host_of reads it back whole.
        ("127.0.0.1", ["203.0.113.7:5555"], "203.0.113.7"),
        ("127.0.0.1", ["2001:db8::7"], "[2001:db8::7]"),
        ("[fd00::1]", ["[2001:db8::7]:443"], "[2001:db8::7]"),
        ("[::ffff:127.0.0.1]", ["203.0.113.7"], "203.0.113.7"),  # a dual-stack listener
        # Nothing to read: the direct address stands (None).
        ("127.0.0.1", [], None),
        ("127.0.0.1", [""], None),
        # A malformed entry makes the whole header worthless.
        ("127.0.0.1", ["203.0.113.7, not-an-ip"], None),
        ("127.0.0.1", ["203.0.113.7,,10.1.1.1"], None),
        ("127.0.0.1", ["unknown"], None),
        # From anyone else the header is ignored: anyone can write it.
        ("192.0.2.9", ["203.0.113.7"], None),
        ("[2001:db8::9]", ["203.0.113.7"], None),
    ],
)
def test_the_client_is_the_first_untrusted_entry_from_the_right(
    direct: str, headers: list[str], client: str | None
) -> None:
    assert PROXIES.forwarded_host(direct, headers) == client


def test_without_trusted_proxies_every_header_is_ignored() -> None:
    none = TrustedProxies()
    assert not none
    assert none.forwarded_host("127.0.0.1", ["203.0.113.7"]) is None


def test_a_forwarded_host_without_a_port_is_its_own_host() -> None:
    assert host_of("203.0.113.7") == "203.0.113.7"
    assert host_of("[2001:db8::7]") == "[2001:db8::7]"
    assert host_of("[2001:db8::7]:80") == "[2001:db8::7]"
    assert host_of("127.0.0.1:80") == "127.0.0.1"


def test_networks_are_checked() -> None:
    assert str(parse_network("192.168.1.1")) == "192.168.1.1/32"
    with pytest.raises(ValueError, match="host bits"):
        parse_network("192.168.1.1/24")
    with pytest.raises(ValueError, match="not an IP network"):
        parse_network("example.com")
    assert parse_address("[::1") is None
