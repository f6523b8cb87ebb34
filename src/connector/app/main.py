"""The entrypoint: ``connector`` (console script) and ``python -m connector``.

Reads settings, configures logging, builds the container, serves until SIGTERM or SIGINT, then
shuts down gracefully and exits 0. A bad setting exits 2 with a message naming it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from pydantic import ValidationError

from connector.adapters.env_secret_store import EnvSecretStore
from connector.adapters.structlog_sink import configure_logging
from connector.app.container import Container
from connector.app.settings import Settings


async def serve(container: Container) -> None:
    """Run the BTP server until SIGTERM or SIGINT, then shut it down gracefully."""
    server = container.btp_server()
    log = container.log()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    store = container.secret_store()
    configured: list[str] = store.configured_peers() if isinstance(store, EnvSecretStore) else []
    log.info("connector_starting", configuredPeers=len(configured))
    await server.start()
    try:
        await stop.wait()
        log.info("signal_received")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await server.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="connector",
        description="Interledger connector with a BTP 2.0 server. Settings come from the "
        "environment: BTP_SERVER_PORT, BTP_SERVER_HOST, LOG_LEVEL, LOG_FORMAT, CONNECTOR_*, and "
        "one BTP_PEER_{PEER_ID}_SECRET per peer (see README).",
    )
    parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"connector: invalid settings\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    container = Container()
    container.config.from_pydantic(settings)
    try:
        asyncio.run(serve(container))
    except OSError as exc:
        container.log().error("connector_failed", error=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
