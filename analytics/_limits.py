"""Limit discipline: contracted daily and monthly limits and plans against actual use,
and the forecast to the end of the gas month.

Limits come from the ``contracts`` table (one row per metering point and validity
start) or from a **limits file** (CSV, the same columns; :func:`read_limits_file`
checks every line and names each bad one).  Actual use is summed over each meter's
**gas days** (its company's contract hour, ``warehouse.gas_day_calendar``); a gas
month is the gas days dated in that calendar month.  The contract that applies to a
gas day is the one whose ``valid_from ≤ day ≤ valid_to`` (open-ended when null); for
a month, the contract valid on the month's first gas day.

**Forecast to the end of the month.**  Gas days before ``as_of`` are actuals.  Each
later day of the month is, in order of preference: (1) the meter's stored forecast
(``forecasts`` table, latest run, the day fully covered), or (2) a heating-degree
extrapolation: ``base_m3 + hdd_coef_m3 × HDD(T)`` fitted on the meter's gas days so far
(:func:`analytics._normalise.fit_hdd`), with ``T`` the day's temperature from the
weather table where known (forecast weather included) and otherwise the mean of the
last seven known days (persistence).  The month total and the first day on which the
running total passes the limit give the statement
"consumer X will exceed its monthly limit by N m³ on day D".
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import math
from pathlib import Path
from typing import Final

import polars as pl

from analytics._normalise import DEFAULT_BASE_C, fit_hdd, hdd
from analytics._periods import check_range, zone_calendar
from analytics.errors import AnalyticsError, LimitsFileError
from warehouse import Store, load_consumption, load_meter_temperature

#: Columns of a limits file (and of the ``contracts`` table).
LIMIT_COLUMNS: Final = ("meter_id", "valid_from", "valid_to", "daily_limit_m3", "monthly_limit_m3", "monthly_plan_m3")
_VALUE_COLUMNS: Final = LIMIT_COLUMNS[3:]
_MAX_LISTED: Final = 10

#: Columns of :func:`gas_day_use`.
GAS_DAY_USE_SCHEMA: Final = pl.Schema(
    {
        "meter_id": pl.String(),
        "gas_day": pl.Date(),
        "volume_m3": pl.Float64(),  # null when no hour has a value
        "hours": pl.Int32(),  # hours with a value
        "gas_day_hours": pl.Int32(),  # hours of the gas day in the range (23/24/25)
        "estimated_hours": pl.Int32(),
    }
)

#: Columns of :func:`daily_limit_check`.
DAILY_CHECK_SCHEMA: Final = pl.Schema(
    {
        "meter_id": pl.String(),
        "gas_day": pl.Date(),
        "volume_m3": pl.Float64(),
        "daily_limit_m3": pl.Float64(),
        "excess_m3": pl.Float64(),  # volume − limit; > 0 is a violation
        "over": pl.Boolean(),
        "complete": pl.Boolean(),  # every hour of the gas day has a value
    }
)

#: Columns of :func:`monthly_limit_status`.
MONTHLY_STATUS_SCHEMA: Final = pl.Schema(
    {
        "meter_id": pl.String(),
        "month": pl.Date(),  # first day of the gas month
        "as_of": pl.Date(),  # first gas day that is forecast, not actual
        "days_elapsed": pl.Int32(),
        "days_in_month": pl.Int32(),
        "actual_m3": pl.Float64(),  # gas days before as_of
        "plan_m3": pl.Float64(),
        "limit_m3": pl.Float64(),
        "plan_to_date_pct": pl.Float64(),  # actual / (plan × elapsed share) × 100
        "forecast_m3": pl.Float64(),  # projected month total: actual + forecast days
        "forecast_method": pl.String(),  # stored | hdd | mixed | none
        "forecast_vs_plan_pct": pl.Float64(),
        "excess_m3": pl.Float64(),  # forecast − limit (> 0: the limit breaks)
        "exceed_day": pl.Date(),  # first gas day the running total passes the limit
        "status": pl.String(),  # ok | at_risk | exceeded | no_limit
        "statement": pl.String(),
        "days_over_daily_limit": pl.Int32(),
    }
)


# --- the limits file -----------------------------------------------------------------


def read_limits_file(path: str | Path, *, known_meters: set[str] | None = None) -> pl.DataFrame:
    """Read and check a limits file; nothing is returned unless every line is right.

    The file is CSV (UTF-8, comma-separated, a header line).  Required columns
    ``meter_id`` and ``valid_from`` (``YYYY-MM-DD``) and at least one of
    ``daily_limit_m3``, ``monthly_limit_m3``, ``monthly_plan_m3`` (m³ at standard
    conditions, ≥ 0; empty = no limit); optional ``valid_to`` (inclusive; empty =
    open-ended).  A meter may have several rows with non-overlapping validity.

    Parameters
    ----------
    path
        The CSV file.
    known_meters
        If given, every ``meter_id`` must be one of these.

    Returns
    -------
    polars.DataFrame
        The rows in the ``contracts`` table's schema.

    Raises
    ------
    LimitsFileError
        One message listing up to ten bad lines, e.g. ``limits.csv line 4: column
        'daily_limit_m3' value 'abc' is not a number such as 120.5``, and the fix.
    """
    p = Path(path)
    if not p.is_file():
        raise LimitsFileError(f"limits file {p} does not exist; pass the path of the CSV with the limits")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LimitsFileError(f"limits file {p} cannot be read as UTF-8 text ({exc}); save it as UTF-8 CSV") from None
    reader = csv.reader(text.splitlines())
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise LimitsFileError(f"{p} is empty; it needs a header line {','.join(LIMIT_COLUMNS)}") from None
    unknown = [h for h in header if h not in LIMIT_COLUMNS]
    absent = [c for c in ("meter_id", "valid_from") if c not in header]
    if unknown or absent or not set(header) & set(_VALUE_COLUMNS) or len(set(header)) != len(header):
        raise LimitsFileError(
            f"{p} line 1: header {header} is not valid; it needs meter_id, valid_from and at least one of "
            f"{list(_VALUE_COLUMNS)} (optional valid_to), each once"
            + (f"; unknown column(s) {unknown}" if unknown else "")
        )
    problems: list[str] = []
    rows: list[dict[str, object]] = []
    lines: list[int] = []
    for record in reader:
        line = reader.line_num
        if not record or all(not f.strip() for f in record):
            continue
        if len(record) != len(header):
            problems.append(f"line {line}: {len(record)} fields, the header has {len(header)}")
            continue
        row: dict[str, object] = {c: None for c in LIMIT_COLUMNS}
        for col, raw in zip(header, record, strict=True):
            value = raw.strip()
            if col == "meter_id":
                if not value:
                    problems.append(f"line {line}: column 'meter_id' is empty")
                elif known_meters is not None and value not in known_meters:
                    problems.append(f"line {line}: meter_id {value!r} is not a known metering point")
                row[col] = value
            elif col in ("valid_from", "valid_to"):
                if not value:
                    if col == "valid_from":
                        problems.append(f"line {line}: column 'valid_from' is empty; give a date such as 2022-01-01")
                    continue
                try:
                    row[col] = dt.date.fromisoformat(value)
                except ValueError:
                    problems.append(f"line {line}: column {col!r} value {value!r} is not a date such as 2022-01-01")
            else:
                if not value:
                    continue
                try:
                    number = float(value)
                except ValueError:
                    problems.append(f"line {line}: column {col!r} value {value!r} is not a number such as 120.5")
                    continue
                if not math.isfinite(number) or number < 0:
                    problems.append(f"line {line}: column {col!r} value {value!r} must be a finite number ≥ 0")
                    continue
                row[col] = number
        vf, vt = row["valid_from"], row["valid_to"]
        if isinstance(vf, dt.date) and isinstance(vt, dt.date) and vt < vf:
            problems.append(f"line {line}: valid_to {vt} is before valid_from {vf}")
        rows.append(row)
        lines.append(line)
    if not rows and not problems:
        raise LimitsFileError(f"{p} has a header but no limits; add one line per metering point")
    if not problems:
        problems.extend(_overlaps(rows, lines))
    if problems:
        listed = "; ".join(problems[:_MAX_LISTED])
        more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
        raise LimitsFileError(f"{p}: {len(problems)} problem(s): {listed}{more}; fix the file, nothing was loaded")
    return pl.DataFrame(
        rows,
        schema={
            "meter_id": pl.String,
            "valid_from": pl.Date,
            "valid_to": pl.Date,
            "daily_limit_m3": pl.Float64,
            "monthly_limit_m3": pl.Float64,
            "monthly_plan_m3": pl.Float64,
        },
        orient="row",
    )


def _overlaps(rows: list[dict[str, object]], lines: list[int]) -> list[str]:
    by_meter: dict[str, list[tuple[dt.date, dt.date, int]]] = {}
    for row, line in zip(rows, lines, strict=True):
        vf, vt = row["valid_from"], row["valid_to"]
        assert isinstance(vf, dt.date)
        end = vt if isinstance(vt, dt.date) else dt.date.max
        by_meter.setdefault(str(row["meter_id"]), []).append((vf, end, line))
    out = []
    for meter, spans in by_meter.items():
        spans.sort()
        for (a0, a1, la), (b0, _b1, lb) in itertools.pairwise(spans):
            if b0 <= a1:
                what = "repeats" if a0 == b0 else "overlaps"
                out.append(f"line {lb}: meter {meter} validity from {b0} {what} line {la}; end line {la} with valid_to")
    return out


# --- gas-day use -----------------------------------------------------------------------


def gas_day_use(
    hourly: pl.DataFrame, meters: pl.DataFrame, *, start: dt.date, end: dt.date
) -> pl.DataFrame:
    """Sum hourly consumption to each metering point's gas days ``start <= day < end``.

    Parameters
    ----------
    hourly
        ``meter_id``, ``ts`` (UTC hour start), ``volume_m3`` (null = missing), ``quality``.
    meters
        ``meter_id``, ``time_zone``, ``contract_hour`` (``metering_points``).
    start, end
        Gas days, half-open.

    Returns
    -------
    polars.DataFrame
        :data:`GAS_DAY_USE_SCHEMA`, one row per meter and gas day (also days without
        data: volume null, hours 0).
    """
    check_range(start, end)
    zones = meters.select("meter_id", "time_zone", pl.col("contract_hour").cast(pl.Int8))
    cal = zone_calendar(zones, start, end, "day")
    grid = zones.join(cal, on=["time_zone", "contract_hour"]).select(
        "meter_id", "ts", pl.col("period").alias("gas_day"), "period_hours"
    )
    joined = grid.lazy().join(
        hourly.lazy().select("meter_id", "ts", "volume_m3", "quality"), on=["meter_id", "ts"], how="left"
    )
    out = (
        joined.group_by("meter_id", "gas_day")
        .agg(
            pl.col("volume_m3").sum().alias("_sum"),
            pl.col("volume_m3").count().cast(pl.Int32).alias("hours"),
            pl.col("period_hours").first().cast(pl.Int32).alias("gas_day_hours"),
            (pl.col("volume_m3").is_not_null() & (pl.col("quality") == "estimated")).sum().cast(pl.Int32).alias(
                "estimated_hours"
            ),
        )
        .with_columns(pl.when(pl.col("hours") > 0).then(pl.col("_sum")).alias("volume_m3"))
        .select(list(GAS_DAY_USE_SCHEMA))
        .sort("meter_id", "gas_day")
        .collect()
    )
    return out


def _contract_on(contracts: pl.DataFrame, days: pl.DataFrame, day_col: str) -> pl.DataFrame:
    """Attach the contract valid on ``days[day_col]`` to each row (left join)."""
    valid = (
        days.select("meter_id", day_col)
        .unique()
        .join(contracts, on="meter_id", how="inner")
        .filter(
            (pl.col("valid_from") <= pl.col(day_col))
            & (pl.col("valid_to").is_null() | (pl.col("valid_to") >= pl.col(day_col)))
        )
        .sort("valid_from")
        .group_by("meter_id", day_col)
        .last()
        .drop("valid_from", "valid_to")
    )
    return days.join(valid, on=["meter_id", day_col], how="left")


def daily_limit_check(use: pl.DataFrame, contracts: pl.DataFrame) -> pl.DataFrame:
    """Each gas day's use against the daily limit of the contract valid that day.

    Parameters
    ----------
    use
        :func:`gas_day_use` output.
    contracts
        Rows in the ``contracts`` schema (table or :func:`read_limits_file`).

    Returns
    -------
    polars.DataFrame
        :data:`DAILY_CHECK_SCHEMA`: days without a daily limit have null
        ``daily_limit_m3``/``excess_m3`` and ``over`` false.
    """
    joined = _contract_on(contracts, use, "gas_day")
    return (
        joined.with_columns((pl.col("volume_m3") - pl.col("daily_limit_m3")).alias("excess_m3"))
        .with_columns(
            (pl.col("excess_m3") > 0).fill_null(False).alias("over"),
            (pl.col("hours") == pl.col("gas_day_hours")).alias("complete"),
        )
        .select(list(DAILY_CHECK_SCHEMA))
        .sort("meter_id", "gas_day")
    )


def _month_bounds(month: dt.date) -> tuple[dt.date, dt.date]:
    first = month.replace(day=1)
    nxt = (first + dt.timedelta(days=32)).replace(day=1)
    return first, nxt


def monthly_limit_status(
    use: pl.DataFrame,
    contracts: pl.DataFrame,
    *,
    month: dt.date,
    as_of: dt.date | None = None,
    temperature: pl.DataFrame | None = None,
    forecast: pl.DataFrame | None = None,
    history: pl.DataFrame | None = None,
    base_c: float = DEFAULT_BASE_C,
    names: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Actual against the monthly limit and plan, and the forecast to the month's end.

    Parameters
    ----------
    use
        :func:`gas_day_use` for (at least) the gas days of ``month`` before ``as_of``.
    contracts
        Rows in the ``contracts`` schema.
    month
        Any date in the gas month.
    as_of
        First gas day to forecast (default: the day after the last gas day of the month
        with any value in ``use``, or the month's first day).
    temperature
        ``meter_id``, ``gas_day``, ``temperature_c`` (daily mean, °C) for the fit and the
        remaining days; without it the forecast is each meter's mean day.
    forecast
        ``meter_id``, ``gas_day``, ``volume_m3``: stored forecasts of whole gas days;
        these win over the heating-degree extrapolation.
    history
        Extra :func:`gas_day_use` rows (e.g. the previous month) to fit the HDD model on,
        besides the month's actual days.
    base_c
        Balance temperature of the HDD (°C).
    names
        ``meter_id`` and ``name`` to name consumers in the statement.

    Returns
    -------
    polars.DataFrame
        :data:`MONTHLY_STATUS_SCHEMA`, one row per metering point with a contract that
        month, sorted by ``status`` (exceeded, at_risk first) and ``excess_m3``.
        ``status``: ``exceeded`` when the actuals already passed the limit, ``at_risk``
        when the forecast does, ``ok`` otherwise, ``no_limit`` without a monthly limit.
    """
    first, nxt = _month_bounds(month)
    days_in_month = (nxt - first).days
    in_month = use.filter(pl.col("gas_day").is_between(first, nxt, closed="left"))
    if as_of is None:
        seen = in_month.filter(pl.col("hours") > 0).get_column("gas_day").max()
        as_of = seen + dt.timedelta(days=1) if isinstance(seen, dt.date) else first
    if not first <= as_of <= nxt:
        raise AnalyticsError(f"as_of {as_of} lies outside the gas month {first:%Y-%m}; pass a day in that month")
    actual_days = in_month.filter(pl.col("gas_day") < as_of)
    remaining = [first + dt.timedelta(days=k) for k in range((as_of - first).days, days_in_month)]

    month_contracts = _contract_on(
        contracts, contracts.select("meter_id").unique().with_columns(pl.lit(first).alias("_day")), "_day"
    ).drop("_day")
    month_contracts = month_contracts.filter(
        pl.col("monthly_limit_m3").is_not_null() | pl.col("monthly_plan_m3").is_not_null()
    )
    meters = month_contracts.select("meter_id")

    daily_over = (
        daily_limit_check(actual_days, contracts)
        .group_by("meter_id")
        .agg(pl.col("over").sum().cast(pl.Int32).alias("days_over_daily_limit"))
    )

    # Forecast of each remaining day: stored forecast, else HDD extrapolation.
    rest = meters.join(pl.DataFrame({"gas_day": remaining}, schema={"gas_day": pl.Date}), how="cross")
    if forecast is not None and forecast.height:
        rest = rest.join(
            forecast.select("meter_id", "gas_day", pl.col("volume_m3").alias("_stored")),
            on=["meter_id", "gas_day"],
            how="left",
        )
    else:
        rest = rest.with_columns(pl.lit(None, dtype=pl.Float64).alias("_stored"))
    fit_rows = actual_days if history is None else pl.concat([history.filter(pl.col("gas_day") < first), actual_days])
    fit_rows = fit_rows.filter(pl.col("hours") == pl.col("gas_day_hours"))  # whole days only
    if temperature is not None:
        temp = temperature.select("meter_id", "gas_day", "temperature_c")
        fit_input = fit_rows.join(temp, on=["meter_id", "gas_day"], how="left")
    else:
        temp = None
        fit_input = fit_rows.with_columns(pl.lit(None, dtype=pl.Float64).alias("temperature_c"))
    coef = _coefficients(fit_input, base_c)
    rest = rest.join(coef, on="meter_id", how="left")
    if temp is not None:
        rest = rest.join(temp, on=["meter_id", "gas_day"], how="left")
        recent = (
            temp.filter(pl.col("gas_day") < as_of)
            .sort("gas_day")
            .group_by("meter_id")
            .agg(pl.col("temperature_c").drop_nulls().tail(7).mean().alias("_persist"))
        )
        rest = rest.join(recent, on="meter_id", how="left").with_columns(
            pl.col("temperature_c").fill_null(pl.col("_persist"))
        )
    else:
        rest = rest.with_columns(pl.lit(None, dtype=pl.Float64).alias("temperature_c"))
    hdd_part = (pl.col("hdd_coef_m3") * hdd(pl.col("temperature_c"), base_c)).fill_null(0.0)
    rest = rest.with_columns(
        pl.when(pl.col("_stored").is_not_null())
        .then(pl.col("_stored"))
        .otherwise((pl.col("base_m3") + hdd_part).clip(lower_bound=0.0))
        .alias("volume_m3"),
        pl.when(pl.col("_stored").is_not_null())
        .then(pl.lit("stored"))
        .when(pl.col("base_m3").is_not_null())
        .then(pl.lit("hdd"))
        .alias("_method"),
    )

    series = pl.concat(
        [
            meters.join(actual_days.select("meter_id", "gas_day", "volume_m3"), on="meter_id", how="left").with_columns(
                pl.lit("actual").alias("_method")
            ).filter(pl.col("gas_day").is_not_null()),
            rest.select("meter_id", "gas_day", "volume_m3", "_method"),
        ],
        how="vertical_relaxed",
    ).sort("meter_id", "gas_day")
    series = series.join(month_contracts.select("meter_id", "monthly_limit_m3"), on="meter_id").with_columns(
        pl.col("volume_m3").fill_null(0.0).cum_sum().over("meter_id").alias("_cum")
    )
    crossing = (
        series.filter(pl.col("monthly_limit_m3").is_not_null() & (pl.col("_cum") > pl.col("monthly_limit_m3")))
        .group_by("meter_id")
        .agg(pl.col("gas_day").min().alias("exceed_day"))
    )
    totals = series.group_by("meter_id").agg(
        pl.col("volume_m3").filter(pl.col("_method") == "actual").sum().alias("actual_m3"),
        pl.col("volume_m3").sum().alias("forecast_m3"),
        pl.col("_method").filter(pl.col("_method") != "actual").unique().alias("_methods"),
        (pl.col("volume_m3").is_null() & (pl.col("_method") != "actual")).any().alias("_unforecast"),
    )
    elapsed = (as_of - first).days
    out = (
        month_contracts.join(totals, on="meter_id", how="left")
        .join(crossing, on="meter_id", how="left")
        .join(daily_over, on="meter_id", how="left")
        .with_columns(
            pl.lit(first).alias("month"),
            pl.lit(as_of).alias("as_of"),
            pl.lit(elapsed, dtype=pl.Int32).alias("days_elapsed"),
            pl.lit(days_in_month, dtype=pl.Int32).alias("days_in_month"),
            pl.col("actual_m3").fill_null(0.0),
            pl.col("monthly_plan_m3").alias("plan_m3"),
            pl.col("monthly_limit_m3").alias("limit_m3"),
            pl.col("days_over_daily_limit").fill_null(0),
            pl.when(pl.col("_unforecast").fill_null(False)).then(None).otherwise(pl.col("forecast_m3")).alias(
                "forecast_m3"
            ),
            pl.when(pl.col("_methods").list.len().fill_null(0) == 0)
            .then(pl.lit("none" if remaining else "actual"))
            .when(pl.col("_methods").list.len() > 1)
            .then(pl.lit("mixed"))
            .otherwise(pl.col("_methods").list.first())
            .alias("forecast_method"),
        )
        .with_columns(
            pl.when((pl.col("plan_m3") > 0) & (elapsed > 0))
            .then(100.0 * pl.col("actual_m3") / (pl.col("plan_m3") * elapsed / days_in_month))
            .alias("plan_to_date_pct"),
            pl.when(pl.col("plan_m3") > 0).then(100.0 * pl.col("forecast_m3") / pl.col("plan_m3")).alias(
                "forecast_vs_plan_pct"
            ),
            (pl.col("forecast_m3") - pl.col("limit_m3")).alias("excess_m3"),
            pl.when(pl.col("limit_m3").is_null())
            .then(pl.lit("no_limit"))
            .when(pl.col("actual_m3") > pl.col("limit_m3"))
            .then(pl.lit("exceeded"))
            .when(pl.col("exceed_day").is_not_null())
            .then(pl.lit("at_risk"))
            .otherwise(pl.lit("ok"))
            .alias("status"),
        )
    )
    if names is not None:
        out = out.join(names.select("meter_id", pl.col("name").alias("_name")), on="meter_id", how="left")
    else:
        out = out.with_columns(pl.lit(None, dtype=pl.String).alias("_name"))
    who = pl.when(pl.col("_name").is_not_null()).then(
        pl.format("consumer {} ({})", pl.col("meter_id"), pl.col("_name"))
    ).otherwise(pl.format("consumer {}", pl.col("meter_id")))
    n_excess = pl.col("excess_m3").round(0).cast(pl.Int64)
    out = out.with_columns(
        pl.when(pl.col("status") == "at_risk")
        .then(
            pl.format(
                "{} will exceed its monthly limit by {} m³ on day {}", who, n_excess, pl.col("exceed_day")
            )
        )
        .when(pl.col("status") == "exceeded")
        .then(
            pl.format(
                "{} exceeded its monthly limit on day {}; by the end of the month it will be over by {} m³",
                who,
                pl.col("exceed_day"),
                n_excess,
            )
        )
        .alias("statement")
    )
    rank = pl.col("status").replace_strict({"exceeded": 0, "at_risk": 1, "ok": 2, "no_limit": 3}, default=4)
    return (
        out.sort(rank, pl.col("excess_m3"), descending=[False, True], nulls_last=True)
        .select(list(MONTHLY_STATUS_SCHEMA))
        .cast(dict(MONTHLY_STATUS_SCHEMA))  # type: ignore[arg-type]
    )


