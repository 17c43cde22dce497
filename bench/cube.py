"""Gas-day cube benchmark: the five-grouping cube with DuckDB and Polars against a plain GROUP BY.

Rows are generated synthetically inside DuckDB (not through the simulator): ``--meters``
metering points × ``--days`` days of hourly archive (10,000 × 365 = 87.6 M rows) in a
temporary DuckDB store file, with 3 companies in 3 time zones and contract hours
(Europe/Moscow 10:00, Europe/Berlin 06:00, Europe/London 05:00), ``--branches``
branches, 90 % gas / 5 % heat / 5 % water meters, 1 in 10 a corrector with pressure and
temperature, ~0.1 % null hours and ~1 % estimated hours.

Each step runs in a fresh ``spawn`` process (its max RSS is its own) and is repeated
``--repeat`` times, interleaved so machine noise hits every step alike; medians are printed:

* plain GROUP BY (ceiling)  one DuckDB ``SELECT branch_id, ts, sum(volume_m3) … JOIN
                            metering_points GROUP BY branch_id, ts`` over the same rows;
* GROUP BY, cube measures   one DuckDB statement computing the cube's measures (volume,
                            counts, estimated, min/sum/max/count of pressure and
                            temperature) at its finest grain (branch, resource, UTC hour):
                            the cube's input work written as one plain GROUP BY, without
                            the 21 grouping sets, calendars or the write;
* DuckDB cube               ``warehouse.build_gas_cube(store, engine="duckdb")``: all five
                            groupings with every subtotal level, written to the store;
* Polars: read archive      reading the archive's columns from DuckDB into Polars (the
                            price of the Polars engine on this store, not in its figure);
* Polars cube               ``warehouse.gas_cube_from_frames(…, engine="polars")`` on the
                            in-memory frame (same cells as the DuckDB cube);
* incremental refresh       one day's rows arrive late: ``refresh_gas_cube`` for that day
                            (the rows are removed and the cube brought back first, untimed).

The DuckDB cube's phases (heavy pass, grid, 21 grouping sets, write) are timed too and
printed with their ratio to the ceiling; ``--explain`` prints DuckDB's ``EXPLAIN ANALYZE``
of the heavy statements (operator times, row counts, join build side).

Ratios: DuckDB cube / ceiling and Polars cube / ceiling (goal ≤ 2×), both also against
the cube-measures GROUP BY; refresh / DuckDB cube (goal < 5 %).

Usage::

    .venv/bin/python bench/cube.py                       # 10,000 meters × 365 days, 3 repeats
    .venv/bin/python bench/cube.py --meters 200 --days 60 --repeat 1   # smoke run (--quick)
"""

from __future__ import annotations

import argparse
import datetime as dt
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

START = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)
COMPANIES = (("C1", "Europe/Moscow", 10), ("C2", "Europe/Berlin", 6), ("C3", "Europe/London", 5))

