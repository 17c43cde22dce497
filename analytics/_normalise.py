"""Weather normalisation: consumption as it would have been in a normal-temperature year.

Space heating follows heating degree days (HDD): a day with mean outdoor temperature
``T`` has ``HDD = max(0, base − T)`` with ``base`` the balance temperature below which
buildings heat (15.5 °C by default, the UK/Bedford convention and the simulator's
boiler-house model; 18 °C and 8 °C are common elsewhere).  Per metering point askug
fits daily use ``volume_m3 = base_m3 + hdd_coef_m3 × HDD`` by ordinary least squares
(one closed-form solve for all meters at once) and normalises each day::

    normalised_m3 = volume_m3 + hdd_coef_m3 × (HDD_normal(day of year) − HDD_actual)

i.e. only the weather-driven part is moved to the normal year; the base load (hot
water, cooking, process gas) and the meter's own noise stay as metered.  The normal
year is the climatology of a long temperature history (:func:`normal_year`, the mean
HDD of each day of year over all years, which is not the HDD of the mean temperature),
or any normal supplied as a frame (``day_of_year`` with ``hdd`` or ``temperature_c``).
Days are UTC days (the daily archive); totals per month or period sum the days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Final, Literal

import polars as pl

from analytics._periods import check_range
from analytics.errors import AnalyticsError
from warehouse import Store, load_meter_temperature

#: Balance temperature of the heating-degree model (°C).
DEFAULT_BASE_C: Final = 15.5
#: Fewer days than this give no slope (the meter is treated as weather-independent).
MIN_FIT_DAYS: Final = 7

NormalisePeriod = Literal["day", "month", "total"]

#: Columns of :func:`fit_hdd`.
HDD_FIT_SCHEMA: Final = pl.Schema(
    {
        "meter_id": pl.String(),
        "base_m3": pl.Float64(),  # m³/day at HDD = 0
        "hdd_coef_m3": pl.Float64(),  # m³ per heating degree day
        "r2": pl.Float64(),  # share of daily variance the fit explains (null: no variance)
        "days": pl.Int32(),  # days used
    }
)

#: Columns of :func:`normalise_consumption`.
NORMALISED_SCHEMA: Final = pl.Schema(
    {
        "meter_id": pl.String(),
        "period": pl.Date(),  # the day, first of the month, or the first day (total)
        "days": pl.Int32(),
        "volume_m3": pl.Float64(),  # metered
        "normalised_m3": pl.Float64(),  # at normal-year temperature
        "hdd": pl.Float64(),  # actual heating degree days
        "hdd_normal": pl.Float64(),  # normal-year heating degree days
        "hdd_coef_m3": pl.Float64(),
        "weather_effect_m3": pl.Float64(),  # normalised − metered
    }
)


def hdd(temperature_c: pl.Expr, base_c: float = DEFAULT_BASE_C) -> pl.Expr:
    """Heating degree days of a daily mean temperature: ``max(0, base_c − T)``."""
    return (pl.lit(base_c) - temperature_c).clip(lower_bound=0.0)


def _check_daily(daily: pl.DataFrame, needs: Sequence[str]) -> pl.DataFrame:
    missing = [c for c in needs if c not in daily.columns]
    if missing:
        raise AnalyticsError(f"daily frame lacks columns {missing}; expected {list(needs)}")
    if daily.height == 0:
        raise AnalyticsError("no daily consumption in the period; pick a period with data")
    return daily


def fit_hdd(daily: pl.DataFrame, *, base_c: float = DEFAULT_BASE_C) -> pl.DataFrame:
    """Fit ``volume_m3 = base_m3 + hdd_coef_m3 × HDD`` per metering point.

    Parameters
    ----------
    daily
        ``meter_id``, ``volume_m3`` (m³ per day, null = missing) and ``temperature_c``
        (daily mean outdoor temperature, °C); other columns are ignored.
    base_c
        Balance temperature of the HDD (°C).

    Returns
    -------
    polars.DataFrame
        :data:`HDD_FIT_SCHEMA`.  A meter with fewer than :data:`MIN_FIT_DAYS` days, no
        spread of HDD, or a negative fitted slope gets ``hdd_coef_m3 = 0`` and
        ``base_m3`` = its mean daily use: a slope that says "less gas when colder" is
        noise, not physics, and would turn normalisation upside down.
    """
    daily = _check_daily(daily, ("meter_id", "volume_m3", "temperature_c"))
    x, y = pl.col("_x"), pl.col("volume_m3")
    sums = (
        daily.lazy()
        .filter(pl.col("volume_m3").is_not_null() & pl.col("temperature_c").is_not_null())
        .with_columns(hdd(pl.col("temperature_c"), base_c).alias("_x"))
        .group_by("meter_id")
        .agg(
            pl.len().alias("n"),
            x.mean().alias("mx"),
            y.mean().alias("my"),
            ((x - x.mean()) * (y - y.mean())).sum().alias("sxy"),
            ((x - x.mean()) ** 2).sum().alias("sxx"),
            ((y - y.mean()) ** 2).sum().alias("syy"),
        )
    )
    slope = pl.col("sxy") / pl.col("sxx")
    ok = (pl.col("n") >= MIN_FIT_DAYS) & (pl.col("sxx") > 1e-9) & (slope > 0)
    out = sums.with_columns(pl.when(ok).then(slope).otherwise(0.0).alias("hdd_coef_m3")).with_columns(
        (pl.col("my") - pl.col("hdd_coef_m3") * pl.col("mx")).alias("base_m3"),
        pl.when(pl.col("syy") > 0)
        .then(pl.col("hdd_coef_m3") * pl.col("sxy") / pl.col("syy"))
        .alias("r2"),
        pl.col("n").cast(pl.Int32).alias("days"),
    )
    return out.select(list(HDD_FIT_SCHEMA)).sort("meter_id").collect()


def normal_year(
    temperature: pl.DataFrame, *, base_c: float = DEFAULT_BASE_C, smoothing_days: int = 3
) -> pl.DataFrame:
    """The normal year of a temperature history: mean HDD per day of year.

    Parameters
    ----------
    temperature
        ``ts`` (UTC, hourly or daily) and ``temperature_c`` (°C); optionally a
        ``station_id`` or ``meter_id`` column, which then gets its own normal.  Hours are
        averaged to UTC days first.  Use as many years as you have (30 is the
        climatological norm); with one year the "normal" is that year itself.
    base_c
        Balance temperature of the HDD (°C).
    smoothing_days
        Average each day of year with its ±``smoothing_days`` neighbours (circular), so a
        short history does not leave a random wiggle in the normal.

    Returns
    -------
    polars.DataFrame
        (the key column, if any), ``day_of_year`` (Int16, 1..366 on the leap-year
        calendar so a date has the same number every year), ``hdd_normal`` (mean HDD),
        ``temperature_c`` (mean daily temperature) and ``years`` (days averaged).
    """
    key = [c for c in ("station_id", "meter_id") if c in temperature.columns][:1]
    if "ts" not in temperature.columns or "temperature_c" not in temperature.columns:
        raise AnalyticsError("normal_year needs columns ts (UTC) and temperature_c (°C)")
    if isinstance(smoothing_days, bool) or not isinstance(smoothing_days, int) or not 0 <= smoothing_days <= 30:
        raise AnalyticsError(f"smoothing_days must be an integer 0..30, got {smoothing_days!r}")
    daily = (
        temperature.lazy()
        .filter(pl.col("temperature_c").is_not_null())
        .group_by(*key, pl.col("ts").dt.date().alias("day"))
        .agg(pl.col("temperature_c").mean())
        .with_columns(_leap_doy(pl.col("day")).alias("day_of_year"), hdd(pl.col("temperature_c"), base_c).alias("_h"))
        .collect()
    )
    if daily.height == 0:
        raise AnalyticsError("no temperatures to build a normal year from; load weather first")
    # Spread each day to its neighbours (circular over 366), then average.
    shifts = pl.DataFrame({"_shift": list(range(-smoothing_days, smoothing_days + 1))}, schema={"_shift": pl.Int16})
    spread = daily.join(shifts, how="cross").with_columns(
        ((pl.col("day_of_year") - 1 + pl.col("_shift")) % 366 + 1).cast(pl.Int16).alias("day_of_year")
    )
    return (
        spread.group_by(*key, "day_of_year")
        .agg(
            pl.col("_h").mean().alias("hdd_normal"),
            pl.col("temperature_c").mean(),
            pl.col("day").dt.year().n_unique().cast(pl.Int32).alias("years"),
        )
        .sort(*key, "day_of_year")
    )


def _leap_doy(day: pl.Expr) -> pl.Expr:
    """Day of year on the leap-year calendar: 1 March is 61 in every year."""
    doy = day.dt.ordinal_day()
    return (pl.when(~day.dt.is_leap_year() & (doy >= 60)).then(doy + 1).otherwise(doy)).cast(pl.Int16)


def normalise_consumption(
    daily: pl.DataFrame,
    *,
    normal: pl.DataFrame,
    base_c: float = DEFAULT_BASE_C,
    period: NormalisePeriod = "month",
    fit: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Normalise daily consumption per metering point to the normal year.

    Parameters
    ----------
    daily
        ``meter_id``, ``ts`` (UTC day start) or ``day`` (Date), ``volume_m3`` (m³ per
        day, null = missing: the day is left out), ``temperature_c`` (daily mean, °C).
    normal
        ``day_of_year`` (1..366, leap calendar) with ``hdd_normal`` or ``temperature_c``
        (then HDD is taken of it with ``base_c``); a ``meter_id`` column gives each meter
        its own normal.  See :func:`normal_year`.
    base_c
        Balance temperature of the HDD (°C).
    period
        ``"day"``, ``"month"`` (calendar months of the UTC days) or ``"total"``.
    fit
        Coefficients from :func:`fit_hdd` (default: fitted on ``daily``).

    Returns
    -------
    polars.DataFrame
        :data:`NORMALISED_SCHEMA`, sorted by ``meter_id`` and ``period``.

    Raises
    ------
    AnalyticsError
        Missing columns, no data, an unknown ``period``, or days whose day of year the
        normal does not cover.
    """
    if period not in ("day", "month", "total"):
        raise AnalyticsError(f"period must be 'day', 'month' or 'total', got {period!r}")
    daily = _check_daily(daily, ("meter_id", "volume_m3", "temperature_c"))
    if "day" not in daily.columns:
        if "ts" not in daily.columns:
            raise AnalyticsError("daily frame needs a ts (UTC day start) or day (Date) column")
        daily = daily.with_columns(pl.col("ts").dt.date().alias("day"))
    if "day_of_year" not in normal.columns or not ({"hdd_normal", "temperature_c"} & set(normal.columns)):
        raise AnalyticsError("normal needs day_of_year and hdd_normal or temperature_c; see normal_year()")
    if "hdd_normal" not in normal.columns:
        normal = normal.with_columns(hdd(pl.col("temperature_c"), base_c).alias("hdd_normal"))
    nkey = ["meter_id"] if "meter_id" in normal.columns else []
    normal = normal.select(*nkey, pl.col("day_of_year").cast(pl.Int16), "hdd_normal")
    coef = fit if fit is not None else fit_hdd(daily, base_c=base_c)
    days = (
        daily.filter(pl.col("volume_m3").is_not_null() & pl.col("temperature_c").is_not_null())
        .with_columns(_leap_doy(pl.col("day")).alias("day_of_year"), hdd(pl.col("temperature_c"), base_c).alias("hdd"))
        .join(normal, on=[*nkey, "day_of_year"], how="left")
        .join(coef.select("meter_id", "hdd_coef_m3"), on="meter_id", how="left")
    )
    uncovered = days.filter(pl.col("hdd_normal").is_null())
    if uncovered.height:
        first = uncovered.row(0, named=True)
        raise AnalyticsError(
            f"the normal year has no value for day of year {first['day_of_year']} "
            f"({first['day']}, meter {first['meter_id']}); supply a normal covering every day"
        )
    days = days.with_columns(pl.col("hdd_coef_m3").fill_null(0.0)).with_columns(
        (pl.col("volume_m3") + pl.col("hdd_coef_m3") * (pl.col("hdd_normal") - pl.col("hdd"))).alias("normalised_m3")
    )
    if period == "day":
        key = pl.col("day")
    elif period == "month":
        key = pl.col("day").dt.month_start()
    else:
        key = pl.col("day").min().over("meter_id")
    out = (
        days.with_columns(key.alias("period"))
        .group_by("meter_id", "period")
        .agg(
            pl.len().cast(pl.Int32).alias("days"),
            pl.col("volume_m3").sum(),
            pl.col("normalised_m3").sum(),
            pl.col("hdd").sum(),
            pl.col("hdd_normal").sum(),
            pl.col("hdd_coef_m3").first(),
        )
        .with_columns((pl.col("normalised_m3") - pl.col("volume_m3")).alias("weather_effect_m3"))
    )
    return out.select(list(NORMALISED_SCHEMA)).sort("meter_id", "period")


