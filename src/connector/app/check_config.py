"""``connector --check-config FILE``: validate the file and the environment, start nothing.

Checks what the file model checks (keys, values, addresses, routes that name configured peers)
and what only the environment can tell: every peer has its ``BTP_PEER_{ID}_SECRET``, and the
store (``CONNECTOR_STORE_URL`` or ``store.url``) can be opened, checked without creating it.
Prints what it found in one screen; exit 0 when all is well, 1 otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from connector.adapters.env_secret_store import EnvSecretStore
from connector.app.config import ConnectorConfig, load_config
from connector.app.postgres_store import default_instance, is_postgres_url, redact
from connector.app.rates_source import shown_url
from connector.app.store import store_problem
from connector.domain.errors import ConfigurationError


def check(path: Path, environ: Mapping[str, str] | None = None) -> tuple[bool, list[str]]:
    """``(ok, lines)``: the report to print."""
    lines = [f"config: {path}"]
    try:
        config = load_config(path)
    except ConfigurationError as exc:
        return False, [
            *lines,
            *(f"  error: {line}" for line in str(exc).splitlines()),
            "result: INVALID",
        ]
    secrets = EnvSecretStore(environ)
    env = os.environ if environ is None else environ
    problems = _report(
        config,
        secrets,
        lines,
        env.get("CONNECTOR_STORE_URL") or None,
        bool(env.get("CONNECTOR_ADMIN_TOKEN")),
        env.get("CONNECTOR_STORE_INSTANCE") or None,
    )
    for problem in problems:
        lines.append(f"  error: {problem}")
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    lines.append("result: OK" if not problems else f"result: INVALID ({count})")
    return not problems, lines


def _report(
    config: ConnectorConfig,
    secrets: EnvSecretStore,
    lines: list[str],
    environ_store: str | None = None,
    admin_token: bool = False,
    environ_instance: str | None = None,
) -> list[str]:
    problems = []
    lines.append(
        f"node: {config.node_id}  address: {config.ilp_address}  "
        f"listen: {config.btp_server.host}:{config.btp_server.port}  "
        f"asset: {config.asset.code}/{config.asset.scale}"
    )
    store_url = environ_store or config.store.url
    shared = ""
    if is_postgres_url(store_url):
        name = environ_instance or config.store.instance or default_instance()
        shared = f"  (shared; this instance: {name})"
    lines.append(f"store: {redact(store_url)}{shared}")
    lines.append(
        f"admin: {config.admin.host}:{config.admin.port}, "
        f"CONNECTOR_ADMIN_TOKEN: {'set' if admin_token else 'not set (the admin API stays off)'}"
    )
    store = store_problem(environ_store or config.store.url)
    if store is not None:
        problems.append(store)
    lines.append(f"peers ({len(config.peers)}):")
    for peer in config.peers:
        problems.extend(f"peer {peer.id!r}: {problem}" for problem in secrets.problems(peer.id))
        how = f"dials {peer.url} as {peer.username or config.node_id}" if peer.url else "dials us"
        limit = f", max {peer.max_packet_amount}" if peer.max_packet_amount is not None else ""
        low, high = peer.balance.minimum, peer.balance.maximum
        if low is not None or high is not None:
            limit += f", balance {'' if low is None else low}..{'' if high is None else high}"
        if peer.asset is not None and (peer.asset.code, peer.asset.scale) != (
            config.asset.code,
            config.asset.scale,
        ):
            limit += f", asset {peer.asset.code}/{peer.asset.scale}"
        by_relation = peer.relation != "child"
        sends = by_relation if peer.routing.send is None else peer.routing.send
        receives = by_relation if peer.routing.receive is None else peer.routing.receive
        if sends or receives:
            limit += ", routes " + "/".join(
                word for word, on in (("sent", sends), ("received", receives)) if on
            )
        lines.append(
            f"  {peer.id:<16} {peer.relation:<7} {how}{limit}, secret {secrets.status(peer.id)}"
        )
    # Start-up refuses a variable and its _FILE both set for any peer, listed or not.
    problems.extend(c for c in secrets.conflicts() if not any(p.endswith(c) for p in problems))
    rates = config.rates
    codes = {config.asset.code} | {p.asset.code for p in config.peers if p.asset is not None}
    source = shown_url(rates.url) if rates.backend == "url" and rates.url else "file"
    lines.append(
        f"rates: {rates.backend} ({source}), prices {' '.join(sorted(rates.prices)) or 'none'}, "
        f"spread {rates.spread}"
    )
    if rates.backend == "url":
        lines.append(
            f"  URL prices count for {rates.effective_max_age:g} s after each fetch "
            "(rates.max_age_seconds; default three polls)"
        )
    if len(codes) > 1 and rates.backend == "static":
        for code in sorted(codes - set(rates.prices)):
            lines.append(
                f"  warning: no price for {code}: packets between {code} and other assets get "
                "T00 until one is set (rates.prices or PUT /rates)"
            )
    routes = [(f"{config.ilp_address}.{p.id}", p.id) for p in config.peers if p.relation == "child"]
    parents = [p.id for p in config.peers if p.relation == "parent"]
    routes += [("(default)", parents[0])] if parents else []
    routes += [(r.prefix or "(default)", r.peer) for r in config.routes]
    lines.append(
        f"routes ({len(routes)}, more learned from peers every "
        f"{config.routing.broadcast_interval_ms / 1000:g} s):"
    )
    lines.extend(f"  {prefix:<32} -> {peer}" for prefix, peer in routes)
    return problems
