"""Seasonal naive and weekday-and-hour mean: exact values on hand-made series, intervals."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl
import pytest

from forecasting import InsufficientHistoryError, InvalidParameterError
from forecasting._baselines import SeasonalNaive, WeekdayHourMean

MONDAY = dt.datetime(2025, 1, 6, tzinfo=dt.UTC)


def _frames(
    values: dict[str, list[float | None]], *, freq: str = "day"
) -> tuple[pl.DataFrame, pl.DataFrame]:
    step = dt.timedelta(days=1) if freq == "day" else dt.timedelta(hours=1)
    cons, temp = [], []
    for meter, vals in values.items():
        ts = [MONDAY + i * step for i in range(len(vals))]
        cons.append(
            pl.DataFrame(
                {"meter_id": meter, "ts": ts, "volume_m3": vals, "quality": "valid"},
                schema_overrides={"volume_m3": pl.Float64},
            )
        )
        extra = 21 if freq == "day" else 21 * 24
        ts_all = [MONDAY + i * step for i in range(len(vals) + extra)]
        temp.append(pl.DataFrame({"meter_id": meter, "ts": ts_all, "temperature_c": 5.0}))
    cast = pl.col("ts").dt.cast_time_unit("us")
    return pl.concat(cons).with_columns(cast), pl.concat(temp).with_columns(cast)


def test_seasonal_naive_repeats_last_week_exactly() -> None:
    week1 = [1.0, 2, 3, 4, 5, 6, 7]
    week2 = [10.0, 20, 30, 40, 50, 60, 70]
    cons, temp = _frames({"a": week1 + week2})
    model = SeasonalNaive(freq="day").fit(cons, temp)
    cutoff = MONDAY + dt.timedelta(days=14)
    out = model.predict(temp, start=cutoff, end=cutoff + dt.timedelta(days=10))
    assert out["volume_m3"].to_list() == week2 + week2[:3]
    # Backcast of the second week: the first week.
    back = model.predict(temp, start=MONDAY + dt.timedelta(days=7), end=cutoff)
    assert back["volume_m3"].to_list() == week1
    assert (out["temperature_c"] == 5.0).all()


def test_seasonal_naive_custom_season_and_missing_value_goes_one_season_further() -> None:
    vals: list[float | None] = [1.0, 2.0, 3.0, 4.0, None, 6.0]  # season 2: [.,.] blocks
    cons, temp = _frames({"a": vals})
    model = SeasonalNaive(season=2, freq="day").fit(cons, temp)
    cutoff = MONDAY + dt.timedelta(days=6)
    out = model.predict(temp, start=cutoff, end=cutoff + dt.timedelta(days=4))
    # Last season is [None, 6]: the None takes the value one season earlier (3).
    assert out["volume_m3"].to_list() == [3.0, 6.0, 3.0, 6.0]


def test_seasonal_naive_hourly_default_season_is_a_week() -> None:
    rng = np.random.default_rng(0)
    vals = list(rng.uniform(1, 5, 3 * 168))
    cons, temp = _frames({"a": vals}, freq="hour")
    model = SeasonalNaive().fit(cons, temp)
    cutoff = MONDAY + dt.timedelta(hours=3 * 168)
    out = model.predict(temp, start=cutoff, end=cutoff + dt.timedelta(hours=48))
    np.testing.assert_allclose(out["volume_m3"].to_numpy(), vals[2 * 168 : 2 * 168 + 48])


def test_weekday_hour_mean_daily_is_exact() -> None:
    weeks = [[float(10 * w + d) for d in range(7)] for w in range(5)]
    cons, temp = _frames({"a": [v for wk in weeks for v in wk]})
    model = WeekdayHourMean(weeks=2, freq="day").fit(cons, temp)
    cutoff = MONDAY + dt.timedelta(days=35)
    out = model.predict(temp, start=cutoff, end=cutoff + dt.timedelta(days=8))
    expected = [(weeks[3][d] + weeks[4][d]) / 2 for d in range(7)]
    assert out["volume_m3"].to_list() == pytest.approx(expected + expected[:1])


def test_weekday_hour_mean_skips_missing_weeks() -> None:
    vals: list[float | None] = [float(w) for w in range(4) for _ in range(7)]
    vals[3 * 7] = None  # the Monday of the last week is missing
    cons, temp = _frames({"a": vals})
    model = WeekdayHourMean(weeks=2, freq="day").fit(cons, temp)
    cutoff = MONDAY + dt.timedelta(days=28)
    out = model.predict(temp, start=cutoff, end=cutoff + dt.timedelta(days=2))
    # Monday: the last two valid Mondays are weeks 1 and 2 -> 1.5; Tuesday: weeks 2, 3 -> 2.5.
    assert out["volume_m3"].to_list() == pytest.approx([1.5, 2.5])


def test_weekday_hour_mean_hourly_uses_weekday_and_hour() -> None:
    hours = np.arange(4 * 168)
    vals = list((hours % 168).astype(float) + 1000 * (hours // 168))
    cons, temp = _frames({"a": vals}, freq="hour")
    model = WeekdayHourMean(weeks=4).fit(cons, temp)
    cutoff = MONDAY + dt.timedelta(hours=4 * 168)
    out = model.predict(temp, start=cutoff, end=cutoff + dt.timedelta(hours=168))
    np.testing.assert_allclose(out["volume_m3"].to_numpy(), np.arange(168) + 1500.0)


def test_too_short_history_is_skipped_with_reason() -> None:
    cons, temp = _frames({"short": [1.0, 2.0, 3.0], "long": [1.0] * 15})
    model = SeasonalNaive(freq="day").fit(cons, temp)
    assert model.meters_ == ("long",)
    assert "needs history spanning more than one season (> 7 days)" in model.skipped_["short"]
    only_short = cons.filter(pl.col("meter_id") == "short")
    with pytest.raises(InsufficientHistoryError, match="no meter has two valid values"):
        SeasonalNaive(freq="day").fit(only_short, temp)


@pytest.mark.parametrize(
    ("model", "match"),
    [(SeasonalNaive(season=0), "season"), (WeekdayHourMean(weeks=0), "weeks")],
)
def test_bad_parameters(model: Any, match: str) -> None:
    cons, temp = _frames({"a": [1.0] * 20})
    with pytest.raises(InvalidParameterError, match=match):
        model.fit(cons, temp)


def _stationary(n_meters: int, weeks: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Hourly weekly pattern times noise, with zeros at night (tests the clipping at 0)."""
    rng = np.random.default_rng(seed)
    hours = np.arange(weeks * 168)
    pattern = np.maximum(0.0, np.sin(2 * np.pi * (hours % 24 - 6) / 24)) * np.where(
        hours % 168 >= 120, 0.5, 1.0
    )
    values = {
        f"m{k}": list(rng.uniform(5, 50) * pattern * rng.lognormal(0.0, 0.3, hours.size))
        for k in range(n_meters)
    }
    return _frames(values, freq="hour")  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [SeasonalNaive, WeekdayHourMean])
