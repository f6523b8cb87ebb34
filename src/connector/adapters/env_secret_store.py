"""Peer secrets from the environment: ``BTP_PEER_{PEER_ID}_SECRET``.

PEER_ID is the peer's auth_username upper-cased, every character outside A-Z and 0-9 turned into
``_``: ``connector-b`` reads ``BTP_PEER_CONNECTOR_B_SECRET``. An empty value counts as unset, so
an empty token can never authenticate.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from connector.domain.accounts import canonical_peer_id
from connector.domain.auth import is_valid_peer_id
from connector.domain.secret import Secret

_PREFIX = "BTP_PEER_"
_SUFFIX = "_SECRET"
_NOT_ALNUM = re.compile(r"[^A-Z0-9]")


def secret_variable(peer_id: str) -> str:
    """The environment variable that holds ``peer_id``'s secret."""
    return f"{_PREFIX}{_NOT_ALNUM.sub('_', peer_id.upper())}{_SUFFIX}"


class EnvSecretStore:
    """Reads ``BTP_PEER_{PEER_ID}_SECRET`` from ``environ`` (``os.environ`` by default)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def secret_for(self, peer_id: str) -> Secret | None:
        value = self._environ.get(secret_variable(peer_id))
        return Secret(value.encode("utf-8")) if value else None

    def configured_peers(self) -> list[str]:
        """The PEER_ID part of every non-empty secret variable, for the start-up log line."""
        return sorted(
            name[len(_PREFIX) : -len(_SUFFIX)]
            for name, value in self._environ.items()
            if name.startswith(_PREFIX)
            and name.endswith(_SUFFIX)
            and value
            and len(name) > len(_PREFIX) + len(_SUFFIX)
        )

    def peer_ids(self) -> list[str]:
        """``BTP_PEER_CONNECTOR_B_SECRET`` is ``connector-b``'s. A variable no valid id reads
        (``BTP_PEER_alice_SECRET``: ids read upper-case names) names no peer."""
        ids = {canonical_peer_id(name) for name in self.configured_peers()}
        return sorted(i for i in ids if is_valid_peer_id(i) and self.secret_for(i) is not None)

    def __repr__(self) -> str:
        return f"EnvSecretStore({len(self.configured_peers())} peers)"
