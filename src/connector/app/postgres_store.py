"""Balances on PostgreSQL, shared by several connector instances (``postgresql://`` store URLs).

Each instance keeps one connection and runs one statement at a time on it, so the store applies
this instance's changes in the order their futures resolve: the ledger, which mirrors them in
memory, never sees them out of order. Work that arrives while a statement runs is batched into
the next one: every Fulfill committed in the meantime goes into one ``connector_commit`` call (one
transaction, one round trip), every lease request into one ``connector_acquire_many``.

What the instances share is the database: balances, and each instance's credit leases
(``domain/credit.py`` explains them). The functions below take the account rows' locks in one
order (``COLLATE "C"``, as Python sorts), so two instances never deadlock. An instance is named
(``store.instance``, default: the host name); a session-level advisory lock keeps two live
instances from using one name, and an instance starting under a name releases that name's leases
(the holds a crash left are released at start-up); leases of an instance that never comes back
expire. Amounts are NUMERIC: sums of u64 amounts need more than BIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import asyncpg

from connector.app.schema import newer_schema
from connector.domain.errors import ConfigurationError
from connector.domain.ports import LogSink, NullSink

#: Schema versions, applied in order at start-up, each in one transaction.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE balances (
        account TEXT PRIMARY KEY,
        balance NUMERIC(40, 0) NOT NULL DEFAULT 0
    );
    CREATE TABLE leases (
        account TEXT NOT NULL REFERENCES balances (account),
        instance TEXT NOT NULL,
        incoming NUMERIC(40, 0) NOT NULL DEFAULT 0 CHECK (incoming >= 0),
        outgoing NUMERIC(40, 0) NOT NULL DEFAULT 0 CHECK (outgoing >= 0),
        expires_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (account, instance)
    );

    -- Fulfilled packets: balances move, and the credit they used leaves this instance's leases.
    CREATE FUNCTION connector_commit(
        p_instance TEXT, p_accounts TEXT[], p_in NUMERIC[], p_out NUMERIC[]
    ) RETURNS VOID LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO balances (account)
            SELECT a FROM unnest(p_accounts) AS a ORDER BY a COLLATE "C"
            ON CONFLICT DO NOTHING;
        PERFORM 1 FROM balances WHERE account = ANY (p_accounts)
            ORDER BY account COLLATE "C" FOR UPDATE;
        UPDATE balances AS b SET balance = b.balance + d.i - d.o
            FROM unnest(p_accounts, p_in, p_out) AS d (a, i, o) WHERE b.account = d.a;
        UPDATE leases AS l SET incoming = greatest(l.incoming - d.i, 0),
                               outgoing = greatest(l.outgoing - d.o, 0)
            FROM unnest(p_accounts, p_in, p_out) AS d (a, i, o)
            WHERE l.account = d.a AND l.instance = p_instance;
    END $$;

    -- More credit for one account and direction, from what no live lease holds.
    CREATE FUNCTION connector_acquire(
        p_instance TEXT, p_account TEXT, p_incoming BOOLEAN, p_need NUMERIC, p_want NUMERIC,
        p_unit NUMERIC, p_limit NUMERIC, p_ttl_ms INTEGER,
        OUT r_in NUMERIC, OUT r_out NUMERIC, OUT r_exhausted BOOLEAN
    ) LANGUAGE plpgsql AS $$
    DECLARE
        v_balance NUMERIC;
        v_others NUMERIC;
        v_in NUMERIC := 0;
        v_out NUMERIC := 0;
        v_mine NUMERIC;
        v_free NUMERIC;
        v_grant NUMERIC;
        v_now TIMESTAMPTZ;
    BEGIN
        INSERT INTO balances (account) VALUES (p_account) ON CONFLICT DO NOTHING;
        SELECT balance INTO v_balance FROM balances WHERE account = p_account FOR UPDATE;
        -- The time once the lock is ours (now() is when the statement began, before any wait):
        -- whoever held the lock before judged expiry no later than this.
        v_now := clock_timestamp();
        SELECT coalesce(sum(CASE WHEN p_incoming THEN incoming ELSE outgoing END), 0)
            INTO v_others FROM leases
            WHERE account = p_account AND instance <> p_instance AND expires_at > v_now;
        SELECT incoming, outgoing INTO v_in, v_out FROM leases
            WHERE account = p_account AND instance = p_instance AND expires_at > v_now;
        v_in := coalesce(v_in, 0);
        v_out := coalesce(v_out, 0);
        v_mine := CASE WHEN p_incoming THEN v_in ELSE v_out END;
        v_free := CASE WHEN p_incoming THEN p_limit - v_balance ELSE v_balance - p_limit END
                  - v_others - v_mine;
        IF v_free < p_need THEN
            v_grant := greatest(floor(v_free / p_unit) * p_unit, 0);
            r_exhausted := true;
        ELSE
            v_grant := p_need + greatest(
                least(p_want - p_need, floor((v_free - p_need) / 2 / p_unit) * p_unit), 0);
            r_exhausted := false;
        END IF;
        IF p_incoming THEN v_in := v_in + v_grant; ELSE v_out := v_out + v_grant; END IF;
        INSERT INTO leases AS l (account, instance, incoming, outgoing, expires_at)
            VALUES (p_account, p_instance, v_in, v_out,
                    v_now + p_ttl_ms * interval '1 millisecond')
            ON CONFLICT (account, instance) DO UPDATE SET
                incoming = excluded.incoming, outgoing = excluded.outgoing,
                expires_at = excluded.expires_at;
        r_in := v_in;
        r_out := v_out;
    END $$;

    CREATE FUNCTION connector_acquire_many(
        p_instance TEXT, p_accounts TEXT[], p_incoming BOOLEAN[], p_need NUMERIC[],
        p_want NUMERIC[], p_unit NUMERIC[], p_limit NUMERIC[], p_ttl_ms INTEGER
    ) RETURNS TABLE (r_in NUMERIC, r_out NUMERIC, r_exhausted BOOLEAN)
    LANGUAGE plpgsql AS $$
    BEGIN
        -- In the order given: the caller sorts by account, so locks are taken in one order.
        FOR i IN 1 .. coalesce(array_length(p_accounts, 1), 0) LOOP
            RETURN QUERY SELECT * FROM connector_acquire(
                p_instance, p_accounts[i], p_incoming[i], p_need[i], p_want[i], p_unit[i],
                p_limit[i], p_ttl_ms);
        END LOOP;
    END $$;

    -- Shrink this instance's leases to what it still needs and renew them; an expired lease is
    -- never revived (its credit may have gone to another instance: the account rows are locked,
    -- as a grant locks them, before expiry is judged). Answers every balance.
    CREATE FUNCTION connector_renew(
        p_instance TEXT, p_accounts TEXT[], p_in NUMERIC[], p_out NUMERIC[], p_ttl_ms INTEGER
    ) RETURNS TABLE (r_account TEXT, r_balance NUMERIC, r_in NUMERIC, r_out NUMERIC)
    LANGUAGE plpgsql AS $$
    DECLARE
        v_now TIMESTAMPTZ;
    BEGIN
        PERFORM 1 FROM balances WHERE account = ANY (p_accounts)
            ORDER BY account COLLATE "C" FOR UPDATE;
        v_now := clock_timestamp();
        UPDATE leases AS l SET
            incoming = CASE WHEN l.expires_at > v_now THEN least(l.incoming, d.i) ELSE 0 END,
            outgoing = CASE WHEN l.expires_at > v_now THEN least(l.outgoing, d.o) ELSE 0 END,
            expires_at = CASE WHEN l.expires_at > v_now
                              THEN v_now + p_ttl_ms * interval '1 millisecond'
                              ELSE l.expires_at END
            FROM unnest(p_accounts, p_in, p_out) AS d (a, i, o)
            WHERE l.account = d.a AND l.instance = p_instance;
        DELETE FROM leases AS l
            WHERE l.instance = p_instance AND l.incoming = 0 AND l.outgoing = 0;
        RETURN QUERY SELECT b.account, b.balance, coalesce(l.incoming, 0), coalesce(l.outgoing, 0)
            FROM balances AS b LEFT JOIN leases AS l
            ON l.account = b.account AND l.instance = p_instance AND l.expires_at > v_now;
    END $$;
    """,
)