def test_intervals_cover_held_out_data_and_are_never_negative(cls: Any) -> None:
    cons, temp = _stationary(n_meters=10, weeks=12, seed=11)
    cutoff = MONDAY + dt.timedelta(weeks=10)
    model = cls().fit(cons, temp, cutoff=cutoff)
    out = model.predict(temp, start=cutoff, end=cutoff + dt.timedelta(weeks=2))
    joined = out.join(cons, on=["meter_id", "ts"], suffix="_true")
    y = joined["volume_m3_true"]
    coverage = ((y >= joined["volume_m3_lo_80"]) & (y <= joined["volume_m3_hi_80"])).mean()
    assert 0.7 <= coverage <= 0.9, coverage
    full = model.predict(temp)
    assert full.height == temp.height
    assert full.select(pl.col("volume_m3_lo_80").min()).item() >= 0


def test_intervals_widen_with_lag() -> None:
    rng = np.random.default_rng(1)
    walk = list(np.abs(100 + np.cumsum(rng.normal(0, 5, 70))))
    cons, temp = _frames({"a": walk})
    model = SeasonalNaive(freq="day").fit(cons, temp)
    assert model.halfwidth_.shape[1] == 8
    assert model.halfwidth_[0, 3] > model.halfwidth_[0, 0]
