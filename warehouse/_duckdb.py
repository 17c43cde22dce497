"""The embedded store: one DuckDB file, nothing to install or start."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from warehouse import _queries as q
from warehouse._schemas import TableSpec, spec
from warehouse._store import SCHEMA_VERSION, Store, migration_files
from warehouse.errors import MigrationError, StoreUnavailableError


class DuckDBStore(Store):
    """A warehouse in one DuckDB file.

    Bulk writes go through Arrow: the validated, de-duplicated Polars frame is read
    by DuckDB in place and inserted with an anti-join on the natural key, so rows
    already stored are skipped (see ``sql/duckdb/001_core.sql`` for why the time-series
    tables carry no primary-key index).  One connection is
    shared; each thread gets its own cursor, as DuckDB requires.

    Parameters
    ----------
    path
        The database file, created on first use; ``":memory:"`` for a throwaway store.
    read_only
        Open for reading only, so several processes can share the file.
    """

    backend = "duckdb"

    def __init__(self, path: str | Path = "askug.duckdb", *, read_only: bool = False) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            parent = Path(self.path).resolve().parent
            if not parent.is_dir():
                raise StoreUnavailableError(
                    f"cannot create DuckDB store {self.path}: folder {parent} does not exist; "
                    "create it or pass another --db path"
                )
        try:
            self._con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0]
            raise StoreUnavailableError(
                f"cannot open DuckDB store {self.path}: {first}; close the other askug "
                "process using it or pass another --db path"
            ) from exc
        self._con.execute("SET TimeZone = 'UTC'")
        try:
            # DuckDB's own bar would scribble over the command line's progress display.
            self._con.execute("SET enable_progress_bar = false")
        except duckdb.InvalidInputException:
            pass  # inside Jupyter without ipywidgets DuckDB shows no bar and refuses the SET
        self._local = threading.local()
        self._depth = 0
        self._lock = threading.RLock()

    # --- lifecycle ----------------------------------------------------------------
    def close(self) -> None:
        self._con.close()

    def describe(self) -> str:
        return f"DuckDB store {self.path}"

    @property
    def _cur(self) -> duckdb.DuckDBPyConnection:
        # The transaction owner keeps using the main connection; other threads
        # (Dash callbacks) read through cursors of their own.
        if threading.current_thread() is threading.main_thread() or self._depth:
            return self._con
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._local.cur = self._con.cursor()
            cur.execute("SET TimeZone = 'UTC'")
        return cur

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, for warehouse-internal analytical SQL (cube builds)."""
        return self._cur

    # --- schema -------------------------------------------------------------------
    def schema_version(self) -> int:
        # fetchall, not fetchone: duckdb 2.0 keeps a half-read result open, which
        # blocks the next query on the same connection.
        (has,) = self._cur.execute(q.DUCKDB_HAS_VERSION_TABLE).fetchall()[0]
        if not has:
            return 0
        (got,) = self._cur.execute(q.SELECT_SCHEMA_VERSION).fetchall()[0]
        return int(got) if got is not None else 0

    def migrate(self) -> int:
        self._cur.execute(q.DUCKDB_CREATE_VERSION_TABLE)
        have = self.schema_version()
        for version, name, sql in migration_files("duckdb"):
            if version <= have:
                continue
            try:
                with self.transaction():
                    self._cur.execute(sql)
                    self._cur.execute(q.INSERT_SCHEMA_VERSION, [version, name, "duckdb"])
            except duckdb.Error as exc:
                raise MigrationError(f"migration {version:03d}_{name} failed: {exc}") from exc
        return self.schema_version() or SCHEMA_VERSION

    # --- transactions ---------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._con.execute("BEGIN TRANSACTION")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            else:
                self._con.execute("COMMIT")
            finally:
                self._depth = 0

    # --- data -----------------------------------------------------------------------
    def _insert(self, t: TableSpec, frame: pl.DataFrame) -> int:
        cols = ", ".join(f'"{c}"' for c in t.schema)
        arrow = frame.to_arrow()  # noqa: F841 - referenced by name in the SQL below
        match = " AND ".join(f't."{k}" = s."{k}"' for k in t.key)
        params: list[Any] = []
        if "ts" in t.key:
            # Only stored rows inside the batch's time range can collide: zone maps
            # skip every other row group, so the anti-join stays cheap as the table grows.
            match += " AND t.ts BETWEEN ? AND ?"
            ts = frame.get_column("ts")
            params = [ts.min(), ts.max()]
        with self.transaction():
            ((inserted,),) = self._cur.execute(
                f'INSERT INTO "{t.name}" ({cols}) SELECT {cols} FROM arrow s '
                f'WHERE NOT EXISTS (SELECT 1 FROM "{t.name}" t WHERE {match})',
                params,
            ).fetchall()
            return int(inserted)

    def _count(self, table: str) -> int:
        (n,) = self._cur.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0]
        return int(n)

    def count(self, table: str) -> int:
        return self._count(spec(table).name)

    def _delete(self, t: TableSpec, where: Mapping[str, Sequence[Any]]) -> None:
        clause, params = _where(where, None, None)
        self._cur.execute(f'DELETE FROM "{t.name}"{clause}', params)

    def _select(
        self,
        t: TableSpec,
        columns: list[str],
        start: dt.datetime | None,
        end: dt.datetime | None,
        where: Mapping[str, Sequence[Any]],
    ) -> pl.DataFrame:
        clause, params = _where(where, start, end)
        order = ", ".join(f'"{c}"' for c in t.key if c in columns)
        cols = ", ".join(f'"{c}"' for c in columns)
        sql = f'SELECT {cols} FROM "{t.name}"{clause}'
        if order:
            sql += f" ORDER BY {order}"
        return _to_polars(self._cur.sql(sql, params=params).to_arrow_table())

    def refresh_rollups(self, *, start: dt.datetime | None = None, end: dt.datetime | None = None) -> None:
        lo = start or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        hi = end or dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
        with self.transaction():
            for table, unit in (("daily_archive", "day"), ("monthly_archive", "month")):
                self._cur.execute(q.DUCKDB_ROLLUP_DELETE.format(table=table, unit=unit), [lo, hi])
                self._cur.execute(q.DUCKDB_ROLLUP_INSERT.format(table=table, unit=unit), [lo, hi, hi])

    def sql_frame(self, query: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        return _to_polars(self._cur.sql(query, params=list(params)).to_arrow_table())


def _where(
    where: Mapping[str, Sequence[Any]], start: dt.datetime | None, end: dt.datetime | None
) -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    for col, values in where.items():
        parts.append(f'"{col}" IN (SELECT unnest(?))')
        params.append(list(values))
    if start is not None:
        parts.append("ts >= ?")
        params.append(start)
    if end is not None:
        parts.append("ts < ?")
        params.append(end)
    return (" WHERE " + " AND ".join(parts) if parts else ""), params


def _to_polars(result: Any) -> pl.DataFrame:
    # DuckDB hands back an Arrow reader or table depending on version.
    table = result.read_all() if hasattr(result, "read_all") else result
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame
