"""Every connector a test builds in process keeps its balances in memory, unless the test says
otherwise: the default store is a file in the working directory, and tests leave no files.
Tests that need PostgreSQL ask for ``postgres_url``: a fresh database on a real server."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from tests.postgres_cluster import PostgresCluster, server_binaries

os.environ.setdefault("CONNECTOR_STORE_URL", "memory://")

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A real PostgreSQL server for this test session, on a free loopback port, stopped and
    removed at the end. Without the server binaries the tests that need it are skipped, except
    in CI, where that is a failure."""
    binaries = server_binaries()
    if binaries is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    cluster = PostgresCluster(binaries).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres: PostgresCluster) -> str:
    """A fresh, empty database of the session's server."""
    return postgres.create_database(f"test{next(_databases)}")
