"""``connector --check-config [FILE]``: validate the file and the environment, start nothing.

It checks exactly what start-up would (``load_effective``: the environment's variables, every
problem of the file, the secrets of the peers we dial) and what start-up finds out by opening the
store, without creating it, and shows the *effective* configuration: the file with the
environment applied, each value the environment beats marked with its variable. Exits as
start-up would: 0 when it would start, 2 for an invalid configuration, 1 when only the store
cannot be reached now.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from connector.adapters.env_secret_store import EnvSecretStore, secret_variable
from connector.app.effective_config import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    Effective,
    InvalidConfiguration,
    load_effective,
)
from connector.app.postgres_store import default_instance, is_postgres_url, redact
from connector.app.rates_source import shown_url
from connector.app.settings import ildcp_parent
from connector.app.store import store_problem


class Report(NamedTuple):
    code: int  # EXIT_OK, EXIT_INVALID or EXIT_FAILED: what start-up would exit with
    lines: list[str]


def check(path: Path | None, environ: Mapping[str, str] | None = None) -> Report:
    """The report to print: the effective configuration (the file with the environment
    applied, exactly as start-up builds it), its warnings and problems."""
    env = os.environ if environ is None else environ
    secrets = EnvSecretStore(env)
    shown = path or (Path(env["CONNECTOR_CONFIG"]) if env.get("CONNECTOR_CONFIG") else None)
    lines = [f"config: {shown or '(none: open mode, peers from BTP_PEER_*_SECRET)'}"]
    try:
        effective = load_effective(env, path, secrets, keep_going=True)
    except InvalidConfiguration as exc:
        return Report(
            EXIT_INVALID,
            [
                *lines,
                *(f"  error: {line}" for line in exc.problems),
                f"result: INVALID ({_count(exc.problems, 'problem')})",
            ],
        )
    problems, unreachable = _report(
        effective, secrets, lines, bool(env.get("CONNECTOR_ADMIN_TOKEN"))
    )
    lines.extend(f"  warning: {warning}" for warning in effective.warnings)
    problems = [*effective.errors, *problems]
    for problem in problems:
        lines.append(f"  error: {problem}")
    if problems:
        code = EXIT_FAILED if unreachable and len(problems) == 1 else EXIT_INVALID
        lines.append(f"result: INVALID ({_count(problems, 'problem')})")
        return Report(code, lines)
    warnings = effective.warnings
    lines.append(f"result: OK ({_count(warnings, 'warning')})" if warnings else "result: OK")
    return Report(EXIT_OK, lines)


def _count(items: Sequence[object], word: str) -> str:
    return f"{len(items)} {word}{'s' if len(items) > 1 else ''}"


def _report(
    effective: Effective, secrets: EnvSecretStore, lines: list[str], admin_token: bool
) -> tuple[list[str], bool]:
    """Appends the report's body to ``lines``; returns the problems, and whether the only kind
    is a store that cannot be reached now (start-up would exit 1, not 2)."""
    config = effective.config
    beats = effective.overridden()

    def env(key: str) -> str:
        return f" (from {beats[key]})" if key in beats else ""

    problems = []
    parent = ildcp_parent(config)
    address = config.ilp_address or f"(from parent {parent} over IL-DCP)"
    lines.append(
        f"node: {config.node_id}{env('node_id')}  "
        f"address: {address}{env('ilp_address')}  "
        f"listen: {'wss' if config.btp_server.tls else 'ws'}://"
        f"{config.btp_server.host}:{config.btp_server.port}"
        f"{env('btp_server.host')}{env('btp_server.port')}  "
        f"asset: {config.asset.code}/{config.asset.scale}"
    )
    store_url = config.store.url
    shared = ""
    if is_postgres_url(store_url):
        name = config.store.instance or default_instance()
        shared = f"  (shared; this instance: {name}{env('store.instance')})"
    lines.append(f"store: {redact(store_url)}{env('store.url')}{shared}")
    lines.append(
        f"admin: {config.admin.host}:{config.admin.port}, "
        f"CONNECTOR_ADMIN_TOKEN: {'set' if admin_token else 'not set (the admin API stays off)'}"
    )
    store = store_problem(store_url)
    # the URL is valid (the file and CONNECTOR_STORE_URL are both checked): a PostgreSQL one
    # with a problem is a database start-up could not reach now, and would exit 1 for
    unreachable = store is not None and is_postgres_url(store_url)
    if store is not None:
        problems.append(store)
    if effective.file is None:
        ids = secrets.configured_peers()
        lines.append(
            f"peers: open mode, any peer with a secret may log in as a child ({len(ids)} set: "
            f"{', '.join(secret_variable(i) for i in ids) or 'none'})"
        )
        return problems, unreachable
    lines.append(f"peers ({len(config.peers)}):")
    for peer in config.peers:
        how = f"dials {peer.url} as {peer.username or config.node_id}" if peer.url else "dials us"
        limit = f", max {peer.max_packet_amount}" if peer.max_packet_amount is not None else ""
        rate = peer.rate_limit or config.rate_limit
        if rate is not None:
            limit += f", rate {rate.packets_per_second}/s burst {rate.effective_burst}"
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
    here = config.ilp_address or f"<{parent}'s answer>"
    routes = [(f"{here}.{p.id}", p.id) for p in config.peers if p.relation == "child"]
    parents = [p.id for p in config.peers if p.relation == "parent"]
    routes += [("(default)", parents[0])] if parents else []
    routes += [(r.prefix or "(default)", r.peer) for r in config.routes]
    lines.append(
        f"routes ({len(routes)}, more learned from peers every "
        f"{config.routing.broadcast_interval_ms / 1000:g} s):"
    )
    lines.extend(f"  {prefix:<32} -> {peer}" for prefix, peer in routes)
    return problems, unreachable
