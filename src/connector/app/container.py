"""The wiring diagram: every component and what it is built from, top to bottom.

Nothing is built at import time. Tests override any provider (transport, dialer, processor,
secret store, clock) with ``container.X.override(...)``; ``transport`` and ``dialer`` are chosen
by the ``transport`` setting. The packet processing chain is ``PROCESSING_CHAIN``, outermost first;
the BTP server wraps it in ``ErrorBoundary``, so that is always the outermost step.
"""

from __future__ import annotations

from typing import Any

from dependency_injector import containers, providers

from connector.adapters.clock import SystemClock
from connector.adapters.env_secret_store import EnvSecretStore, secret_variable
from connector.adapters.memory_transport import MemoryDialer, MemoryNetwork, MemoryServerTransport
from connector.adapters.structlog_sink import node_logger
from connector.adapters.websockets_transport import WebsocketsDialer, WebsocketsServerTransport
from connector.app.btp_client import OutgoingPeer
from connector.app.btp_link import ServerLimits
from connector.app.btp_server import BtpServer
from connector.app.metrics import Metrics
from connector.app.node import ConnectorNode, PeerDirectory
from connector.app.peers import PeerRegistry
from connector.domain.auth import AuthPolicy, AuthThrottle
from connector.domain.backoff import Backoff
from connector.domain.errors import ConfigurationError
from connector.domain.forwarding import Asset, Forwarder, ForwardingRules, PeerProtocols
from connector.domain.ports import Clock, Dialer, LogSink, PacketProcessor, SecretStore

#: The order of the processing chain, outermost first.
PROCESSING_CHAIN = ("PeerProtocols", "Forwarder")


def build_chain(
    ilp_address: str,
    directory: PeerDirectory,
    registry: PeerRegistry,
    clock: Clock,
    rules: ForwardingRules,
    asset: Asset,
    log: LogSink,
) -> PacketProcessor:
    """Compose the chain in ``PROCESSING_CHAIN`` order."""
    forwarder = Forwarder(
        ilp_address, directory.routes, directory.policy, registry, clock, rules, log
    )
    return PeerProtocols(forwarder, ilp_address, directory.policy, asset, clock)


def build_outgoing(
    peers: list[dict[str, Any]],
    node_id: str,
    server: BtpServer,
    dialer: Dialer,
    secrets: SecretStore,
) -> list[OutgoingPeer]:
    """One OutgoingPeer per peer with a url; each needs its secret, or start-up fails."""
    outgoing = []
    for peer in peers:
        if not peer.get("url"):
            continue
        secret = secrets.secret_for(peer["id"])
        if secret is None:
            raise ConfigurationError(
                f"peer {peer['id']!r} has a url but {secret_variable(peer['id'])} is not set"
            )
        outgoing.append(
            OutgoingPeer(
                server,
                dialer,
                peer["id"],
                peer["url"],
                peer.get("username") or node_id,
                secret,
                Backoff(),
            )
        )
    return outgoing


class Container(containers.DeclarativeContainer):
    config = providers.Configuration(strict=True)

    clock = providers.Singleton(SystemClock)
    log = providers.Singleton(node_logger, node_id=config.node_id)
    secret_store = providers.Singleton(EnvSecretStore)

    directory = providers.Singleton(
        PeerDirectory,
        ilp_address=config.ilp_address,
        peers=config.peers,
        routes=config.routes,
        open_children=config.open_children,
    )
    registry = providers.Singleton(PeerRegistry)
    auth_policy = providers.Singleton(
        AuthPolicy, secrets=secret_store, is_known=directory.provided.is_known
    )
    auth_throttle = providers.Singleton(AuthThrottle)

    rules = providers.Singleton(
        ForwardingRules,
        min_message_window=config.min_message_window,
        max_hold_time=config.max_hold_time,
    )
    asset = providers.Singleton(Asset, code=config.asset_code, scale=config.asset_scale)
    processor = providers.Singleton(
        build_chain,
        ilp_address=config.ilp_address,
        directory=directory,
        registry=registry,
        clock=clock,
        rules=rules,
        asset=asset,
        log=log,
    )

    memory_network = providers.Singleton(MemoryNetwork)
    transport = providers.Selector(
        config.transport,
        websockets=providers.Singleton(
            WebsocketsServerTransport,
            host=config.btp_server_host,
            port=config.btp_server_port,
            max_frame_size=config.max_frame_size,
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_interval,
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
    )

    metrics = providers.Singleton(Metrics)
    btp_server = providers.Singleton(
        BtpServer,
        transport=transport,
        processor=processor,
        auth=auth_policy,
        throttle=auth_throttle,
        clock=clock,
        log=log,
        ilp_address=config.ilp_address,
        limits=limits,
        registry=registry,
        metrics=metrics,
    )
    outgoing = providers.Singleton(
        build_outgoing,
        peers=config.peers,
        node_id=config.node_id,
        server=btp_server,
        dialer=dialer,
        secrets=secret_store,
    )
    node = providers.Singleton(
        ConnectorNode,
        server=btp_server,
        outgoing=outgoing,
        directory=directory,
        log=log,
        node_id=config.node_id,
    )