_GENERATE = """
INSERT INTO hourly_archive
SELECT printf('M%06d', m) AS meter_id,
       $start + to_hours(h) AS ts,
       CASE WHEN r % 1000 = 0 THEN NULL ELSE 0.2 + (r % 997) / 500.0 END AS volume_m3,
       NULL AS volume_work_m3,
       CASE WHEN m % 10 = 0 AND r % 1000 <> 0 THEN 280.0 + (r % 41) END AS pressure_kpa,
       CASE WHEN m % 10 = 0 AND r % 1000 <> 0 THEN -5.0 + (r % 23) END AS temperature_c,
       CASE WHEN r % 1000 = 0 THEN 'missing' WHEN r % 100 = 7 THEN 'estimated' ELSE 'valid' END AS quality,
       'archive' AS source
FROM (SELECT h, m, hash(h * 100003 + m) AS r
      FROM range($hours) t(h), range($meters) u(m))
"""


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _late_range(days: int) -> tuple[dt.datetime, dt.datetime]:
    """The UTC day whose rows arrive late: the middle of the period."""
    lo = START + dt.timedelta(days=days // 2)
    return lo, lo + dt.timedelta(days=1)


# --- setup -------------------------------------------------------------------------------
def setup(db: str, meters: int, days: int, branches: int) -> tuple[int, float, float]:
    import polars as pl

    from warehouse import open_store

    t = time.perf_counter()
    with open_store(path=db) as store:
        store.migrate()
        store.write(
            "companies",
            pl.DataFrame(
                {
                    "company_id": [c for c, _, _ in COMPANIES],
                    "name": [c for c, _, _ in COMPANIES],
                    "time_zone": [z for _, z, _ in COMPANIES],
                    "contract_hour": [h for _, _, h in COMPANIES],
                }
            ),
        )
        store.write(
            "branches",
            pl.DataFrame(
                {
                    "branch_id": [f"B{i:03d}" for i in range(branches)],
                    "company_id": [COMPANIES[i % len(COMPANIES)][0] for i in range(branches)],
                    "name": [f"branch {i}" for i in range(branches)],
                }
            ),
        )
        ids = list(range(meters))
        resources = ["heat" if i % 20 == 3 else "water" if i % 20 == 11 else "gas" for i in ids]
        company = [COMPANIES[(i % branches) % len(COMPANIES)] for i in ids]
        store.write(
            "metering_points",
            pl.DataFrame(
                {
                    "meter_id": [f"M{i:06d}" for i in ids],
                    "branch_id": [f"B{i % branches:03d}" for i in ids],
                    "name": [f"meter {i}" for i in ids],
                    "resource": resources,
                    "category": ["household" if i % 4 else "industrial" for i in ids],
                    "time_zone": [c[1] for c in company],
                    "contract_hour": [c[2] for c in company],
                }
            ),
        )
        con = store.connection  # type: ignore[attr-defined]
        con.execute(_GENERATE, {"start": START, "hours": days * 24, "meters": meters})
        con.execute("CHECKPOINT")
        n = store.count("hourly_archive")
    return n, time.perf_counter() - t, _peak_mb()


# --- steps: each runs in a fresh process and returns (rows, seconds, peak MB) ------------
def step_plain_group_by(db: str) -> tuple[int, float, float]:
    import duckdb

    con = duckdb.connect(db, read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    t = time.perf_counter()
    rows = con.sql(
        """SELECT m.branch_id, a.ts, sum(a.volume_m3) AS volume_m3
           FROM hourly_archive a JOIN metering_points m USING (meter_id)
           GROUP BY m.branch_id, a.ts"""
    ).to_arrow_table().num_rows
    seconds = time.perf_counter() - t
    (n,) = con.execute("SELECT count(*) FROM hourly_archive").fetchall()[0]
    con.close()
    assert rows
    return int(n), seconds, _peak_mb()


def step_measures_group_by(db: str) -> tuple[int, float, float]:
    """The cube's measures at its finest grain in one plain GROUP BY (no sets, no calendar, no write)."""
    import duckdb

    con = duckdb.connect(db, read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    t = time.perf_counter()
    rows = con.sql(
        """SELECT m.branch_id, m.resource, a.ts,
                  count(*) AS n_rows, sum(a.volume_m3) AS vol_sum, count(a.volume_m3) AS vol_n,
                  count(*) FILTER (a.quality = 'estimated' AND a.volume_m3 IS NOT NULL) AS est_n,
                  min(a.pressure_kpa), max(a.pressure_kpa), sum(a.pressure_kpa), count(a.pressure_kpa),
                  min(a.temperature_c), max(a.temperature_c), sum(a.temperature_c), count(a.temperature_c)
           FROM hourly_archive a JOIN metering_points m USING (meter_id)
           GROUP BY m.branch_id, m.resource, a.ts"""
    ).to_arrow_table().num_rows
    seconds = time.perf_counter() - t
    (n,) = con.execute("SELECT count(*) FROM hourly_archive").fetchall()[0]
    con.close()
    assert rows
    return int(n), seconds, _peak_mb()


#: Phases of the DuckDB cube build timed by ``--phases`` (private functions of
#: ``warehouse._cubes``, wrapped in the bench process only): the heavy pass over the
#: archive, counting the rows read, the hour grid with the calendar, deriving the 21
#: grouping sets, and the write.
PHASES = {"_base": "heavy pass (DuckDB SQL)", "_rows_in": "rows read", "_grid": "grid + calendar",
          "_derive": "21 grouping sets", "_replace_cells": "write cells"}


def _timed_phases() -> dict[str, float]:
    """Wrap the phase functions of ``warehouse._cubes`` to add their wall time to a dict."""
    import functools

    import warehouse._cubes as cubes

    spent: dict[str, float] = {}
    for name in PHASES:
        fn = getattr(cubes, name)

        def timed(*a: Any, _fn: Callable[..., Any] = fn, _name: str = name, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                spent[_name] = spent.get(_name, 0.0) + time.perf_counter() - t

        setattr(cubes, name, functools.wraps(fn)(timed))
    return spent


def _explain_heavy_pass(db: str) -> str:
    """``EXPLAIN ANALYZE`` of the cube's heavy statements (volume, estimated, corrector) over the whole archive."""
    import warehouse._cubes as cubes
    from warehouse import open_store

    with open_store(path=db, read_only=True) as store:
        _, directory = cubes._store_inputs(store)
        dim_map = cubes._dim_table(directory, cubes._CUBE_DIMS)[1]
        con = store.connection  # type: ignore[attr-defined]
        con.register("dim_map_arrow", dim_map.to_arrow())
        con.execute("CREATE TEMP TABLE askug_cube_dim_map AS SELECT meter_id, dim_id FROM dim_map_arrow")
        plans = []
        for template in cubes._BASE_SQL:
            sql = template.format(facts="hourly_archive", dim_map="askug_cube_dim_map", where="", quality="")
            rows = con.execute("EXPLAIN ANALYZE " + sql).fetchall()
            plans.append(str(rows[0][1]))
    return "\n".join(plans)


def step_duckdb_cube(db: str) -> tuple[int, float, float, dict[str, float]]:
    """The DuckDB cube build; also returns the wall time of each phase (:data:`PHASES`)."""
    from warehouse import build_gas_cube, open_store

    spent = _timed_phases()
    with open_store(path=db) as store:
        t = time.perf_counter()
        summary = build_gas_cube(store, engine="duckdb")
        seconds = time.perf_counter() - t
    return summary.hourly_rows, seconds, _peak_mb(), spent


def step_polars_read(db: str) -> tuple[int, float, float]:
    frame, seconds = _read_polars(db)
    return frame.height, seconds, _peak_mb()


def _read_polars(db: str) -> tuple[Any, float]:
    import duckdb
    import polars as pl

    con = duckdb.connect(db, read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    t = time.perf_counter()
    frame = pl.from_arrow(
        con.sql(
            "SELECT meter_id, ts, volume_m3, pressure_kpa, temperature_c, quality FROM hourly_archive"
        ).to_arrow_table()
    )
    con.close()
    return frame, time.perf_counter() - t


def step_polars_cube(db: str) -> tuple[int, float, float]:
    from warehouse import gas_cube_from_frames, open_store

    frame, _ = _read_polars(db)
    with open_store(path=db, read_only=True) as store:
        meters, branches, companies = (store.read(t) for t in ("metering_points", "branches", "companies"))
    t = time.perf_counter()
    cube = gas_cube_from_frames(frame, meters, branches, companies, engine="polars")
    seconds = time.perf_counter() - t
    assert cube.height
    return frame.height, seconds, _peak_mb()


def step_refresh(db: str, days: int) -> tuple[int, float, float]:
    from warehouse import open_store, refresh_gas_cube

    lo, hi = _late_range(days)
    with open_store(path=db) as store:
        con = store.connection  # type: ignore[attr-defined]
        # untimed: take the day out and bring the cube to "before the late data"
        con.execute("CREATE OR REPLACE TEMP TABLE late AS SELECT * FROM hourly_archive WHERE ts >= $lo AND ts < $hi",
                    {"lo": lo, "hi": hi})
        con.execute("DELETE FROM hourly_archive WHERE ts >= $lo AND ts < $hi", {"lo": lo, "hi": hi})
        refresh_gas_cube(store, start=lo, end=hi)
        # the late day arrives
        con.execute("INSERT INTO hourly_archive SELECT * FROM late")
        t = time.perf_counter()
        summary = refresh_gas_cube(store, start=lo, end=hi)
        seconds = time.perf_counter() - t
    return summary.hourly_rows, seconds, _peak_mb()


# --- driver -----------------------------------------------------------------------------------
def run(fn: Callable[..., Any], *args: Any) -> Any:
    """Run one step in a fresh ``spawn`` process (its own max RSS) and return its result."""
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=10_000, help="metering points (default 10,000)")
    parser.add_argument("--days", type=int, default=365, help="days of hourly data (default 365)")
    parser.add_argument("--branches", type=int, default=30, help="branches over the 3 companies (default 30)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats; medians are printed (default 3)")
    parser.add_argument("--no-polars", action="store_true", help="skip the Polars steps (they need ~2× the memory)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 meters × 60 days, 1 repeat")
    parser.add_argument("--explain", action="store_true",
                        help="also print DuckDB's EXPLAIN ANALYZE of the cube's heavy statements")
    parser.add_argument("--workdir", default=None, help="folder for the temporary DuckDB file (default: a temp dir)")
    args = parser.parse_args()
    if args.quick:
        args.meters, args.days, args.repeat = 200, 60, 1
    if args.days < 3 or args.meters < 1 or args.branches < 3:
        parser.error("need --days ≥ 3, --meters ≥ 1, --branches ≥ 3")

    work = Path(tempfile.mkdtemp(prefix="askug-cube-bench-", dir=args.workdir))
    db = str(work / "cube.duckdb")
    results: dict[str, list[tuple[int, float, float]]] = {}

    phases: dict[str, list[float]] = {}

    def measure(name: str, fn: Callable[..., Any], *a: Any) -> None:
        out = run(fn, *a)
        results.setdefault(name, []).append(tuple(out[:3]))
        for phase, sec in (out[3] if len(out) > 3 else {}).items():
            phases.setdefault(phase, []).append(sec)

    print(f"askug cube bench: {args.meters:,} meters × {args.days} days = {args.meters * args.days * 24:,} hourly rows, "
          f"{args.branches} branches, median of {args.repeat}, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC", flush=True)
    try:
        rows, sec, peak = run(setup, db, args.meters, args.days, args.branches)
        print(f"  generated {rows:,} rows in {sec:.1f} s (peak {peak:,.0f} MB)", flush=True)
        for i in range(args.repeat):
            print(f"  run {i + 1}/{args.repeat} …", flush=True)
            measure("plain GROUP BY (ceiling)", step_plain_group_by, db)
            measure("GROUP BY, cube measures", step_measures_group_by, db)
            measure("DuckDB cube (5 groupings)", step_duckdb_cube, db)
            if not args.no_polars:
                measure("Polars: read archive", step_polars_read, db)
                measure("Polars cube (5 groupings)", step_polars_cube, db)
            measure("incremental refresh, 1 day", step_refresh, db, args.days)
        if args.explain:
            print(run(_explain_heavy_pass, db), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(name: str) -> tuple[int, float, float]:
        runs = results[name]
        return runs[0][0], statistics.median(r[1] for r in runs), max(r[2] for r in runs)

    print()
    print(f"{'step':<32}{'rows':>14}{'seconds':>10}{'rows/s':>14}{'peak MB':>10}")
    for name in results:
        n, sec, peak = med(name)
        print(f"{name:<32}{n:>14,}{sec:>10.2f}{n / sec if sec else 0:>14,.0f}{peak:>10,.0f}")
    ceiling = med("plain GROUP BY (ceiling)")[1]
    print()
    print("DuckDB cube phases (median s, × plain GROUP BY):")
    for phase, label in PHASES.items():
        sec = statistics.median(phases.get(phase, [0.0]))
        print(f"  {label:<30}{sec:>10.2f}{sec / ceiling:>9.2f}×")
    print()
    full = med("DuckDB cube (5 groupings)")[1]
    print(f"{'DuckDB cube / plain GROUP BY (goal ≤ 2×)':<56}{full / ceiling:>8.2f}×")
    if "Polars cube (5 groupings)" in results:
        print(f"{'Polars cube / plain GROUP BY (goal ≤ 2×)':<56}{med('Polars cube (5 groupings)')[1] / ceiling:>8.2f}×")
    measures = med("GROUP BY, cube measures")[1]
    print(f"{'DuckDB cube / GROUP BY with the cube measures':<56}{full / measures:>8.2f}×")
    if "Polars cube (5 groupings)" in results:
        print(f"{'Polars cube / GROUP BY with the cube measures':<56}{med('Polars cube (5 groupings)')[1] / measures:>8.2f}×")
    refresh = med("incremental refresh, 1 day")[1]
    print(f"{'incremental 1-day refresh / DuckDB cube (goal < 5 %)':<56}{100 * refresh / full:>7.1f} %")


if __name__ == "__main__":
    main()