def aggregate_normalised(normalised: pl.DataFrame, meters: pl.DataFrame, *, by: str = "category") -> pl.DataFrame:
    """Sum normalised consumption to a group of metering points, plus an ``(all)`` total.

    Parameters
    ----------
    normalised
        The frame of :func:`normalise_consumption`.
    meters
        ``meter_id`` and the grouping column (e.g. :func:`warehouse.load_meters`).
    by
        The grouping column: ``category``, ``branch_id``, ``company_id``, ``node_id`` …

    Returns
    -------
    polars.DataFrame
        ``<by>``, ``period``, ``meters``, ``volume_m3``, ``normalised_m3``,
        ``weather_effect_m3`` and ``weather_effect_pct`` (of the metered volume); the
        total over every meter has ``<by>`` = ``"(all)"``.
    """
    if by not in meters.columns:
        raise AnalyticsError(f"cannot group by {by!r}: the meter frame has columns {meters.columns}")
    joined = normalised.join(meters.select("meter_id", pl.col(by).cast(pl.String)), on="meter_id", how="left")
    aggs = (
        pl.col("meter_id").n_unique().cast(pl.Int32).alias("meters"),
        pl.col("volume_m3").sum(),
        pl.col("normalised_m3").sum(),
        pl.col("weather_effect_m3").sum(),
    )
    groups = joined.group_by(by, "period").agg(*aggs)
    total = joined.group_by("period").agg(*aggs).with_columns(pl.lit("(all)").alias(by))
    return (
        pl.concat([groups, total.select(groups.columns)])
        .with_columns(
            pl.when(pl.col("volume_m3") > 0)
            .then(100.0 * pl.col("weather_effect_m3") / pl.col("volume_m3"))
            .alias("weather_effect_pct")
        )
        .sort(pl.col(by) == "(all)", by, "period")
    )


