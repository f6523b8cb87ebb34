"""The wiring diagram: every component and what it is built from, top to bottom.

Nothing is built at import time. Tests override any provider (transport, dialer, secret store,
clock, log) with ``container.X.override(...)``; ``transport`` and ``dialer`` are chosen by the
``transport`` setting. The configuration file's peers are parsed once, here, into typed
``Account`` values; nothing downstream reads a dict.

The packet pipeline is ``build_steps``' list, outermost first, and that list is what runs
(``Pipeline.names`` reads it back): incoming steps (per sender account), routing, outgoing steps
(per next-hop account), and the send to the next hop last. A new step goes into that list.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import uuid
from pathlib import Path
from typing import Any

from dependency_injector import containers, providers

from connector.adapters.clock import SystemClock
from connector.adapters.env_secret_store import EnvSecretStore
from connector.adapters.memory_transport import MemoryDialer, MemoryNetwork, MemoryServerTransport
from connector.adapters.structlog_sink import node_logger
from connector.adapters.tls import server_context
from connector.adapters.websockets_transport import WebsocketsDialer, WebsocketsServerTransport
from connector.app.admin import AdminApi
from connector.app.btp_client import OutgoingPeer
from connector.app.btp_server import BtpServer
from connector.app.config import PeerConfig, RateLimitConfig, RatesConfig, RouteConfig, TlsConfig
from connector.app.ildcp_client import AddressFromParent
from connector.app.link import retire_limit
from connector.app.links import LinkContext, Links, ServerLimits
from connector.app.metrics import Metrics
from connector.app.node import ConnectorNode
from connector.app.postgres_store import PostgresStore, default_instance, is_postgres_url
from connector.app.rates_source import UrlRates
from connector.app.routing import RouteBroadcaster
from connector.app.store import GroupCommit, SqliteStore, check_store_url, sqlite_path
from connector.domain.accounts import Account, Accounts, Asset
from connector.domain.admission import Admission
from connector.domain.auth import AuthPolicy, AuthThrottle
from connector.domain.backoff import Backoff
from connector.domain.buckets import RateLimit
from connector.domain.credit import Leases
from connector.domain.errors import ConfigurationError
from connector.domain.forwarding import (
    Expiry,
    ForwardingRules,
    FulfillmentCheck,
    MaxPacketAmount,
    PeerProtocols,
    Route,
    Send,
)
from connector.domain.ledger import IncomingBalance, Ledger, OutgoingBalance
from connector.domain.limits import IncomingMaxPacketAmount, PacketRateLimit
from connector.domain.pipeline import Pipeline, Step
from connector.domain.ports import Clock, Dialer, LogSink, SecretStore
from connector.domain.rates import Rate, RateBook, parse_decimal, parse_price
from connector.domain.route_exchange import RouteExchange
from connector.domain.routing import Routes
from connector.domain.secret import Secret


def parse_peers(peers: list[dict[str, Any]]) -> list[PeerConfig]:
    return [PeerConfig.model_validate(p) for p in peers]


def _routing_flags(peer: PeerConfig) -> dict[str, bool]:
    """The file's overrides of route exchange; the relation decides the rest."""
    flags = {}
    if peer.routing.send is not None:
        flags["send_routes"] = peer.routing.send
    if peer.routing.receive is not None:
        flags["receive_routes"] = peer.routing.receive
    return flags


def _rate_limit(config: RateLimitConfig | None) -> RateLimit | None:
    return None if config is None else RateLimit(config.packets_per_second, config.effective_burst)


