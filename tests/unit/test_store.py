"""Durable balances: the SQLite store, its group commit, and the ledger over them."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from connector.app.container import build_ledger
from connector.app.store import GroupCommit, SqliteStore, sqlite_path
from connector.domain.accounts import Account, Relation
from connector.domain.errors import ConfigurationError
from connector.domain.ilp.packets import Fulfill, Reject
from connector.domain.ledger import Ledger
from tests.fakes import FULFILLMENT, FakeClock
from tests.unit.test_forwarding import FakeNextHops
from tests.unit.test_ledger import Node, to_bob

BOB = Account.of("bob", Relation.PEER)


def test_balances_round_trip_beyond_64_bits_and_migrations_run_once(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    store = SqliteStore(path)
    store.write({"alice": 2**64 * 3, "bob": -(2**70)})
    store.close()
    again = SqliteStore(path)  # the schema is there: nothing to migrate twice
    assert again.load() == {"alice": 2**64 * 3, "bob": -(2**70)}
    again.close()


def test_a_second_connector_on_the_same_file_is_refused_until_the_first_is_gone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "b.sqlite3"
    first = SqliteStore(path)
    with pytest.raises(ConfigurationError, match="another connector is using it"):
        SqliteStore(path)
    first.close()
    SqliteStore(path).close()


def test_store_urls() -> None:
    assert sqlite_path("memory://") is None
    assert sqlite_path("sqlite:///connector.sqlite3") == Path("connector.sqlite3")
    assert sqlite_path("sqlite:////var/lib/c.db") == Path("/var/lib/c.db")
    with pytest.raises(ConfigurationError):
        sqlite_path("postgres://nope")


async def test_fulfills_of_one_turn_commit_in_one_batch_and_survive_a_restart(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'b.sqlite3'}"
    ledger = build_ledger(url)
    clock = FakeClock()
    node = Node(clock, FakeNextHops(), ledger, bob=BOB)
    for _ in range(3):
        node.send(to_bob(clock, 10))
    replies = await node.settled(3)
    assert all(isinstance(r, Fulfill) for r in replies.values())
    committer = ledger.committer
    assert isinstance(committer, GroupCommit)
    assert committer.batches == 1  # three packets, one transaction
    assert (ledger.position("alice").balance, ledger.position("bob").balance) == (30, -30)
    committer.close()
    restarted = build_ledger(url)  # as after kill -9: what was committed is there, no holds
    alice = restarted.position("alice")
    assert (alice.balance, alice.incoming) == (30, 0)
    assert restarted.position("bob").balance == -30
    assert isinstance(restarted.committer, GroupCommit)
    restarted.committer.close()


class FailingStore(SqliteStore):
    def write(self, balances: dict[str, int]) -> None:
        raise OSError("disk full")


async def test_a_failed_commit_never_lets_a_fulfill_through_and_releases_the_holds(
    tmp_path: Path,
) -> None:
    store = FailingStore(tmp_path / "b.sqlite3")
    ledger = Ledger()
    ledger.committer = GroupCommit(store, lambda a: ledger.position(a).balance)
    clock = FakeClock()
    node = Node(clock, FakeNextHops(reply=Fulfill(FULFILLMENT, b"ok")), ledger, bob=BOB)
    node.send(to_bob(clock, 10))
    (reply,) = (await node.settled(1)).values()
    assert isinstance(reply, Reject)
    assert reply.code == "T00"
    alice, bob = ledger.position("alice"), ledger.position("bob")
    assert (alice.balance, alice.incoming, bob.balance, bob.outgoing) == (0, 0, 0, 0)
    await asyncio.sleep(0)
    ledger.committer.close()  # type: ignore[union-attr]


def test_a_store_written_by_a_newer_connector_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    SqliteStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_version (version) VALUES (99)")
    with pytest.raises(ConfigurationError, match="schema is version 99, newer than"):
        SqliteStore(path)
    SqliteStore(path.with_name("fresh.sqlite3")).close()  # and the lock was let go
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM schema_version WHERE version = 99")
    SqliteStore(path).close()
