"""The wiring diagram: every component and what it is built from, top to bottom.

Nothing is built at import time. Tests override any provider (transport, processor, secret store,
clock) with ``container.X.override(...)``; ``transport`` is chosen by the ``transport`` setting.
The packet processing chain is ``PROCESSING_CHAIN``, outermost first.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from connector.adapters.clock import SystemClock
from connector.adapters.env_secret_store import EnvSecretStore
from connector.adapters.memory_transport import MemoryServerTransport
from connector.adapters.structlog_sink import node_logger
from connector.adapters.websockets_transport import WebsocketsServerTransport
from connector.app.btp_server import BtpServer, ServerLimits
from connector.domain.auth import AuthPolicy, AuthThrottle
from connector.domain.ports import PacketProcessor
from connector.domain.processing import RejectAll

#: The order of the processing chain, outermost first. ErrorBoundary is not listed: BtpServer
#: wraps whatever chain it is given in it, so it is always the outermost step.
PROCESSING_CHAIN = ("RejectAll",)


def build_chain(ilp_address: str) -> PacketProcessor:
    """Compose the chain in ``PROCESSING_CHAIN`` order."""
    return RejectAll(ilp_address)


class Container(containers.DeclarativeContainer):
    config = providers.Configuration(strict=True)

    clock = providers.Singleton(SystemClock)
    log = providers.Singleton(node_logger, node_id=config.node_id)
    secret_store = providers.Singleton(EnvSecretStore)

    auth_policy = providers.Singleton(AuthPolicy, secrets=secret_store)
    auth_throttle = providers.Singleton(AuthThrottle)

    processor = providers.Singleton(build_chain, ilp_address=config.ilp_address)

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

    limits = providers.Singleton(
        ServerLimits,
        auth_timeout=config.auth_timeout,
        max_in_flight=config.max_in_flight,
        max_violations=config.max_violations,
        shutdown_timeout=config.shutdown_timeout,
        max_connections=config.max_connections,
    )

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
    )