def _coefficients(fit_input: pl.DataFrame, base_c: float) -> pl.DataFrame:
    """HDD fit where temperatures exist, the mean day otherwise (``hdd_coef_m3`` 0)."""
    have_t = fit_input.filter(pl.col("temperature_c").is_not_null() & pl.col("volume_m3").is_not_null())
    mean_day = (
        fit_input.filter(pl.col("volume_m3").is_not_null())
        .group_by("meter_id")
        .agg(pl.col("volume_m3").mean().alias("_mean"))
    )
    if have_t.height:
        coef = fit_hdd(have_t, base_c=base_c).select("meter_id", "base_m3", "hdd_coef_m3")
    else:
        coef = pl.DataFrame(schema={"meter_id": pl.String, "base_m3": pl.Float64, "hdd_coef_m3": pl.Float64})
    return (
        mean_day.join(coef, on="meter_id", how="left")
        .with_columns(
            pl.col("base_m3").fill_null(pl.col("_mean")),
            pl.col("hdd_coef_m3").fill_null(0.0),
        )
        .drop("_mean")
    )


# --- from the store --------------------------------------------------------------------


def limits_from_store(
    store: Store,
    *,
    month: dt.date,
    as_of: dt.date | None = None,
    limits: pl.DataFrame | None = None,
    meter_ids: list[str] | None = None,
    use_forecasts: bool = True,
    base_c: float = DEFAULT_BASE_C,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Limit discipline of one gas month from the store.

    Parameters
    ----------
    store
        The warehouse: ``metering_points``, ``contracts``, ``hourly_archive``,
        ``weather`` and (optional) ``forecasts``.
    month
        Any date in the gas month.
    as_of
        First gas day to forecast (default: after the last gas day with data).
    limits
        Limits to use instead of the ``contracts`` table (e.g. :func:`read_limits_file`).
    meter_ids
        Only these metering points.
    use_forecasts
        Use the stored forecasts (latest run per meter) for remaining days they cover.
    base_c
        Balance temperature of the HDD extrapolation (°C).

    Returns
    -------
    (monthly, daily)
        :func:`monthly_limit_status` and :func:`daily_limit_check` (the month's gas
        days before ``as_of``).

    Raises
    ------
    AnalyticsError
        An unknown metering point, or no contracts/limits for the selection.
    """
    first, nxt = _month_bounds(month)
    meters = store.read("metering_points", columns=["meter_id", "name", "time_zone", "contract_hour"])
    if meter_ids is not None:
        unknown = sorted(set(meter_ids) - set(meters.get_column("meter_id").to_list()))
        if unknown:
            raise AnalyticsError(
                f"unknown metering point(s) {unknown[:5]}; ids look like {meters.get_column('meter_id').head(2).to_list()}"
            )
        meters = meters.filter(pl.col("meter_id").is_in(meter_ids))
    contracts = limits if limits is not None else store.read("contracts")
    contracts = contracts.filter(pl.col("meter_id").is_in(meters.get_column("meter_id").to_list()))
    if contracts.height == 0:
        raise AnalyticsError("no contracts or limits for the selected metering points; load contracts or pass --limits")
    hist_first = (first - dt.timedelta(days=1)).replace(day=1)  # the previous month helps the fit
    lo = dt.datetime.combine(hist_first, dt.time(), dt.UTC) - dt.timedelta(days=2)
    hi = dt.datetime.combine(nxt, dt.time(), dt.UTC) + dt.timedelta(days=2)
    ids = meters.get_column("meter_id").to_list()
    hourly = load_consumption(store, start=lo, end=hi, meter_ids=ids if meter_ids is not None else None)
    use = gas_day_use(hourly, meters, start=hist_first, end=nxt)
    temp_hourly = load_meter_temperature(store, meter_ids=ids if meter_ids is not None else None, start=lo, end=hi)
    temperature = _gas_day_mean(temp_hourly, meters, start=hist_first, end=nxt)
    forecast = None
    if use_forecasts:
        from analytics._expected import latest_forecast

        rows = latest_forecast(store, meter_ids=ids if meter_ids is not None else None)
        if rows.height:
            rows = rows.filter(pl.col("ts") >= pl.col("cutoff")).select("meter_id", "ts", "volume_m3", "model")
            fday = gas_day_use(rows.with_columns(pl.lit("estimated").alias("quality")), meters, start=first, end=nxt)
            forecast = fday.filter(pl.col("hours") == pl.col("gas_day_hours")).select("meter_id", "gas_day", "volume_m3")
    monthly = monthly_limit_status(
        use,
        contracts,
        month=first,
        as_of=as_of,
        temperature=temperature,
        forecast=forecast,
        history=use.filter(pl.col("gas_day") < first),
        base_c=base_c,
        names=meters.select("meter_id", "name"),
    )
    used_as_of = monthly.get_column("as_of").first() if monthly.height else as_of or first
    assert isinstance(used_as_of, dt.date)
    daily = daily_limit_check(
        use.filter(pl.col("gas_day").is_between(first, used_as_of, closed="left")), contracts
    )
    return monthly, daily


def _gas_day_mean(hourly_t: pl.DataFrame, meters: pl.DataFrame, *, start: dt.date, end: dt.date) -> pl.DataFrame:
    """Mean temperature of each meter's gas days (°C)."""
    if hourly_t.height == 0:
        return pl.DataFrame(schema={"meter_id": pl.String, "gas_day": pl.Date, "temperature_c": pl.Float64})
    zones = meters.select("meter_id", "time_zone", pl.col("contract_hour").cast(pl.Int8))
    cal = zone_calendar(zones, start, end, "day")
    return (
        zones.join(cal, on=["time_zone", "contract_hour"])
        .select("meter_id", "ts", pl.col("period").alias("gas_day"))
        .join(hourly_t, on=["meter_id", "ts"])
        .group_by("meter_id", "gas_day")
        .agg(pl.col("temperature_c").mean())
    )
