"""Foundation benchmark: simulator readings/s, store load rows/s, cube build time.

Prints one table of medians over ``--repeat`` runs, each step in a fresh process so its
peak memory (max RSS) is its own, plus ratios against references measured in the same
run on the same rows:

* simulator      vs writing the same readings to Parquet alone (the I/O floor);
* DuckDB load    vs a plain Arrow ``INSERT`` of the readings into a table with no key;
* PostgreSQL     vs a raw binary ``COPY`` of the readings into a table with no index;
* cube           vs one plain DuckDB ``GROUP BY branch, hour`` over the same rows.

Usage::

    .venv/bin/python bench/foundation.py                  # 1,000 meters × 365 days
    .venv/bin/python bench/foundation.py --meters 200 --days 60 --repeat 1   # smoke run

PostgreSQL runs on a throwaway cluster started from the installed server binaries (the
same harness the tests use), or on ``--dsn`` if given.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import multiprocessing as mp
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- steps: each runs in a fresh process and returns (rows, seconds, peak MB) ----------
def step_simulate(meters: int, days: int, out: str) -> tuple[int, float, float]:
    from ingest import SimulationConfig, simulate

    shutil.rmtree(out, ignore_errors=True)
    Path(out).mkdir(parents=True)
    t = time.perf_counter()
    summary = simulate(SimulationConfig(meters=meters, days=days, start=dt.date(2021, 1, 1), seed=11), Path(out))
    return summary.readings, time.perf_counter() - t, _peak_mb()


def step_parquet_floor(sim: str, out: str) -> tuple[int, float, float]:
    import polars as pl

    frame = pl.read_parquet(Path(sim) / "readings" / "*.parquet")
    t = time.perf_counter()
    frame.write_parquet(out)
    return frame.height, time.perf_counter() - t, _peak_mb()


def step_load(sim: str, dsn: str | None, db: str) -> tuple[int, float, float]:
    from ingest import load_simulation
    from warehouse import open_store

    Path(db).unlink(missing_ok=True)
    store = open_store(dsn, path=db)
    if dsn:
        _reset_postgres(dsn)
    store.migrate()
    t = time.perf_counter()
    load_simulation(store, Path(sim))
    seconds = time.perf_counter() - t
    rows = store.count("readings") + store.count("hourly_archive")
    store.close()
    return rows, seconds, _peak_mb()


def step_duckdb_insert_floor(sim: str) -> tuple[int, float, float]:
    import duckdb
    import polars as pl

    arrow = pl.read_parquet(Path(sim) / "readings" / "*.parquet").to_arrow()
    con = duckdb.connect(":memory:")
    con.execute("CREATE TABLE r AS SELECT * FROM arrow LIMIT 0")
    t = time.perf_counter()
    con.execute("INSERT INTO r SELECT * FROM arrow")
    return arrow.num_rows, time.perf_counter() - t, _peak_mb()


def step_postgres_copy_floor(sim: str, dsn: str) -> tuple[int, float, float]:
    import polars as pl
    import psycopg

    frame = pl.read_parquet(Path(sim) / "readings" / "*.parquet").drop("received_at")
    buf = io.BytesIO()
    frame.write_csv(buf, include_header=False)
    payload = buf.getvalue()
    with psycopg.connect(dsn) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(
            "CREATE TEMP TABLE r (device_id text, channel text, ts timestamptz, value float8, quality text)"
        )
        t = time.perf_counter()
        with con.cursor().copy("COPY r FROM STDIN (FORMAT csv)") as copy:
            for i in range(0, len(payload), 1 << 20):
                copy.write(payload[i : i + (1 << 20)])
        seconds = time.perf_counter() - t
    return frame.height, seconds, _peak_mb()


def step_cube(db: str) -> tuple[int, float, float]:
    from warehouse import build_cube, open_store

    with open_store(path=db) as store:
        summary = build_cube(store)
    return summary.hourly_rows, summary.seconds, _peak_mb()


def step_plain_group_by(db: str) -> tuple[int, float, float]:
    import duckdb

    con = duckdb.connect(db, read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    t = time.perf_counter()
    rows = con.sql(
        """SELECT m.branch_id, date_trunc('hour', a.ts) AS h, sum(a.volume_m3)
           FROM hourly_archive a JOIN metering_points m USING (meter_id)
           GROUP BY ALL"""
    ).to_arrow_table().num_rows
    seconds = time.perf_counter() - t
    (n,) = con.execute("SELECT count(*) FROM hourly_archive").fetchall()[0]
    con.close()
    assert rows
    return int(n), seconds, _peak_mb()


def _reset_postgres(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("DROP SCHEMA public CASCADE")
        con.execute("CREATE SCHEMA public")


# --- driver ----------------------------------------------------------------------------
def run(fn: Callable[..., tuple[int, float, float]], *args: Any) -> tuple[int, float, float]:
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dsn", default=None, help="PostgreSQL to use instead of a throwaway cluster")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL rows")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="askug-bench-"))
    sim, db = str(work / "sim"), str(work / "bench.duckdb")
    server = None
    dsn = args.dsn
    if not dsn and not args.no_postgres:
        from tests._servers import PostgresServer

        server = PostgresServer().start()
        dsn = server.dsn()
    results: dict[str, list[tuple[int, float, float]]] = {}

    def measure(name: str, fn: Callable[..., tuple[int, float, float]], *a: Any) -> None:
        results.setdefault(name, []).append(run(fn, *a))

    print(f"askug foundation bench: {args.meters} meters × {args.days} days, median of {args.repeat}, "
          f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC", flush=True)
    try:
        for i in range(args.repeat):
            print(f"  run {i + 1}/{args.repeat} …", flush=True)
            # interleave each measurement with its reference so machine noise hits both
            measure("simulate", step_simulate, args.meters, args.days, sim)
            measure("parquet write (floor)", step_parquet_floor, sim, str(work / "floor.parquet"))
            measure("load DuckDB", step_load, sim, None, db)
            measure("DuckDB plain insert (ceiling)", step_duckdb_insert_floor, sim)
            measure("cube (DuckDB)", step_cube, db)
            measure("plain GROUP BY (ceiling)", step_plain_group_by, db)
            if dsn:
                measure("load PostgreSQL", step_load, sim, dsn, db + ".unused")
                measure("PostgreSQL raw COPY (ceiling)", step_postgres_copy_floor, sim, dsn)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    def med(name: str) -> tuple[int, float, float]:
        runs = results[name]
        return runs[0][0], statistics.median(r[1] for r in runs), max(r[2] for r in runs)

    print()
    print(f"{'step':<32}{'rows':>14}{'seconds':>10}{'rows/s':>14}{'peak MB':>10}")
    for name in results:
        rows, sec, peak = med(name)
        print(f"{name:<32}{rows:>14,}{sec:>10.2f}{rows / sec:>14,.0f}{peak:>10,.0f}")
    print()
    pairs = [
        ("simulate", "parquet write (floor)", "simulator time / Parquet write of its readings"),
        ("load DuckDB", "DuckDB plain insert (ceiling)", "DuckDB load time / plain insert of the readings"),
        ("cube (DuckDB)", "plain GROUP BY (ceiling)", "full cube time / one plain GROUP BY"),
        ("load PostgreSQL", "PostgreSQL raw COPY (ceiling)", "PostgreSQL load time / raw COPY of the readings"),
    ]
    for a, b, text in pairs:
        if a in results and b in results:
            print(f"{text:<52}{med(a)[1] / med(b)[1]:>8.1f}×")


if __name__ == "__main__":
    main()
