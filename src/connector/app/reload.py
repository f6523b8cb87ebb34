"""Reload without restart: ``SIGHUP`` and ``POST /reload`` read the file again and apply it.

The new file is read exactly as start-up reads it (``load_effective``: the file and the
environment, every problem at once); an invalid one is refused and logged, and the running
configuration stays. A valid one applies what can change under traffic:

- peers added, removed or changed, and the routes: the ``Accounts`` object is updated in place, so
  every step sees the new accounts from the next packet on; the route exchange recomputes its
  table (and tells the peers);
- a peer whose limits changed (``max_packet_amount``, ``balance``, ``rate_limit``) keeps its
  connection: its next Prepare is checked against the new limits;
- a peer removed, or whose relation, asset, url, username or route exchange changed: its
  connections take no new Prepare, those in flight get their real answers, then they close with
  1000 (``BtpLink.retire``); a peer that is still configured is redialed (or redials us) at once;
- the file's prices and spread (prices from a URL or ``PUT /rates`` stay);
- ``health.require_peers``.

What the running process is built around (its address, listener, store, admin listener, the
node's asset, the forwarding timings, the route broadcast interval, the rate backend) needs a
restart: a change there is not applied, and the answer and the log line say which keys.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import Any

from connector.adapters.websockets_transport import WebsocketsDialer
from connector.app.config import ConnectorConfig, PeerConfig
from connector.app.container import Container, build_accounts, build_outgoing, peer_ca_files
from connector.app.effective_config import Effective, InvalidConfiguration, load_effective
from connector.domain.rates import parse_decimal, parse_price

#: Keys whose change needs a restart (dotted paths into the file).
RESTART_KEYS = (
    "node_id",
    "ilp_address",
    "btp_server",
    "asset",
    "forwarding",
    "store",
    "admin",
    "routing",
    "rates.backend",
    "rates.url",
    "rates.poll_seconds",
    "rates.max_age_seconds",
)

#: A peer's keys that apply to its next packet; a change of any other reconnects it.
IN_PLACE = frozenset({"max_packet_amount", "balance", "rate_limit"})


def _restart_keys(running: ConnectorConfig, new: ConnectorConfig) -> list[str]:
    """The keys of ``RESTART_KEYS`` whose value differs between the two."""
    before, after = running.model_dump(), new.model_dump()

    def value(tree: dict[str, Any], key: str) -> Any:
        for part in key.split("."):
            tree = tree.get(part) if isinstance(tree, dict) else None  # type: ignore[assignment]
        return tree

    return [key for key in RESTART_KEYS if value(before, key) != value(after, key)]


def _reconnects(old: PeerConfig, new: PeerConfig) -> bool:
    before, after = old.model_dump(), new.model_dump()
    return any(before.get(k) != after.get(k) for k in (before.keys() | after.keys()) - IN_PLACE)


class Reloader:
    def __init__(
        self,
        container: Container,
        effective: Effective,
        environ: Mapping[str, str] | None = None,
        on_reload: Callable[[Effective], None] | None = None,
    ) -> None:
        self._container = container
        self.effective = effective
        #: What the process was built from: keys that need a restart compare against it.
        self._running = effective
        self._environ = os.environ if environ is None else environ
        self._lock = asyncio.Lock()
        self._on_reload = on_reload
        self.reloads = 0

    async def reload(self, trigger: str) -> dict[str, Any]:
        """Read the file again and apply it; the answer says what changed (or why nothing
        did). One reload at a time."""
        async with self._lock:
            try:
                return self._reload(trigger)
            except Exception as exc:  # a bug must not take the node down with it
                problem = f"{type(exc).__name__}: {exc}"[:300]
                self._container.log().error(
                    "config_reload_failed", trigger=trigger, problems=[problem]
                )
                return {"status": "failed", "problems": [problem]}

    def _reload(self, trigger: str) -> dict[str, Any]:
        log = self._container.log()
        current = self.effective
        node = self._container.node()
        if not node.running or (node.ildcp is not None and node.ildcp.address is None):
            problems = [
                "the node is starting, stopping or waiting for its address: nothing is reloaded"
            ]
            log.warning("config_reload_failed", trigger=trigger, problems=problems)
            return {"status": "unavailable", "problems": problems}
        if current.file is None:
            problems = ["no configuration file: open mode has nothing to reload"]
            log.warning("config_reload_failed", trigger=trigger, problems=problems)
            return {"status": "unavailable", "problems": problems}
        try:
            new = load_effective(self._environ, current.path, self._container.secret_store())
        except InvalidConfiguration as exc:
            log.warning("config_reload_failed", trigger=trigger, problems=exc.problems)
            return {"status": "invalid", "problems": exc.problems}
        old_config, new_config = current.config, new.config
        running = self._running.config
        restart = _restart_keys(running, new_config)
        old_peers = {p.id: p for p in old_config.peers}
        new_peers = {p.id: p for p in new_config.peers}
        added = sorted(new_peers.keys() - old_peers.keys())
        removed = sorted(old_peers.keys() - new_peers.keys())
        kept = old_peers.keys() & new_peers.keys()
        reconnect = sorted(p for p in kept if _reconnects(old_peers[p], new_peers[p]))
        changed = sorted(p for p in kept if old_peers[p] != new_peers[p] and p not in reconnect)
        self._apply(new, removed, reconnect, added)
        warnings = [*new.warnings, *self._leftovers(removed)]
        self.effective = new
        self.reloads += 1
        if self._on_reload is not None:
            self._on_reload(new)
        answer: dict[str, Any] = {
            "status": "reloaded",
            "added": added,
            "removed": removed,
            "changed": changed,
            "reconnected": reconnect,
            "restartRequired": restart,
            "warnings": warnings,
        }
        log.info(
            "config_reloaded",
            trigger=trigger,
            **{k: v for k, v in answer.items() if k != "status"},
        )
        for warning in warnings:
            log.warning("config_warning", problem=warning)
        return answer

    def _apply(
        self, new: Effective, removed: list[str], reconnect: list[str], added: list[str]
    ) -> None:
        """What can fail is built first (accounts, CA files, the peers to dial: their files
        may have changed since they were checked); then everything is swapped in, synchronously,
        so no packet sees half of a reload."""
        c = self._container
        accounts = c.accounts()
        node = c.node()
        values = new.runtime()
        new_accounts = build_accounts(
            accounts.ilp_address,
            values["peers"],
            values["routes"],
            accounts.asset,
            False,
            values["rate_limit"],
        )
        dialer = c.dialer()
        if isinstance(dialer, WebsocketsDialer):
            dialer.trust(peer_ca_files(values["peers"]))  # all or nothing
        dial = [p for p in values["peers"] if p["id"] in set(added) | set(reconnect)]
        # the node's own id, not a new one in the file: that needs a restart
        starting = build_outgoing(dial, node.node_id, c.link_context(), dialer, c.secret_store())

        accounts.replace(new_accounts)
        c.route_exchange().reconfigure(c.clock().monotonic())
        rates = new.config.rates
        c.rate_book().reconfigure(
            {code: parse_price(p) for code, p in rates.prices.items()}, parse_decimal(rates.spread)
        )
        gone = set(removed) | set(reconnect)
        links = c.links()
        links.reconfigure(accounts, gone, "peer removed or changed by a configuration reload")
        for peer in [p for p in node.outgoing if p.peer_id in gone]:
            node.outgoing.remove(peer)
            links.spawn(peer.retire("peer removed or changed by a configuration reload"))
        for peer in starting:
            peer.tried.set()  # readiness waits for the peers of start-up only
            node.outgoing.append(peer)
            peer.start()
        node.required_peers = tuple(new.config.health.require_peers)

    def _leftovers(self, removed: list[str]) -> list[str]:
        """Warnings for removed peers that still have a balance or holds: the store keeps the
        balance, and adding the peer back finds it."""
        ledger = self._container.ledger()
        warnings = []
        for peer_id in removed:
            p = ledger.find(peer_id)
            if p is not None and (p.balance or p.incoming or p.outgoing):
                warnings.append(
                    f"peer {peer_id!r} was removed with a balance of {p.balance} "
                    f"(holds +{p.incoming}/-{p.outgoing}): it stays in the store until the "
                    "peer is configured again and settled"
                )
        return warnings
