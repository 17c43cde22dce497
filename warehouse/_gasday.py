"""The gas-day calendar: UTC hours → company-local calendar and gas day.

A company's **gas day** ``D`` runs from its *contract hour* (local wall clock) on
calendar day ``D`` to the contract hour on ``D + 1`` — 10:00 Europe/Moscow in Russia,
06:00 Europe/Berlin in Germany, 05:00 Europe/London in the UK — and is labelled by the
calendar date on which it starts.  On the days the clocks change a gas day has 23 or
25 hours.  Every table stores UTC; local time exists only here, so analytics joins a
small calendar frame (one row per UTC hour) instead of converting every fact row
(``PERFORMANCE.md``: rounding ``TIMESTAMP WITH TIME ZONE`` in DuckDB is ~5× slower).

Rule used: an hour belongs to the gas day ``date(local_wall_clock - contract_hour)``.
This is exact for every zone because wall-clock time only jumps at the transition:
on a spring-forward day the missing local hour simply does not occur (23 hours), on a
fall-back day the repeated local hour occurs twice (25 hours).  When the contract hour
itself is the repeated hour (e.g. 02:00 in Europe/Berlin in October), both occurrences
belong to the gas day that starts then (the one before it keeps 24 hours).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Final

import polars as pl

from warehouse._schemas import UTC_TS
from warehouse.errors import ContractError

#: Columns of :func:`gas_day_calendar` and their dtypes.
_CALENDAR_COLUMNS: dict[str, pl.DataType] = {
    "ts": UTC_TS,  # start of the UTC hour
    "local_ts": pl.Datetime("us"),  # company-local wall clock (naive)
    "year": pl.Int16(),  # local calendar date and hour of ts
    "month": pl.Int8(),
    "day": pl.Int8(),
    "hour": pl.Int8(),
    "gas_day": pl.Date(),  # the gas day the hour belongs to (the date it starts on)
    "gas_year": pl.Int16(),  # year and month of gas_day (the gas month)
    "gas_month": pl.Int8(),
    "gas_hour": pl.Int8(),  # position of the hour within its gas day: 0 .. gas_day_hours-1
    "gas_day_hours": pl.Int8(),  # 23, 24 or 25
}
GAS_DAY_CALENDAR_SCHEMA: Final = pl.Schema(_CALENDAR_COLUMNS)

_MARGIN: Final = dt.timedelta(days=2)  # > 23 h contract hour + 14 h UTC offset


def check_zone(time_zone: str, contract_hour: int) -> None:
    """Raise :class:`ContractError` for an unknown IANA zone or a contract hour outside 0..23."""
    if not isinstance(contract_hour, int) or not 0 <= contract_hour <= 23:
        raise ContractError(
            f"contract_hour must be a local hour 0..23, got {contract_hour!r} "
            "(e.g. 10 for Russia, 6 for Germany, 5 for the UK)"
        )
    try:
        zoneinfo.ZoneInfo(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ContractError(
            f"unknown time zone {time_zone!r}; use an IANA name such as 'Europe/Moscow'"
        ) from None


def _utc(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None:
        raise ContractError(f"{name} is a naive datetime; pass a UTC-aware one or a date (gas day)")
    return value.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def gas_day_calendar(
    start: dt.date | dt.datetime,
    end: dt.date | dt.datetime,
    time_zone: str,
    contract_hour: int,
) -> pl.DataFrame:
    """One row per UTC hour with its local calendar position and its gas day.

    Parameters
    ----------
    start, end
        Half-open range.  Either two ``datetime.date`` values — *gas days*
        ``start <= gas_day < end``, so ``(date(2022, 1, 1), date(2022, 2, 1))`` is the
        gas month of January 2022 with every hour of its 31 gas days — or two UTC-aware
        ``datetime`` values, the UTC hours ``start <= ts < end`` (floored to the hour).
    time_zone
        The company's IANA time zone (``companies.time_zone``).
    contract_hour
        Local hour 0..23 at which the gas day starts (``companies.contract_hour``).

    Returns
    -------
    polars.DataFrame
        :data:`GAS_DAY_CALENDAR_SCHEMA`, sorted by ``ts``: ``ts`` (UTC hour start),
        ``local_ts`` (naive local wall clock), local ``year``/``month``/``day``/``hour``,
        ``gas_day`` (date the gas day starts on), ``gas_year``/``gas_month``,
        ``gas_hour`` (0-based position in the gas day; unique even on a 25-hour day,
        where the repeated local clock hour appears twice) and ``gas_day_hours``
        (23/24/25: the length of that gas day, also when the range cuts it).

    Raises
    ------
    ContractError
        Unknown zone, contract hour outside 0..23, naive datetimes, mixed date and
        datetime bounds, or ``end < start``.

    Examples
    --------
    >>> import datetime as dt
    >>> cal = gas_day_calendar(dt.date(2022, 3, 26), dt.date(2022, 3, 27), "Europe/London", 5)
    >>> cal.height, cal["gas_day_hours"][0]   # clocks go forward 27 March 01:00: 23 hours
    (23, 23)
    """
    check_zone(time_zone, contract_hour)
    dates = [isinstance(v, dt.date) and not isinstance(v, dt.datetime) for v in (start, end)]
    if dates[0] != dates[1]:
        raise ContractError("start and end must both be dates (gas days) or both UTC datetimes")
    if dates[0]:
        lo = dt.datetime.combine(start, dt.time(), dt.UTC)
        hi = dt.datetime.combine(end, dt.time(), dt.UTC)
    else:
        assert isinstance(start, dt.datetime) and isinstance(end, dt.datetime)
        lo, hi = _utc(start, "start"), _utc(end, "end")
    if hi < lo:
        raise ContractError(f"end {end} is before start {start}; swap them")
    ts = pl.datetime_range(lo - _MARGIN, hi + _MARGIN, "1h", closed="left", eager=True,
                           time_unit="us", time_zone="UTC").alias("ts")
    local = ts.dt.convert_time_zone(time_zone).dt.replace_time_zone(None).alias("local_ts")
    gas_day = (local - dt.timedelta(hours=contract_hour)).dt.date().alias("gas_day")
    cal = pl.DataFrame([ts, local, gas_day]).with_columns(
        pl.col("local_ts").dt.year().cast(pl.Int16).alias("year"),
        pl.col("local_ts").dt.month().cast(pl.Int8).alias("month"),
        pl.col("local_ts").dt.day().cast(pl.Int8).alias("day"),
        pl.col("local_ts").dt.hour().cast(pl.Int8).alias("hour"),
        pl.col("gas_day").dt.year().cast(pl.Int16).alias("gas_year"),
        pl.col("gas_day").dt.month().cast(pl.Int8).alias("gas_month"),
        # rows are in ts order, so the running count inside a gas day is its position
        pl.int_range(pl.len()).over("gas_day").cast(pl.Int8).alias("gas_hour"),
        pl.len().over("gas_day").cast(pl.Int8).alias("gas_day_hours"),
    )
    if dates[0]:
        cal = cal.filter(pl.col("gas_day").is_between(start, end, closed="left"))
    else:
        cal = cal.filter(pl.col("ts").is_between(lo, hi, closed="left"))
    return cal.select(list(GAS_DAY_CALENDAR_SCHEMA))


def gas_day_bounds(gas_day: dt.date, time_zone: str, contract_hour: int) -> tuple[dt.datetime, dt.datetime]:
    """The UTC half-open range ``[first hour, last hour + 1 h)`` of one gas day.

    Used by the incremental cube refresh to turn "late data for gas day D" into the UTC
    hours to re-read.
    """
    cal = gas_day_calendar(gas_day, gas_day + dt.timedelta(days=1), time_zone, contract_hour)
    first, last = cal.get_column("ts").min(), cal.get_column("ts").max()
    assert isinstance(first, dt.datetime) and isinstance(last, dt.datetime)
    return first, last + dt.timedelta(hours=1)
