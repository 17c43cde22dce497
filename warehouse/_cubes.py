"""Consolidated gas-day cubes: the five groupings of the consolidated report, rolled up.

The consolidated report has five groupings, each with a subtotal at every level::

    company-branch            Company → Branch → Year → Month → Day → Hour
    company-branch-resource   Company → Branch → Resource → Year → Month → Day → Hour
    company                   Company → Year → Month → Day → Hour
    company-resource          Company → Resource → Year → Month → Day → Hour
    company-resource-branch   Company → Resource → Branch → Year → Month → Day → Hour

Year, month, day and hour are in each company's **gas-day calendar** (its time zone and
contract hour, :func:`warehouse.gas_day_calendar`): ``day`` is the gas day, ``month``
and ``year`` those of the gas day, ``hour`` the position of the hour inside its gas day
(0 … 22/23/24 — DST days have 23 and 25 hours), with the local clock hour and the UTC
instant alongside.

How it is computed (and why it is cheap).  The five groupings share their cells: the
subtotal sets are only 21 distinct combinations of *dimensions* (none, company,
company+branch, company+resource, company+branch+resource) and *period* (all, year,
month, day, hour).  So the hourly archive is read **once**:

1. *heavy pass* (DuckDB SQL or Polars, the ``engine``): join each hourly row to a small
   integer ``dim_id`` (the metering point's company, branch and resource) and aggregate
   to ``(dim_id, UTC hour)`` with decomposable measures only — sums, counts, minima,
   maxima, no ``count(DISTINCT …)``.  10,000 meters collapse to a few dozen ``dim_id``.
2. the result (≈ 1,000× smaller) is laid on a grid ``dim_id × every hour of every gas
   day`` (so an hour without data counts as expected-but-missing), joined to the gas-day
   calendar of the company, and every grouping set is derived from it by summing finer
   cells: hour → day → month → year → all (Polars, shared by both engines).

Measures (per cell): ``volume_m3`` (sum of hourly volumes, standard conditions; null when
the cell has no value), ``energy_kwh`` (gas only: volume × the calorific value,
:data:`DEFAULT_CALORIFIC_VALUE_KWH_M3` unless given per company), ``hours`` (hourly
values present), ``expected_hours`` (metering points in the directory × hours of the
cell), ``completeness`` (= hours / expected_hours), ``estimated_hours`` and
``share_estimated`` (= estimated_hours / hours), min/avg/max of ``pressure_kpa`` and
``temperature_c`` (correctors only; averages weighted by hours, with the counts
``pressure_hours``/``temperature_hours`` kept so cells can be re-aggregated), and
``meters`` (metering points of the cell's company/branch/resource in the directory).

Incremental refresh (:func:`refresh_gas_cube`): late data for UTC hours ``[start, end)``
re-reads only the gas days that touch them, rewrites those days' hour and day cells,
then re-derives the touched month, year and total cells from the *stored* finer cells
(≤ 31 day cells per month, 12 month cells per year), never from the archive.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import duckdb
import polars as pl

from warehouse._gasday import check_zone, gas_day_calendar
from warehouse._schemas import TABLES, validate_frame
from warehouse.errors import ContractError, WarehouseError

if TYPE_CHECKING:
    from warehouse._store import Store

Engine = Literal["duckdb", "polars"]
#: The hourly archive as a frame, a DuckDB table name (with ``con``), or a reader
#: ``(lo, hi) -> frame`` of the UTC hours ``[lo, hi)`` called once per chunk.
HourlyInput = pl.DataFrame | pl.LazyFrame | str | Callable[[dt.datetime, dt.datetime], pl.DataFrame]

#: Dimension name → column.  ``company`` is always part of the finest grain (its calendar).
DIMENSIONS: Final[dict[str, str]] = {
    "company": "company_id",
    "branch": "branch_id",
    "resource": "resource",
    "category": "category",
    "meter": "meter_id",
}
#: Calendar parts, coarse to fine; a hierarchy uses a prefix of them, in this order.
CALENDAR: Final = ("year", "month", "day", "hour")
#: The period of a cell: the finest calendar part it is grouped by.
PERIODS: Final = ("all", "year", "month", "day", "hour")

#: The five groupings of the consolidated report (name → hierarchy, coarse to fine).
GROUPINGS: Final[dict[str, tuple[str, ...]]] = {
    "company-branch": ("company", "branch", *CALENDAR),
    "company-branch-resource": ("company", "branch", "resource", *CALENDAR),
    "company": ("company", *CALENDAR),
    "company-resource": ("company", "resource", *CALENDAR),
    "company-resource-branch": ("company", "resource", "branch", *CALENDAR),
}

#: Gross calorific value of natural gas, kWh per m³ at standard conditions (20 °C,
#: 101.325 kPa; ≈ 37.4 MJ/m³).  Billing by energy should pass the measured value.
DEFAULT_CALORIFIC_VALUE_KWH_M3: Final = 10.4

_CUBE_DIMS: Final = ("company", "branch", "resource")
_PARTIALS: Final = (
    "vol_sum", "vol_n", "est_n", "expected", "energy",
    "p_min", "p_max", "p_sum", "p_n", "t_min", "t_max", "t_sum", "t_n",
)  # fmt: skip
_COUNTS: Final = ("vol_n", "est_n", "expected", "p_n", "t_n")
_PERIOD_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "hour": ("year", "month", "day", "hour", "gas_day", "ts", "local_hour"),
    "day": ("year", "month", "day", "gas_day"),
    "month": ("year", "month"),
    "year": ("year",),
    "all": (),
}

# The heavy pass, grouped by (dim_id, UTC hour) with decomposable measures only.  ``ts``
# stays a plain UTC instant (no time-zone maths on the big side: PERFORMANCE.md); the
# calendar is joined to the small result.  Three statements, because in DuckDB every
# aggregate and every expression costs a pass over its whole input, while a filter on
# one column is pushed into the scan (rows it drops are never decoded):
#
# * volume: every row, with as few aggregates as the volume measures need;
# * estimated: only the rows marked ``estimated`` (a string comparison evaluated for
#   every row as an aggregate FILTER cost more than this whole statement);
# * corrector: only the rows with a pressure or a temperature (a small share of a
#   fleet), as two single-column-filtered scans: an ``OR`` of two columns is not pushed
#   down, and computing the eight corrector aggregates over every row tripled the scan.
#
# ``{dim_map}`` is a TEMP table, not a registered Arrow scan: probing 87.6 M rows against
# an Arrow-scan build side cost 10× the join against a native table (23 s vs 2.3 s,
# ``bench/cube.py``).  ``{where}`` is empty when ``[lo, hi)`` covers the whole table
# (a full build): a range filter that keeps every row still costs ~20 % of the pass.
_BASE_VOLUME_SQL: Final = """
SELECT m.dim_id, f.ts,
       count(*) AS n_rows,
       sum(f.volume_m3) AS vol_sum,
       count(f.volume_m3) AS vol_n