def build_accounts(
    ilp_address: str,
    peers: list[dict[str, Any]],
    routes: list[dict[str, str]],
    asset: Asset,
    open_children: bool,
    rate_limit: dict[str, Any] | None = None,
) -> Accounts:
    """Every configured peer's ``Account``, and the routes, parsed once. ``rate_limit`` is the
    file's default for peers without their own."""
    default = None if rate_limit is None else RateLimitConfig.model_validate(rate_limit)
    return Accounts(
        ilp_address,
        (
            Account.of(
                p.id,
                p.relation,
                Asset(p.asset.code, p.asset.scale) if p.asset else asset,
                max_packet_amount=p.max_packet_amount,
                rate_limit=_rate_limit(p.rate_limit or default),
                balance_minimum=p.balance.minimum,
                balance_maximum=p.balance.maximum,
                **_routing_flags(p),
            )
            for p in parse_peers(peers)
        ),
        ((r.prefix, r.peer) for r in (RouteConfig.model_validate(x) for x in routes)),
        open_children=open_children,
        asset=asset,
    )


#: How long a credit lease lives in a shared store without renewal (renewed every second): an
#: instance that died gives its credit back this long after. At least the longest hold + 30 s.
LEASE_SECONDS = 60.0


def build_ledger(
    store_url: str,
    store_instance: str | None = None,
    max_hold_time: float = 30.0,
    accounts: Accounts | None = None,
    clock: Clock | None = None,
    log: LogSink | None = None,
) -> Ledger:
    """The ledger, with the committed balances of the store and its group commit; with a
    shared store (PostgreSQL), opened by ``open_store`` once the event loop runs."""
    if is_postgres_url(store_url):
        check_store_url(store_url)
        ttl = max(LEASE_SECONDS, max_hold_time + 30)
        shared = PostgresStore(
            store_url,
            store_instance or default_instance(),
            list(accounts.configured) if accounts else [],
            ttl,
            log,
        )
        leases = Leases(
            shared,
            (clock or SystemClock()).monotonic,
            lambda: asyncio.get_running_loop().create_future(),
            ttl=ttl,
            # An incoming hold ends when its outgoing Prepare expires (at most max_hold_time
            # from now), plus the commit: a lease must outlive that.
            hold_window=max_hold_time + 5,
        )
        ledger = Ledger(committer=shared, leases=leases)
        shared.ticker = ledger.renew_leases
        return ledger
    path = sqlite_path(store_url)
    if path is None:
        return Ledger()
    store = SqliteStore(path)
    ledger = Ledger(store.load())
    ledger.committer = GroupCommit(store, lambda account: ledger.position(account).balance)
    return ledger


def open_peers(accounts: Accounts, secrets: SecretStore) -> list[str]:
    """With no file, every peer with a secret may connect; with one, only the peers it lists."""
    return secrets.peer_ids() if accounts.open_children else []


def build_admin(
    ledger: Ledger,
    accounts: Accounts,
    links: Links,
    node: ConnectorNode,
    log: LogSink,
    host: str,
    port: int,
    routing: RouteExchange | None = None,
    rates: RateBook | None = None,
) -> AdminApi | None:
    """The admin API, when ``CONNECTOR_ADMIN_TOKEN`` is set (read here, never a setting)."""
    token = os.environ.get("CONNECTOR_ADMIN_TOKEN", "")
    if not token:
        return None
    return AdminApi(
        ledger, accounts, links.is_connected, node.known_peers, Secret(token.encode()), log,
        host, port, routing, rates,
    )  # fmt: skip


def build_rate_book(rates: dict[str, Any], clock: Clock) -> RateBook:
    """The prices of the file (``rates.prices``) and its spread; with ``backend: url`` the
    poller fills the rest and prices age out after ``max_age_seconds``."""
    config = RatesConfig.model_validate(rates)
    book = RateBook(clock.monotonic, parse_decimal(config.spread), config.effective_max_age)
    if config.prices:
        book.set_prices({c: parse_price(p) for c, p in config.prices.items()}, "config")
    return book


def build_rate_source(rates: dict[str, Any], book: RateBook, log: LogSink) -> UrlRates | None:
    config = RatesConfig.model_validate(rates)
    if config.backend != "url" or config.url is None:
        return None
    return UrlRates(book, config.url, config.poll_seconds, log)


