"""The gas-day calendar: contract hours, DST days with 23 and 25 hours, bounds and errors."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from warehouse import GAS_DAY_CALENDAR_SCHEMA, ContractError, gas_day_bounds, gas_day_calendar

UTC = dt.UTC


def test_moscow_gas_day_starts_at_10_local() -> None:
    cal = gas_day_calendar(dt.date(2022, 1, 10), dt.date(2022, 1, 11), "Europe/Moscow", 10)
    assert cal.schema == GAS_DAY_CALENDAR_SCHEMA
    assert cal.height == 24
    first = cal.row(0, named=True)
    # Moscow is UTC+3 all year: 10:00 local = 07:00 UTC
    assert first["ts"] == dt.datetime(2022, 1, 10, 7, tzinfo=UTC)
    assert (first["day"], first["hour"], first["gas_hour"]) == (10, 10, 0)
    last = cal.row(-1, named=True)
    assert last["local_ts"] == dt.datetime(2022, 1, 11, 9)
    assert last["gas_day"] == dt.date(2022, 1, 10) and last["gas_hour"] == 23
    assert cal.get_column("gas_day_hours").unique().to_list() == [24]


@pytest.mark.parametrize(
    ("zone", "hour", "day", "hours"),
    [
        # UK: clocks forward 2022-03-27 01:00 GMT, back 2022-10-30 01:00 GMT; gas day 05:00
        ("Europe/London", 5, dt.date(2022, 3, 26), 23),
        ("Europe/London", 5, dt.date(2022, 3, 27), 24),
        ("Europe/London", 5, dt.date(2022, 10, 29), 25),
        # Germany: gas day 06:00; the transitions are on the same UTC instants
        ("Europe/Berlin", 6, dt.date(2022, 3, 26), 23),
        ("Europe/Berlin", 6, dt.date(2022, 10, 29), 25),
        # a midnight contract hour puts the transition inside the calendar day itself
        ("Europe/Berlin", 0, dt.date(2022, 3, 27), 23),
        ("Europe/Berlin", 0, dt.date(2022, 10, 30), 25),
        # contract hour = the repeated hour: the gas day that starts then gets both
        ("Europe/Berlin", 2, dt.date(2022, 10, 29), 24),
        ("Europe/Berlin", 2, dt.date(2022, 10, 30), 25),
        ("Europe/Moscow", 10, dt.date(2022, 10, 30), 24),
    ],
)
def test_dst_days_have_23_or_25_hours(zone: str, hour: int, day: dt.date, hours: int) -> None:
    cal = gas_day_calendar(day, day + dt.timedelta(days=1), zone, hour)
    assert cal.height == hours
    assert cal.get_column("gas_day_hours").unique().to_list() == [hours]
    assert cal.get_column("gas_hour").to_list() == list(range(hours))


def test_25_hour_day_repeats_a_local_hour_but_not_a_gas_hour() -> None:
    cal = gas_day_calendar(dt.date(2022, 10, 29), dt.date(2022, 10, 30), "Europe/London", 5)
    assert cal.filter(pl.col("hour") == 1).height == 2
    assert cal.get_column("gas_hour").n_unique() == 25


def test_a_year_covers_every_utc_hour_once() -> None:
    cal = gas_day_calendar(dt.date(2022, 1, 1), dt.date(2023, 1, 1), "Europe/London", 5)
    assert cal.height == 365 * 24  # one 23-hour and one 25-hour day
    assert cal.get_column("ts").is_unique().all()
    assert cal.get_column("ts").diff().drop_nulls().unique().to_list() == [dt.timedelta(hours=1)]
    per_day = cal.group_by("gas_day").len()
    assert per_day.height == 365
    assert sorted(per_day.get_column("len").value_counts().rows()) == [(23, 1), (24, 363), (25, 1)]


def test_gas_month_follows_the_gas_day() -> None:
    cal = gas_day_calendar(dt.date(2022, 1, 31), dt.date(2022, 2, 1), "Europe/Moscow", 10)
    # local 2022-02-01 09:00 still belongs to gas day 31 January, i.e. gas month January
    tail = cal.row(-1, named=True)
    assert (tail["month"], tail["gas_month"], tail["gas_year"]) == (2, 1, 2022)


def test_utc_datetime_range_is_half_open_and_keeps_gas_day_lengths() -> None:
    lo = dt.datetime(2022, 10, 30, 0, 30, tzinfo=UTC)  # floored to 00:00
    cal = gas_day_calendar(lo, lo + dt.timedelta(hours=3), "Europe/London", 5)
    assert cal.get_column("ts").to_list() == [dt.datetime(2022, 10, 30, h, tzinfo=UTC) for h in range(3)]
    # the range cuts the 25-hour gas day of 29 October: its length is still reported
    assert cal.get_column("gas_day_hours").to_list() == [25, 25, 25]
    assert cal.get_column("gas_hour").to_list() == [20, 21, 22]  # it started 04:00 UTC on the 29th


def test_gas_day_bounds() -> None:
    assert gas_day_bounds(dt.date(2022, 10, 29), "Europe/London", 5) == (
        dt.datetime(2022, 10, 29, 4, tzinfo=UTC),
        dt.datetime(2022, 10, 30, 5, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((dt.date(2022, 1, 1), dt.date(2022, 1, 2), "Mars/Olympus", 10), "unknown time zone"),
        ((dt.date(2022, 1, 1), dt.date(2022, 1, 2), "Europe/Moscow", 24), "0..23"),
        ((dt.date(2022, 1, 2), dt.date(2022, 1, 1), "Europe/Moscow", 10), "swap"),
        ((dt.datetime(2022, 1, 1), dt.datetime(2022, 1, 2), "Europe/Moscow", 10), "naive"),
        ((dt.date(2022, 1, 1), dt.datetime(2022, 1, 2, tzinfo=UTC), "Europe/Moscow", 10), "both"),
    ],
)
def test_bad_arguments(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ContractError, match=message):
        gas_day_calendar(*args)  # type: ignore[arg-type]


def test_empty_range_is_an_empty_frame() -> None:
    cal = gas_day_calendar(dt.date(2022, 1, 1), dt.date(2022, 1, 1), "Europe/Moscow", 10)
    assert cal.height == 0 and cal.schema == GAS_DAY_CALENDAR_SCHEMA