#: Seconds a statement may take before it fails (and a lock wait, half of it).
STATEMENT_TIMEOUT = 10.0

#: Retried at once: PostgreSQL aborted the statement, nothing of it was applied.
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """``url`` without its password, for logs and ``--check-config``: the user-info's (up to
    the last ``@`` before the query, so a raw ``/`` or ``@`` in it hides nothing) and any
    ``password=`` or ``sslpassword=`` parameter."""
    if "://" not in url:  # any scheme: a mistyped one (postgresq://) has its password too
        return url
    scheme, _, rest = url.partition("://")
    address, question, query = rest.partition("?")
    at = address.rfind("@")
    if at >= 0:
        user, colon, _ = address[:at].partition(":")
        address = f"{user}:***{address[at:]}" if colon else address
    if question:
        query = _PASSWORD_PARAMETER.sub(r"\1=***", query)
    return f"{scheme}://{address}{question}{query}"


_PASSWORD_PARAMETER = re.compile(r"(?i)\b(password|sslpassword)=[^&]*")


def default_instance() -> str:
    return socket.gethostname() or "connector"


async def check_reachable(url: str, wait: float = 5.0) -> str | None:
    """Why ``url`` cannot be used (for ``--check-config``), without changing anything."""
    try:
        conn = await asyncpg.connect(url, timeout=wait)
    except (
        ValueError,
        OSError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        TimeoutError,
    ) as exc:
        return f"store {redact(url)}: {_reason(exc)}"
    await conn.close()
    return None