def build_steps(
    accounts: Accounts,
    routes: Routes,
    links: Links,
    ledger: Ledger,
    clock: Clock,
    rules: ForwardingRules,
    log: LogSink,
    routing: RouteExchange | None = None,
    rates: RateBook | None = None,
) -> list[Step]:
    """The pipeline's steps, outermost first: this list is what runs."""
    address = accounts.ilp_address
    return [
        # incoming, per sender account: its limits first (nothing held yet), then peer.*
        PacketRateLimit(address, clock),
        IncomingMaxPacketAmount(address),
        PeerProtocols(accounts, clock, routing),
        IncomingBalance(ledger, address),
        # routing: chooses the next-hop account, and the amount in its asset
        Route(accounts, routes),
        Rate(rates or RateBook(clock.monotonic), address),
        # outgoing, per next-hop account
        MaxPacketAmount(address),
        Expiry(address, clock, rules),
        OutgoingBalance(ledger, address),
        FulfillmentCheck(address, log),
        Send(links),
    ]


def build_ildcp(
    parent: str | None, accounts: Accounts, links: Links, clock: Clock, log: LogSink
) -> AddressFromParent | None:
    """With no address configured and a parent, the node asks the parent for one."""
    if parent is None:
        return None
    return AddressFromParent(parent, accounts, links, clock, log, links.spawn)


def build_server_tls(tls: dict[str, Any] | None) -> ssl.SSLContext | None:
    """``btp_server.tls``'s context; a file that will not load stops start-up."""
    if tls is None:
        return None
    config = TlsConfig.model_validate(tls)
    return server_context(config.cert_file, config.key_file, config.client_ca_file)


def peer_ca_files(peers: list[dict[str, Any]]) -> dict[str, Path]:
    """The CA file to trust for each wss:// peer URL that has one."""
    return {p.url: p.tls_ca_file for p in parse_peers(peers) if p.url and p.tls_ca_file}


def build_outgoing(
    peers: list[dict[str, Any]],
    node_id: str,
    ctx: LinkContext,
    dialer: Dialer,
    secrets: SecretStore,
) -> list[OutgoingPeer]:
    """One OutgoingPeer per peer with a url; each needs its secret, or start-up fails."""
    outgoing = []
    for peer in parse_peers(peers):
        if not peer.url:
            continue
        if secrets.secret_for(peer.id) is None:  # read again at every dial
            raise ConfigurationError(
                f"peer {peer.id!r} has a url but no secret: {secrets.missing_reason(peer.id)}"
            )
        outgoing.append(
            OutgoingPeer(
                ctx, dialer, peer.id, peer.url, peer.username or node_id, secrets, Backoff()
            )
        )
    return outgoing