def daily_with_temperature(
    store: Store,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    meter_ids: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Daily (UTC) consumption of each metering point with its daily mean temperature.

    Reads the ``daily_archive`` rollup (run ``askug rollup`` first) and the weather of
    each meter's branch station.  Days with fewer than 24 hourly values are dropped: a
    partial day would look like a warm day to the fit.

    Returns ``meter_id``, ``ts`` (UTC day), ``day`` (Date), ``volume_m3``,
    ``temperature_c``.
    """
    check_range(start, end)
    cons = store.read(
        "daily_archive",
        start=start,
        end=end,
        where={"meter_id": list(meter_ids)} if meter_ids is not None else None,
        columns=["meter_id", "ts", "volume_m3", "hours"],
    )
    cons = cons.filter(pl.col("hours") >= 24).drop("hours")
    temp = load_meter_temperature(store, meter_ids=meter_ids, start=start, end=end)
    tday = temp.group_by("meter_id", pl.col("ts").dt.truncate("1d")).agg(pl.col("temperature_c").mean())
    return cons.join(tday, on=["meter_id", "ts"], how="inner").with_columns(pl.col("ts").dt.date().alias("day")).sort(
        "meter_id", "ts"
    )


def normalise_from_store(
    store: Store,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    normal: pl.DataFrame | None = None,
    base_c: float = DEFAULT_BASE_C,
    period: NormalisePeriod = "month",
    meter_ids: Sequence[str] | None = None,
) -> pl.DataFrame:
    """:func:`normalise_consumption` on the store's daily archive and weather.

    ``normal`` defaults to :func:`normal_year` of *all* weather stored for the meters'
    stations: with several years loaded that is a climatology; with one season it is
    that season itself, and the normalisation is then close to the identity.  Pass a
    normal built from a long record (e.g. a 30-year station normal) to do better.
    """
    if meter_ids is not None:
        known = set(store.read("metering_points", columns=["meter_id"]).get_column("meter_id").to_list())
        unknown = sorted(set(meter_ids) - known)
        if unknown:
            raise AnalyticsError(f"unknown metering point(s) {unknown[:5]}; check the meter ids")
    daily = daily_with_temperature(store, start=start, end=end, meter_ids=meter_ids)
    if daily.height == 0:
        raise AnalyticsError(
            "no complete daily consumption with temperature in the period; run `askug rollup` after "
            "loading, check the weather table, or pick a period with data"
        )
    if normal is None:
        normal = normal_year(load_meter_temperature(store, meter_ids=meter_ids), base_c=base_c)
    return normalise_consumption(daily, normal=normal, base_c=base_c, period=period)


def read_normal_file(path: str) -> pl.DataFrame:
    """Read a normal year from CSV: ``day_of_year`` and ``temperature_c`` or ``hdd_normal``."""
    try:
        frame = pl.read_csv(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise AnalyticsError(f"cannot read the normal-year file {path}: {exc}") from None
    if "day_of_year" not in frame.columns or not ({"hdd_normal", "temperature_c"} & set(frame.columns)):
        raise AnalyticsError(
            f"{path} line 1: header must have day_of_year and temperature_c or hdd_normal, got {frame.columns}"
        )
    bad = frame.with_row_index("_line", offset=2).filter(~pl.col("day_of_year").is_between(1, 366))
    if bad.height:
        raise AnalyticsError(f"{path} line {bad.row(0, named=True)['_line']}: day_of_year must be 1..366")
    return frame

