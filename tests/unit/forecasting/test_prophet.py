"""ProphetForecaster on one or two short synthetic series (a few seconds each)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from forecasting import InvalidParameterError, NotFittedError, ProphetForecaster
from warehouse import validate_frame
from warehouse._schemas import FORECASTS

DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def daily(make_series: Any) -> tuple[pl.DataFrame, pl.DataFrame, dt.datetime]:
    data = make_series(n_meters=2, days=150, seed=2)
    day = pl.col("ts").dt.truncate("1d")
    cons = (
        data.consumption.group_by("meter_id", day)
        .agg(pl.col("volume_m3").sum())
        .with_columns(pl.lit("valid").alias("quality"))
    )
    temp = data.temperature.group_by("meter_id", day).agg(pl.col("temperature_c").mean())
    return cons, temp, dt.datetime(2026, 1, 12, tzinfo=dt.UTC)


def test_daily_forecast_with_holidays_is_utc_non_negative_and_covers(daily: Any) -> None:
    cons, temp, cutoff = daily
    model = ProphetForecaster(freq="day", country_holidays="GB").fit(cons, temp, cutoff=cutoff)
    out = model.predict(temp.filter(pl.col("ts") >= cutoff))
    validate_frame(out, FORECASTS, cast=False)
    assert out.schema["ts"] == pl.Datetime("us", "UTC")
    assert out["ts"].min() == cutoff
    assert out.select(pl.col("volume_m3_lo_80").min()).item() >= 0
    j = out.join(cons, on=["meter_id", "ts"], suffix="_actual")
    wape = (j["volume_m3"] - j["volume_m3_actual"]).abs().sum() / j["volume_m3_actual"].sum()
    inside = (j["volume_m3_actual"] >= j["volume_m3_lo_80"]) & (
        j["volume_m3_actual"] <= j["volume_m3_hi_80"]
    )
    assert wape < 0.15
    assert 0.5 <= float(inside.mean()) <= 1.0  # type: ignore[arg-type]
    assert "Christmas Day" in set(model.models_["MP-0000"].train_holiday_names)
    # Same seed, same interval: predict is deterministic.
    assert model.predict(temp.filter(pl.col("ts") >= cutoff)).equals(out)


def test_spawn_pool_gives_the_same_fit(daily: Any) -> None:
    cons, temp, cutoff = daily
    one = ProphetForecaster(freq="day", country_holidays=None).fit(cons, temp, cutoff=cutoff)
    two = ProphetForecaster(freq="day", country_holidays=None, n_jobs=2).fit(
        cons, temp, cutoff=cutoff
    )
    horizon = temp.filter(pl.col("ts") >= cutoff)
    a, b = one.predict(horizon), two.predict(horizon)
    assert a.select("meter_id", "ts").equals(b.select("meter_id", "ts"))
    diff = (a["volume_m3"] - b["volume_m3"]).abs().max()
    assert isinstance(diff, float) and diff < 1e-6 * float(a["volume_m3"].mean())  # type: ignore[arg-type]


def test_hourly_short_series(make_series: Any) -> None:
    data = make_series(n_meters=1, days=28, seed=4)
    cutoff = dt.datetime(2025, 10, 6, tzinfo=dt.UTC)
    model = ProphetForecaster().fit(data.consumption, data.temperature, cutoff=cutoff)
    out = model.predict(data.temperature, start=cutoff, end=cutoff + DAY)
    assert out.height == 24 and out.schema["ts"] == pl.Datetime("us", "UTC")
    assert (out["volume_m3_lo_80"] >= 0).all()


@pytest.mark.parametrize(
    "params",
    [{"country_holidays": "XX"}, {"n_jobs": 0}, {"interval": 2.0}, {"freq": "minute"}],
)
def test_bad_parameters_raise(params: dict[str, Any], daily: Any) -> None:
    with pytest.raises(InvalidParameterError):
        ProphetForecaster(**params).fit(daily[0], daily[1])


def test_predict_before_fit_raises(daily: Any) -> None:
    with pytest.raises(NotFittedError):
        ProphetForecaster().predict(daily[1])
