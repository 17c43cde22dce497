"""The production store: PostgreSQL, with TimescaleDB when the server has it.

Two schema variants share one DDL core (``warehouse/sql/postgres/``):

``timescale``
    hypertables for ``readings``/``hourly_archive``/``events``; ``daily_archive`` and
    ``monthly_archive`` are continuous aggregates; compression and retention policies.
``plain``
    native monthly range partitions with a DEFAULT partition, and rollup tables rebuilt
    by ``askug_refresh_rollups()``.

The variant is chosen once, at the first :meth:`PostgresStore.migrate`, and recorded in
``askug_schema_version``; later migrations follow the recorded variant.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import itertools
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, Literal

import polars as pl
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from warehouse._schemas import TableSpec, spec
from warehouse._store import SCHEMA_VERSION, Store, migration_files
from warehouse.errors import ContractError, MigrationError, StoreUnavailableError, WarehouseError

Variant = Literal["auto", "timescale", "plain"]

# --- runtime SQL of this store --------------------------------------------------------
PG_CREATE_VERSION_TABLE: Final = """
CREATE TABLE IF NOT EXISTS askug_schema_version (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    variant    text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
PG_HAS_VERSION_TABLE: Final = "SELECT to_regclass('askug_schema_version') IS NOT NULL"
PG_SELECT_VERSION: Final = (
    "SELECT version, variant FROM askug_schema_version ORDER BY version DESC LIMIT 1"
)
PG_INSERT_VERSION: Final = (
    "INSERT INTO askug_schema_version (version, name, variant) VALUES (%s, %s, %s)"
)
# One migrator at a time per database; the number is arbitrary but fixed.
PG_MIGRATION_LOCK: Final = "SELECT pg_advisory_xact_lock(4277009102)"
PG_HAS_TIMESCALE: Final = """
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
    OR (EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
        AND current_setting('shared_preload_libraries') ~ 'timescaledb')"""
PG_ENSURE_PARTITIONS: Final = "SELECT askug_ensure_partitions(%s, %s::timestamptz[])"
PG_REFRESH_ROLLUPS: Final = "SELECT askug_refresh_rollups(%s, %s)"
PG_REFRESH_CAGG: Final = "CALL refresh_continuous_aggregate({cagg}, {lo}, {hi})"

#: Tables that are partitioned on ``ts`` in the plain variant (hypertables in the other).
PARTITIONED: Final = ("readings", "hourly_archive", "events", "node_inflow")
#: Tables that are continuous aggregates (read-only, derived) in the timescale variant.
ROLLUPS: Final = ("daily_archive", "monthly_archive")


class PostgresStore(Store):
    """A warehouse in a PostgreSQL database (TimescaleDB or plain).

    Bulk writes ``COPY`` the validated frame as CSV into a temporary staging table and
    move it with ``INSERT … SELECT … ON CONFLICT DO NOTHING`` in one transaction, so a
    re-sent batch stores nothing twice.  Reads stream ``COPY (SELECT …) TO STDOUT``
    straight into Polars.  Connections come from a pool so that dashboard callbacks in
    threads read concurrently; every session runs with ``TimeZone = UTC``.

    Parameters
    ----------
    dsn
        A libpq connection string or ``postgresql://`` URI.
    variant
        ``"auto"`` (default) uses TimescaleDB when the server can load it; ``"plain"``
        forces native partitioning; ``"timescale"`` requires the extension.  Only used
        by the first :meth:`migrate`; afterwards the recorded variant wins.
    max_connections
        Upper bound of the connection pool.
    connect_timeout
        Seconds to wait for the server before raising :class:`StoreUnavailableError`.

    Raises
    ------
    StoreUnavailableError
        The server cannot be reached or refuses the login; the message names host,
        port and database (never the password) and the fix.
    """

    backend = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        variant: Variant = "auto",
        max_connections: int = 8,
        connect_timeout: float = 10.0,
    ) -> None:
        if variant not in ("auto", "timescale", "plain"):
            raise ValueError(f"variant must be 'auto', 'timescale' or 'plain', got {variant!r}")
        self._requested_variant: Variant = variant
        self._dsn = dsn
        self._where = _describe_dsn(dsn)
        try:
            # Fail fast with libpq's own reason before the pool starts retrying.
            probe = psycopg.connect(dsn, connect_timeout=max(1, int(connect_timeout)))
        except psycopg.Error as exc:
            # libpq's first line says what failed; its second repeats our own hint.
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()
            raise StoreUnavailableError(
                f"cannot connect to PostgreSQL at {self._where}: {reason}; "
                "is the server running? check --dsn / ASKUG_DSN"
            ) from exc
        with probe:
            self._server_version = probe.info.server_version
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max(1, max_connections),
            kwargs={"autocommit": True},
            configure=_configure,
            open=False,
            name=f"askug {self._where}",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except PoolTimeout as exc:
            self._pool.close()
            raise StoreUnavailableError(
                f"cannot connect to PostgreSQL at {self._where}: no connection within "
                f"{connect_timeout:g} s; is the server running? check --dsn / ASKUG_DSN"
            ) from exc
        self._local = threading.local()
        self._variant: str | None = None
        self._staging = itertools.count()

    # --- lifecycle ----------------------------------------------------------------
    def reopen_args(self) -> tuple[str, str]:
        """``(dsn, variant)`` to open this store again in another process.

        The connection string may hold a password: hand it over, never log it.
        """
        return self._dsn, self._requested_variant

    def close(self) -> None:
        self._pool.close()

    def describe(self) -> str:
        v = self._server_version
        version = f"{v // 10000}.{v % 10000}" if v >= 100000 else str(v)
        variant = f", {self._variant}" if self._variant else ""
        return f"PostgreSQL {version} store {self._where}{variant}"

    @property
    def variant(self) -> str | None:
        """``"timescale"`` or ``"plain"`` once migrated, else None."""
        if self._variant is None:
            self._read_version()
        return self._variant

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection for warehouse-internal SQL: the transaction's one if inside
        :meth:`transaction` on this thread, else one borrowed from the pool."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self._pool.connection() as conn:
            yield conn

    # --- schema -------------------------------------------------------------------
    def _read_version(self) -> int:
        with self.connection() as conn:
            row = conn.execute(PG_HAS_VERSION_TABLE).fetchone()
            if not row or not row[0]:
                return 0
            got = conn.execute(PG_SELECT_VERSION).fetchone()
        if not got:
            return 0
        self._variant = str(got[1])
        return int(got[0])

    def schema_version(self) -> int:
        return self._read_version()

    def _choose_variant(self, conn: psycopg.Connection[Any]) -> str:
        row = conn.execute(PG_HAS_TIMESCALE).fetchone()
        has_timescale = bool(row and row[0])
        if self._requested_variant == "plain":
            return "plain"
        if self._requested_variant == "timescale" and not has_timescale:
            raise MigrationError(
                f"variant 'timescale' requested but {self._where} cannot load the "
                "timescaledb extension; install TimescaleDB and add it to "
                "shared_preload_libraries, or use variant='plain'"
            )
        return "timescale" if has_timescale else "plain"

    def migrate(self) -> int:
        core = {v: (name, text) for v, name, text in migration_files("postgres")}
        try:
            with self.transaction(), self.connection() as conn:
                conn.execute(PG_MIGRATION_LOCK)
                conn.execute(PG_CREATE_VERSION_TABLE)
        except psycopg.Error as exc:
            raise MigrationError(f"cannot create askug_schema_version: {_one_line(exc)}") from exc
        for version in sorted(core):
            name, core_sql = core[version]
            try:
                with self.transaction(), self.connection() as conn:
                    conn.execute(PG_MIGRATION_LOCK)
                    # Re-read under the lock: another process may have just migrated.
                    have = self._read_version()
                    if version <= have:
                        continue
                    variant = self._variant or self._choose_variant(conn)
                    folder = "timescale" if variant == "timescale" else "postgres_plain"
                    parts = {v: text for v, _, text in migration_files(folder)}
                    # No parameters: psycopg sends the script with the simple protocol,
                    # so one execute() may hold many statements and plpgsql bodies.
                    conn.execute(core_sql.encode())
                    if version in parts:
                        conn.execute(parts[version].encode())
                    conn.execute(PG_INSERT_VERSION, [version, name, variant])
                    self._variant = variant
            except psycopg.Error as exc:
                self._variant = None
                raise MigrationError(
                    f"migration {version:03d}_{name} failed on {self._where}: "
                    f"{_one_line(exc)}; the store stays at version {self.schema_version()}"
                ) from exc
        return self.schema_version() or SCHEMA_VERSION

    # --- transactions ---------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if getattr(self._local, "conn", None) is not None:
            yield  # nested: join the outer transaction
            return
        with self._pool.connection() as conn:
            self._local.conn = conn
            try:
                with conn.transaction():
                    yield
            except BaseException:
                # What this transaction made (temp tables, partitions) is gone again.
                forget_made(self, conn)
                raise
            finally:
                self._local.conn = None

    # --- data -----------------------------------------------------------------------
    def _insert(self, t: TableSpec, frame: pl.DataFrame) -> int:
        if t.name in ROLLUPS and self.variant == "timescale":
            raise ContractError(
                f"{t.name} is a continuous aggregate on TimescaleDB and cannot be written; "
                "write hourly_archive and call refresh_rollups()"
            )
        cols = list(t.schema)
        target = sql.Identifier(t.name)
        staging = sql.Identifier(f"askug_stage_{next(self._staging)}")
        col_list = sql.SQL(", ").join(map(sql.Identifier, cols))
        key_list = sql.SQL(", ").join(map(sql.Identifier, t.key))
        payload = _to_csv(frame)
        with self.transaction(), self.connection() as conn:
            if t.name in PARTITIONED and self.variant == "plain":
                months = frame.get_column("ts").dt.truncate("1mo").unique().to_list()
                conn.execute(PG_ENSURE_PARTITIONS, [t.name, months])
            conn.execute(
                sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                    staging, target
                )
            )
            with conn.cursor() as cur:
                with cur.copy(
                    sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(staging, col_list)
                ) as copy:
                    view = memoryview(payload)
                    for i in range(0, len(view), 1 << 20):
                        copy.write(view[i : i + (1 << 20)])
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {target} ({cols}) SELECT {cols} FROM {staging} "
                        "ORDER BY {key} ON CONFLICT DO NOTHING"
                    ).format(target=target, cols=col_list, staging=staging, key=key_list)
                )
                inserted = cur.rowcount
            conn.execute(sql.SQL("DROP TABLE {}").format(staging))
        return max(inserted, 0)

    def count(self, table: str) -> int:
        t = spec(table)
        with self.connection() as conn:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t.name))
            ).fetchone()
        return int(row[0]) if row else 0

    def _delete(self, t: TableSpec, where: Mapping[str, Sequence[Any]]) -> None:
        if t.name in ROLLUPS and self.variant == "timescale":
            raise ContractError(
                f"{t.name} is a continuous aggregate on TimescaleDB; delete from "
                "hourly_archive and call refresh_rollups()"
            )
        clause, params = _where(t, where, None, None)
        with self.connection() as conn:
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(t.name)) + clause, params)

    def _select(
        self,
        t: TableSpec,
        columns: list[str],
        start: dt.datetime | None,
        end: dt.datetime | None,
        where: Mapping[str, Sequence[Any]],
    ) -> pl.DataFrame:
        clause, params = _where(t, where, start, end)
        exprs = [_export_expr(c, t.schema[c]) for c in columns]
        query = (
            sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(exprs), sql.Identifier(t.name))
            + clause
        )
        order = [c for c in t.key if c in columns]
        if order:
            query += sql.SQL(" ORDER BY {}").format(sql.SQL(", ").join(map(sql.Identifier, order)))
        buf = io.BytesIO()
        # COPY has no server-side parameters; psycopg binds them client-side.
        statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(query)
        with (
            self.connection() as conn,
            conn.cursor() as cur,
            cur.copy(statement, params) as copy,
        ):
            for block in copy:
                buf.write(block)
        return _from_csv(buf.getvalue(), {c: t.schema[c] for c in columns})

    def refresh_rollups(
        self, *, start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> None:
        if self.variant != "timescale":
            with self.connection() as conn:
                conn.execute(PG_REFRESH_ROLLUPS, [start, end])
            return
        if getattr(self._local, "conn", None) is not None:
            raise WarehouseError(
                "refresh_rollups() cannot run inside transaction() on TimescaleDB "
                "(refresh_continuous_aggregate commits on its own); call it after the block"
            )
        # A continuous aggregate refreshes only buckets wholly inside the window, and
        # the monthly one reads the daily one: widen both to whole months.
        lo = _month_floor(start) if start is not None else None
        hi = _month_ceil(end) if end is not None else None
        with self._pool.connection() as conn:
            for cagg in ROLLUPS:
                # Simple protocol, outside any transaction block, as the procedure needs.
                conn.execute(
                    sql.SQL(PG_REFRESH_CAGG)
                    .format(cagg=sql.Literal(cagg), lo=sql.Literal(lo), hi=sql.Literal(hi))
                    .as_string(conn)
                    .encode()
                )

    def sql_frame(self, query: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        with self.connection() as conn, conn.cursor() as cur:
            cur.execute(query.encode() if not params else query, list(params) or None)
            if cur.description is None:
                return pl.DataFrame()
            names = [d.name for d in cur.description]
            dtypes = [_OID_DTYPES.get(d.type_code) for d in cur.description]
            rows = cur.fetchall()
        data = {n: [r[i] for r in rows] for i, n in enumerate(names)}
        series = [
            pl.Series(n, data[n], dtype=dtype, strict=False)
            if dtype is not None
            else pl.Series(n, data[n])
            for n, dtype in zip(names, dtypes, strict=True)
        ]
        return pl.DataFrame(series)


# --- helpers ------------------------------------------------------------------------------
#: Objects landing made and knows exist: per store (monthly partitions, shared by every
#: connection) and per connection (temporary staging tables).  Both are forgotten when a
#: transaction of the store rolls back, since what it made is gone with it.
_MADE_BY_STORE: weakref.WeakKeyDictionary[Any, set[object]] = weakref.WeakKeyDictionary()
_MADE_ON_CONN: weakref.WeakKeyDictionary[Any, set[object]] = weakref.WeakKeyDictionary()
_MADE_LOCK = threading.Lock()


def made(store: Any, conn: Any = None) -> set[object]:
    """The set of things known to exist for ``store`` (``conn`` given: on that connection).

    Callers add to it after making an object and skip the statement when it is there.
    """
    book, key = (_MADE_ON_CONN, conn) if conn is not None else (_MADE_BY_STORE, store)
    with _MADE_LOCK:
        found = book.get(key)
        if found is None:
            found = book[key] = set()
        return found


def forget_made(store: Any, conn: Any = None) -> None:
    """Forget what :func:`made` knows of ``store`` (and of ``conn``)."""
    with _MADE_LOCK:
        for book, key in ((_MADE_BY_STORE, store), (_MADE_ON_CONN, conn)):
            if key is not None and key in book:
                book[key].clear()


def _configure(conn: psycopg.Connection[Any]) -> None:
    # UTC sessions: psycopg returns timestamptz in the session zone.
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("SET DateStyle = 'ISO, YMD'")
    conn.execute("SET extra_float_digits = 1")


def _describe_dsn(dsn: str) -> str:
    """``host:port/db`` of a DSN, never its password."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        raise StoreUnavailableError(
            f"cannot parse the PostgreSQL DSN: {_one_line(exc)}; check --dsn / ASKUG_DSN "
            "(e.g. postgresql://user@localhost:5432/askug)"
        ) from exc
    host = str(parts.get("host") or parts.get("hostaddr") or "localhost")
    port = str(parts.get("port") or "5432")
    db = str(parts.get("dbname") or parts.get("user") or "")
    return f"{host}:{port}/{db}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _where(
    t: TableSpec,
    where: Mapping[str, Sequence[Any]],
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> tuple[sql.Composable, list[Any]]:
    parts: list[sql.Composable] = []
    params: list[Any] = []
    for col, values in where.items():
        parts.append(
            sql.SQL("{} = ANY({}::{}[])").format(
                sql.Identifier(col), sql.Placeholder(), sql.SQL(_pg_type(t.schema[col]))
            )
        )
        params.append(list(values))
    if start is not None:
        parts.append(sql.SQL("ts >= {}::timestamptz").format(sql.Placeholder()))
        params.append(start)
    if end is not None:
        parts.append(sql.SQL("ts < {}::timestamptz").format(sql.Placeholder()))
        params.append(end)
    if not parts:
        return sql.SQL(""), params
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts), params


def _pg_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        return "timestamptz"
    if dtype == pl.Date:
        return "date"
    if dtype.is_integer():
        return "bigint"
    if dtype.is_float():
        return "double precision"
    if dtype == pl.Boolean:
        return "boolean"
    return "text"


def _export_expr(col: str, dtype: pl.DataType) -> sql.Composable:
    """How a column leaves the server in COPY CSV so Polars parses it exactly."""
    ident = sql.Identifier(col)
    if isinstance(dtype, pl.Datetime):
        # Integer microseconds since the epoch: exact, and no zone text to parse.
        return sql.SQL("(extract(epoch FROM {0}) * 1000000)::bigint AS {0}").format(ident)
    if dtype == pl.Date:
        return sql.SQL("({0} - DATE '1970-01-01') AS {0}").format(ident)
    return ident


def _to_csv(frame: pl.DataFrame) -> bytes:
    """CSV that ``COPY … (FORMAT csv)`` reads back exactly.

    Strings are always quoted, so an empty string arrives as ``""`` while a null is
    an unquoted empty field (PostgreSQL's CSV NULL); instants carry their offset.
    """
    return frame.write_csv(
        include_header=False,
        quote_style="non_numeric",
        datetime_format="%Y-%m-%dT%H:%M:%S%.6f%:z",
        date_format="%Y-%m-%d",
    ).encode("utf-8")


def _from_csv(payload: bytes, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    wire = {
        c: (pl.Int64 if isinstance(d, pl.Datetime) or d == pl.Date else d)
        for c, d in schema.items()
    }
    if not payload:
        frame = pl.DataFrame(schema=wire)
    else:
        frame = pl.read_csv(
            io.BytesIO(payload),
            has_header=False,
            schema=wire,
            quote_char='"',
        )
    fixes = []
    for c, d in schema.items():
        if isinstance(d, pl.Datetime):
            fixes.append(pl.col(c).cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias(c))
        elif d == pl.Date:
            fixes.append(pl.col(c).cast(pl.Int32).cast(pl.Date).alias(c))
    return frame.with_columns(fixes) if fixes else frame


def _month_floor(ts: dt.datetime) -> dt.datetime:
    ts = ts.astimezone(dt.UTC)
    return ts.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _month_ceil(ts: dt.datetime) -> dt.datetime:
    floor = _month_floor(ts)
    if floor == ts.astimezone(dt.UTC):
        return floor
    return (
        floor.replace(year=floor.year + 1, month=1)
        if floor.month == 12
        else floor.replace(month=floor.month + 1)
    )


_OID_DTYPES: Final[dict[int, pl.DataType]] = {
    16: pl.Boolean(),
    20: pl.Int64(),
    21: pl.Int16(),
    23: pl.Int32(),
    25: pl.String(),
    700: pl.Float32(),
    701: pl.Float64(),
    1043: pl.String(),
    1082: pl.Date(),
    1114: pl.Datetime("us"),
    1184: pl.Datetime("us", "UTC"),
    1700: pl.Float64(),
}
