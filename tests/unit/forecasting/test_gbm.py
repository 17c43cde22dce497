"""GlobalGradientBoosting on seeded synthetic heating series (hermetic)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from forecasting import (
    GlobalGradientBoosting,
    InvalidInputError,
    InvalidParameterError,
    NotFittedError,
)
from warehouse import validate_frame
from warehouse._schemas import FORECASTS

HOUR = dt.timedelta(hours=1)


def _covered(out: pl.DataFrame, actual: pl.DataFrame) -> float:
    j = out.join(actual, on=["meter_id", "ts"], suffix="_actual")
    inside = (j["volume_m3_actual"] >= j["volume_m3_lo_80"]) & (
        j["volume_m3_actual"] <= j["volume_m3_hi_80"]
    )
    return float(inside.mean())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def data(make_series: Any) -> Any:
    return make_series(n_meters=6, days=60, seed=11)


@pytest.fixture(scope="module")
def cutoff(data: Any) -> dt.datetime:
    last = data.consumption["ts"].max()
    assert isinstance(last, dt.datetime)
    return last + HOUR - dt.timedelta(days=7)


@pytest.fixture(scope="module")
def fitted(data: Any, cutoff: dt.datetime) -> GlobalGradientBoosting:
    return GlobalGradientBoosting(max_iter=60).fit(
        data.consumption, data.temperature, cutoff=cutoff
    )


def test_day_ahead_forecast_is_accurate_non_negative_utc_and_covers(
    fitted: GlobalGradientBoosting, data: Any, cutoff: dt.datetime
) -> None:
    out = fitted.predict(data.temperature, start=cutoff, end=cutoff + 24 * HOUR)
    validate_frame(out, FORECASTS, cast=False)
    assert out.height == 6 * 24
    assert out.schema["ts"] == pl.Datetime("us", "UTC")
    assert out.select(pl.col("volume_m3_lo_80").min()).item() >= 0
    actual = data.consumption.filter(pl.col("ts") >= cutoff)
    j = out.join(actual, on=["meter_id", "ts"], suffix="_actual")
    wape = (j["volume_m3"] - j["volume_m3_actual"]).abs().sum() / j["volume_m3_actual"].sum()
    assert wape < 0.12
    assert 0.6 <= _covered(out, actual) <= 0.97


def test_lag_free_model_forecasts_a_week_with_about_80_percent_coverage(
    data: Any, cutoff: dt.datetime
) -> None:
    model = GlobalGradientBoosting(lags=(), max_iter=60).fit(
        data.consumption, data.temperature, cutoff=cutoff
    )
    out = model.predict(data.temperature.filter(pl.col("ts") >= cutoff))
    assert out.height == 6 * 7 * 24
    assert 0.65 <= _covered(out, data.consumption) <= 0.92


def test_rows_beyond_the_smallest_lag_raise(
    fitted: GlobalGradientBoosting, cutoff: dt.datetime, data: Any
) -> None:
    with pytest.raises(InvalidInputError, match="at most 24 h past the cutoff"):
        fitted.predict(data.temperature, start=cutoff, end=cutoff + 25 * HOUR)


def test_backcast_rows_are_allowed(
    fitted: GlobalGradientBoosting, data: Any, cutoff: dt.datetime
) -> None:
    out = fitted.predict(data.temperature, start=cutoff - 24 * HOUR, end=cutoff)
    assert out.height == 6 * 24 and (out["cutoff"] == cutoff).all()


def test_max_train_rows_bounds_the_fit(data: Any, cutoff: dt.datetime) -> None:
    model = GlobalGradientBoosting(max_iter=20, max_train_rows=2000).fit(
        data.consumption, data.temperature, cutoff=cutoff
    )
    assert model.train_rows_ == 2000
    assert model.predict(data.temperature, start=cutoff, end=cutoff + 24 * HOUR).height == 144


def test_all_zero_meter_is_skipped_with_a_reason(data: Any, cutoff: dt.datetime) -> None:
    zero = data.consumption.filter(pl.col("meter_id") == "MP-0000").with_columns(
        pl.lit("ZERO").alias("meter_id"), pl.lit(0.0).alias("volume_m3")
    )
    temp = data.temperature.filter(pl.col("meter_id") == "MP-0000").with_columns(
        pl.lit("ZERO").alias("meter_id")
    )
    model = GlobalGradientBoosting(max_iter=20).fit(
        pl.concat([data.consumption, zero]), pl.concat([data.temperature, temp]), cutoff=cutoff
    )
    assert "ZERO" not in model.meters_
    assert "every usable volume is 0" in model.skipped_["ZERO"]


def test_daily_frequency(data: Any) -> None:
    daily = (
        data.consumption.group_by("meter_id", pl.col("ts").dt.truncate("1d"))
        .agg(pl.col("volume_m3").sum())
        .with_columns(pl.lit("valid").alias("quality"))
    )
    temp = data.temperature.group_by("meter_id", pl.col("ts").dt.truncate("1d")).agg(
        pl.col("temperature_c").mean()
    )
    cutoff = dt.datetime(2025, 11, 7, tzinfo=dt.UTC)
    model = GlobalGradientBoosting(freq="day", lags=(24, 168), max_iter=40).fit(
        daily, temp, cutoff=cutoff
    )
    out = model.predict(temp.filter(pl.col("ts") == cutoff))
    assert out.height == 6 and (out["volume_m3"] > 0).all()


@pytest.mark.parametrize(
    "params",
    [
        {"lags": (0, 24)},
        {"lags": (24, 24)},
        {"lags": (12,), "freq": "day"},
        {"learning_rate": 0.0},
        {"max_iter": 0},
        {"max_train_rows": 10},
        {"interval": 1.0},
        {"time_zone": "Mars/Olympus"},
        {"n_jobs": 0},
        {"freq": "week"},
    ],
)
def test_bad_parameters_raise_at_fit(params: dict[str, Any], data: Any) -> None:
    with pytest.raises(InvalidParameterError):
        GlobalGradientBoosting(**params).fit(data.consumption, data.temperature)


def test_predict_before_fit_raises(data: Any) -> None:
    with pytest.raises(NotFittedError):
        GlobalGradientBoosting().predict(data.temperature)


# --- extend: the fitted trees applied to meters they never saw ---------------------------------


def test_extend_serves_meters_the_trees_never_saw(make_series: Any, cutoff: dt.datetime) -> None:
    # Twelve meters of one population: the trees learn from six, then serve the other six.
    both = make_series(n_meters=12, days=60, seed=11)
    ids = sorted(both.consumption["meter_id"].unique().to_list())
    seen, unseen = ids[:6], ids[6:]

    def part(frame: pl.DataFrame, meters: list[str]) -> pl.DataFrame:
        return frame.filter(pl.col("meter_id").is_in(meters))

    model = GlobalGradientBoosting(max_iter=60).fit(
        part(both.consumption, seen), part(both.temperature, seen), cutoff=cutoff
    )
    extended = model.extend(part(both.consumption, unseen), part(both.temperature, unseen))
    assert extended.meters_ == tuple(unseen)
    assert model.meters_ == tuple(seen)  # the original is unchanged
    assert extended.model_ is model.model_  # the same trees, not a refit
    assert extended.cutoff_ == model.cutoff_

    out = extended.predict(part(both.temperature, unseen), start=cutoff, end=cutoff + 24 * HOUR)
    assert out.height == 6 * 24
    assert out.select(pl.col("volume_m3_lo_80").min()).item() >= 0
    actual = part(both.consumption, unseen).filter(pl.col("ts") >= cutoff)
    j = out.join(actual, on=["meter_id", "ts"], suffix="_actual")
    wape = (j["volume_m3"] - j["volume_m3_actual"]).abs().sum() / j["volume_m3_actual"].sum()
    assert wape < 0.15
    # Each unseen meter keeps its own level: forecasts scale with the meter's history.
    level = part(both.consumption, unseen).group_by("meter_id").agg(pl.col("volume_m3").mean())
    fc = (
        out.group_by("meter_id")
        .agg(pl.col("volume_m3").mean().alias("fc"))
        .join(level, on="meter_id")
    )
    assert fc.select(pl.corr("fc", "volume_m3")).item() > 0.9

    # Intervals calibrated on the unseen meters' own history cover about 80 % of a week.
    free = GlobalGradientBoosting(lags=(), max_iter=60).fit(
        part(both.consumption, seen), part(both.temperature, seen), cutoff=cutoff
    )
    week = free.extend(part(both.consumption, unseen), part(both.temperature, unseen)).predict(
        part(both.temperature, unseen).filter(pl.col("ts") >= cutoff)
    )
    assert week.height == 6 * 7 * 24
    assert 0.65 <= _covered(week, part(both.consumption, unseen)) <= 0.92


def test_extend_before_fit_and_on_empty_history_raise(
    data: Any, fitted: GlobalGradientBoosting
) -> None:
    from forecasting.errors import InvalidInputError, NotFittedError

    with pytest.raises(NotFittedError):
        GlobalGradientBoosting().extend(data.consumption, data.temperature)
    with pytest.raises(InvalidInputError, match="empty"):
        fitted.extend(data.consumption.clear(), data.temperature)
