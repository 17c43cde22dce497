"""Fixtures shared by the integration tests: a small simulated enterprise, fresh databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo


@pytest.fixture(scope="session")
def small_simulation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded simulator output folder: 20 metering points, 14 winter days, faults on."""
    from ingest import SimulationConfig, simulate

    out = tmp_path_factory.mktemp("simulation")
    simulate(SimulationConfig(meters=20, days=14, seed=3), out)
    return out


@pytest.fixture
def fresh_pg_dsn(postgres_dsn: str) -> Iterator[str]:
    """The DSN of a new, empty database on the test server, dropped afterwards."""
    name = f"askug_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(postgres_dsn, dbname=name)
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as con:
            con.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
