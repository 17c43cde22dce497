"""The consolidated cube: company → branch → resource → year → month → day → hour.

Built with DuckDB in one ``GROUP BY ROLLUP`` over the hourly archive joined to the
meter directory.  Calendar parts are in each company's **local time**: the UTC hours
are converted once through a small calendar table (distinct hours × time zones)
instead of converting every row, which keeps the heavy aggregation on plain UTC
timestamps (see ``PERFORMANCE.md``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

import duckdb
import polars as pl

from warehouse._schemas import CUBE, validate_frame
from warehouse._store import Store

#: Grouping levels from coarse to fine; ``total`` is the grand total over companies.
LEVELS: Final = ("total", "company", "branch", "resource", "year", "month", "day", "hour")

_CUBE_SQL: Final = """
WITH h AS (
    SELECT a.meter_id, a.ts, a.volume_m3, m.resource, m.branch_id, b.company_id, c.time_zone
    FROM cube_hourly a
    JOIN cube_meters m USING (meter_id)
    JOIN cube_branches b USING (branch_id)
    JOIN cube_companies c USING (company_id)
),
cal AS (
    SELECT ts, time_zone, timezone(time_zone, ts) AS local_ts
    FROM (SELECT DISTINCT ts, time_zone FROM h)
),
x AS (
    SELECT h.*, year(local_ts)::SMALLINT AS year, month(local_ts)::TINYINT AS month,
           day(local_ts)::TINYINT AS day, hour(local_ts)::TINYINT AS hour
    FROM h JOIN cal USING (ts, time_zone)
)
SELECT
    grouping_id(company_id, branch_id, resource, year, month, day, hour) AS gid,
    coalesce(company_id, '') AS company_id,
    coalesce(branch_id, '') AS branch_id,
    coalesce(resource, '') AS resource,
    coalesce(year, -1)::SMALLINT AS year,
    coalesce(month, -1)::TINYINT AS month,
    coalesce(day, -1)::TINYINT AS day,
    coalesce(hour, -1)::TINYINT AS hour,
    coalesce(sum(volume_m3), 0.0) AS volume_m3,
    count(DISTINCT meter_id)::INTEGER AS meters,
    count(volume_m3) AS "values",
    (count(*) - count(volume_m3)) AS missing
FROM x
GROUP BY ROLLUP (company_id, branch_id, resource, year, month, day, hour)
"""


@dataclass(frozen=True)
class CubeSummary:
    """What a cube build did."""

    rows: int
    hourly_rows: int
    seconds: float


def cube_from_frames(
    hourly: pl.DataFrame,
    meters: pl.DataFrame,
    branches: pl.DataFrame,
    companies: pl.DataFrame,
    *,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pl.DataFrame:
    """Build the cube from frames (hourly archive, metering points, branches, companies).

    Returns
    -------
    polars.DataFrame
        The :data:`~warehouse._schemas.CUBE` frame.  ``level`` names the finest part
        present; rolled-up dimensions hold ``''`` and rolled-up calendar parts ``-1``.
        ``volume_m3`` is the sum of the non-null hourly values (m³, standard conditions),
        ``values``/``missing`` count non-null and null hourly values, ``meters`` the
        distinct metering points.
    """
    own = con is None
    con = con or duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        for name, frame in (
            ("cube_hourly", hourly.select("meter_id", "ts", "volume_m3")),
            ("cube_meters", meters.select("meter_id", "branch_id", "resource")),
            ("cube_branches", branches.select("branch_id", "company_id")),
            ("cube_companies", companies.select("company_id", "time_zone")),
        ):
            con.register(name, frame.to_arrow())
        result = _run(con)
        for name in ("cube_hourly", "cube_meters", "cube_branches", "cube_companies"):
            con.unregister(name)
        return result
    finally:
        if own:
            con.close()


def _run(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    raw = pl.from_arrow(con.sql(_CUBE_SQL).to_arrow_table())
    assert isinstance(raw, pl.DataFrame)
    # grouping_id sets one bit per rolled-up column, the last column in the lowest bit,
    # so ROLLUP yields 2^k - 1 for k rolled-up columns: map that to the finest level.
    n = len(LEVELS) - 1
    level_of = {(1 << (n - i)) - 1: LEVELS[i] for i in range(n + 1)}
    cube = raw.with_columns(
        pl.col("gid").replace_strict(level_of, return_dtype=pl.String).alias("level")
    ).drop("gid")
    return validate_frame(cube, CUBE)


def build_cube(store: Store) -> CubeSummary:
    """Rebuild the stored cube from the store's hourly archive.

    On the embedded DuckDB store the query runs inside the store's own database
    (no copy); on PostgreSQL the hourly archive is pulled as Arrow and aggregated in
    an in-process DuckDB.  The result replaces the ``cube`` table atomically.
    """
    started = time.perf_counter()
    from warehouse._duckdb import DuckDBStore

    if isinstance(store, DuckDBStore):
        con = store.connection
        for view, table in (
            ("cube_hourly", "hourly_archive"),
            ("cube_meters", "metering_points"),
            ("cube_branches", "branches"),
            ("cube_companies", "companies"),
        ):
            con.execute(f'CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM "{table}"')
        cube = _run(con)
        hourly_rows = store.count("hourly_archive")
    else:
        hourly = store.read("hourly_archive", columns=["meter_id", "ts", "volume_m3"])
        hourly_rows = hourly.height
        cube = cube_from_frames(
            hourly, store.read("metering_points"), store.read("branches"), store.read("companies")
        )
    store.replace("cube", cube)
    return CubeSummary(rows=cube.height, hourly_rows=hourly_rows, seconds=time.perf_counter() - started)


def read_cube(store: Store, *, level: str, **filters: str | int) -> pl.DataFrame:
    """Read one level of the stored cube, optionally filtered (``company_id="C01"``, ``year=2022``).

    Examples
    --------
    >>> months = read_cube(store, level="month", company_id="C01")  # doctest: +SKIP
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {list(LEVELS)}, got {level!r}")
    where: dict[str, list[str | int]] = {"level": [level], **{k: [v] for k, v in filters.items()}}
    return store.read("cube", where=where)