FROM {facts} f JOIN {dim_map} m ON f.meter_id = m.meter_id
WHERE true {where} {quality}
GROUP BY m.dim_id, f.ts
"""
_BASE_ESTIMATED_SQL: Final = """
SELECT m.dim_id, f.ts, count(*) AS est_n
FROM {facts} f JOIN {dim_map} m ON f.meter_id = m.meter_id
WHERE f.quality = 'estimated' AND f.volume_m3 IS NOT NULL {where} {quality}
GROUP BY m.dim_id, f.ts
"""
_BASE_CORRECTOR_SQL: Final = """
SELECT m.dim_id, f.ts,
       min(f.pressure_kpa) AS p_min, max(f.pressure_kpa) AS p_max,
       sum(f.pressure_kpa) AS p_sum, count(f.pressure_kpa) AS p_n,
       min(f.temperature_c) AS t_min, max(f.temperature_c) AS t_max,
       sum(f.temperature_c) AS t_sum, count(f.temperature_c) AS t_n
FROM (SELECT f.meter_id, f.ts, f.pressure_kpa, f.temperature_c FROM {facts} f
      WHERE f.pressure_kpa IS NOT NULL {where} {quality}
      UNION ALL
      SELECT f.meter_id, f.ts, f.pressure_kpa, f.temperature_c FROM {facts} f
      WHERE f.pressure_kpa IS NULL AND f.temperature_c IS NOT NULL {where} {quality}) f
JOIN {dim_map} m ON f.meter_id = m.meter_id
GROUP BY m.dim_id, f.ts
"""
_BASE_SQL: Final = (_BASE_VOLUME_SQL, _BASE_ESTIMATED_SQL, _BASE_CORRECTOR_SQL)
# For a slice of the archive (an incremental refresh: a day or a few) one statement with
# every measure: on ~10⁵–10⁶ rows the fixed cost of three statements outweighs the
# per-row savings above.
_BASE_ONE_SQL: Final = """
SELECT m.dim_id, f.ts,
       count(*) AS n_rows,
       sum(f.volume_m3) AS vol_sum,
       count(f.volume_m3) AS vol_n,
       count(*) FILTER (f.quality = 'estimated' AND f.volume_m3 IS NOT NULL) AS est_n,
       min(f.pressure_kpa) AS p_min, max(f.pressure_kpa) AS p_max,
       sum(f.pressure_kpa) AS p_sum, count(f.pressure_kpa) AS p_n,
       min(f.temperature_c) AS t_min, max(f.temperature_c) AS t_max,
       sum(f.temperature_c) AS t_sum, count(f.temperature_c) AS t_n
