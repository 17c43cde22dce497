"""One contract, every store: the same tests run on DuckDB (a temp file) and PostgreSQL
(a fresh database on the session's throwaway server)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import duckdb
import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from warehouse import (
    SCHEMA_VERSION,
    TABLES,
    ContractError,
    MigrationError,
    SchemaVersionError,
    Store,
    StoreUnavailableError,
    TableSpec,
)
from warehouse._duckdb import DuckDBStore
from warehouse._postgres import PostgresStore

pytestmark = pytest.mark.integration

UTC = dt.UTC
T0 = dt.datetime(2024, 1, 30, 0, 0, tzinfo=UTC)
DB_ERRORS = (ContractError, duckdb.Error, psycopg.Error)


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(params=["duckdb", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def empty_store(backend: str, request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:
    """A store with no askug schema."""
    if backend == "duckdb":
        store: Store = DuckDBStore(tmp_path / "askug.duckdb")
    else:
        store = PostgresStore(request.getfixturevalue("pg_empty_dsn"))
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def store(backend: str, request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:
    """A migrated, empty store of its own."""
    if backend == "postgres":
        yield request.getfixturevalue("pg_store")
        return
    s = DuckDBStore(tmp_path / "askug.duckdb")
    s.migrate()
    try:
        yield s
    finally:
        s.close()


def execute(store: Store, statement: str) -> None:
    """Raw SQL for test set-up only (stores expose no generic write-SQL API)."""
    if isinstance(store, DuckDBStore):
        store.connection.execute(statement)
    else:
        assert isinstance(store, PostgresStore)
        with store.connection() as conn:
            conn.execute(statement.encode())


def is_timescale(store: Store) -> bool:
    return isinstance(store, PostgresStore) and store.variant == "timescale"


# --- synthetic frames ------------------------------------------------------------------------
_FLOATS = [1 / 3, -7.125, 1e300, None, 2.5e-300, 0.1, float("inf"), 42.0]


def synthetic(t: TableSpec, n: int = 8) -> pl.DataFrame:
    """``n`` rows covering every dtype: nulls in each nullable column, '' next to null
    in nullable strings, non-ASCII text, microsecond UTC instants across a month end."""
    cols = []
    for c, dtype in t.schema.items():
        nullable = c not in t.not_null
        values: list[object] = []
        for r in range(n):
            if nullable and r % 3 == 1:
                values.append(None)
            elif c in t.choices:
                values.append(t.choices[c][r % len(t.choices[c])])
            elif dtype == pl.String:
                values.append("" if nullable and r % 3 == 2 else f'{c}-{r} «Газ, "№{r}"»\n')
            elif isinstance(dtype, pl.Datetime):
                values.append(T0 + dt.timedelta(days=r, hours=r, microseconds=123457 * r))
            elif dtype == pl.Date:
                values.append(dt.date(2024, 1, 1) + dt.timedelta(days=31 * r))
            elif dtype.is_float():
                values.append(
                    _FLOATS[r % len(_FLOATS)]
                    if nullable or _FLOATS[r % len(_FLOATS)] is not None
                    else 1.5
                )
            else:
                values.append(r % 24)
        cols.append(pl.Series(c, values, dtype=dtype))
    return pl.DataFrame(cols)


def hourly(
    meter: str, start: dt.datetime, hours: int, volume: float = 1.0, quality: str = "valid"
) -> pl.DataFrame:
    ts = pl.datetime_range(
        start, start + dt.timedelta(hours=hours - 1), "1h", eager=True, time_zone="UTC"
    )
    return pl.DataFrame(
        {"meter_id": meter, "ts": ts, "volume_m3": volume, "quality": quality, "source": "archive"}
    )


# --- schema and migrations -------------------------------------------------------------------
def test_migrate_from_empty_and_twice_is_noop(empty_store: Store) -> None:
    assert empty_store.schema_version() == 0
    assert empty_store.migrate() == SCHEMA_VERSION
    assert empty_store.schema_version() == SCHEMA_VERSION
    empty_store.check_schema()
    assert empty_store.migrate() == SCHEMA_VERSION
    rows = empty_store.sql_frame("SELECT count(*) AS n FROM askug_schema_version")
    assert rows.item() == SCHEMA_VERSION


def test_check_schema_on_empty_store(empty_store: Store) -> None:
    with pytest.raises(SchemaVersionError, match="askug migrate") as err:
        empty_store.check_schema()
    assert "\n" not in str(err.value)


def test_check_schema_on_newer_store(store: Store) -> None:
    execute(
        store,
        "INSERT INTO askug_schema_version (version, name, variant) VALUES (99, 'future', 'x')",
    )
    assert store.schema_version() == 99
    with pytest.raises(SchemaVersionError, match="newer than this askug") as err:
        store.check_schema()
    assert "\n" not in str(err.value)


def test_failed_migration_keeps_previous_version(empty_store: Store) -> None:
    # A stray table in the way makes migration 001 fail half-way through.
    execute(empty_store, "CREATE TABLE cube (stray integer)")
    with pytest.raises(MigrationError, match="001_core"):
        empty_store.migrate()
    assert empty_store.schema_version() == 0
    left = empty_store.sql_frame(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'companies'"
    )
    assert left.item() == 0


# --- write / read ------------------------------------------------------------------------------
@pytest.mark.parametrize("table", list(TABLES))
def test_round_trip_every_table(store: Store, table: str) -> None:
    t = TABLES[table]
    frame = synthetic(t)
    if table in ("daily_archive", "monthly_archive") and is_timescale(store):
        with pytest.raises(ContractError, match="continuous aggregate"):
            store.write(table, frame)
        return
    assert store.write(table, frame) == frame.height
    assert store.count(table) == frame.height
    back = store.read(table)
    assert back.schema == t.schema
    assert_frame_equal(back, frame.sort(list(t.key)))


def test_utc_preserved(store: Store) -> None:
    local = hourly("m1", dt.datetime(2024, 3, 31, 0, tzinfo=UTC), 6).with_columns(
        pl.col("ts").dt.convert_time_zone("Europe/Berlin")  # crosses the DST switch
    )
    store.write("hourly_archive", local)
    back = store.read("hourly_archive")
    assert back.schema["ts"] == pl.Datetime("us", "UTC")
    assert (
        back.get_column("ts").to_list()
        == local.get_column("ts").dt.convert_time_zone("UTC").to_list()
    )


def test_writes_are_idempotent(store: Store) -> None:
    batch = hourly("m1", T0, 10)
    assert store.write("hourly_archive", batch) == 10
    assert store.write("hourly_archive", batch) == 0
    overlap = hourly("m1", T0 + dt.timedelta(hours=5), 10, volume=9.0)
    assert store.write("hourly_archive", overlap) == 5
    assert store.count("hourly_archive") == 15
    stored = store.read("hourly_archive")
    # Stored keys keep their first value.
    assert stored.filter(pl.col("ts") < T0 + dt.timedelta(hours=10)).get_column(
        "volume_m3"
    ).unique().to_list() == [1.0]
    dup = pl.concat([hourly("m2", T0, 3, volume=1.0), hourly("m2", T0, 3, volume=2.0)])
    assert store.write("hourly_archive", dup) == 3
    assert (
        store.read("hourly_archive", where={"meter_id": ["m2"]}).get_column("volume_m3").to_list()
        == [1.0] * 3
    )


def test_failing_write_rolls_back_transaction(store: Store) -> None:
    good = synthetic(TABLES["companies"]).with_columns(contract_hour=pl.lit(10, pl.Int8))
    bad = good.with_columns(company_id=pl.lit("c-bad"), contract_hour=pl.lit(30, pl.Int8)).head(1)
    # 30 passes the Int8 contract, not the table's CHECK: the database refuses it.
    with pytest.raises(DB_ERRORS), store.transaction():
        assert store.write("companies", good) == good.height
        store.write("hourly_archive", hourly("m1", T0, 48))
        with store.transaction():  # nested: joins the outer one
            store.write("companies", bad)
    assert store.count("companies") == 0
    assert store.count("hourly_archive") == 0
    # The store is usable afterwards.
    assert store.write("companies", good) == good.height


def test_contract_error_leaves_table_unchanged(store: Store) -> None:
    store.write("hourly_archive", hourly("m1", T0, 4))
    with pytest.raises(ContractError, match="quality"):
        store.write("hourly_archive", hourly("m1", T0 + dt.timedelta(days=1), 4, quality="great"))
    with pytest.raises(ContractError, match="missing required columns"):
        store.write("hourly_archive", hourly("m1", T0, 4).drop("source"))
    assert store.count("hourly_archive") == 4


def test_replace(store: Store) -> None:
    store.write("hourly_archive", pl.concat([hourly("m1", T0, 5), hourly("m2", T0, 5)]))
    assert (
        store.replace("hourly_archive", hourly("m1", T0, 2, volume=7.0), where={"meter_id": ["m1"]})
        == 2
    )
    got = store.read("hourly_archive")
    assert got.filter(pl.col("meter_id") == "m1").get_column("volume_m3").to_list() == [7.0, 7.0]
    assert got.filter(pl.col("meter_id") == "m2").height == 5
    assert store.replace("hourly_archive", hourly("m3", T0, 1)) == 1
    assert store.read("hourly_archive").get_column("meter_id").to_list() == ["m3"]


def test_read_filters(store: Store) -> None:
    store.write(
        "hourly_archive",
        pl.concat([hourly("m1", T0, 48), hourly("m2", T0, 48), hourly("m3", T0, 48)]),
    )
    got = store.read(
        "hourly_archive",
        start=T0 + dt.timedelta(hours=10),
        end=T0 + dt.timedelta(hours=20),
        where={"meter_id": ["m1", "m3"], "quality": ["valid"]},
        columns=["volume_m3", "ts", "meter_id"],
    )
    assert got.columns == ["meter_id", "ts", "volume_m3"]  # contract order
    assert got.height == 20
    assert got.get_column("ts").min() == T0 + dt.timedelta(hours=10)
    assert got.get_column("ts").max() == T0 + dt.timedelta(hours=19)
    assert set(got.get_column("meter_id")) == {"m1", "m3"}
    assert store.read("hourly_archive", where={"meter_id": []}).height == 0
    with pytest.raises(ValueError, match="no column 'nope'"):
        store.read("hourly_archive", columns=["nope"])
    with pytest.raises(ValueError, match="no column 'nope'"):
        store.read("hourly_archive", where={"nope": [1]})
    with pytest.raises(ValueError, match="no ts column"):
        store.read("companies", start=T0)
    with pytest.raises(ContractError, match="unknown table"):
        store.read("nope")


# --- rollups ---------------------------------------------------------------------------------
def test_rollups(store: Store) -> None:
    jan30, jan31, feb1 = T0, T0 + dt.timedelta(days=1), T0 + dt.timedelta(days=2)
    frame = pl.concat(
        [
            hourly("m1", jan30, 24, volume=1.0),
            hourly("m1", jan31, 24, volume=2.0),
            hourly("m1", feb1, 24, volume=0.5),
            hourly("m2", jan30, 24, volume=3.0),
        ]
    ).with_columns(
        # jan31 09:00 has no value; feb1 has an estimated and a suspect hour.
        volume_m3=pl.when(pl.col("ts") == jan31 + dt.timedelta(hours=9))
        .then(None)
        .otherwise("volume_m3"),
        quality=pl.when(pl.col("ts") == jan31 + dt.timedelta(hours=9))
        .then(pl.lit("missing"))
        .when((pl.col("meter_id") == "m1") & (pl.col("ts") == feb1 + dt.timedelta(hours=3)))
        .then(pl.lit("estimated"))
        .when((pl.col("meter_id") == "m1") & (pl.col("ts") == feb1 + dt.timedelta(hours=4)))
        .then(pl.lit("suspect"))
        .when((pl.col("meter_id") == "m2") & (pl.col("ts") == jan30 + dt.timedelta(hours=1)))
        .then(pl.lit("edited"))
        .otherwise("quality"),
    )
    store.write("hourly_archive", frame)
    store.refresh_rollups()
    daily = store.read("daily_archive")
    assert daily.select("meter_id", "ts", "volume_m3", "hours", "quality").rows() == [
        ("m1", jan30, 24.0, 24, "valid"),
        ("m1", jan31, 46.0, 23, "missing"),
        ("m1", feb1, 12.0, 24, "suspect"),
        ("m2", jan30, 72.0, 24, "edited"),
    ]
    monthly = store.read("monthly_archive")
    jan, feb = dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 2, 1, tzinfo=UTC)
    assert monthly.rows() == [
        ("m1", jan, 70.0, 47, "missing"),
        ("m1", feb, 12.0, 24, "suspect"),
        ("m2", jan, 72.0, 24, "edited"),
    ]

    # Change hours on jan30 and feb1, refresh only feb1: only feb1 and February move.
    store.replace(
        "hourly_archive", hourly("m1", jan30, 24, volume=10.0), where={"meter_id": ["m1"]}
    )
    store.write("hourly_archive", hourly("m1", feb1, 24, volume=5.0))
    store.refresh_rollups(start=feb1 + dt.timedelta(hours=6), end=feb1 + dt.timedelta(hours=7))
    daily = store.read("daily_archive", where={"meter_id": ["m1"]})
    assert daily.select("ts", "volume_m3", "hours", "quality").rows() == [
        (jan30, 24.0, 24, "valid"),  # not refreshed
        (jan31, 46.0, 23, "missing"),  # not refreshed
        (feb1, 120.0, 24, "valid"),
    ]
    monthly = store.read("monthly_archive", where={"meter_id": ["m1"]})
    assert monthly.select("ts", "volume_m3", "hours").rows() == [(jan, 70.0, 47), (feb, 120.0, 24)]


# --- PostgreSQL only ---------------------------------------------------------------------------
def test_postgres_unreachable_is_one_line(postgres_dsn: str) -> None:
    from tests._servers import free_port

    with pytest.raises(StoreUnavailableError) as err:
        PostgresStore(
            f"host=127.0.0.1 port={free_port()} user=u password=s3cret dbname=askug",
            connect_timeout=2,
        )
    msg = str(err.value)
    assert "\n" not in msg
    assert "127.0.0.1" in msg and "/askug" in msg and "ASKUG_DSN" in msg
    assert "s3cret" not in msg


def test_postgres_plain_partitions(pg_store: PostgresStore) -> None:
    if pg_store.variant != "plain":
        pytest.fail(f"expected the plain variant on the throwaway server, got {pg_store.variant}")
    # A row that reached the DEFAULT partition is moved when its month is created.
    with pg_store.connection() as conn:
        conn.execute(
            "INSERT INTO hourly_archive_default VALUES ('m0', '2023-06-01 05:00+00', 1, NULL, NULL, NULL, 'valid', 'file')"
        )
    pg_store.write(
        "hourly_archive",
        pl.concat([hourly("m1", T0, 72), hourly("m1", dt.datetime(2023, 6, 1, tzinfo=UTC), 2)]),
    )
    parts = pg_store.sql_frame(
        "SELECT tableoid::regclass::text AS part, count(*) AS n FROM hourly_archive GROUP BY 1 ORDER BY 1"
    )
    assert parts.rows() == [
        ("hourly_archive_p202306", 3),
        ("hourly_archive_p202401", 48),
        ("hourly_archive_p202402", 24),
    ]


def test_postgres_concurrent_readers(pg_store: PostgresStore) -> None:
    pg_store.write("hourly_archive", hourly("m1", T0, 100))
    results: list[int] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(5):
                results.append(pg_store.read("hourly_archive").height)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(6)]
    with pg_store.transaction():  # a writer pinned to its own connection meanwhile
        pg_store.write("hourly_archive", hourly("m2", T0, 10))
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert not errors
    assert results == [100] * 30  # readers never see the uncommitted rows
    assert pg_store.count("hourly_archive") == 110


def test_sql_frame_types(pg_store: PostgresStore) -> None:
    got = pg_store.sql_frame(
        "SELECT 1::smallint AS a, 2::bigint AS b, 1.5::float8 AS c, 'x'::text AS d, "
        "'2024-01-01 03:00+03'::timestamptz AS e, DATE '2024-01-02' AS f, NULL::text AS g "
        "WHERE %s",
        [True],
    )
    assert got.schema == pl.Schema(
        {"a": pl.Int16, "b": pl.Int64, "c": pl.Float64, "d": pl.String,
         "e": pl.Datetime("us", "UTC"), "f": pl.Date, "g": pl.String}
    )  # fmt: skip
    assert got.row(0)[4] == dt.datetime(2024, 1, 1, tzinfo=UTC)
