"""Session fixtures shared by every tier.

Servers (integration tier)
    ``postgres_dsn``   admin DSN of a PostgreSQL server: ``ASKUG_TEST_DSN`` or a
                       throwaway cluster started from the installed binaries.
    ``pg_databases``   creates and drops per-test databases on that server.
    ``pg_empty_dsn``   a fresh, empty database for one test.
    ``pg_store``       a migrated :class:`~warehouse._postgres.PostgresStore` on a fresh
                       database (cloned from a migrated template: fast).
    ``mqtt_url``       ``ASKUG_TEST_MQTT_URL`` or a throwaway Mosquitto broker.

A server that cannot be found or started fails the test with the reason; nothing skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests import _servers

# --- report header ----------------------------------------------------------------------------


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    dsn = os.environ.get("ASKUG_TEST_DSN")
    if dsn:
        lines.append(f"postgresql: ASKUG_TEST_DSN ({_external_pg_version(dsn)})")
    else:
        try:
            lines.append(f"postgresql: {_servers.postgres_version()} (throwaway cluster)")
        except (_servers.ServerError, OSError) as exc:
            lines.append(f"postgresql: NOT AVAILABLE: {exc}")
    if os.environ.get("ASKUG_TEST_MQTT_URL"):
        lines.append(f"mosquitto: ASKUG_TEST_MQTT_URL={os.environ['ASKUG_TEST_MQTT_URL']}")
    else:
        try:
            lines.append(f"mosquitto: {_servers.mosquitto_version()} (throwaway broker)")
        except (_servers.ServerError, OSError) as exc:
            lines.append(f"mosquitto: NOT AVAILABLE: {exc}")
    return lines


def _external_pg_version(dsn: str) -> str:
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            row = conn.execute("SELECT version()").fetchone()
            return str(row[0]).split(" on ")[0] if row else "unknown version"
    except psycopg.Error as exc:
        return f"unreachable: {' '.join(str(exc).split())}"


# --- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """Admin DSN (may create databases) of the test PostgreSQL server."""
    dsn = os.environ.get("ASKUG_TEST_DSN")
    if dsn:
        yield dsn
        return
    try:
        server = _servers.PostgresServer().start()
    except _servers.ServerError as exc:
        pytest.fail(f"cannot start a throwaway PostgreSQL: {exc}", pytrace=False)
    try:
        yield server.dsn("postgres")
    finally:
        server.stop()


class PgDatabases:
    """Creates uniquely named databases on the test server and drops them again."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self._template: str | None = None
        self._created: list[str] = []

    def _admin(self, statement: sql.Composable) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(statement)

    def dsn(self, name: str) -> str:
        return make_conninfo(self.admin_dsn, dbname=name)

    def create(self, *, template: str = "template0") -> str:
        """Create a database (a copy of ``template``) and return its name."""
        name = f"askug_t_{uuid.uuid4().hex[:12]}"
        self._admin(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
        self._created.append(name)
        return name

    def drop(self, name: str) -> None:
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if name in self._created:
            self._created.remove(name)

    def migrated_template(self) -> str:
        """A database at the current schema version that tests clone (built once)."""
        if self._template is None:
            from warehouse._postgres import PostgresStore

            name = self.create()
            with PostgresStore(self.dsn(name)) as store:
                store.migrate()
            self._template = name
        return self._template

    def drop_all(self) -> None:
        for name in list(reversed(self._created)):
            self.drop(name)


@pytest.fixture(scope="session")
def pg_databases(postgres_dsn: str) -> Iterator[PgDatabases]:
    dbs = PgDatabases(postgres_dsn)
    try:
        yield dbs
    finally:
        dbs.drop_all()


@pytest.fixture
def pg_empty_dsn(pg_databases: PgDatabases) -> Iterator[str]:
    """DSN of a fresh, empty database (no askug schema) for one test."""
    name = pg_databases.create()
    try:
        yield pg_databases.dsn(name)
    finally:
        pg_databases.drop(name)


@pytest.fixture
def pg_store(pg_databases: PgDatabases) -> Iterator[object]:
    """A migrated PostgresStore on a database of its own (sees no other test's rows)."""
    from warehouse._postgres import PostgresStore

    name = pg_databases.create(template=pg_databases.migrated_template())
    store = PostgresStore(pg_databases.dsn(name))
    try:
        yield store
    finally:
        store.close()
        pg_databases.drop(name)


# --- MQTT ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mqtt_url() -> Iterator[str]:
    """``mqtt://host:port`` of the test broker."""
    url = os.environ.get("ASKUG_TEST_MQTT_URL")
    if url:
        yield url
        return
    try:
        broker = _servers.MosquittoServer().start()
    except _servers.ServerError as exc:
        pytest.fail(f"cannot start a throwaway Mosquitto: {exc}", pytrace=False)
    try:
        yield broker.url
    finally:
        broker.stop()
