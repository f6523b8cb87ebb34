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
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from connector.adapters.env_secret_store import EnvSecretStore
from connector.adapters.structlog_sink import configure_logging
from connector.app.check_config import check
from connector.app.container import Container
from connector.app.effective_config import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    Effective,
    InvalidConfiguration,
    load_effective,
)
from connector.app.postgres_store import PostgresStore
from connector.app.reload import Reloader
from connector.app.store import GroupCommit
from connector.domain.errors import ConfigurationError
from connector.domain.ledger import Ledger
from connector.domain.ports import LogSink

#: ``--check-config`` without a FILE: the one ``--config`` or ``CONNECTOR_CONFIG`` names.
CHECK_THE_CONFIG = Path("\0")


async def serve(container: Container, reloader: Reloader | None = None) -> None:
    """Run the node until SIGTERM or SIGINT, then shut it down gracefully; SIGHUP reloads the
    configuration file (``reloader``)."""
    log = container.log()
    node = container.node()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Installed before anything starts and removed only once everything stopped: a signal's
    # default action would kill the process mid-start or mid-drain, losing what is in flight.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _stop_on, sig, stop, log)
    reloads: set[asyncio.Task[Any]] = set()

    def hangup() -> None:
        log.info("signal_received", signal="SIGHUP")
        if reloader is None:
            return
        task = loop.create_task(reloader.reload("SIGHUP"))  # it refuses unless running
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, hangup)
    store = container.secret_store()
    configured: list[str] = store.configured_peers() if isinstance(store, EnvSecretStore) else []
    log.info("connector_starting", secretsInEnvironment=len(configured))
    admin = container.admin()
    if admin is not None and reloader is not None:
        admin.reload = reloader.reload
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
    finally:
        for task in list(reloads):  # a reload is synchronous once its file is read
            await task
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
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)


def _stop_on(sig: signal.Signals, stop: asyncio.Event, log: LogSink) -> None:
    log.info("signal_received", signal=sig.name)
    stop.set()


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


def build_container(effective: Effective) -> Container:
    """The container of ``effective``; raises ConfigurationError for a store that cannot be
    opened."""
    container = Container()
    container.config.from_dict(effective.runtime())
    container.outgoing()  # resolve now: what start-up refuses, it refuses before listening
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
        add_help=False,  # -h below: after `demo` it is the demo's help
    )
    parser.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    parser.add_argument("--config", type=Path, help="YAML configuration file")
    parser.add_argument(
        "--check-config",
        nargs="?",
        const=CHECK_THE_CONFIG,
        type=Path,
        metavar="FILE",
        help="check FILE (or --config / CONNECTOR_CONFIG) and the environment exactly as start-up "
        "would, print the effective configuration, exit 0 (would start), 2 (invalid) or 1 "
        "(the store cannot be reached); starts nothing",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["run", "demo"],
        default="run",
        help="run (default): serve until SIGTERM/SIGINT; demo: sender -> connector -> receiver "
        "as three processes on loopback, 1,000 packets, counts and packets per second "
        "(connector demo --help: its options)",
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        from connector.app.demo import main as demo

        return demo([*rest, "--help"] if args.help else rest)
    if args.help:
        parser.print_help()
        return 0
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.check_config is not None:
        path = args.config if args.check_config == CHECK_THE_CONFIG else args.check_config
        report = check(path)
        print("\n".join(report.lines))
        return report.code
    try:
        effective = load_effective(os.environ, args.config, EnvSecretStore())
    except InvalidConfiguration as exc:
        print("connector: invalid configuration", file=sys.stderr)
        print("\n".join(f"  {line}" for line in exc.problems), file=sys.stderr)
        return EXIT_INVALID
    settings = effective.settings
    configure_logging(settings.log_level, settings.log_format)
    try:
        container = build_container(effective)
    except ConfigurationError as exc:
        print(f"connector: invalid configuration\n  {exc}", file=sys.stderr)
        return EXIT_INVALID
    log = container.log()
    for warning in effective.warnings:
        log.warning("config_warning", problem=warning)
    try:
        run(serve(container, Reloader(container, effective)), settings.event_loop)
    except (OSError, ConfigurationError) as exc:  # a port taken, a store that cannot be opened
        log.error("connector_failed", error=str(exc))
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
