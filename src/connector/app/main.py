"""The entrypoint: ``connector`` (console script) and ``python -m connector``.

Reads the configuration file (``--config`` or ``CONNECTOR_CONFIG``) and the environment,
configures logging, builds the container, serves until SIGTERM or SIGINT, then shuts down
gracefully and exits 0. A bad setting or file exits 2 with a message naming it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from connector.adapters.env_secret_store import EnvSecretStore
from connector.adapters.structlog_sink import configure_logging
from connector.app.check_config import check
from connector.app.config import load_config
from connector.app.container import Container
from connector.app.postgres_store import PostgresStore
from connector.app.settings import Settings, runtime_config
from connector.app.store import GroupCommit
from connector.domain.errors import ConfigurationError
from connector.domain.ledger import Ledger


async def serve(container: Container) -> None:
    """Run the node until SIGTERM or SIGINT, then shut it down gracefully."""
    log = container.log()
    node = container.node()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    store = container.secret_store()
    configured: list[str] = store.configured_peers() if isinstance(store, EnvSecretStore) else []
    log.info("connector_starting", secretsInEnvironment=len(configured))
    admin = container.admin()
    ledger = container.ledger()
    opened = False
    try:
        await open_store(ledger)
        opened = True
        await node.start()
        rates = container.rate_source()
        if rates is not None:
            rates.start()
        if admin is None:
            log.info("admin_api_disabled", reason="CONNECTOR_ADMIN_TOKEN is not set")
        else:
            await admin.start()
        # What start-up built lives as long as the process: keep it out of the collector's
        # full passes, whose pauses would otherwise land on packets in flight.
        gc.collect()
        gc.freeze()
        await stop.wait()
        log.info("signal_received")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        # Each step on its own: one that fails must not skip the store's close.
        try:
            await node.shutdown()
        finally:
            rate_source = container.rate_source()
            if rate_source is not None:
                await rate_source.stop()
            if admin is not None:
                with contextlib.suppress(Exception):
                    await admin.stop()
        if opened:
            await close_store(ledger)


async def open_store(ledger: Ledger) -> None:
    """A store that needs the event loop (PostgreSQL) connects here, before any packet, and
    the ledger takes its balances."""
    if isinstance(ledger.committer, PostgresStore):
        ledger.load(await ledger.committer.open())


async def close_store(ledger: Ledger) -> None:
    """The last batch is written before the store closes."""
    committer = ledger.committer
    if isinstance(committer, PostgresStore):
        await committer.aclose()
    elif isinstance(committer, GroupCommit):
        committer.close()


def run(main: Coroutine[Any, Any, None], event_loop: str) -> None:
    """Run ``main`` on uvloop when asked for (or, with "auto", when it is installed)."""
    if event_loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if event_loop == "uvloop":
                raise
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def build_container(config_path: Path | None = None) -> Container:
    """Settings from the environment plus the file; raises ConfigurationError or
    ValidationError when either is wrong."""
    settings = Settings()
    path = config_path or settings.config
    file = load_config(path) if path is not None else None
    container = Container()
    container.config.from_dict(runtime_config(settings, file))
    container.outgoing()  # resolve now: a peer with a url but no secret fails at start-up
    container.ledger()  # and so does a store that cannot be opened
    container.transport()  # and a TLS certificate or key that will not load
    return container


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="connector",
        description="Interledger connector with a BTP 2.0 server. Configuration: a YAML file "
        "(--config or CONNECTOR_CONFIG, see examples/connector.yaml) and the environment: "
        "BTP_SERVER_PORT, BTP_SERVER_HOST, LOG_LEVEL, LOG_FORMAT, CONNECTOR_*, and one "
        "BTP_PEER_{PEER_ID}_SECRET per peer (see README).",
    )
    parser.add_argument("--config", type=Path, help="YAML configuration file")
    parser.add_argument(
        "--check-config",
        type=Path,
        metavar="FILE",
        help="validate FILE and the environment (every peer's secret), print what was found, "
        "exit 0 or 1; starts nothing",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["run", "demo"],
        default="run",
        help="run (default): serve until SIGTERM/SIGINT; demo: sender -> connector -> receiver "
        "as three processes on loopback, 1,000 packets, counts and packets per second",
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        from connector.app.demo import main as demo

        return demo(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.check_config is not None:
        ok, lines = check(args.check_config)
        print("\n".join(lines))
        return 0 if ok else 1
    try:
        settings = Settings()
        configure_logging(settings.log_level, settings.log_format)
        container = build_container(args.config)
    except ValidationError as exc:
        print(f"connector: invalid settings\n{exc}", file=sys.stderr)
        return 2
    except ConfigurationError as exc:
        print(f"connector: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    try:
        run(serve(container), settings.event_loop)
    except (OSError, ConfigurationError) as exc:  # a port taken, a store that cannot be opened
        container.log().error("connector_failed", error=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
