"""Balances on a real PostgreSQL server shared by several connector instances (in one process
here: each instance is a ledger with its own store connection, as in its own process; the
two-process test is ``test_shared_accounts.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from connector.app.check_config import check
from connector.app.container import build_ledger
from connector.app.main import close_store, open_store
from connector.app.postgres_store import MIGRATIONS, PostgresStore, redact
from connector.app.store import store_problem
from connector.domain.accounts import Account, Accounts, Relation
from connector.domain.credit import StoreUnavailable
from connector.domain.errors import ConfigurationError
from connector.domain.ilp.packets import IlpErrorCode, Reject
from connector.domain.ledger import Ledger

ALICE = Account.of("alice", Relation.CHILD, balance_maximum=1000)
BOB = Account.of("bob", Relation.PEER, balance_minimum=-500)
ACCOUNTS = Accounts("test.me", [ALICE, BOB])


class Refuse:
    """A claimant that notes nothing and refuses with T04."""

    def held(self, token: object, amount: int) -> None:
        pass

    def refusal(self, account: Account) -> Reject:
        return Reject(IlpErrorCode.T04_INSUFFICIENT_LIQUIDITY, "test.me", "over the limit")


refuse = Refuse()


@contextlib.asynccontextmanager
async def instance(url: str, name: str) -> AsyncIterator[Ledger]:
    ledger = build_ledger(url, name, 30.0, ACCOUNTS)
    await open_store(ledger)
    try:
        yield ledger
    finally:
        await close_store(ledger)


async def hold(ledger: Ledger, account: Account, amount: int, incoming: bool = True) -> bool:
    """True when held, False when refused: waits for the store when it must."""
    taken = (ledger.hold_incoming if incoming else ledger.hold_outgoing)(account, amount, refuse)
    if isinstance(taken, bool):
        return taken
    return await taken is None


async def fulfill(
    ledger: Ledger, incoming: tuple[str, int] | None, outgoing: tuple[str, int] | None
) -> None:
    pending = ledger.fulfilled(incoming, outgoing)
    if pending is not None:
        await pending
        await asyncio.sleep(0)  # the ledger's own callbacks


async def table(url: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query)
    finally:
        await conn.close()


async def test_migrations_are_versioned_and_balances_survive_a_restart(postgres_url: str) -> None:
    async with instance(postgres_url, "a") as ledger:
        assert await hold(ledger, ALICE, 300)
        assert await hold(ledger, BOB, 200, incoming=False)
        await fulfill(ledger, ("alice", 300), ("bob", 200))
        assert ledger.position("alice").balance == 300
    versions = await table(postgres_url, "SELECT version FROM schema_version")
    assert [r["version"] for r in versions] == list(range(1, len(MIGRATIONS) + 1))
    async with instance(postgres_url, "a") as ledger:  # migrations are not applied twice
        assert (ledger.position("alice").balance, ledger.position("bob").balance) == (300, -200)
        p = ledger.position("alice")
        assert (p.incoming, p.lease_in) == (0, 0)  # no hold, no lease survives a restart


async def test_a_database_migrated_by_a_newer_connector_is_refused(postgres_url: str) -> None:
    async with instance(postgres_url, "a"):
        pass
    await table(postgres_url, "INSERT INTO schema_version (version) VALUES (999)")
    with pytest.raises(ConfigurationError, match="schema is version 999, newer than"):
        async with instance(postgres_url, "a"):
            pass
    await table(postgres_url, "DELETE FROM schema_version WHERE version = 999")


async def test_two_instances_sharing_a_peer_never_let_it_exceed_its_maximum_together(
    postgres_url: str,
) -> None:
    """200 Prepares of 10 at once, half through each instance, against a maximum of 1000."""
    async with instance(postgres_url, "a") as a, instance(postgres_url, "b") as b:
        results = await asyncio.gather(
            *(hold(ledger, ALICE, 10) for _ in range(100) for ledger in (a, b))
        )
        assert sum(results) <= 100
        # Every hold is fulfilled: the balance is what was held, never above the maximum.
        for ledger in (a, b):
            held = ledger.position("alice").incoming
            for _ in range(held // 10):
                await fulfill(ledger, ("alice", 10), None)
        rows = await table(postgres_url, "SELECT balance FROM balances WHERE account = 'alice'")
        assert int(rows[0]["balance"]) == 10 * sum(results) <= 1000
        # Nothing stranded: the credit the two instances leased covered every Prepare that fit.
        assert sum(results) == 100
        # And none left: the next Prepare is refused by both.
        assert not await hold(a, ALICE, 10)
        assert not await hold(b, ALICE, 10)


async def test_a_minimum_is_shared_the_same_way(postgres_url: str) -> None:
    async with instance(postgres_url, "a") as a, instance(postgres_url, "b") as b:
        results = await asyncio.gather(
            *(hold(ledger, BOB, 25, incoming=False) for _ in range(20) for ledger in (a, b))
        )
        assert sum(results) == 20  # 500 / 25


async def test_released_holds_are_used_again_without_asking_the_store(postgres_url: str) -> None:
    async with instance(postgres_url, "a") as a:
        store = a.committer
        assert isinstance(store, PostgresStore)
        assert await hold(a, ALICE, 10)
        before = store.batches
        for _ in range(50):
            assert a.hold_incoming(ALICE, 10, refuse) is True  # in the lease: no future
            a.release(("alice", 10), None)
        assert store.batches == before


async def test_unused_credit_goes_back_to_the_store_for_the_other_instance(
    postgres_url: str,
) -> None:
    async with instance(postgres_url, "a") as a, instance(postgres_url, "b") as b:
        assert await hold(a, ALICE, 10)
        lease = a.position("alice").lease_in
        assert lease > 10  # a leased more than it needed, for the packets to come
        a.release(("alice", 10), None)
        # b wants all of it: refused while a keeps its lease ...
        assert not await hold(b, ALICE, 1000)
        # ... and served once a's renewals gave the unused credit back.
        for _ in range(2):
            a.renew_leases()
            await asyncio.sleep(0.2)
        assert a.position("alice").lease_in == 0
        assert await hold(b, ALICE, 1000)


async def test_a_restart_under_the_same_name_releases_the_holds_a_crash_left(
    postgres_url: str,
) -> None:
    crashed = build_ledger(postgres_url, "a", 30.0, ACCOUNTS)
    await open_store(crashed)
    assert await hold(crashed, ALICE, 900)
    store = crashed.committer
    assert isinstance(store, PostgresStore)
    await store._drop()  # the process died: its connection is gone, its lease rows stay
    store._closing = True
    async with instance(postgres_url, "b") as b:
        assert not await hold(b, ALICE, 200)  # a's lease still counts
        async with instance(postgres_url, "a"):  # a is back: what it held is released
            assert await hold(b, ALICE, 1000)


async def test_the_lease_of_an_instance_that_never_comes_back_expires(postgres_url: str) -> None:
    async def short(name: str) -> Ledger:
        ledger = build_ledger(postgres_url, name, 30.0, ACCOUNTS)
        assert ledger.leases is not None
        assert isinstance(ledger.committer, PostgresStore)
        ledger.leases.ttl = 1.5
        ledger.leases._window = 0.5
        ledger.committer._ttl_ms = 1500
        await open_store(ledger)
        return ledger

    gone = await short("gone")
    assert await hold(gone, ALICE, 1000)
    store = gone.committer
    assert isinstance(store, PostgresStore)
    await store._drop()
    store._closing = True
    b = await short("b")
    try:
        assert not await hold(b, ALICE, 10)
        await asyncio.sleep(1.6)
        assert await hold(b, ALICE, 1000)
    finally:
        await close_store(b)


async def test_two_running_instances_cannot_share_a_name(postgres_url: str) -> None:
    async with instance(postgres_url, "a"):
        second = build_ledger(postgres_url, "a", 30.0, ACCOUNTS)
        with pytest.raises(ConfigurationError, match="another running connector is named 'a'"):
            await open_store(second)


async def test_a_store_that_went_away_fails_the_packets_waiting_for_credit(
    postgres_url: str,
) -> None:
    async with instance(postgres_url, "a") as a:
        store = a.committer
        assert isinstance(store, PostgresStore)
        url = store._url
        store._url = "postgresql://postgres@127.0.0.1:1/nowhere"  # reconnecting fails
        await store._drop()
        with pytest.raises(StoreUnavailable):
            await hold(a, ALICE, 10)
        store._url = url  # and the next request reconnects
        assert await hold(a, ALICE, 10)


def test_check_config_reports_an_unreachable_database_and_never_its_password() -> None:
    url = "postgresql://connector:hunter2@127.0.0.1:1/connector"
    problem = store_problem(url)
    assert problem is not None
    assert "hunter2" not in problem
    assert "127.0.0.1" in problem
    assert redact(url) == "postgresql://connector:***@127.0.0.1:1/connector"
    for leaky in (
        "postgresql://u:hun/ter2@h/db",
        "postgresql://u:a@hunter2@h/db",
        "postgresql://h/db?sslmode=require&password=hunter2",
        "postgres://u@h/db?sslpassword=hunter2",
    ):
        assert "hunter2" not in redact(leaky), leaky
        assert "hunter2" not in (store_problem(leaky) or ""), leaky
    assert "hunter2" not in repr(PostgresStore(url, "a", [], 60.0))


def test_check_config_accepts_a_reachable_database(postgres_url: str) -> None:
    assert store_problem(postgres_url) is None


def test_check_config_shows_the_shared_store_and_this_instance(
    tmp_path: Path, postgres_url: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"store: {{url: '{postgres_url}', instance: east-1}}\n")
    code, lines = check(path, {})
    assert code == 0, lines
    assert f"store: {postgres_url}  (shared; this instance: east-1)" in lines
    secret_url = re.sub(  # port 1: nothing listens there
        r"127\.0\.0\.1:[0-9]+",
        "127.0.0.1:1",
        postgres_url.replace("postgres@", "postgres:hunter2@"),
    )
    code, lines = check(path, {"CONNECTOR_STORE_URL": secret_url, "CONNECTOR_STORE_INSTANCE": "w"})
    assert code == 1  # as start-up: the configuration is valid, the database is not there
    assert "hunter2" not in "\n".join(lines)
    assert "(shared; this instance: w (from CONNECTOR_STORE_INSTANCE))" in "\n".join(lines)


async def test_an_operators_correction_reaches_every_instance(postgres_url: str) -> None:
    async with instance(postgres_url, "a") as a, instance(postgres_url, "b") as b:
        pending = a.set_balance("alice", 700)
        assert pending is not None
        await pending
        await asyncio.sleep(0)
        assert a.position("alice").balance == 700
        b.renew_leases()  # b sees it at its next renewal (every second)
        for _ in range(20):
            await asyncio.sleep(0.05)
            if b.position("alice").balance == 700:
                break
        assert b.position("alice").balance == 700
        assert await hold(b, ALICE, 300)  # the credit left is what the correction left
        assert not await hold(b, ALICE, 10)


async def test_a_renewal_queued_behind_a_grant_never_takes_that_grant_back(
    postgres_url: str,
) -> None:
    async with instance(postgres_url, "a") as a:
        assert await hold(a, ALICE, 10)
        p = a.position("alice")
        while p.incoming < p.lease_in:  # use the whole lease
            assert a.hold_incoming(ALICE, 10, refuse) is True
        waiting = a.hold_incoming(ALICE, 10, refuse)  # a grant is asked for ...
        assert not isinstance(waiting, bool)
        a.renew_leases()  # ... and a renewal queued right behind it
        assert await waiting is None
        await asyncio.sleep(0.2)
        rows = await table(postgres_url, "SELECT incoming FROM leases WHERE instance = 'a'")
        assert int(rows[0]["incoming"]) >= p.incoming  # the store covers every hold
        assert p.lease_in == int(rows[0]["incoming"])  # and the mirror is exact


async def test_a_row_someone_keeps_locked_fails_the_commit_instead_of_hanging(
    postgres_url: str,
) -> None:
    async with instance(postgres_url, "a") as a:
        store = a.committer
        assert isinstance(store, PostgresStore)
        store._statement_timeout = 1.0
        await store._drop()  # the next statement reconnects with the short timeouts
        assert await hold(a, ALICE, 10)
        operator = await asyncpg.connect(postgres_url)
        try:
            tx = operator.transaction()
            await tx.start()
            await operator.execute("SELECT * FROM balances WHERE account = 'alice' FOR UPDATE")
            pending = a.fulfilled(("alice", 10), None)
            assert pending is not None
            async with asyncio.timeout(5):
                with pytest.raises(ConnectionError):
                    await pending
            await tx.rollback()
        finally:
            await operator.close()
        await asyncio.sleep(0)
        assert a.position("alice").balance == 0  # answered T00, nothing changed
        assert await hold(a, ALICE, 10)  # and the store goes on


async def test_a_session_of_ours_the_server_still_thinks_alive_is_ended_on_reconnect(
    postgres_url: str,
) -> None:
    async with instance(postgres_url, "a") as a:
        store = a.committer
        assert isinstance(store, PostgresStore)
        # A stand-in for our previous session, cut off without the server noticing: it still
        # holds the instance's name.
        old = store._conn
        assert old is not None
        store._conn = None  # lost, as far as the store knows
        assert await hold(a, ALICE, 10)  # reconnects: ends the old session, claims the name
        assert old.is_closed() or await _ended(old)


async def _ended(conn: asyncpg.Connection) -> bool:
    try:
        await conn.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return True
    return False
