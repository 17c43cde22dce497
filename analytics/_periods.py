"""Shared helpers of balance, limits and normalisation: argument checks and gas-day periods.

Every period here is a *gas* period in the company's local time: a gas day starts at
the contract hour (``warehouse.gas_day_calendar``), a gas month is the gas days whose
date lies in that calendar month.  Hours are UTC hour starts.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import polars as pl

from analytics.errors import AnalyticsError
from warehouse import ContractError, gas_day_calendar

PeriodFreq = Literal["hour", "day", "month"]
FREQS: tuple[str, ...] = ("hour", "day", "month")

Bound = dt.date | dt.datetime


def check_freq(freq: str) -> None:
    """Raise :class:`AnalyticsError` unless ``freq`` is hour, day or month."""
    if freq not in FREQS:
        raise AnalyticsError(f"freq must be one of {list(FREQS)}, got {freq!r}; pass e.g. freq='day'")


def check_range(start: Bound | None, end: Bound | None) -> None:
    """Refuse a reversed or empty range, mixed date/datetime bounds and naive datetimes."""
    if start is None or end is None:
        return
    kinds = {isinstance(v, dt.datetime) for v in (start, end)}
    if len(kinds) > 1:
        raise AnalyticsError(
            "start and end must both be dates (gas days) or both UTC datetimes; "
            f"got {start!r} and {end!r}"
        )
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            raise AnalyticsError(f"{name} {value} is a naive datetime; pass a UTC-aware one or a date")
    if end < start:
        raise AnalyticsError(f"the range is reversed: end {end} is before start {start}; swap them")
    if end == start:
        raise AnalyticsError(f"the period {start} … {end} is empty (end is exclusive); widen it")


def data_range(*frames: pl.DataFrame) -> tuple[dt.datetime, dt.datetime] | None:
    """The UTC hour range ``[min ts, max ts + 1 h)`` covered by the ``ts`` of ``frames``."""
    lows: list[dt.datetime] = []
    highs: list[dt.datetime] = []
    for f in frames:
        if f.height:
            lo, hi = f.get_column("ts").min(), f.get_column("ts").max()
            assert isinstance(lo, dt.datetime) and isinstance(hi, dt.datetime)
            lows.append(lo)
            highs.append(hi)
    if not lows:
        return None
    return min(lows), max(highs) + dt.timedelta(hours=1)


def zone_calendar(
    zones: pl.DataFrame, start: Bound, end: Bound, freq: PeriodFreq
) -> pl.DataFrame:
    """Map every UTC hour of ``[start, end)`` to its period, per time zone and contract hour.

    Parameters
    ----------
    zones
        Distinct ``time_zone`` (IANA) and ``contract_hour`` (Int, 0..23) pairs.
    start, end
        Dates (gas days, half-open) or UTC datetimes (hours, half-open).
    freq
        ``hour``: each hour is its own period; ``day``: the gas day; ``month``: the gas
        month (gas days of one calendar month).

    Returns
    -------
    polars.DataFrame
        ``time_zone``, ``contract_hour`` (Int8), ``ts`` (UTC hour), ``period`` (Date: the
        gas day of the hour, or the first day of its gas month), ``period_ts`` (UTC start
        of the period inside the range) and ``period_hours`` (hours of the period inside
        the range).
    """
    parts = []
    for tz, hour in zones.select("time_zone", "contract_hour").unique().iter_rows():
        try:
            cal = gas_day_calendar(start, end, str(tz), int(hour))
        except ContractError as exc:
            raise AnalyticsError(str(exc)) from None
        if freq == "month":
            period = pl.col("gas_day").dt.month_start()
        else:
            period = pl.col("gas_day")
        key = ["ts"] if freq == "hour" else ["period"]
        parts.append(
            cal.select("ts", period.alias("period"))
            .with_columns(
                pl.lit(tz, dtype=pl.String).alias("time_zone"),
                pl.lit(hour, dtype=pl.Int8).alias("contract_hour"),
            )
            .with_columns(
                pl.col("ts").min().over(key).alias("period_ts"),
                pl.len().over(key).cast(pl.Int32).alias("period_hours"),
            )
        )
    schema = {
        "ts": pl.Datetime("us", "UTC"),
        "period": pl.Date(),
        "time_zone": pl.String(),
        "contract_hour": pl.Int8(),
        "period_ts": pl.Datetime("us", "UTC"),
        "period_hours": pl.Int32(),
    }
    if not parts:
        return pl.DataFrame(schema=schema)
    return pl.concat(parts).select(list(schema))