class Container(containers.DeclarativeContainer):
    config = providers.Configuration(strict=True)

    clock = providers.Singleton(SystemClock)
    log = providers.Singleton(node_logger, node_id=config.node_id)
    secret_store = providers.Singleton(EnvSecretStore.checked)  # refuses VAR and VAR_FILE both set

    asset = providers.Singleton(Asset, code=config.asset_code, scale=config.asset_scale)
    accounts = providers.Singleton(
        build_accounts,
        ilp_address=config.ilp_address,
        peers=config.peers,
        routes=config.routes,
        asset=asset,
        open_children=config.open_children,
        rate_limit=config.rate_limit,
    )
    routes = providers.Singleton(Routes)
    admission = providers.Singleton(
        Admission,
        policy=providers.Singleton(
            AuthPolicy, secrets=secret_store, is_known=accounts.provided.is_known
        ),
        throttle=providers.Singleton(AuthThrottle),
    )
    links = providers.Singleton(Links, clock=clock, log=log, ilp_address=config.ilp_address)

    rules = providers.Singleton(
        ForwardingRules,
        min_message_window=config.min_message_window,
        max_hold_time=config.max_hold_time,
    )
    ledger = providers.Singleton(
        build_ledger,
        store_url=config.store_url,
        store_instance=config.store_instance,
        max_hold_time=config.max_hold_time,
        accounts=accounts,
        clock=clock,
        log=log,
    )
    route_exchange = providers.Singleton(
        RouteExchange,
        accounts=accounts,
        routes=routes,
        table_id=providers.Callable(lambda: uuid.uuid4().bytes),  # new at every start
        broadcast_interval=config.broadcast_interval,
    )
    rate_book = providers.Singleton(build_rate_book, rates=config.rates, clock=clock)
    rate_source = providers.Singleton(
        build_rate_source, rates=config.rates, book=rate_book, log=log
    )
    steps = providers.Singleton(
        build_steps,
        accounts=accounts,
        routes=routes,
        links=links,
        ledger=ledger,
        clock=clock,
        rules=rules,
        log=log,
        routing=route_exchange,
        rates=rate_book,
    )
    pipeline = providers.Singleton(
        Pipeline, steps=steps, ilp_address=config.ilp_address, spawn=links.provided.spawn, log=log
    )

    memory_network = providers.Singleton(MemoryNetwork)
    transport = providers.Selector(
        config.transport,
        websockets=providers.Singleton(
            WebsocketsServerTransport,
            host=config.btp_server_host,
            port=config.btp_server_port,
            max_frame_size=config.max_frame_size,
            open_timeout=config.auth_timeout,  # a stranger gets that long for each stage
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_interval,
            max_handshakes=config.max_connections,
            max_handshakes_per_host=config.max_pending_per_host,
            log=log,
            tls=providers.Singleton(build_server_tls, tls=config.btp_server_tls),
            trusted_proxies=config.trusted_proxies,
        ),
        memory=providers.Singleton(MemoryServerTransport, max_frame_size=config.max_frame_size),
    )
    dialer = providers.Selector(
        config.transport,
        websockets=providers.Singleton(
            WebsocketsDialer,
            max_frame_size=config.max_frame_size,
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_interval,
            log=log,
            ca_files=providers.Callable(peer_ca_files, peers=config.peers),
        ),
        memory=providers.Singleton(MemoryDialer, network=memory_network),
    )

    limits = providers.Singleton(
        ServerLimits,
        auth_timeout=config.auth_timeout,
        max_in_flight=config.max_in_flight,
        max_violations=config.max_violations,
        shutdown_timeout=config.shutdown_timeout,
        max_connections=config.max_connections,
        max_pending_per_host=config.max_pending_per_host,
        retire_limit=providers.Callable(retire_limit, config.max_hold_time),
    )
    metrics = providers.Singleton(Metrics, ledger=ledger)
    link_context = providers.Singleton(
        LinkContext,
        pipeline=pipeline,
        links=links,
        accounts=accounts,
        admission=admission,
        clock=clock,
        log=log,
        ilp_address=config.ilp_address,
        limits=limits,
        observer=metrics,
        debug=config.debug,
    )
    btp_server = providers.Singleton(BtpServer, transport=transport, ctx=link_context, links=links)
    outgoing = providers.Singleton(
        build_outgoing,
        peers=config.peers,
        node_id=config.node_id,
        ctx=link_context,
        dialer=dialer,
        secrets=secret_store,
    )
    route_broadcaster = providers.Singleton(
        RouteBroadcaster,
        exchange=route_exchange,
        links=links,
        clock=clock,
        log=log,
        ilp_address=config.ilp_address,
        spawn=links.provided.spawn,
    )
    ildcp = providers.Singleton(
        build_ildcp,
        parent=config.ildcp_parent,
        accounts=accounts,
        links=links,
        clock=clock,
        log=log,
    )
    node = providers.Singleton(
        ConnectorNode,
        routing=route_broadcaster,
        server=btp_server,
        outgoing=outgoing,
        accounts=accounts,
        routes=routes,
        metrics=metrics,
        log=log,
        node_id=config.node_id,
        required_peers=config.require_peers,
        open_peers=providers.Callable(open_peers, accounts=accounts, secrets=secret_store),
        ildcp=ildcp,
    )

    admin = providers.Singleton(
        build_admin,
        ledger=ledger,
        accounts=accounts,
        links=links,
        node=node,
        log=log,
        host=config.admin_host,
        port=config.admin_port,
        routing=route_exchange,
        rates=rate_book,
    )
