"""Temperature scenarios: normal year, shift, cold snap, parser, registry, forecast files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from forecasting import (
    ColdSnap,
    InvalidInputError,
    InvalidParameterError,
    MissingTemperatureError,
    Scenario,
    UnknownScenarioError,
    known_scenarios,
    normal_year,
    parse_scenario,
    read_temperature_file,
    register_scenario,
    scenario_temperature,
)

UTC = dt.UTC
HOUR = dt.timedelta(hours=1)
T0 = dt.datetime(2022, 1, 1, tzinfo=UTC)


def hourly(meter: str, start: dt.datetime, end: dt.datetime, values: object) -> pl.DataFrame:
    ts = pl.datetime_range(start, end, "1h", closed="left", time_zone="UTC", eager=True)
    frame = pl.DataFrame({"meter_id": meter, "ts": ts.dt.cast_time_unit("us")})
    return frame.with_columns(temperature_c=values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def three_years() -> pl.DataFrame:
    """2019-2021, temperature = 3 * (year - 2020) + hour of day: the normal year is the hour."""
    t = 3.0 * (pl.col("ts").dt.year() - 2020) + pl.col("ts").dt.hour()
    start = dt.datetime(2019, 1, 1, tzinfo=UTC)
    return pl.concat(
        [hourly("A", start, T0, t.cast(pl.Float64)), hourly("B", start, T0, (t - 10).cast(pl.Float64))]
    )


# --- normal year -----------------------------------------------------------------------------


def test_normal_year_is_the_mean_over_years_by_day_and_hour(three_years: pl.DataFrame) -> None:
    ny = normal_year(three_years)
    assert ny.height == 2 * 366 * 24
    a = ny.filter(pl.col("meter_id") == "A")
    assert np.allclose(a["temperature_c"].to_numpy(), a["hour"].cast(pl.Float64).to_numpy())
    # 1 Jan: the ±7-day window wraps over the year end (25 Dec .. 8 Jan of 3 years).
    jan1 = a.filter(pl.col("day_of_year") == 1, pl.col("hour") == 0).row(0, named=True)
    assert jan1["observations"] == 3 * 15
    out = scenario_temperature("normal", three_years, start=T0, end=T0 + 30 * HOUR)
    assert out.filter(pl.col("meter_id") == "B")["temperature_c"].to_list()[:3] == [-10.0, -9.0, -8.0]


def test_normal_year_smooths_over_plus_minus_seven_days() -> None:
    # One year of 0 °C with one warm day (15 July, 10 °C): the window spreads it over 15 days.
    start = dt.datetime(2021, 1, 1, tzinfo=UTC)
    warm = dt.datetime(2021, 7, 15, tzinfo=UTC)
    t = pl.when(pl.col("ts").dt.date() == warm.date()).then(10.0).otherwise(0.0)
    history = hourly("A", start, T0, t)
    ny = normal_year(history).filter(pl.col("hour") == 12)
    doy = warm.timetuple().tm_yday + 1  # leap-year calendar: after 28 Feb, one slot later
    value = dict(zip(ny["day_of_year"], ny["temperature_c"], strict=True))
    assert value[doy] == pytest.approx(10 / 15)
    assert value[doy + 7] == pytest.approx(10 / 15) and value[doy - 7] == pytest.approx(10 / 15)
    assert value[doy + 8] == 0.0 and value[doy - 8] == 0.0
    assert normal_year(history, smoothing_days=0).filter(
        pl.col("hour") == 12, pl.col("day_of_year") == doy
    )["temperature_c"].item() == 10.0


def test_normal_year_without_history_for_the_horizon_names_the_hours() -> None:
    history = hourly("A", dt.datetime(2021, 11, 1, tzinfo=UTC), T0, pl.lit(1.0))
    with pytest.raises(MissingTemperatureError, match=r"scenario 'normal'.*A: 2022-01-08 00:00Z\.\..*normal year"):
        scenario_temperature("normal", history, start=T0, end=T0 + dt.timedelta(days=40))


# --- shift and cold snap ---------------------------------------------------------------------


def test_shift_of_observed_and_normal(three_years: pl.DataFrame) -> None:
    ahead = hourly("A", T0, T0 + 24 * HOUR, pl.lit(2.5))
    history = pl.concat([three_years.filter(pl.col("meter_id") == "A"), ahead])
    warm = scenario_temperature("observed+3", history, start=T0, end=T0 + 24 * HOUR)
    assert warm["temperature_c"].unique().to_list() == [5.5]
    cold = scenario_temperature("normal-5", history, start=T0, end=T0 + 24 * HOUR)
    assert cold["temperature_c"].to_list() == [h - 5.0 for h in range(24)]
    daily = scenario_temperature("normal-5", history, start=T0, end=T0 + 48 * HOUR, freq="day")
    assert daily.rows() == [("A", T0, 6.5), ("A", T0 + 24 * HOUR, 6.5)]


def test_cold_snap_window_is_exact_with_a_ramp(three_years: pl.DataFrame) -> None:
    snap = ColdSnap(start=dt.date(2022, 1, 3), days=2, temperature_c=-25, ramp_hours=3)
    sc = Scenario(name="cold_snap", base="normal", cold_snap=snap)
    out = sc.temperature(three_years, start=T0, end=T0 + dt.timedelta(days=7), meter_ids=["A"])
    t = dict(zip(out["ts"], out["temperature_c"], strict=True))
    start, end = dt.datetime(2022, 1, 3, tzinfo=UTC), dt.datetime(2022, 1, 5, tzinfo=UTC)
    assert snap.end == end
    inside = [v for ts, v in t.items() if start <= ts < end]
    assert inside == [-25.0] * 48

    def base(ts: dt.datetime) -> float:  # the normal year of meter A
        return float(ts.hour)

    for k in (1, 2, 3):  # ramp: weight 1 - k / 4 on the snap, k hours outside the window
        w = 1 - k / 4
        before, after = start - k * HOUR, end - HOUR + k * HOUR
        assert t[before] == pytest.approx((1 - w) * base(before) + w * -25)
        assert t[after] == pytest.approx((1 - w) * base(after) + w * -25)
    for ts in (start - 4 * HOUR, end + 3 * HOUR, T0):
        assert t[ts] == base(ts)


def test_cold_snap_outside_the_horizon_is_an_error(three_years: pl.DataFrame) -> None:
    with pytest.raises(InvalidParameterError, match="outside the horizon"):
        scenario_temperature(
            "cold_snap:-25@2022-03-01+5d", three_years, start=T0, end=T0 + 48 * HOUR
        )


# --- parser and registry ---------------------------------------------------------------------


def test_parser_spellings() -> None:
    assert parse_scenario("normal") == Scenario(name="normal", base="normal")
    assert parse_scenario("observed").is_observed
    s = parse_scenario("normal-5")
    assert (s.name, s.base, s.shift_c) == ("normal-5", "normal", -5.0)
    assert parse_scenario("observed+3C").shift_c == 3.0
    s = parse_scenario("cold_snap:-25@2022-02-01+5d")
    assert s.base == "normal" and s.cold_snap is not None
    assert s.cold_snap.start == dt.datetime(2022, 2, 1, tzinfo=UTC)
    assert s.cold_snap.end == dt.datetime(2022, 2, 6, tzinfo=UTC)
    assert s.cold_snap.temperature_c == -25.0
    s = parse_scenario("cold_snap:-20@2022-02-01T06+36h/normal-3")
    assert s.cold_snap is not None and s.shift_c == -3.0
    assert s.cold_snap.end - s.cold_snap.start == 36 * HOUR
    assert s.cold_snap.start.hour == 6


@pytest.mark.parametrize(
    "text",
    ["frosty", "normal*3", "cold_snap", "cold_snap:-25@2022-02-01", "NORMAL", ""],
)
def test_unknown_scenario_lists_the_known_ones(text: str) -> None:
    with pytest.raises(UnknownScenarioError, match=r"known scenarios are observed, normal.*cold_snap:"):
        parse_scenario(text)


def test_bad_cold_snaps() -> None:
    with pytest.raises(UnknownScenarioError, match="2022-02-30"):
        parse_scenario("cold_snap:-25@2022-02-30+5d")
    with pytest.raises(UnknownScenarioError, match="temperature_c"):
        parse_scenario("cold_snap:-125@2022-02-01+5d")
    with pytest.raises(InvalidParameterError, match="naive"):
        ColdSnap(start=dt.datetime(2022, 2, 1), days=5, temperature_c=-25)
    with pytest.raises(InvalidParameterError, match="days"):
        ColdSnap(start=dt.date(2022, 2, 1), days=0, temperature_c=-25)
    with pytest.raises(InvalidParameterError, match="base"):
        Scenario(name="x", base="forecast")  # type: ignore[arg-type]


def test_registry(three_years: pl.DataFrame) -> None:
    assert known_scenarios()[:2] == ("observed", "normal")
    register_scenario(Scenario(name="planning_winter", base="normal", shift_c=-7))
    try:
        assert "planning_winter" in known_scenarios()
        out = scenario_temperature("planning_winter", three_years, start=T0, end=T0 + HOUR)
        assert out["temperature_c"].to_list() == [-7.0, -17.0]
        with pytest.raises(InvalidParameterError, match="already registered"):
            register_scenario(Scenario(name="planning_winter", base="normal"))
        with pytest.raises(InvalidParameterError, match="built in"):
            register_scenario(Scenario(name="observed", base="normal"), replace=True)
    finally:
        from forecasting import _scenarios

        _scenarios._REGISTRY.pop("planning_winter", None)


# --- forecast files --------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "forecast.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_forecast_file_overrides_the_observed_horizon(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "ts,temperature_c\n2022-01-01T00:00:00Z,-3\n2022-01-01 01:00:00+03:00,-4.5\n2022-01-01T01:00,-6\n",
    )
    rows = read_temperature_file(path)
    assert rows["ts"].to_list() == [T0 - 2 * HOUR, T0, T0 + HOUR]
    history = hourly("A", T0 - 24 * HOUR, T0 + 3 * HOUR, pl.lit(1.0))
    sc = Scenario(name="met_office", forecast_file=path)
    out = sc.temperature(history, start=T0, end=T0 + 3 * HOUR)
    assert out["temperature_c"].to_list() == [-3.0, -6.0, 1.0]  # 01:00+03:00 is before T0


def test_forecast_file_by_station(tmp_path: Path) -> None:
    path = _write(tmp_path, "station_id,ts,temperature_c\nWS-1,2022-01-01T00:00:00Z,-9\n")
    history = hourly("A", T0 - 24 * HOUR, T0, pl.lit(1.0))
    sc = Scenario(name="by_station", forecast_file=path)
    stations = pl.DataFrame({"meter_id": ["A"], "station_id": ["WS-1"]})
    assert sc.temperature(history, start=T0, end=T0 + HOUR, stations=stations)["temperature_c"].item() == -9.0
    with pytest.raises(InvalidInputError, match="stations="):
        sc.temperature(history, start=T0, end=T0 + HOUR)
    with pytest.raises(MissingTemperatureError, match=r"A: 2022-01-01 01:00Z.*forecast file"):
        sc.temperature(history, start=T0, end=T0 + 2 * HOUR, stations=stations)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("time,temperature_c\n2022-01-01T00:00Z,1\n", r"line 1 \(header\) lacks columns \['ts'\]"),
        ("ts,temperature_c\n2022-01-01T00:00Z,1\nyesterday,2\n", r"line 3: ts 'yesterday' is not an ISO"),
        ("ts,temperature_c\n2022-01-01T00:30Z,1\n", "line 2: .* not on the hour"),
        ("ts,temperature_c\n2022-01-01T00:00Z,1\n2022-01-01T01:00Z,\n", "line 3: temperature_c None is not a number"),
        ("ts,temperature_c\n2022-01-01T00:00Z,271.1\n", r"line 2: temperature_c 271.1 is outside .*not K"),
        ("ts,temperature_c\n2022-01-01T00:00Z,1\n2022-01-01T03:00+03:00,2\n", "line 3: .* repeats line 2"),
        ("ts,temperature_c\n", "no data lines"),
        ("station_id,meter_id,ts,temperature_c\na,b,2022-01-01T00:00Z,1\n", "both station_id and meter_id"),
    ],
)
def test_bad_forecast_files(tmp_path: Path, text: str, match: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InvalidInputError, match=match) as err:
        read_temperature_file(path)
    assert str(path) in str(err.value)


def test_missing_forecast_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not found"):
        Scenario(name="f", forecast_file=tmp_path / "nope.csv")
