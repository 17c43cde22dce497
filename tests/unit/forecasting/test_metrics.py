"""Metrics: hand-checked values, the MASE scale, and how score() aggregates."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from forecasting import (
    InvalidInputError,
    coverage,
    interval_width,
    mae,
    mase,
    naive_scale,
    rmse,
    score,
    smape,
    wape,
)

T0 = dt.datetime(2025, 1, 6, tzinfo=dt.UTC)


def _frame(
    meter: str,
    values: list[float],
    *,
    start: dt.datetime = T0,
    freq: str = "1h",
    **extra: list[float],
) -> pl.DataFrame:
    step = dt.timedelta(hours=1) if freq == "1h" else dt.timedelta(days=1)
    ts = [start + k * step for k in range(len(values))]
    return pl.DataFrame({"meter_id": meter, "ts": ts, "volume_m3": values, **extra}).with_columns(
        pl.col("ts").dt.cast_time_unit("us")
    )


def test_point_metrics_match_hand_computed_values() -> None:
    y, f = [1.0, 2.0, 0.0, 4.0], [2.0, 2.0, 0.0, 1.0]
    assert mae(y, f) == pytest.approx(1.0)
    assert rmse(y, f) == pytest.approx(np.sqrt(10 / 4))
    # sMAPE: 2*1/3, 0, 0 (0/0 counts as zero), 2*3/5 -> mean
    assert smape(y, f) == pytest.approx((2 / 3 + 0 + 0 + 6 / 5) / 4)
    assert wape(y, f) == pytest.approx(4 / 7)
    assert mase(y, f, scale=0.5) == pytest.approx(2.0)
    assert np.isnan(mase(y, f, scale=0.0))
    assert coverage(y, [0.5, 2.5, 0.0, 4.5], [1.5, 3.0, 0.0, 5.0]) == pytest.approx(0.5)
    assert interval_width([0.0, 1.0], [2.0, 4.0]) == pytest.approx(2.5)
    with pytest.raises(InvalidInputError, match="same length"):
        mae([1.0], [1.0, 2.0])


def test_naive_scale_uses_the_seasonal_lag_of_the_frequency() -> None:
    # hourly: season 168 -> y[t] - y[t-168] = 2 for every pair
    hourly = _frame("a", [float(k % 168) + 2.0 * (k // 168) for k in range(3 * 168)])
    s = naive_scale(hourly)
    assert s.row(0, named=True) == {"meter_id": "a", "scale_m3": pytest.approx(2.0), "pairs": 336}
    # an explicit season of 1 step: |diff| of a linear ramp
    ramp = _frame("a", [3.0 * k for k in range(10)])
    assert naive_scale(ramp, season=1)["scale_m3"][0] == pytest.approx(3.0)
    # daily: season 7 days
    daily = _frame("d", [float(k) for k in range(14)], freq="1d")
    assert naive_scale(daily, freq="day")["scale_m3"][0] == pytest.approx(7.0)
    # too short for one seasonal pair: null scale, still listed
    short = _frame("s", [1.0, 2.0])
    assert short.pipe(naive_scale).row(0) == ("s", None, 0)
    with pytest.raises(InvalidInputError, match="season"):
        naive_scale(ramp, season=0)


def test_score_per_meter_and_overall_aggregation() -> None:
    history = pl.concat(
        [
            _frame("a", [1.0] * 200),  # constant: seasonal-naive MAE 0 -> MASE undefined (null)
            _frame("b", [float(k) for k in range(200)]),
        ]  # ramp: y[t] - y[t-168] = 168
    )
    scale = pl.DataFrame({"meter_id": ["a", "b"], "scale_m3": [2.0, 10.0]})
    start = T0 + dt.timedelta(hours=200)
    actual = pl.concat(
        [
            _frame("a", [10.0, 10.0, 10.0, 10.0], start=start),
            _frame("b", [100.0, 100.0], start=start),
        ]
    )
    forecast = pl.concat(
        [
            _frame(
                "a",
                [12.0, 8.0, 10.0, 11.0],
                start=start,
                volume_m3_lo_80=[11.0, 7.0, 9.0, 10.5],
                volume_m3_hi_80=[13.0, 9.0, 11.0, 11.5],
            ),
            _frame(
                "b",
                [90.0, 120.0],
                start=start,
                volume_m3_lo_80=[80.0, 95.0],
                volume_m3_hi_80=[101.0, 125.0],
            ),
        ]
    )
    out = score(forecast, actual, scale=scale)
    assert out["meter_id"].to_list() == ["a", "b", None]
    a, b, overall = out.rows(named=True)
    assert a["n"] == 4 and a["mae"] == pytest.approx(5 / 4) and a["mase"] == pytest.approx(5 / 8)
    assert a["coverage"] == pytest.approx(0.25) and a["width"] == pytest.approx(1.75)
    assert b["mae"] == pytest.approx(15.0) and b["mase"] == pytest.approx(1.5)
    assert b["wape"] == pytest.approx(30 / 200)
    assert overall["n"] == 6
    assert overall["mae"] == pytest.approx(35 / 6)
    assert overall["wape"] == pytest.approx(35 / 240)  # pooled
    assert overall["coverage"] == pytest.approx(3 / 6)  # pooled: 1 of 4 plus 2 of 2
    assert overall["mase"] == pytest.approx((5 / 8 + 1.5) / 2)  # mean of per-meter MASE
    assert overall["mase_pooled"] == pytest.approx(35 / (4 * 2.0 + 2 * 10.0))
    # the same via a history frame: scales computed from it
    via_history = score(forecast, actual, history=history)
    assert via_history["mase"].to_list()[:2] == [None, pytest.approx(15 / 168)]
    assert via_history["mase"][2] == pytest.approx(15 / 168)  # mean ignores the null


def test_score_groups_by_extra_columns_and_skips_unobserved_steps() -> None:
    start = T0
    actual = _frame("a", [1.0, 2.0, 3.0], start=start).with_columns(
        pl.Series("quality", ["valid", "estimated", "valid"])
    )
    f1 = _frame("a", [1.0, 2.0, 3.0, 4.0], start=start).with_columns(model=pl.lit("m1"))
    f2 = _frame("a", [2.0, 2.0, 2.0, 2.0], start=start).with_columns(model=pl.lit("m2"))
    out = score(pl.concat([f1, f2]), actual, by=["model"])
    assert out.columns[:3] == ["model", "meter_id", "n"]
    overall = out.filter(pl.col("meter_id").is_null()).sort("model")
    assert overall["n"].to_list() == [2, 2]  # the 'estimated' and unobserved steps are skipped
    assert overall["mae"].to_list() == pytest.approx([0.0, 1.0])
    assert overall["mase"].is_null().all() and overall["coverage"].is_null().all()
    with pytest.raises(InvalidInputError, match="model"):
        score(f1.drop("model"), actual, by=["model"])
