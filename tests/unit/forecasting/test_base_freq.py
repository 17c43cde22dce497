"""The ``freq`` hyper-parameter of the forecaster base: daily rows, alignment and step checks."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from forecasting import (
    HeatingDegreeRegression,
    InvalidInputError,
    InvalidParameterError,
    MissingTemperatureError,
)
from forecasting._baselines import SeasonalNaive


def _daily(data: Any) -> tuple[pl.DataFrame, pl.DataFrame]:
    day = pl.col("ts").dt.truncate("1d")
    cons = (
        data.consumption.group_by("meter_id", day)
        .agg(pl.col("volume_m3").sum(), pl.lit("valid").alias("quality"))
        .sort("meter_id", "ts")
    )
    temp = (
        data.temperature.group_by("meter_id", day)
        .agg(pl.col("temperature_c").mean())
        .sort("meter_id", "ts")
    )
    return cons, temp


@pytest.fixture(scope="module")
def data(make_series: Any) -> Any:
    return make_series(n_meters=2, days=40, seed=3)


def test_default_freq_is_hour_and_get_params_includes_it() -> None:
    assert HeatingDegreeRegression().freq == "hour"
    assert HeatingDegreeRegression(freq="day").get_params()["freq"] == "day"
    assert "freq='day'" in repr(HeatingDegreeRegression(freq="day"))


def test_unknown_freq_is_rejected(data: Any) -> None:
    with pytest.raises(InvalidParameterError, match=r"freq: expected one of \['hour', 'day'\]"):
        HeatingDegreeRegression(freq="week").fit(data.consumption, data.temperature)  # type: ignore[arg-type]


def test_daily_fit_sets_cutoff_one_day_after_last_row(data: Any) -> None:
    cons, temp = _daily(data)
    model = HeatingDegreeRegression(freq="day").fit(cons, temp)
    assert model.cutoff_ == cons["ts"].max() + dt.timedelta(days=1)
    out = model.predict(temp, start=model.cutoff_ - dt.timedelta(days=3), end=model.cutoff_)
    assert out.height == 2 * 3
    assert (out["ts"].dt.hour() == 0).all()


def test_hourly_rows_given_to_a_daily_model_are_rejected(data: Any) -> None:
    with pytest.raises(InvalidInputError, match="not at UTC midnight.*use freq='hour'"):
        SeasonalNaive(freq="day").fit(data.consumption, data.temperature)


def test_daily_rows_given_to_an_hourly_model_are_rejected(data: Any) -> None:
    cons, temp = _daily(data)
    with pytest.raises(InvalidInputError, match="1 day apart; it looks like daily data"):
        SeasonalNaive().fit(cons, temp)


def test_daily_temperature_with_hourly_consumption_is_rejected(data: Any) -> None:
    _, temp = _daily(data)
    with pytest.raises(InvalidInputError, match="temperature: expected hourly rows one step"):
        HeatingDegreeRegression().fit(data.consumption, temp)


def test_rows_two_days_apart_are_a_step_error(data: Any) -> None:
    cons, temp = _daily(data)
    every_other = cons.filter(pl.col("ts").dt.day() % 2 == 0)
    with pytest.raises(InvalidInputError, match="closest rows of any meter are 2 days apart"):
        SeasonalNaive(freq="day").fit(every_other, temp)


def test_daily_cutoff_and_horizon_must_be_midnight(data: Any) -> None:
    cons, temp = _daily(data)
    noon = cons["ts"].max().replace(hour=12)
    with pytest.raises(InvalidInputError, match="cutoff: expected UTC midnight"):
        SeasonalNaive(freq="day").fit(cons, temp, cutoff=noon)
    model = SeasonalNaive(freq="day").fit(cons, temp)
    with pytest.raises(InvalidInputError, match="start: expected UTC midnight"):
        model.predict(temp, start=noon, end=noon + dt.timedelta(days=1))


def test_daily_horizon_completeness_names_missing_days(data: Any) -> None:
    cons, temp = _daily(data)
    cutoff = cons["ts"].max() - dt.timedelta(days=4)
    model = SeasonalNaive(freq="day").fit(cons, temp, cutoff=cutoff)
    gap = temp.filter(pl.col("ts") != cutoff + dt.timedelta(days=1))
    with pytest.raises(MissingTemperatureError, match=r"every day to forecast.*2 day\(s\)"):
        model.predict(gap, start=cutoff, end=cutoff + dt.timedelta(days=3))


def test_hourly_behaviour_is_unchanged(data: Any) -> None:
    model = HeatingDegreeRegression().fit(data.consumption, data.temperature)
    assert model.cutoff_ == data.consumption["ts"].max() + dt.timedelta(hours=1)
    with pytest.raises(InvalidInputError, match="not on the hour"):
        HeatingDegreeRegression().fit(
            data.consumption.with_columns(pl.col("ts") + dt.timedelta(minutes=30)),
            data.temperature,
        )
