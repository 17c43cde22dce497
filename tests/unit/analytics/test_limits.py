"""Limit discipline on constructed series: the limits file, gas days, the month-end forecast."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from analytics import (
    AnalyticsError,
    LimitsFileError,
    daily_limit_check,
    gas_day_use,
    monthly_limit_status,
    read_limits_file,
)

JAN = dt.date(2022, 1, 1)


def _use(daily: dict[str, list[float | None]], start: dt.date = JAN) -> pl.DataFrame:
    """A gas_day_use frame: consecutive gas days from ``start``, complete (24 h)."""
    rows = []
    for meter, values in daily.items():
        for k, v in enumerate(values):
            rows.append((meter, start + dt.timedelta(days=k), v, 24 if v is not None else 0, 24, 0))
    return pl.DataFrame(
        rows,
        schema={"meter_id": pl.String, "gas_day": pl.Date, "volume_m3": pl.Float64, "hours": pl.Int32,
                "gas_day_hours": pl.Int32, "estimated_hours": pl.Int32},
        orient="row",
    )


def _contracts(*rows: tuple[str, dt.date, dt.date | None, float | None, float | None, float | None]) -> pl.DataFrame:
    return pl.DataFrame(
        list(rows),
        schema={"meter_id": pl.String, "valid_from": pl.Date, "valid_to": pl.Date, "daily_limit_m3": pl.Float64,
                "monthly_limit_m3": pl.Float64, "monthly_plan_m3": pl.Float64},
        orient="row",
    )


# --- the limits file ---------------------------------------------------------------------


def test_limits_file_round_trip(tmp_path: Path) -> None:
    f = tmp_path / "limits.csv"
    f.write_text(
        "meter_id,valid_from,valid_to,daily_limit_m3,monthly_limit_m3,monthly_plan_m3\n"
        "M1,2022-01-01,2022-01-31,12.5,300,280\n"
        "M1,2022-02-01,,10,250,\n"
        "\n"
        "M2,2022-01-01,,,1000,900\n"
    )
    frame = read_limits_file(f, known_meters={"M1", "M2"})
    assert frame.height == 3
    assert frame.row(1, named=True) == {
        "meter_id": "M1", "valid_from": dt.date(2022, 2, 1), "valid_to": None,
        "daily_limit_m3": 10.0, "monthly_limit_m3": 250.0, "monthly_plan_m3": None,
    }
    assert frame.row(2, named=True)["daily_limit_m3"] is None


def test_limits_file_with_only_some_value_columns(tmp_path: Path) -> None:
    f = tmp_path / "limits.csv"
    f.write_text("meter_id,valid_from,monthly_limit_m3\nM1,2022-01-01,300\n")
    frame = read_limits_file(f)
    assert frame.row(0, named=True)["monthly_limit_m3"] == 300.0
    assert frame.row(0, named=True)["daily_limit_m3"] is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("M1,2022-01-01,,abc,300,\n", r"line 2: column 'daily_limit_m3' value 'abc' is not a number"),
        ("M1,2022-01-01,,1,300,\nM2,01/02/2022,,1,2,3\n", r"line 3: column 'valid_from' value '01/02/2022' is not a date"),
        ("M1,2022-01-01,,1,300\n", r"line 2: 5 fields, the header has 6"),
        ("M1,2022-02-01,2022-01-01,1,2,3\n", r"line 2: valid_to 2022-01-01 is before valid_from 2022-02-01"),
        ("M1,2022-01-01,,-5,2,3\n", r"line 2: column 'daily_limit_m3' value '-5' must be a finite number ≥ 0"),
        ("M1,2022-01-01,,inf,2,3\n", r"must be a finite number"),
        (",2022-01-01,,1,2,3\n", r"line 2: column 'meter_id' is empty"),
        ("M9,2022-01-01,,1,2,3\n", r"line 2: meter_id 'M9' is not a known metering point"),
        ("M1,2022-01-01,,1,2,3\nM1,2022-01-15,,1,2,3\n", r"line 3: meter M1 validity from 2022-01-15 overlaps line 2"),
        ("M1,2022-01-01,,1,2,3\nM1,2022-01-01,2022-03-01,1,2,3\n", r"repeats line"),
    ],
)
def test_malformed_limits_file_names_the_line(tmp_path: Path, body: str, message: str) -> None:
    f = tmp_path / "limits.csv"
    f.write_text("meter_id,valid_from,valid_to,daily_limit_m3,monthly_limit_m3,monthly_plan_m3\n" + body)
    with pytest.raises(LimitsFileError, match=message) as info:
        read_limits_file(f, known_meters={"M1", "M2"})
    assert "nothing was loaded" in str(info.value)


def test_limits_file_lists_several_problems(tmp_path: Path) -> None:
    f = tmp_path / "limits.csv"
    f.write_text("meter_id,valid_from,daily_limit_m3\n" + "".join(f"M{k},2022-01-01,x{k}\n" for k in range(12)))
    with pytest.raises(LimitsFileError, match=r"12 problem\(s\): line 2: .*line 11: .*\(and 2 more\)"):
        read_limits_file(f)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("meter,valid_from,daily_limit_m3\n", r"line 1: header .* unknown column\(s\) \['meter'\]"),
        ("meter_id,valid_from\nM1,2022-01-01\n", "at least one of"),
        ("meter_id,valid_from,daily_limit_m3\n", "no limits"),
    ],
)
def test_bad_limits_header(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "limits.csv"
    f.write_text(text)
    with pytest.raises(LimitsFileError, match=message):
        read_limits_file(f)
    with pytest.raises(LimitsFileError, match="does not exist"):
        read_limits_file(tmp_path / "missing.csv")


# --- gas days ----------------------------------------------------------------------------


def test_gas_day_use_follows_the_contract_hour() -> None:
    meters = pl.DataFrame({"meter_id": ["M1"], "time_zone": ["Europe/Moscow"], "contract_hour": [10]})
    start = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)
    hours = [start + dt.timedelta(hours=h) for h in range(72)]
    # 1 m³ per hour, but 5 m³ in the hour 06:00 UTC on 2 Jan (the last hour of gas day 1 Jan)
    vols = [5.0 if h == dt.datetime(2022, 1, 2, 6, tzinfo=dt.UTC) else 1.0 for h in hours]
    hourly = pl.DataFrame({"meter_id": ["M1"] * 72, "ts": hours, "volume_m3": vols, "quality": ["valid"] * 72})
    use = gas_day_use(hourly, meters, start=dt.date(2022, 1, 1), end=dt.date(2022, 1, 3))
    assert use.get_column("gas_day").to_list() == [dt.date(2022, 1, 1), dt.date(2022, 1, 2)]
    assert use.get_column("volume_m3").to_list() == [28.0, 24.0]
    assert use.get_column("hours").to_list() == [24, 24]
    missing = gas_day_use(hourly.head(10), meters, start=dt.date(2022, 1, 1), end=dt.date(2022, 1, 3))
    assert missing.get_column("volume_m3").to_list() == [3.0, None]


def test_daily_limit_check_uses_the_contract_valid_that_day() -> None:
    use = _use({"M1": [10.0, 12.0, 12.0, 9.0]})
    contracts = _contracts(("M1", JAN, dt.date(2022, 1, 2), 11.0, None, None), ("M1", dt.date(2022, 1, 3), None, 12.5, None, None))
    out = daily_limit_check(use, contracts)
    assert out.get_column("daily_limit_m3").to_list() == [11.0, 11.0, 12.5, 12.5]
    assert out.get_column("over").to_list() == [False, True, False, False]
    assert out.get_column("excess_m3").to_list() == pytest.approx([-1.0, 1.0, -0.5, -3.5])


# --- the month-end forecast --------------------------------------------------------------


def test_constant_use_forecast_and_statement() -> None:
    use = _use({"M1": [10.0] * 10})  # 1..10 January
    contracts = _contracts(("M1", JAN, None, 20.0, 250.0, 300.0))
    out = monthly_limit_status(use, contracts, month=JAN, names=pl.DataFrame({"meter_id": ["M1"], "name": ["Bakery"]}))
    row = out.row(0, named=True)
    assert row["as_of"] == dt.date(2022, 1, 11) and row["days_elapsed"] == 10 and row["days_in_month"] == 31
    assert row["actual_m3"] == pytest.approx(100.0)
    assert row["forecast_m3"] == pytest.approx(310.0)
    assert row["forecast_method"] == "hdd"
    assert row["excess_m3"] == pytest.approx(60.0)
    assert row["exceed_day"] == dt.date(2022, 1, 26)  # 26 × 10 = 260 > 250; 25 × 10 is not over
    assert row["status"] == "at_risk"
    assert row["statement"] == "consumer M1 (Bakery) will exceed its monthly limit by 60 m³ on day 2022-01-26"
    assert row["plan_to_date_pct"] == pytest.approx(100 * 100 / (300 * 10 / 31))


def test_heating_degree_extrapolation_uses_the_remaining_days_temperature() -> None:
    # Use = 5 + 2 × HDD(15.5 °C) exactly; the rest of the month is forecast at 0.5 °C (HDD 15).
    temps = [15.5 - k % 10 for k in range(14)]
    use = _use({"M1": [5.0 + 2.0 * (15.5 - t) for t in temps]})
    future = [0.5] * (31 - 14)
    temperature = pl.DataFrame(
        {"meter_id": ["M1"] * 31, "gas_day": [JAN + dt.timedelta(days=k) for k in range(31)], "temperature_c": temps + future}
    )
    contracts = _contracts(("M1", JAN, None, None, 2000.0, None))
    row = monthly_limit_status(use, contracts, month=JAN, temperature=temperature).row(0, named=True)
    actual = sum(5.0 + 2.0 * (15.5 - t) for t in temps)
    assert row["actual_m3"] == pytest.approx(actual)
    assert row["forecast_m3"] == pytest.approx(actual + 17 * 35.0)
    assert row["status"] == "ok" and row["statement"] is None and row["exceed_day"] is None


def test_missing_future_temperature_persists_the_last_week() -> None:
    temps = [5.0] * 7 + [10.0] * 7
    use = _use({"M1": [5.0 + 2.0 * (15.5 - t) for t in temps]})
    temperature = pl.DataFrame(
        {"meter_id": ["M1"] * 14, "gas_day": [JAN + dt.timedelta(days=k) for k in range(14)], "temperature_c": temps}
    )
    row = monthly_limit_status(use, _contracts(("M1", JAN, None, None, 1e6, None)), month=JAN, temperature=temperature).row(0, named=True)
    # the last 7 days were 10 °C: each remaining day is 5 + 2 × 5.5 = 16 m³
    assert row["forecast_m3"] == pytest.approx(row["actual_m3"] + 17 * 16.0)


def test_stored_forecast_wins_over_extrapolation() -> None:
    use = _use({"M1": [10.0] * 20})
    forecast = pl.DataFrame(
        {"meter_id": ["M1"] * 5, "gas_day": [JAN + dt.timedelta(days=20 + k) for k in range(5)], "volume_m3": [30.0] * 5}
    )
    row = monthly_limit_status(use, _contracts(("M1", JAN, None, None, 400.0, None)), month=JAN, forecast=forecast).row(0, named=True)
    assert row["forecast_m3"] == pytest.approx(200 + 5 * 30 + 6 * 10)
    assert row["forecast_method"] == "mixed"
    assert row["exceed_day"] == dt.date(2022, 1, 31)  # 350 after day 25, + 10/day: 410 > 400 on day 31


def test_already_exceeded_and_no_limit() -> None:
    use = _use({"M1": [50.0] * 10, "M2": [1.0] * 10})
    contracts = _contracts(("M1", JAN, None, 40.0, 300.0, None), ("M2", JAN, None, None, None, 30.0))
    out = monthly_limit_status(use, contracts, month=JAN, as_of=dt.date(2022, 1, 11))
    rows = {r["meter_id"]: r for r in out.iter_rows(named=True)}
    assert rows["M1"]["status"] == "exceeded"
    assert rows["M1"]["exceed_day"] == dt.date(2022, 1, 7)
    assert rows["M1"]["days_over_daily_limit"] == 10
    assert rows["M1"]["statement"].startswith("consumer M1 exceeded its monthly limit on day 2022-01-07")
    assert rows["M2"]["status"] == "no_limit" and rows["M2"]["statement"] is None
    assert out.get_column("meter_id").to_list() == ["M1", "M2"]  # worst first


def test_month_over_is_all_actual() -> None:
    use = _use({"M1": [10.0] * 31})
    row = monthly_limit_status(use, _contracts(("M1", JAN, None, None, 305.0, None)), month=JAN).row(0, named=True)
    assert row["as_of"] == dt.date(2022, 2, 1) and row["forecast_method"] == "actual"
    assert row["forecast_m3"] == pytest.approx(310.0) and row["status"] == "exceeded"


def test_as_of_outside_the_month_is_refused() -> None:
    with pytest.raises(AnalyticsError, match="outside the gas month"):
        monthly_limit_status(_use({"M1": [1.0]}), _contracts(("M1", JAN, None, 1.0, 1.0, 1.0)), month=JAN,
                             as_of=dt.date(2022, 3, 1))


def test_limit_figure_shows_actual_forecast_and_limit() -> None:
    from analytics import limit_figure

    use = _use({"M1": [10.0] * 10})
    status = monthly_limit_status(use, _contracts(("M1", JAN, None, 20.0, 250.0, 300.0)), month=JAN)
    fig = limit_figure(use, status, "M1")
    assert [t.name for t in fig.data] == ["actual, m³", "forecast, m³"]
    assert list(fig.data[0].y)[-1] == pytest.approx(100.0)
    assert list(fig.data[1].y) == pytest.approx([100.0, 310.0])
    assert fig.layout.title.text.startswith("consumer M1 will exceed")
    with pytest.raises(AnalyticsError, match="no limit status"):
        limit_figure(use, status, "M2")
