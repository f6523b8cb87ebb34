"""Where committed balances live, by URL: ``memory://`` (nothing kept), ``sqlite:///PATH`` (this
module) or ``postgresql://`` (``postgres_store.py``, for several instances).

SQLite is the embedded store: one file, WAL mode, one writer (this process). Balances are
written as absolute values in decimal text, since the sum of u64 amounts overflows SQLite's
64-bit INTEGER. Commits are grouped: the balance changes of every packet fulfilled in one turn of
the event loop go into one transaction, and every one of those packets waits on that batch's one
future (a callback each, no task). The transaction appends to the WAL without an fsync
(``synchronous=NORMAL``: a process crash loses nothing committed); the checkpoints, which do
fsync, run on a thread of their own. One batch is in flight at a
time, and the next is computed only after the last one is applied, so absolute values never miss
a committed change. Schema versions are applied in order at start-up.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from connector.app.postgres_store import check_reachable, is_postgres_url, redact
from connector.app.schema import newer_schema
from connector.domain.errors import ConfigurationError

#: Batches between checkpoints of the WAL into the database file.
CHECKPOINT_EVERY = 256

#: Schema versions, applied in order; each is one transaction.
MIGRATIONS = (
    (
        "CREATE TABLE balances ("
        " account TEXT PRIMARY KEY,"
        " balance TEXT NOT NULL)"  # a decimal integer: u64 sums overflow SQLite INTEGER
    ),
)


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = _claim(path)
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # A process crash (kill -9) loses nothing that was committed; a power cut may lose
            # the last few milliseconds, as documented.
            self._db.execute("PRAGMA synchronous=NORMAL")
            # Checkpoints (the only fsyncs) run on a thread, never on the event loop.
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer: sqlite3.Connection | None = None
            self._migrate()
        except sqlite3.Error as exc:
            self._lock.close()
            raise ConfigurationError(f"store {path}: {exc}") from None
        except ConfigurationError as exc:
            self._lock.close()
            raise ConfigurationError(f"store {path}: {exc}") from None

    def _migrate(self) -> None:
        db = self._db
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = row[0] or 0
        newer_schema(current, len(MIGRATIONS))
        for version, statement in enumerate(MIGRATIONS[current:], start=current + 1):
            db.execute("BEGIN IMMEDIATE")
            db.execute(statement)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            db.execute("COMMIT")

    def load(self) -> dict[str, int]:
        return {a: int(b) for a, b in self._db.execute("SELECT account, balance FROM balances")}

    def write(self, balances: dict[str, int]) -> None:
        """Write ``balances`` (absolute values) in one transaction."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO balances (account, balance) VALUES (?, ?) "
                "ON CONFLICT (account) DO UPDATE SET balance = excluded.balance",
                [(account, str(balance)) for account, balance in balances.items()],
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def checkpoint(self) -> None:
        """Copy the WAL into the database file (on the store's thread, a connection of its own:
        a passive checkpoint never blocks the writer)."""
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(self.path, check_same_thread=False)
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()
        self._lock.close()


def _claim(path: Path) -> IO[bytes]:
    """This process's exclusive claim on the store: balances are written as absolute values,
    so a second connector writing the same file would overwrite the first one's commits."""
    try:
        lock = open(f"{path}.lock", "ab")  # noqa: SIM115 - held until close()
    except OSError as exc:
        raise ConfigurationError(f"store {path}: {exc.strerror}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise ConfigurationError(
            f"store {path}: another connector is using it (one process per SQLite file; "
            "for several instances sharing accounts use postgresql://)"
        ) from None
    return lock


class GroupCommit:
    """The ledger's ``Committer`` over a ``SqliteStore``: see the module docstring."""

    def __init__(self, store: SqliteStore, committed_balance: Callable[[str], int]) -> None:
        self._store = store
        self._balance = committed_balance
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="store")
        self._pending: list[tuple[str, int, bool]] = []  # (account, amount, is an absolute set)
        self._future: asyncio.Future[None] | None = None
        self._scheduled = False
        self._checkpointing = False
        self.batches = 0

    def commit(self, deltas: list[tuple[str, int]]) -> asyncio.Future[None]:
        self._pending.extend((account, delta, False) for account, delta in deltas)
        return self._batch()

    def set(self, account_id: str, balance: int) -> asyncio.Future[None]:
        self._pending.append((account_id, balance, True))
        return self._batch()

    def _batch(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        if self._future is None:
            self._future = loop.create_future()
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return self._future

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        batch, future = self._pending, self._future
        assert future is not None
        self._pending, self._future = [], None
        # In order, as the ledger's callbacks will apply them: a set replaces what came before.
        balances: dict[str, int] = {}
        for account, amount, absolute in batch:
            if absolute:
                balances[account] = amount
            else:
                balances[account] = balances.get(account, self._balance(account)) + amount
        loop = asyncio.get_running_loop()
        # Inline: an append to the WAL without fsync costs less than a hop to a thread and back
        # (measured: +25% packets/s at 10 in flight). The fsyncs are the checkpoints', and they
        # run on the thread.
        done: asyncio.Future[None] = loop.create_future()
        try:
            self._store.write(balances)
            done.set_result(None)
        except Exception as exc:
            done.set_exception(exc)
        self._written(done, future)
        if self.batches % CHECKPOINT_EVERY == 0 and not self._checkpointing:
            self._checkpointing = True
            checkpoint = loop.run_in_executor(self._executor, self._store.checkpoint)
            checkpoint.add_done_callback(self._checkpointed)

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        self._checkpointing = False
        if not done.cancelled():
            done.exception()  # retrieved: a failed checkpoint is retried by the next one

    def _written(self, done: asyncio.Future[None], future: asyncio.Future[None]) -> None:
        self.batches += 1
        exc = None if done.cancelled() else done.exception()
        if done.cancelled() or exc is not None:
            future.set_exception(exc or RuntimeError("store write cancelled"))
        else:
            future.set_result(None)
        if self._pending and not self._scheduled:
            # After the callbacks of this batch (the ledger applies it first): call_soon is FIFO.
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._store.close()


def store_problem(url: str) -> str | None:
    """Why the store at ``url`` cannot be used, without creating or changing anything; None
    when it can (for ``--check-config``)."""
    try:
        check_store_url(url)
    except ConfigurationError as exc:
        return str(exc)
    if is_postgres_url(url):
        return asyncio.run(check_reachable(url))
    try:
        path = sqlite_path(url)
    except ConfigurationError as exc:
        return str(exc)
    if path is None:
        return None
    if path.exists():
        if not path.is_file() or not os.access(path, os.R_OK | os.W_OK):
            return f"store {path}: not a file this user can read and write"
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                db.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            return f"store {path}: {exc}"
        return None
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        return f"store {path}: cannot create it in {folder}"
    return None


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL (relative to the working directory, or absolute
    with four slashes), None for ``memory://``; anything else is a configuration error."""
    if url == "memory://":
        return None
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    raise ConfigurationError(f"store.url {redact(url)!r}: {STORE_URLS}")


#: What ``store.url`` may be, for error messages.
STORE_URLS = "use memory://, sqlite:///PATH or postgresql://USER@HOST[:PORT]/DATABASE"


def check_store_url(url: str) -> None:
    """Raises ConfigurationError unless ``url`` names a kind of store this connector has."""
    if is_postgres_url(url):
        try:
            parts = urlsplit(url)
            valid = bool(parts.hostname) and parts.port != 0
        except ValueError:  # a port that is not one
            valid = False
        if not valid:
            raise ConfigurationError(f"store.url {redact(url)!r}: {STORE_URLS}")
        return
    sqlite_path(url)
