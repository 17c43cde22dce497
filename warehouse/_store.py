"""The store interface: one API over the embedded DuckDB file and PostgreSQL/TimescaleDB.

Only the warehouse talks SQL.  Everything above it reads and writes validated Polars
frames through a :class:`Store`.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import re
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Final, Self

import polars as pl

from warehouse._schemas import TableSpec, spec, validate_frame
from warehouse.errors import SchemaVersionError

_MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


def migration_files(dialect: str) -> list[tuple[int, str, str]]:
    """Return ``(version, name, sql)`` of the shipped migrations for one dialect.

    Dialects are folders under ``warehouse/sql/``: ``duckdb``, ``postgres`` (shared by
    both PostgreSQL variants), ``postgres_plain`` and ``timescale`` (the variant parts).
    """
    folder = resources.files("warehouse") / "sql" / dialect
    out = []
    for entry in folder.iterdir():
        m = _MIGRATION_NAME.match(entry.name)
        if m:
            out.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return sorted(out)


#: The schema version this code expects: the highest migration number shipped.
SCHEMA_VERSION: Final = max(v for v, _, _ in migration_files("duckdb"))


class Store(abc.ABC):
    """A warehouse: reference data, time series, rollups, forecasts, alerts and the cube.

    Writes are idempotent on each table's natural key: writing the same rows twice
    stores them once.  All frames are validated against the contracts in
    :mod:`warehouse._schemas` on the way in and come back in the same schema.
    """

    backend: ClassVar[str]

    # --- lifecycle --------------------------------------------------------------
    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and files."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def describe(self) -> str:
        """A one-line description for logs: backend, location, server version."""

    # --- schema -----------------------------------------------------------------
    @abc.abstractmethod
    def schema_version(self) -> int:
        """The version recorded in the store; 0 for an empty store."""

    @abc.abstractmethod
    def migrate(self) -> int:
        """Apply pending migrations in one transaction each; return the new version."""

    def check_schema(self) -> None:
        """Raise :class:`SchemaVersionError` unless the store is at :data:`SCHEMA_VERSION`."""
        have = self.schema_version()
        if have == SCHEMA_VERSION:
            return
        if have == 0:
            raise SchemaVersionError(
                f"{self.describe()} has no askug schema yet; run `askug migrate` first"
            )
        if have < SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.describe()} is at schema version {have}, this askug expects "
                f"{SCHEMA_VERSION}; run `askug migrate` to upgrade it"
            )
        raise SchemaVersionError(
            f"{self.describe()} is at schema version {have}, newer than this askug "
            f"({SCHEMA_VERSION}); upgrade askug (pip install -U askug)"
        )

    # --- transactions -----------------------------------------------------------
    @abc.abstractmethod
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: all of them are stored, or none (nested calls join the outer one)."""

    # --- data -------------------------------------------------------------------
    def write(self, table: str, frame: pl.DataFrame) -> int:
        """Validate ``frame`` against ``table``'s contract and store the new rows.

        Rows whose natural key is already stored, or repeated inside ``frame``, are
        skipped (the first occurrence wins).

        Returns
        -------
        int
            The number of rows newly stored.
        """
        t = spec(table)
        data = validate_frame(frame, t).unique(subset=list(t.key), keep="first", maintain_order=True)
        if data.height == 0:
            return 0
        # Sorting by the key before it reaches the index is worth 2x on PostgreSQL.
        return self._insert(t, data.sort(list(t.key)))

    @abc.abstractmethod
    def _insert(self, t: TableSpec, frame: pl.DataFrame) -> int:
        """Insert validated, de-duplicated, key-sorted rows; skip stored keys."""

    def replace(self, table: str, frame: pl.DataFrame, *, where: Mapping[str, Sequence[Any]] | None = None) -> int:
        """Delete the rows matching ``where`` (all rows if None) and write ``frame``, atomically."""
        t = spec(table)
        data = validate_frame(frame, t)
        with self.transaction():
            self._delete(t, where or {})
            return self.write(table, data)

    @abc.abstractmethod
    def _delete(self, t: TableSpec, where: Mapping[str, Sequence[Any]]) -> None:
        """Delete rows whose columns take one of the given values (all rows if empty)."""

    def read(
        self,
        table: str,
        *,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        where: Mapping[str, Sequence[Any]] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Read a table as a frame in its contract schema.

        Parameters
        ----------
        table
            Table name (see :data:`warehouse.TABLES`).
        start, end
            Half-open UTC range ``start <= ts < end`` on the table's ``ts`` column.
        where
            Column → allowed values, e.g. ``{"meter_id": ["m1", "m2"]}``.
        columns
            A subset of columns (default: all), in contract order.
        """
        t = spec(table)
        if (start or end) and "ts" not in t.schema:
            raise ValueError(f"table {table!r} has no ts column to filter on; drop start/end")
        for col in (*(where or {}), *(columns or ())):
            if col not in t.schema:
                raise ValueError(f"table {table!r} has no column {col!r}; columns: {list(t.schema)}")
        cols = [c for c in t.schema if columns is None or c in columns]
        frame = self._select(t, cols, start, end, where or {})
        return frame.select(
            [pl.col(c).cast(t.schema[c]) if frame.schema[c] != t.schema[c] else pl.col(c) for c in cols]
        )

    @abc.abstractmethod
    def _select(
        self,
        t: TableSpec,
        columns: list[str],
        start: dt.datetime | None,
        end: dt.datetime | None,
        where: Mapping[str, Sequence[Any]],
    ) -> pl.DataFrame:
        """Run the select; the base class fixes dtypes afterwards."""

    @abc.abstractmethod
    def count(self, table: str) -> int:
        """Number of rows stored in ``table``."""

    @abc.abstractmethod
    def refresh_rollups(self, *, start: dt.datetime | None = None, end: dt.datetime | None = None) -> None:
        """Bring ``daily_archive`` and ``monthly_archive`` up to date with ``hourly_archive``.

        ``start``/``end`` bound the hours that changed; the days and months touching
        them are rebuilt (everything if both are None).
        """

    @abc.abstractmethod
    def sql_frame(self, query: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        """Run a read-only query of the warehouse's own (``warehouse/_queries.py``)."""


def open_store(dsn: str | None = None, *, path: str | Path = "askug.duckdb", read_only: bool = False) -> Store:
    """Open the store: PostgreSQL when ``dsn`` is given, else the embedded DuckDB file.

    Parameters
    ----------
    dsn
        A libpq connection string or ``postgresql://`` URI.  ``None`` selects DuckDB.
    path
        The DuckDB file (created on first use).
    read_only
        Open the DuckDB file read-only (several readers may share it).

    Raises
    ------
    StoreUnavailableError
        The server cannot be reached or the file cannot be opened; the message says why.
    """
    if dsn:
        from warehouse._postgres import PostgresStore

        return PostgresStore(dsn)
    from warehouse._duckdb import DuckDBStore

    return DuckDBStore(path, read_only=read_only)