def _reason(exc: BaseException) -> str:
    # asyncpg's messages name the host and user, never the password.
    return str(exc) or type(exc).__name__


class _Op:
    __slots__ = ("args", "future", "kind")

    def __init__(self, kind: str, args: Any, future: asyncio.Future[Any]) -> None:
        self.kind = kind
        self.args = args
        self.future = future


class PostgresStore:
    """The ledger's ``Committer`` and the leases' ``CreditSource`` over one connection."""

    def __init__(
        self,
        url: str,
        instance: str,
        accounts: Sequence[str],
        lease_ttl: float,
        log: LogSink | None = None,
        connect_timeout: float = 10.0,
        statement_timeout: float = STATEMENT_TIMEOUT,
    ) -> None:
        self._url = url
        self.instance = instance
        self._accounts = sorted(accounts)
        self._ttl_ms = round(lease_ttl * 1000)
        self._log = log or NullSink()
        self._timeout = connect_timeout
        self._statement_timeout = statement_timeout
        self._conn: asyncpg.Connection | None = None
        self._ops: list[_Op] = []
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0
        #: Called every ``renew_every`` seconds once open (the ledger's lease renewal).
        self.ticker: Callable[[], None] | None = None
        self.renew_every = 1.0
        self._timer: asyncio.TimerHandle | None = None
        self._backend: int | None = None  # our session's server process, once connected
        self._inflight: list[_Op] = []

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self._url)!r}, instance={self.instance!r})"

    # -- start-up ---------------------------------------------------------------------------

    async def open(self) -> dict[str, int]:
        """Connect, claim the instance name, migrate, release this name's leases, and answer
        the committed balances. Raises ConfigurationError when any of it fails."""
        conn: asyncpg.Connection | None = None
        try:
            conn = await self._connect()
            await self._migrate(conn)
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO balances (account) "
                    'SELECT a FROM unnest($1::text[]) AS a ORDER BY a COLLATE "C" '
                    "ON CONFLICT DO NOTHING",
                    self._accounts,
                )
                released = await conn.fetchval(
                    "WITH gone AS (DELETE FROM leases WHERE instance = $1 "
                    "OR expires_at < now() - interval '1 day' RETURNING 1) "
                    "SELECT count(*) FROM gone",
                    self.instance,
                )
            rows = await conn.fetch("SELECT account, balance FROM balances")
        except Exception as exc:
            if conn is not None:
                conn.terminate()
            reason = str(exc) if isinstance(exc, ConfigurationError) else _reason(exc)
            raise ConfigurationError(f"store {redact(self._url)}: {reason}") from None
        self._conn = conn
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._worker = loop.create_task(self._run(), name="store")
        self._timer = loop.call_later(self.renew_every, self._tick)
        self._log.info(
            "store_opened",
            store="postgresql",
            instance=self.instance,
            leasesReleased=int(released or 0),
        )
        return {row["account"]: int(row["balance"]) for row in rows}

    def _tick(self) -> None:
        if self._closing:
            return
        self._timer = asyncio.get_running_loop().call_later(self.renew_every, self._tick)
        if self.ticker is not None:
            try:
                self.ticker()
            except Exception as exc:  # the next tick tries again
                self._log.error("store_failed", store="postgresql", error=type(exc).__name__)

    async def _connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(
            self._url,
            timeout=self._timeout,
            # A statement that hangs (a lost network, a row someone keeps locked) fails after
            # this long and its packets get T00, instead of holding the store up for ever.
            command_timeout=self._statement_timeout,
            server_settings={
                "lock_timeout": f"{round(self._statement_timeout * 1000) // 2}ms",
                "application_name": f"connector {self.instance}"[:63],
            },
        )
        try:
            claimed = await self._claim(conn)
        except BaseException:
            conn.terminate()
            raise
        if not claimed:
            conn.terminate()
            raise ConfigurationError(
                f"store {redact(self._url)}: another running connector is named "
                f"{self.instance!r} (set store.instance or CONNECTOR_STORE_INSTANCE)"
            )
        self._backend = conn.get_server_pid()
        return conn

    async def _claim(self, conn: asyncpg.Connection) -> bool:
        """The instance name's advisory lock. After a lost connection, the server may not have
        noticed yet that our previous session is gone: that one we end ourselves."""
        query = "SELECT pg_try_advisory_lock(hashtext('connector-instance'), hashtext($1))"
        if await conn.fetchval(query, self.instance):
            return True
        if self._backend is None:
            return False
        ended = await conn.fetchval(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE pid = $1 AND application_name = $2",
            self._backend,
            f"connector {self.instance}"[:63],
        )
        return bool(ended) and bool(await conn.fetchval(query, self.instance))

    @staticmethod
    async def _migrate(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            # One instance migrates at a time; the others wait, then find nothing to do.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('connector-migrations'))")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
            newer_schema(current, len(MIGRATIONS))
            for version, statement in enumerate(MIGRATIONS[current:], start=current + 1):
                await conn.execute(statement)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)

    # -- the ledger's Committer ---------------------------------------------------------------

    def commit(self, deltas: list[tuple[str, int]]) -> asyncio.Future[Any]:
        return self._queue("commit", deltas)

    def set(self, account_id: str, balance: int) -> asyncio.Future[Any]:
        return self._queue("set", (account_id, balance))

    # -- the leases' CreditSource -------------------------------------------------------------

    def acquire(
        self, account_id: str, incoming: bool, need: int, want: int, unit: int, limit: int
    ) -> asyncio.Future[Any]:
        return self._queue("acquire", (account_id, incoming, need, want, unit, limit))

    def renew(self, targets: list[tuple[str, int, int]]) -> asyncio.Future[Any]:
        return self._queue("renew", targets)

    # -- the worker ---------------------------------------------------------------------------

    def _queue(self, kind: str, args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if kind == "commit" and self._ops and self._ops[-1].kind == "commit":
            op = self._ops[-1]  # the batch waiting for the next statement: one future for all
            op.args.extend(args)
            return op.future
        future: asyncio.Future[Any] = loop.create_future()
        if self._closing or self._wake is None:
            future.set_exception(ConnectionError("store closed"))
            return future
        self._ops.append(_Op(kind, list(args) if kind == "commit" else args, future))
        self._wake.set()
        return future

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._ops:
                ops, self._ops = self._ops, []
                self._inflight = ops
                for group in _groups(ops):
                    try:
                        await self._execute(group)
                    except Exception as exc:  # never a silent end: fail the group, go on
                        self._log.error(
                            "store_failed", store="postgresql", error=type(exc).__name__
                        )
                        _fail(group, exc)
                self._inflight = []
            if self._closing:
                return

    async def _execute(self, group: list[_Op]) -> None:
        """One statement for ``group`` (ops of one kind, in order); resolves their futures in
        that order. A lost connection fails the group and is reopened for the next one."""
        statement = _STATEMENTS[group[0].kind]
        error: BaseException | None = None
        for _ in range(3):
            try:
                conn = await self._connection()
                result = await statement(self, conn, group)
            except _RETRYABLE as exc:  # nothing was applied: run it again
                error = exc
                continue
            except (
                ValueError,
                OSError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                TimeoutError,
                ConfigurationError,
            ) as exc:
                self._log.error(
                    "store_failed",
                    store="postgresql",
                    error=type(exc).__name__,
                    detail=_reason(exc)[:200],
                )
                if not isinstance(exc, asyncpg.PostgresError):
                    await self._drop()  # the connection is in doubt; an SQL error leaves it fine
                error = exc
                break
            self.batches += 1
            for op, value in zip(group, result, strict=True):
                if not op.future.done():
                    op.future.set_result(value)
            return
        _fail(group, error or Exception())

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = None
            self._conn = await self._connect()
            self._log.info("store_reconnected", store="postgresql", instance=self.instance)
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()

    async def _commit(self, conn: asyncpg.Connection, group: list[_Op]) -> list[None]:
        incoming: dict[str, int] = {}
        outgoing: dict[str, int] = {}
        for op in group:
            for account, delta in op.args:
                if delta >= 0:
                    incoming[account] = incoming.get(account, 0) + delta
                else:
                    outgoing[account] = outgoing.get(account, 0) - delta
        accounts = sorted(incoming.keys() | outgoing.keys())
        await conn.execute(
            "SELECT connector_commit($1, $2::text[], $3::numeric[], $4::numeric[])",
            self.instance,
            accounts,
            [Decimal(incoming.get(a, 0)) for a in accounts],
            [Decimal(outgoing.get(a, 0)) for a in accounts],
        )
        return [None] * len(group)

    async def _set(self, conn: asyncpg.Connection, group: list[_Op]) -> list[None]:
        async with conn.transaction():
            # Rows locked in one order (see the module docstring); the last set of an account
            # wins, as it would in queue order.
            final = {op.args[0]: op.args[1] for op in group}
            for account in sorted(final):
                balance = final[account]
                await conn.execute(
                    "INSERT INTO balances (account, balance) VALUES ($1, $2) "
                    "ON CONFLICT (account) DO UPDATE SET balance = excluded.balance",
                    account,
                    Decimal(balance),
                )
        return [None] * len(group)

    async def _acquire(
        self, conn: asyncpg.Connection, group: list[_Op]
    ) -> list[tuple[int, int, bool]]:
        order = sorted(range(len(group)), key=lambda i: group[i].args[0])
        rows = await conn.fetch(
            "SELECT * FROM connector_acquire_many($1, $2::text[], $3::boolean[], "
            "$4::numeric[], $5::numeric[], $6::numeric[], $7::numeric[], $8)",
            self.instance,
            [group[i].args[0] for i in order],
            [group[i].args[1] for i in order],
            *([Decimal(group[i].args[k]) for i in order] for k in (2, 3, 4, 5)),
            self._ttl_ms,
        )
        answers: list[tuple[int, int, bool]] = [(0, 0, True)] * len(group)
        for i, row in zip(order, rows, strict=True):
            answers[i] = (int(row["r_in"]), int(row["r_out"]), bool(row["r_exhausted"]))
        return answers

    async def _renew(
        self, conn: asyncpg.Connection, group: list[_Op]
    ) -> list[dict[str, tuple[int, int, int]]]:
        targets: dict[str, tuple[int, int]] = {}
        for op in group:
            for account, keep_in, keep_out in op.args:
                targets[account] = (keep_in, keep_out)
        accounts = sorted(targets)
        rows = await conn.fetch(
            "SELECT * FROM connector_renew($1, $2::text[], $3::numeric[], $4::numeric[], $5)",
            self.instance,
            accounts,
            [Decimal(targets[a][0]) for a in accounts],
            [Decimal(targets[a][1]) for a in accounts],
            self._ttl_ms,
        )
        state = {
            row["r_account"]: (int(row["r_balance"]), int(row["r_in"]), int(row["r_out"]))
            for row in rows
        }
        return [state] * len(group)

    # -- shutdown -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Run what is queued, give this instance's leases back, and disconnect."""
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        if self._worker is not None and self._wake is not None:
            self._wake.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._worker), self._statement_timeout)
            if not self._worker.done():
                self._worker.cancel()
                with contextlib.suppress(BaseException):
                    await self._worker
                await self._drop()  # cancelled mid-statement: the connection is in doubt
        closed = ConnectionError("store closed")
        _fail(self._inflight, closed)
        _fail(self._ops, closed)
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await conn.execute("DELETE FROM leases WHERE instance = $1", self.instance)
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)


def _fail(ops: list[_Op], exc: BaseException) -> None:
    for op in ops:
        if not op.future.done():
            op.future.set_exception(ConnectionError(f"store: {_reason(exc)}"))


def _groups(ops: list[_Op]) -> list[list[_Op]]:
    """Consecutive ops of one kind, in order (acquires and renewals need not wait for each
    other's kind, but order between kinds is kept: it is the order the ledger applies them)."""
    groups: list[list[_Op]] = []
    for op in ops:
        if groups and groups[-1][0].kind == op.kind:
            groups[-1].append(op)
        else:
            groups.append([op])
    return groups


_STATEMENTS: dict[str, Callable[[PostgresStore, asyncpg.Connection, list[_Op]], Any]] = {
    "commit": PostgresStore._commit,
    "set": PostgresStore._set,
    "acquire": PostgresStore._acquire,
    "renew": PostgresStore._renew,
}