FROM {facts} f JOIN {dim_map} m ON f.meter_id = m.meter_id
WHERE true {where} {quality}
GROUP BY m.dim_id, f.ts
"""
#: A slice of at most this many hours (UTC) takes :data:`_BASE_ONE_SQL`.
_ONE_STATEMENT_HOURS: Final = 24 * 7
_RANGE_SQL: Final = "SELECT min(ts) AS lo, max(ts) AS hi FROM hourly_archive"
_FACT_COLUMNS: Final = ("meter_id", "ts", "volume_m3", "pressure_kpa", "temperature_c", "quality")


@dataclass(frozen=True)
class GasCubeSummary:
    """What a gas-day cube build or refresh did.

    Attributes
    ----------
    cells
        Cube cells written.
    hourly_rows
        Hourly archive rows read (the heavy pass's input).
    gas_days
        Gas days (re)computed at hour and day level.
    seconds
        Wall time.
    engine
        ``"duckdb"`` or ``"polars"``.
    """

    cells: int
    hourly_rows: int
    gas_days: int
    seconds: float
    engine: str


# --- grouping sets ---------------------------------------------------------------------
GroupingSet = tuple[tuple[str, ...], str]  # (dimensions in canonical order, period)


def grouping_sets(hierarchy: Sequence[str]) -> list[GroupingSet]:
    """The subtotal sets of one hierarchy, coarse to fine: one per prefix (the first is the total).

    Raises
    ------
    ContractError
        Unknown parts, repeated parts, or calendar parts not in year → month → day → hour order.
    """
    parts = list(hierarchy)
    unknown = [p for p in parts if p not in DIMENSIONS and p not in CALENDAR]
    if unknown:
        raise ContractError(
            f"unknown grouping part(s) {unknown}; use dimensions {list(DIMENSIONS)} "
            f"and calendar parts {list(CALENDAR)}"
        )
    if len(set(parts)) != len(parts):
        raise ContractError(f"grouping {parts} repeats a part")
    cal = [p for p in parts if p in CALENDAR]
    if cal != sorted(cal, key=CALENDAR.index):
        raise ContractError(f"calendar parts must run coarse to fine (year → month → day → hour), got {cal}")
    out: list[GroupingSet] = []
    for i in range(len(parts) + 1):
        prefix = parts[:i]
        dims = tuple(d for d in DIMENSIONS if d in prefix)
        period = next((p for p in reversed(prefix) if p in CALENDAR), "all")
        out.append((dims, period))
    return out


def dims_label(dims: Sequence[str]) -> str:
    """The ``dims`` column value of a cell: dimension names in canonical order, comma-joined."""
    return ",".join(d for d in DIMENSIONS if d in dims)


def grouping_hierarchy(grouping: str | int) -> tuple[str, ...]:
    """Resolve a grouping by name (see :data:`GROUPINGS`) or number 1–5."""
    names = list(GROUPINGS)
    if isinstance(grouping, int) or (isinstance(grouping, str) and grouping.isdigit()):
        i = int(grouping)
        if 1 <= i <= len(names):
            return GROUPINGS[names[i - 1]]
    elif grouping in GROUPINGS:
        return GROUPINGS[grouping]
    raise ContractError(f"unknown grouping {grouping!r}; use 1–5 or one of {names}")


# --- inputs ------------------------------------------------------------------------------
def cube_directory(meters: pl.DataFrame, branches: pl.DataFrame) -> pl.DataFrame:
    """Metering points with their company: ``meter_id, company_id, branch_id, resource, category``."""
    cols = [c for c in ("meter_id", "branch_id", "resource", "category") if c in meters.columns]
    return meters.select(cols).join(branches.select("branch_id", "company_id"), on="branch_id", how="inner")


def _calendars(companies: pl.DataFrame, company_ids: Iterable[str], start: dt.date, end: dt.date) -> pl.DataFrame:
    """The gas-day calendars of the given companies over gas days ``[start, end)``, stacked."""
    rows = {r["company_id"]: r for r in companies.iter_rows(named=True)}
    parts = []
    for cid in sorted(set(company_ids)):
        if cid not in rows:
            raise ContractError(f"company {cid!r} of a branch is not in the companies table; load it first")
        tz, ch = rows[cid]["time_zone"], int(rows[cid]["contract_hour"])
        check_zone(tz, ch)
        cal = gas_day_calendar(start, end, tz, ch)
        parts.append(
            cal.select(
                pl.lit(cid).alias("company_id"),
                "ts",
                pl.col("gas_year").alias("year"),
                pl.col("gas_month").alias("month"),
                pl.col("gas_day").dt.day().cast(pl.Int8).alias("day"),
                pl.col("gas_hour").alias("hour"),
                "gas_day",
                pl.col("hour").alias("local_hour"),
            )
        )
    if not parts:
        return pl.DataFrame(
            schema={"company_id": pl.String, "ts": pl.Datetime("us", "UTC"), "year": pl.Int16, "month": pl.Int8,
                    "day": pl.Int8, "hour": pl.Int8, "gas_day": pl.Date, "local_hour": pl.Int8}
        )
    return pl.concat(parts)


def _gas_days_of(companies: pl.DataFrame, lo: dt.datetime, hi: dt.datetime) -> list[dt.date]:
    """Gas days (of any company) whose hours intersect the UTC range ``[lo, hi)``."""
    days: set[dt.date] = set()
    for r in companies.iter_rows(named=True):
        cal = gas_day_calendar(lo, hi, r["time_zone"], int(r["contract_hour"]))
        days.update(cal.get_column("gas_day").unique().to_list())
    return sorted(days)


# --- the heavy pass ------------------------------------------------------------------
def _dim_table(directory: pl.DataFrame, dims: Sequence[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(combos, dim_map)``: one row per distinct finest-grain combination with its
    ``dim_id`` and meter count, and ``meter_id → dim_id``."""
    cols = [DIMENSIONS[d] for d in DIMENSIONS if d in dims or d in ("company", "resource")]
    combos = (
        directory.group_by(cols)
        .agg(pl.len().cast(pl.Int32).alias("meters"))
        .sort(cols)
        .with_row_index("dim_id")
        .with_columns(pl.col("dim_id").cast(pl.Int32))
    )
    dim_map = directory.join(combos.select(*cols, "dim_id"), on=cols, how="inner", nulls_equal=True)
    return combos, dim_map.select("meter_id", "dim_id")


def _facts_frame(hourly: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    lf = hourly.lazy()
    names = lf.collect_schema().names()
    missing = [c for c in ("meter_id", "ts", "volume_m3", "quality") if c not in names]
    if missing:
        raise ContractError(f"hourly frame lacks columns {missing}; it needs meter_id, ts, volume_m3, quality")
    extra = [pl.lit(None, pl.Float64).alias(c) for c in ("pressure_kpa", "temperature_c") if c not in names]
    return lf.with_columns(extra).select(_FACT_COLUMNS) if extra else lf.select(_FACT_COLUMNS)


def _base_polars(
    facts: pl.LazyFrame, dim_map: pl.DataFrame, lo: dt.datetime, hi: dt.datetime, qualities: Sequence[str] | None
) -> pl.DataFrame:
    key_dtype = facts.collect_schema()["meter_id"]
    lf = facts.filter((pl.col("ts") >= lo) & (pl.col("ts") < hi))
    if qualities is not None:
        lf = lf.filter(pl.col("quality").cast(pl.String).is_in(list(qualities)))
    lf = lf.join(dim_map.lazy().with_columns(pl.col("meter_id").cast(key_dtype)), on="meter_id", how="inner")
    vol = pl.col("volume_m3")
    volume = lf.group_by("dim_id", "ts").agg(
        pl.len().alias("n_rows"),
        vol.sum().alias("vol_sum"),
        vol.count().alias("vol_n"),
        (vol.is_not_null() & (pl.col("quality") == "estimated")).sum().alias("est_n"),
    )
    p, t = pl.col("pressure_kpa"), pl.col("temperature_c")
    corrector = (
        lf.filter(p.is_not_null() | t.is_not_null())
        .group_by("dim_id", "ts")
        .agg(
            p.min().alias("p_min"), p.max().alias("p_max"), p.sum().alias("p_sum"), p.count().alias("p_n"),
            t.min().alias("t_min"), t.max().alias("t_max"), t.sum().alias("t_sum"), t.count().alias("t_n"),
        )
    )
    v, c = pl.collect_all([volume, corrector])
    return _normalise_base(v.join(c, on=["dim_id", "ts"], how="left"))


def _base_duckdb(
    con: duckdb.DuckDBPyConnection,
    facts: str,
    dim_map: pl.DataFrame,
    lo: dt.datetime,
    hi: dt.datetime,
    qualities: Sequence[str] | None,
) -> pl.DataFrame:
    name = "askug_cube_dim_map"
    con.register(f"{name}_arrow", dim_map.to_arrow())
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT meter_id, dim_id FROM {name}_arrow")
    finally:
        con.unregister(f"{name}_arrow")
    try:
        params: dict[str, object] = {}
        where = ""
        # answered from the table's statistics, no scan
        first, last = con.sql(f"SELECT epoch_us(min(ts)), epoch_us(max(ts)) FROM {facts}").fetchall()[0]
        if first is None or first < _epoch_us(lo) or last >= _epoch_us(hi):
            where = "AND f.ts >= $lo AND f.ts < $hi"
            params.update(lo=lo, hi=hi)
        quality = ""
        if qualities is not None:
            quality = "AND f.quality IN (SELECT unnest($q))"
            params["q"] = list(qualities)
        if where and hi - lo <= dt.timedelta(hours=_ONE_STATEMENT_HOURS):
            text = _BASE_ONE_SQL.format(facts=facts, dim_map=name, where=where, quality=quality)
            one = pl.from_arrow(con.sql(text, params=params).to_arrow_table())
            assert isinstance(one, pl.DataFrame)
            return _normalise_base(one)
        parts = []
        for sql in _BASE_SQL:
            text = sql.format(facts=facts, dim_map=name, where=where, quality=quality)
            frame = pl.from_arrow(con.sql(text, params=params or None).to_arrow_table())
            assert isinstance(frame, pl.DataFrame)
            parts.append(frame)
    finally:
        con.execute(f"DROP TABLE IF EXISTS temp.{name}")
    volume, estimated, corrector = parts
    base = volume.join(estimated, on=["dim_id", "ts"], how="left").join(corrector, on=["dim_id", "ts"], how="left")
    return _normalise_base(base.with_columns(pl.col("est_n").fill_null(0)))


def _epoch_us(at: dt.datetime) -> int:
    """Microseconds since the epoch of ``at`` (naive = UTC)."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
    return (aware - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def _normalise_base(base: pl.DataFrame) -> pl.DataFrame:
    """Same dtypes from both engines; UTC ``ts``."""
    floats = ("vol_sum", "p_min", "p_max", "p_sum", "t_min", "t_max", "t_sum")
    ts = pl.col("ts")
    if base.schema["ts"] != pl.Datetime("us", "UTC"):
        ts = ts.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    return base.select(
        pl.col("dim_id").cast(pl.Int32),
        ts.alias("ts"),
        pl.col("n_rows").cast(pl.Int64),
        *[pl.col(c).cast(pl.Float64) for c in floats[:1]],
        *[pl.col(c).cast(pl.Int64) for c in ("vol_n", "est_n")],
        *[pl.col(c).cast(pl.Float64) for c in floats[1:4]],
        pl.col("p_n").cast(pl.Int64),
        *[pl.col(c).cast(pl.Float64) for c in floats[4:]],
        pl.col("t_n").cast(pl.Int64),
    )


# --- derivation: grid, calendar, grouping sets -------------------------------------------
def _calorific(companies: pl.DataFrame, value: float | Mapping[str, float]) -> pl.DataFrame:
    ids = companies.get_column("company_id").to_list()
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(ids))
        if unknown:
            raise ContractError(f"calorific values given for unknown companies {unknown}")
        values = [float(value.get(c, DEFAULT_CALORIFIC_VALUE_KWH_M3)) for c in ids]
    else:
        values = [float(value)] * len(ids)
    if any(not v > 0 for v in values):
        raise ContractError(f"calorific values must be positive kWh/m³, got {values}")
    return pl.DataFrame({"company_id": ids, "cv_kwh_m3": values}, schema={"company_id": pl.String, "cv_kwh_m3": pl.Float64})


def _grid(
    combos: pl.DataFrame, calendar: pl.DataFrame, base: pl.DataFrame, cv: pl.DataFrame
) -> pl.DataFrame:
    """Every (combination, hour of the covered gas days) with its partial measures."""
    grid = combos.join(calendar, on="company_id", how="inner").join(base, on=["dim_id", "ts"], how="left")
    grid = grid.join(cv, on="company_id", how="left").with_columns(
        pl.col("vol_sum").fill_null(0.0),
        *[pl.col(c).fill_null(0) for c in ("vol_n", "est_n", "p_n", "t_n")],
        pl.col("p_sum").fill_null(0.0),
        pl.col("t_sum").fill_null(0.0),
        pl.col("meters").cast(pl.Int64).alias("expected"),
    )
    energy = (
        pl.when((pl.col("resource") == "gas") & (pl.col("vol_n") > 0))
        .then(pl.col("vol_sum") * pl.col("cv_kwh_m3").fill_null(DEFAULT_CALORIFIC_VALUE_KWH_M3))
        .otherwise(None)
    )
    return grid.with_columns(energy.alias("energy")).drop("cv_kwh_m3", "n_rows")


def _agg() -> list[pl.Expr]:
    e = pl.col("energy")
    return [
        pl.col("vol_sum").sum(),
        *[pl.col(c).sum() for c in _COUNTS],
        pl.when(e.is_not_null().any()).then(e.sum()).alias("energy"),
        pl.col("p_min").min(),
        pl.col("p_max").max(),
        pl.col("p_sum").sum(),
        pl.col("t_min").min(),
        pl.col("t_max").max(),
        pl.col("t_sum").sum(),
    ]


def _aggregate(
    frame: pl.DataFrame, dims: Sequence[str], period: str, calendar: pl.DataFrame, *, identity: bool = False
) -> pl.DataFrame:
    """Sum partial measures of finer cells into cells of ``(dims, period)``.

    Groups by as few keys as determine the cell (``ts`` for an hour of one company,
    ``gas_day`` for a day) and attaches the calendar parts afterwards: grouping by all
    seven calendar columns cost more than the aggregation itself.  ``identity`` says
    ``frame`` already is at this grain (the grid's own dims at hour level).
    """
    keys = [DIMENSIONS[d] for d in dims]
    if period == "hour" and "company" in dims:
        cells = frame if identity else frame.group_by([*keys, "ts"]).agg(_agg())
        if identity:
            return cells
        parts = calendar.select("company_id", "ts", "year", "month", "day", "hour", "gas_day", "local_hour")
        return cells.join(parts, on=["company_id", "ts"], how="left")
    if period == "day":
        cells = frame.group_by([*keys, "gas_day"]).agg(_agg())
        return cells.with_columns(
            pl.col("gas_day").dt.year().cast(pl.Int16).alias("year"),
            pl.col("gas_day").dt.month().cast(pl.Int8).alias("month"),
            pl.col("gas_day").dt.day().cast(pl.Int8).alias("day"),
        )
    keys += list(_PERIOD_KEYS[period])
    if period == "hour":  # no company: the same gas hour of different zones adds up
        keys = [k for k in keys if k not in ("ts", "local_hour")]
    if not keys:
        return frame.select(_agg())
    return frame.group_by(keys).agg(_agg())


def _derive(
    grid: pl.DataFrame,
    sets: Sequence[GroupingSet],
    dim_columns: Sequence[str],
    directory: pl.DataFrame,
    calendar: pl.DataFrame,
    fine: Sequence[str],
) -> pl.DataFrame:
    """All cells of ``sets`` from the grid, each dims' periods chained hour → day → … → all."""
    by_dims: dict[tuple[str, ...], set[str]] = {}
    for dims, period in sets:
        by_dims.setdefault(dims, set()).add(period)
    out: list[pl.DataFrame] = []
    for dims, periods in by_dims.items():
        finer: pl.DataFrame | None = None
        for period in reversed(PERIODS):  # hour first
            if finer is None and period not in periods:
                continue
            identity = finer is None and period == "hour" and set(dims) == set(fine)
            cells = _aggregate(grid if finer is None else finer, dims, period, calendar, identity=identity)
            finer = cells
            if period in periods:
                out.append(_finish(cells, dims, period, dim_columns, directory))
    return pl.concat(out, how="vertical") if out else _empty_cells(dim_columns)


def _meters(directory: pl.DataFrame, dims: Sequence[str]) -> pl.DataFrame:
    keys = [DIMENSIONS[d] for d in dims]
    if not keys:
        return pl.DataFrame({"meters": [directory.height]}, schema={"meters": pl.Int32})
    return directory.group_by(keys).agg(pl.len().cast(pl.Int32).alias("meters"))


def _cell_columns(dim_columns: Sequence[str]) -> dict[str, pl.DataType]:
    cols: dict[str, pl.DataType] = {"dims": pl.String(), "period": pl.String()}
    cols.update({c: pl.String() for c in dim_columns})
    cols.update(
        {
            "year": pl.Int16(), "month": pl.Int8(), "day": pl.Int8(), "hour": pl.Int8(),
            "gas_day": pl.Date(), "ts": pl.Datetime("us", "UTC"), "local_hour": pl.Int8(),
            "meters": pl.Int32(), "volume_m3": pl.Float64(), "energy_kwh": pl.Float64(),
            "hours": pl.Int64(), "expected_hours": pl.Int64(), "completeness": pl.Float64(),
            "estimated_hours": pl.Int64(), "share_estimated": pl.Float64(),
            "pressure_kpa_min": pl.Float64(), "pressure_kpa_avg": pl.Float64(),
            "pressure_kpa_max": pl.Float64(), "pressure_hours": pl.Int64(),
            "temperature_c_min": pl.Float64(), "temperature_c_avg": pl.Float64(),
            "temperature_c_max": pl.Float64(), "temperature_hours": pl.Int64(),
        }
    )  # fmt: skip
    return cols


def _ratio(num: str, den: str) -> pl.Expr:
    return pl.when(pl.col(den) > 0).then(pl.col(num) / pl.col(den))


def _measures() -> list[pl.Expr]:
    """The published measures of a cell from its partial (decomposable) measures."""
    return [
        pl.when(pl.col("vol_n") > 0).then(pl.col("vol_sum")).alias("volume_m3"),
        pl.col("energy").alias("energy_kwh"),
        pl.col("vol_n").alias("hours"),
        pl.col("expected").alias("expected_hours"),
        _ratio("vol_n", "expected").alias("completeness"),
        pl.col("est_n").alias("estimated_hours"),
        _ratio("est_n", "vol_n").alias("share_estimated"),
        pl.col("p_min").alias("pressure_kpa_min"),
        _ratio("p_sum", "p_n").alias("pressure_kpa_avg"),
        pl.col("p_max").alias("pressure_kpa_max"),
        pl.col("p_n").alias("pressure_hours"),
        pl.col("t_min").alias("temperature_c_min"),
        _ratio("t_sum", "t_n").alias("temperature_c_avg"),
        pl.col("t_max").alias("temperature_c_max"),
        pl.col("t_n").alias("temperature_hours"),
    ]


def _empty_cells(dim_columns: Sequence[str]) -> pl.DataFrame:
    return pl.DataFrame(schema=_cell_columns(dim_columns))


def _finish(
    cells: pl.DataFrame, dims: Sequence[str], period: str, dim_columns: Sequence[str], directory: pl.DataFrame
) -> pl.DataFrame:
    """Partial measures → the published measures, with sentinels for rolled-up parts."""
    keys = [DIMENSIONS[d] for d in dims]
    meters = _meters(directory, dims)
    cells = cells.join(meters, on=keys, how="left") if keys else cells.join(meters, how="cross")
    schema = _cell_columns(dim_columns)
    present = set(cells.columns)

    def part(name: str, sentinel: object) -> pl.Expr:
        if name in present:
            return pl.col(name).cast(schema[name])
        return pl.lit(sentinel, dtype=schema[name]).alias(name)

    return cells.select(
        pl.lit(dims_label(dims)).alias("dims"),
        pl.lit(period).alias("period"),
        *[part(c, "") for c in dim_columns],
        *[part(c, -1) for c in CALENDAR],
        *[part(c, None) for c in ("gas_day", "ts", "local_hour")],
        pl.col("meters").fill_null(0).cast(pl.Int32),
        *_measures(),
    ).cast(schema)  # type: ignore[arg-type]


def _to_partials(cells: pl.DataFrame) -> pl.DataFrame:
    """Published cells → partial measures (the inverse of :func:`_finish`), to re-aggregate."""
    return cells.with_columns(
        pl.col("volume_m3").fill_null(0.0).alias("vol_sum"),
        pl.col("hours").alias("vol_n"),
        pl.col("estimated_hours").alias("est_n"),
        pl.col("expected_hours").alias("expected"),
        pl.col("energy_kwh").alias("energy"),
        pl.col("pressure_kpa_min").alias("p_min"),
        pl.col("pressure_kpa_max").alias("p_max"),
        (pl.col("pressure_kpa_avg") * pl.col("pressure_hours")).fill_null(0.0).alias("p_sum"),
        pl.col("pressure_hours").alias("p_n"),
        pl.col("temperature_c_min").alias("t_min"),
        pl.col("temperature_c_max").alias("t_max"),
        (pl.col("temperature_c_avg") * pl.col("temperature_hours")).fill_null(0.0).alias("t_sum"),
        pl.col("temperature_hours").alias("t_n"),
    )


# --- the engine over frames ----------------------------------------------------------------
def rollup_hourly(
    hourly: HourlyInput,
    directory: pl.DataFrame,
    companies: pl.DataFrame,
    *,
    hierarchies: Sequence[Sequence[str]],
    start: dt.date,
    end: dt.date,
    engine: Engine = "duckdb",
    con: duckdb.DuckDBPyConnection | None = None,
    qualities: Sequence[str] | None = None,
    periods: Iterable[str] | None = None,
    calorific_value_kwh_m3: float | Mapping[str, float] = DEFAULT_CALORIFIC_VALUE_KWH_M3,
    chunk_days: int | None = None,
) -> tuple[pl.DataFrame, int]:
    """Roll hourly consumption up along one or more hierarchies, in the gas-day calendar.

    The engine behind the stored cube (:func:`build_gas_cube`) and analytics' universal
    report.  Returns every subtotal cell of every hierarchy, each distinct grouping set
    once, and the number of hourly rows read.

    Parameters
    ----------
    hourly
        The hourly archive: a frame with ``meter_id, ts (UTC), volume_m3, quality`` and
        optionally ``pressure_kpa, temperature_c``; a reader ``(lo, hi) -> frame`` of
        the UTC hours ``[lo, hi)`` (called once per chunk); or, with
        ``engine="duckdb"`` and ``con``, the name of a table/view with those columns.
    directory
        One row per metering point: ``meter_id, company_id`` and the dimension columns
        the hierarchies use (:func:`cube_directory`).  Only these meters count, both for
        the sums and for ``expected_hours``.
    companies
        ``company_id, time_zone, contract_hour``.
    hierarchies
        E.g. ``[("company", "branch", "year", "month")]``; see :data:`GROUPINGS`.
    start, end
        Gas days ``start <= gas_day < end`` (each company's own calendar).
    engine
        Who runs the heavy pass over the hourly rows: ``"duckdb"`` or ``"polars"``.
    qualities
        Keep only hourly values with these quality codes (``None``: all).
    periods
        Compute only cells of these periods (``None``: all).
    calorific_value_kwh_m3
        kWh per m³ for ``energy_kwh`` of gas: one value or ``{company_id: value}``.
    chunk_days
        Read the hourly frame in chunks of this many gas days (bounded memory).

    Returns
    -------
    (polars.DataFrame, int)
        Cells (``dims, period``, the dimension columns with ``''`` when rolled up,
        ``year, month, day, hour`` with ``-1`` when rolled up, ``gas_day, ts,
        local_hour`` on day/hour cells, and the measures of the module docstring) and
        the hourly rows read.
    """
    if engine not in ("duckdb", "polars"):
        raise ContractError(f"engine must be 'duckdb' or 'polars', got {engine!r}")
    if end < start:
        raise ContractError(f"end {end} is before start {start}; swap them")
    sets: list[GroupingSet] = list(dict.fromkeys(s for h in hierarchies for s in grouping_sets(h)))
    if periods is not None:
        keep = set(periods)
        sets = [s for s in sets if s[1] in keep]
    used = {d for dims, _ in sets for d in dims} | {d for h in hierarchies for d in h if d in DIMENSIONS}
    dim_columns = [DIMENSIONS[d] for d in DIMENSIONS if d in used or d == "company"]
    fine = [d for d in DIMENSIONS if d in used]
    combos, dim_map = _dim_table(directory, fine)
    calendar = _calendars(companies, combos.get_column("company_id").to_list(), start, end)
    if calendar.height == 0:
        return _empty_cells(dim_columns), 0
    cv = _calorific(companies, calorific_value_kwh_m3)

    # The heavy pass over the UTC hours of the covered gas days, in disjoint UTC chunks.
    lo_all = calendar.get_column("ts").min()
    hi_all = calendar.get_column("ts").max()
    assert isinstance(lo_all, dt.datetime) and isinstance(hi_all, dt.datetime)
    hi_all += dt.timedelta(hours=1)
    step = dt.timedelta(days=chunk_days) if chunk_days else hi_all - lo_all
    bases: list[pl.DataFrame] = []
    lo = lo_all
    while lo < hi_all:
        hi = min(lo + step, hi_all)
        bases.append(_base(hourly, dim_map, lo, hi, engine, con, qualities))
        lo = hi
    base = pl.concat(bases) if len(bases) > 1 else bases[0]
    rows = _rows_in(base, combos, calendar)
    grid = _grid(combos, calendar, base, cv)
    return _derive(grid, sets, dim_columns, directory, calendar, fine), rows


def _base(
    hourly: HourlyInput,
    dim_map: pl.DataFrame,
    lo: dt.datetime,
    hi: dt.datetime,
    engine: Engine,
    con: duckdb.DuckDBPyConnection | None,
    qualities: Sequence[str] | None,
) -> pl.DataFrame:
    """The heavy pass over the hourly rows in ``[lo, hi)`` with the chosen engine."""
    if isinstance(hourly, str):
        if engine != "duckdb" or con is None:
            raise ContractError("a table name as hourly input needs engine='duckdb' and con")
        return _base_duckdb(con, hourly, dim_map, lo, hi, qualities)
    frame = hourly(lo, hi) if callable(hourly) else hourly
    if engine == "polars":
        return _base_polars(_facts_frame(frame), dim_map, lo, hi, qualities)
    own = con or duckdb.connect()
    try:
        own.execute("SET TimeZone = 'UTC'")
        facts = _facts_frame(frame).filter((pl.col("ts") >= lo) & (pl.col("ts") < hi)).collect()
        own.register("askug_cube_facts", facts.to_arrow())
        try:
            return _base_duckdb(own, "askug_cube_facts", dim_map, lo, hi, qualities)
        finally:
            own.unregister("askug_cube_facts")
    finally:
        if con is None:
            own.close()


def _rows_in(base: pl.DataFrame, combos: pl.DataFrame, calendar: pl.DataFrame) -> int:
    """Hourly rows read that fall into the covered gas days of their own company."""
    owned = base.join(combos.select("dim_id", "company_id"), on="dim_id").join(
        calendar.select("company_id", "ts"), on=["company_id", "ts"], how="semi"
    )
    return int(owned.get_column("n_rows").sum() or 0)


def gas_cube_from_frames(
    hourly: pl.DataFrame | pl.LazyFrame,
    meters: pl.DataFrame,
    branches: pl.DataFrame,
    companies: pl.DataFrame,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    engine: Engine = "duckdb",
    calorific_value_kwh_m3: float | Mapping[str, float] = DEFAULT_CALORIFIC_VALUE_KWH_M3,
) -> pl.DataFrame:
    """The five-grouping gas-day cube from frames (hourly archive, metering points, branches, companies).

    ``start``/``end`` are gas days ``[start, end)``; by default the gas days touched by
    the hourly rows.  Returns the :data:`GAS_CUBE` frame (see the module docstring for
    the columns); :func:`gas_cube_grouping` cuts one grouping out of it.

    Examples
    --------
    >>> cube = gas_cube_from_frames(hourly, meters, branches, companies)  # doctest: +SKIP
    >>> gas_cube_grouping(cube, "company-branch", level="day")  # doctest: +SKIP
    """
    if start is None or end is None:
        ts = _facts_frame(hourly).select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi")).collect()
        lo, hi = ts.row(0)
        if lo is None:
            raise ContractError("the hourly frame is empty; nothing to build a cube from")
        d0, d1 = _default_days(companies, lo, hi)
        start, end = start or d0, end or d1
    cells, _ = rollup_hourly(
        hourly, cube_directory(meters, branches), companies, hierarchies=list(GROUPINGS.values()),
        start=start, end=end, engine=engine, calorific_value_kwh_m3=calorific_value_kwh_m3,
    )
    return validate_frame(cells, TABLES["gas_cube"])


def _default_days(companies: pl.DataFrame, lo: dt.datetime, hi: dt.datetime) -> tuple[dt.date, dt.date]:
    """The gas days, over all companies, from the one holding ``lo`` to the one holding ``hi``."""
    first = _gas_days_of(companies, lo, lo + dt.timedelta(hours=1))
    last = _gas_days_of(companies, hi, hi + dt.timedelta(hours=1))
    return min(first), max(last) + dt.timedelta(days=1)


# --- the stored cube ---------------------------------------------------------------------
def _store_inputs(store: Store) -> tuple[pl.DataFrame, pl.DataFrame]:
    companies = store.read("companies")
    directory = cube_directory(store.read("metering_points"), store.read("branches"))
    return companies, directory


def _run_on_store(
    store: Store,
    companies: pl.DataFrame,
    directory: pl.DataFrame,
    *,
    start: dt.date,
    end: dt.date,
    engine: Engine,
    periods: Iterable[str] | None,
    calorific_value_kwh_m3: float | Mapping[str, float],
) -> tuple[pl.DataFrame, int]:
    from warehouse._duckdb import DuckDBStore

    common: dict[str, object] = {
        "hierarchies": list(GROUPINGS.values()), "start": start, "end": end, "periods": periods,
        "calorific_value_kwh_m3": calorific_value_kwh_m3,
    }  # fmt: skip
    if isinstance(store, DuckDBStore) and engine == "duckdb":
        # the heavy pass runs inside the store's own database: no copy of the archive
        return rollup_hourly("hourly_archive", directory, companies, engine="duckdb", con=store.connection, **common)  # type: ignore[arg-type]
    # Elsewhere the archive travels as Arrow frames, a month of gas days at a time.
    def reader(lo: dt.datetime, hi: dt.datetime) -> pl.DataFrame:
        return store.read("hourly_archive", start=lo, end=hi, columns=list(_FACT_COLUMNS))

    return rollup_hourly(reader, directory, companies, engine=engine, chunk_days=31, **common)  # type: ignore[arg-type]


#: Inserts of at least this many cells drop DuckDB's insertion order (parallel row groups).
_PARALLEL_INSERT_CELLS: Final = 100_000


def _replace_cells(store: Store, cells: pl.DataFrame, where: Mapping[str, Sequence[object]] | None = None) -> None:
    """Delete the cells matching ``where`` (all if None) and store ``cells``, atomically.

    On the embedded store this bypasses :meth:`Store.write`'s de-duplication and key
    sort: cells are unique by construction, and for the ~10⁶ cells of a year the generic
    path (unique + sort on a nine-column key + anti-join) cost more than the whole
    aggregation.  Elsewhere the generic :meth:`Store.replace`.
    """
    _replace_levels(store, [(cells, where or {})])


def _or_clause(wheres: Sequence[Mapping[str, Sequence[object]]]) -> tuple[str, list[object]]:
    """`` WHERE (a IN (…) AND b IN (…)) OR (…)`` for DuckDB from several ``where`` dicts
    ("" when one of them is empty: everything).  Plain value lists, not the store's
    ``IN (SELECT unnest(?))``: under an ``OR`` those become a join each and the
    statement scanned the cube several times over."""
    parts: list[str] = []
    params: list[object] = []
    for where in wheres:
        if not where:
            return "", []
        ands = []
        for col, values in where.items():
            vals = list(values)
            if not vals:
                ands.append("false")
                continue
            ands.append(f'"{col}" IN ({", ".join("?" * len(vals))})')
            params.extend(vals)
        parts.append("(" + " AND ".join(ands) + ")")
    return " WHERE " + " OR ".join(parts), params


def _read_levels(store: Store, wheres: Sequence[Mapping[str, Sequence[object]]]) -> pl.DataFrame:
    """The stored cells matching any of ``wheres``: one statement on the embedded store
    (each costs a few ms there, and a refresh reads several levels), in turn elsewhere."""
    from warehouse._duckdb import DuckDBStore

    t = TABLES["gas_cube"]
    if not isinstance(store, DuckDBStore):
        return pl.concat([store.read("gas_cube", where=w) for w in wheres])
    clause, params = _or_clause(wheres)
    cols = ", ".join(f'"{c}"' for c in t.schema)
    frame = pl.from_arrow(store.connection.sql(f"SELECT {cols} FROM gas_cube{clause}", params=params).to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.select(pl.col(c).cast(dtype) for c, dtype in t.schema.items())


def _replace_levels(store: Store, parts: Sequence[tuple[pl.DataFrame, Mapping[str, Sequence[object]]]]) -> None:
    """Several :func:`_replace_cells` in one transaction: on the embedded store one delete
    (the ``where`` dicts OR-ed) and one insert, elsewhere one replace each."""
    from warehouse._duckdb import DuckDBStore

    t = TABLES["gas_cube"]
    if not isinstance(store, DuckDBStore):
        with store.transaction():
            for frame, where in parts:
                store.replace("gas_cube", frame, where=dict(where) or None)
        return
    cells = pl.concat([f if f.schema == t.schema else validate_frame(f, t) for f, _ in parts])
    clause, params = _or_clause([w for _, w in parts])
    con = store.connection
    cols = ", ".join(f'"{c}"' for c in t.schema)
    with store.transaction():
        con.execute(f"DELETE FROM gas_cube{clause}", params)
        if cells.height:
            name = "askug_gas_cube_cells"
            con.register(name, cells.to_arrow())
            # cells have no order to keep: without it DuckDB writes the row groups of a
            # big insert (a full build) in parallel; a refresh's few cells skip the toggle
            big = cells.height >= _PARALLEL_INSERT_CELLS
            keep = con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0] if big else None
            if big:
                con.execute("SET preserve_insertion_order = false")
            try:
                con.execute(f"INSERT INTO gas_cube ({cols}) SELECT {cols} FROM {name}")
            finally:
                if big:
                    con.execute(f"SET preserve_insertion_order = {'true' if keep else 'false'}")
                con.unregister(name)


def build_gas_cube(
    store: Store,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    engine: Engine = "duckdb",
    calorific_value_kwh_m3: float | Mapping[str, float] = DEFAULT_CALORIFIC_VALUE_KWH_M3,
) -> GasCubeSummary:
    """Rebuild the stored five-grouping gas-day cube (table ``gas_cube``) from the hourly archive.

    Parameters
    ----------
    store
        The warehouse.  On the DuckDB store with ``engine="duckdb"`` the heavy pass runs
        inside the store's database (no copy); otherwise the archive is read as frames.
    start, end
        Gas days ``[start, end)``; default: every gas day the archive touches.
    engine
        ``"duckdb"`` or ``"polars"`` for the heavy pass (same cells either way).
    calorific_value_kwh_m3
        kWh/m³ for ``energy_kwh``: one value or ``{company_id: value}``.

    Returns
    -------
    GasCubeSummary

    Raises
    ------
    WarehouseError
        No hourly data (nothing to build).
    """
    started = time.perf_counter()
    companies, directory = _store_inputs(store)
    if start is None or end is None:
        lo, hi = store.sql_frame(_RANGE_SQL).row(0)
        if lo is None:
            raise WarehouseError("the hourly archive is empty; load data (askug load) before building the cube")
        d0, d1 = _default_days(companies, lo, hi)
        start, end = start or d0, end or d1
    cells, rows = _run_on_store(
        store, companies, directory, start=start, end=end, engine=engine, periods=None,
        calorific_value_kwh_m3=calorific_value_kwh_m3,
    )
    _replace_cells(store, cells)
    return GasCubeSummary(
        cells=cells.height, hourly_rows=rows, gas_days=(end - start).days,
        seconds=time.perf_counter() - started, engine=engine,
    )


def refresh_gas_cube(
    store: Store,
    *,
    start: dt.datetime,
    end: dt.datetime,
    engine: Engine = "duckdb",
    calorific_value_kwh_m3: float | Mapping[str, float] = DEFAULT_CALORIFIC_VALUE_KWH_M3,
) -> GasCubeSummary:
    """Bring the stored cube up to date after late data for the UTC hours ``[start, end)``.

    Rebuilds only what those hours touch: the hour and day cells of every gas day they
    intersect (re-read from the archive), then the month, year and all-time cells that
    contain those days (re-aggregated from the stored finer cells) and the grand total.
    The result equals a full rebuild as long as the metering-point directory and the
    calorific value have not changed since (rebuild with :func:`build_gas_cube` then).

    Raises
    ------
    WarehouseError
        No cube stored yet (build it first), or a reversed range.
    """
    started = time.perf_counter()
    if start.tzinfo is None or end.tzinfo is None:
        raise ContractError("refresh start/end must be UTC-aware datetimes")
    if end <= start:
        raise WarehouseError(f"refresh range is empty or reversed: {start} … {end}; pass start < end")
    if store.count("gas_cube") == 0:
        raise WarehouseError("no gas-day cube stored yet; build it first (askug cube)")
    companies, directory = _store_inputs(store)
    days = _gas_days_of(companies, start, end)
    d0, d1 = days[0], days[-1] + dt.timedelta(days=1)
    cells, rows = _run_on_store(
        store, companies, directory, start=d0, end=d1, engine=engine, periods=("hour", "day"),
        calorific_value_kwh_m3=calorific_value_kwh_m3,
    )
    cells = cells.filter(pl.col("gas_day").is_in(days))
    written = cells.height
    months = sorted(set(cells.select("year", "month").unique().iter_rows()))
    years = sorted({y for y, _ in months})
    cols = list(TABLES["gas_cube"].schema)
    dim_cols = [DIMENSIONS[d] for d in _CUBE_DIMS]
    touched = pl.DataFrame(months, schema={"year": pl.Int16, "month": pl.Int8}, orient="row")
    with store.transaction():
        _replace_cells(store, cells, where={"gas_day": days})
        # Narrow reads of the stored day cells of the touched months (the new ones among
        # them), month cells of their years and year cells; the chain day → month → year →
        # all → grand total is then re-derived in memory and the levels are rewritten
        # together (one delete and one insert on the embedded store).
        month_numbers = sorted({m for _, m in months})
        stored = _read_levels(
            store,
            [  # day cells of the touched months (a superset when they span years), month cells of their years
                {"period": ["day"], "year": years, "month": month_numbers},
                {"period": ["month"], "year": years},
                {"period": ["year"]},
            ],
        ).with_columns(pl.col("year").cast(pl.Int16), pl.col("month").cast(pl.Int8))
        by_period = {p: stored.filter(pl.col("period") == p) for p in ("day", "month", "year")}
        new_months = _reaggregate(by_period["day"].join(touched, on=["year", "month"], how="semi"), "month", dim_cols)
        month_cells = pl.concat(
            [by_period["month"].join(touched, on=["year", "month"], how="anti").select(cols), new_months.select(cols)]
        ).filter(pl.col("year").is_in(years))
        new_years = _reaggregate(month_cells, "year", dim_cols)
        year_cells = pl.concat(
            [by_period["year"].filter(~pl.col("year").is_in(years)).select(cols), new_years.select(cols)]
        )
        new_all = _reaggregate(year_cells, "all", dim_cols)
        total = _reaggregate(new_all.filter(pl.col("dims") == "company"), "all", dim_cols, total=True)
        _replace_levels(
            store,
            [
                (month_cells.select(cols), {"period": ["month"], "year": years}),
                (new_years.select(cols), {"period": ["year"], "year": years}),
                (new_all.select(cols), {"period": ["all"]}),
                (total.select(cols), {"dims": [""]}),
            ],
        )
        written += new_months.height + new_years.height + new_all.height + total.height
    return GasCubeSummary(
        cells=written, hourly_rows=rows, gas_days=len(days), seconds=time.perf_counter() - started, engine=engine
    )


def _reaggregate(stored: pl.DataFrame, period: str, dim_cols: Sequence[str], *, total: bool = False) -> pl.DataFrame:
    """Stored cells of a finer period → cells of ``period`` (same dims), or the grand total."""
    parts = _to_partials(stored.filter(pl.col("dims") != ""))
    if total:
        keys: list[str] = []
    else:
        keys = ["dims", *dim_cols, *[k for k in _PERIOD_KEYS[period] if k in CALENDAR]]
    meters = pl.col("meters").sum() if total else pl.col("meters").first()
    aggs = [*_agg(), meters.alias("meters")]
    agg = parts.group_by(keys).agg(aggs) if keys else parts.select(aggs)
    if total:
        agg = agg.with_columns(pl.lit("").alias("dims"))
    out = _finish_stored(agg, period, dim_cols)
    return validate_frame(out, TABLES["gas_cube"])


def _finish_stored(agg: pl.DataFrame, period: str, dim_cols: Sequence[str]) -> pl.DataFrame:
    schema = _cell_columns(dim_cols)
    present = set(agg.columns)

    return agg.select(
        "dims",
        pl.lit(period).alias("period"),
        *[pl.col(c) if c in present else pl.lit("").alias(c) for c in dim_cols],
        *[pl.col(c).cast(schema[c]) if c in present else pl.lit(-1, schema[c]).alias(c) for c in CALENDAR],
        *[pl.lit(None, schema[c]).alias(c) for c in ("gas_day", "ts", "local_hour")],
        pl.col("meters").cast(pl.Int32),
        *_measures(),
    )


# --- reading one grouping ------------------------------------------------------------------
def gas_cube_grouping(
    cube: pl.DataFrame, grouping: str | int | Sequence[str], *, level: str | None = None
) -> pl.DataFrame:
    """Cut one grouping out of cube cells, as a report: tree order, one ``level`` per row.

    Parameters
    ----------
    cube
        Cells from :func:`gas_cube_from_frames`, :func:`read_gas_cube` or
        :func:`rollup_hourly`.
    grouping
        A name of :data:`GROUPINGS`, its number 1–5, or a hierarchy.
    level
        Keep only rows of this level (``"total"`` or a part of the hierarchy).

    Returns
    -------
    polars.DataFrame
        ``level`` (``total`` or the deepest part of the row), ``depth`` (0 = total) and
        the cells, sorted so every subtotal row precedes its children.
    """
    hierarchy = tuple(grouping) if not isinstance(grouping, (str, int)) else grouping_hierarchy(grouping)
    sets = grouping_sets(hierarchy)
    names = ("total", *hierarchy)
    if level is not None and level not in names:
        raise ContractError(f"level must be one of {list(names)} for this grouping, got {level!r}")
    table = pl.DataFrame(
        {
            "dims": [dims_label(d) for d, _ in sets],
            "period": [p for _, p in sets],
            "level": list(names),
            "depth": list(range(len(sets))),
        },
        schema={"dims": pl.String, "period": pl.String, "level": pl.String, "depth": pl.Int8},
    )
    if level is not None:
        table = table.filter(pl.col("level") == level)
    out = cube.join(table, on=["dims", "period"], how="inner")
    # a calendar part sorts by the whole calendar down to it (a day of month alone would
    # interleave months); rolled-up parts hold '' / -1 and so sort before their children
    order: list[str] = []
    for p in hierarchy:
        keys = [DIMENSIONS[p]] if p in DIMENSIONS else list(CALENDAR[: CALENDAR.index(p) + 1])
        order += [k for k in keys if k not in order]
    return out.sort([*order, "depth"]).select("level", "depth", *[c for c in cube.columns])


def read_gas_cube(
    store: Store,
    *,
    grouping: str | int | None = None,
    level: str | None = None,
    **filters: str | int,
) -> pl.DataFrame:
    """Read the stored gas-day cube: all cells, or one grouping as a report.

    Parameters
    ----------
    grouping
        A name of :data:`GROUPINGS` or its number 1–5; ``None`` returns the raw cells.
    level
        With ``grouping``: only rows of this level (``"total"``, ``"company"``, …, ``"hour"``).
    filters
        Column = value, e.g. ``company_id="C01"``, ``year=2022``, ``month=1``.

    Examples
    --------
    >>> read_gas_cube(store, grouping="company-branch", level="day", company_id="C01")  # doctest: +SKIP
    """
    cols = TABLES["gas_cube"].schema
    bad = [k for k in filters if k not in cols]
    if bad:
        raise ContractError(f"unknown filter column(s) {bad}; use columns of the gas_cube table: {list(cols)}")
    where = {k: [v] for k, v in filters.items()}
    if grouping is None:
        return store.read("gas_cube", where=where)
    hierarchy = grouping_hierarchy(grouping)
    sets = grouping_sets(hierarchy)
    names = ("total", *hierarchy)
    if level is not None:
        if level not in names:
            raise ContractError(f"level must be one of {list(names)} for grouping {grouping!r}, got {level!r}")
        dims, period = sets[names.index(level)]
        where.update({"dims": [dims_label(dims)], "period": [period]})
    cells = store.read("gas_cube", where=where)
    return gas_cube_grouping(cells, hierarchy, level=level)
