"""Rolling-origin backtest: origins, no look-ahead, leaderboard, presets, failures, workers."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from forecasting import (
    DAY_AHEAD_HOURLY,
    MONTH_AHEAD_DAILY,
    Forecaster,
    Freq,
    HeatingDegreeRegression,
    InsufficientHistoryError,
    InvalidInputError,
    InvalidParameterError,
    backtest,
)
from forecasting._backtest import model_names, origins_for


class MeanModel(Forecaster):
    """Each meter's mean volume, interval the 10/90 % quantiles of the history."""

    alias: ClassVar[str] = "mean"

    def __init__(self, *, min_hours: int = 1, freq: Freq = "hour") -> None:
        self.min_hours = min_hours
        self.freq = freq

    def _fit(self, consumption: pl.DataFrame, temperature: pl.DataFrame) -> None:
        stats = consumption.group_by("meter_id").agg(
            pl.col("volume_m3").mean().alias("mu"),
            pl.col("volume_m3").quantile(0.1).alias("lo"),
            pl.col("volume_m3").quantile(0.9).alias("hi"),
            pl.col("ts").max().alias("last"),
            pl.len().alias("n"),
        )
        ok = stats.filter(pl.col("n") >= self.min_hours)
        if ok.height == 0:
            raise InsufficientHistoryError(f"mean: needs {self.min_hours} hours")
        self.stats_ = ok
        self.meters_ = tuple(sorted(ok["meter_id"].to_list()))

    def _predict(self, temperature: pl.DataFrame) -> pl.DataFrame:
        return temperature.join(self.stats_, on="meter_id").select(
            "meter_id",
            "ts",
            pl.col("mu").alias("volume_m3"),
            pl.col("lo").alias("volume_m3_lo_80"),
            pl.col("hi").alias("volume_m3_hi_80"),
            "temperature_c",
            "last",
        )


class Spy(MeanModel):
    """Records the last history instant it was fitted on (to prove no look-ahead)."""

    alias: ClassVar[str] = "spy"
    seen: ClassVar[list[tuple[dt.datetime, dt.datetime]]] = []

    def _fit(self, consumption: pl.DataFrame, temperature: pl.DataFrame) -> None:
        super()._fit(consumption, temperature)
        Spy.seen.append((self.cutoff_, consumption["ts"].max()))


@pytest.fixture(scope="module")
def data(make_series: Any) -> Any:
    return make_series(n_meters=4, days=45, seed=3)


def test_origins_are_midnight_step_apart_and_respect_min_train(data: Any) -> None:
    origins = origins_for(data.consumption, horizon=48, step=24, n_windows=5, min_train=28 * 24)
    last_ts = data.consumption["ts"].max()
    assert len(origins) == 5
    assert all(o.hour == 0 for o in origins)
    assert all(b - a == dt.timedelta(days=1) for a, b in itertools.pairwise(origins))
    assert origins[-1] + dt.timedelta(hours=48) <= last_ts + dt.timedelta(hours=1)
    # asking for more windows than the history holds drops the too-early ones
    many = origins_for(data.consumption, horizon=48, step=24, n_windows=100, min_train=40 * 24)
    first = data.consumption["ts"].min()
    assert many and all(o - first >= dt.timedelta(days=40) for o in many)


def test_backtest_leaderboard_predictions_and_no_look_ahead(data: Any) -> None:
    Spy.seen.clear()
    calls: list[tuple[int, int]] = []
    result = backtest(
        [MeanModel(), HeatingDegreeRegression(), Spy()],
        data.consumption,
        data.temperature,
        n_windows=4,
        progress=lambda done, total: calls.append((done, total)),
        **DAY_AHEAD_HOURLY,
    )
    assert calls == [(k, 12) for k in range(1, 13)]
    assert len(result.origins) == 4 and result.failures.height == 0
    # every fit saw only history before its origin
    assert [c for c, _ in Spy.seen] == list(result.origins)
    assert all(last < cutoff for cutoff, last in Spy.seen)
    p = result.predictions
    assert set(p["model"].unique()) == {"mean", "hdd_regression", "spy"}
    assert p.filter(pl.col("ts") < pl.col("origin")).height == 0
    assert p["lead"].min() == 1 and p["lead"].max() == 48
    assert p.height == 3 * 4 * 4 * 48  # models x origins x meters x hours
    assert p["actual_m3"].null_count() == 0
    # leaderboard: every model scored on the same steps (lead 25..48), sorted by MASE
    board = result.leaderboard
    assert board["rank"].to_list() == [1, 2, 3]
    assert board["model"][0] == "hdd_regression"  # temperature wins on heating data
    assert board["n"].to_list() == [4 * 4 * 24] * 3
    assert board["mase"].is_sorted()
    assert board["windows"].to_list() == [4, 4, 4]
    mean_row = board.filter(pl.col("model") == "mean").row(0, named=True)
    spy_row = board.filter(pl.col("model") == "spy").row(0, named=True)
    assert mean_row["mae"] == pytest.approx(spy_row["mae"])
    # per-meter scores: 4 meters + overall per model
    assert result.scores.height == 3 * 5
    hdd = result.scores.filter((pl.col("model") == "hdd_regression") & pl.col("meter_id").is_null())
    assert hdd["mase"][0] < 0.6 and 0.6 < hdd["coverage"][0] <= 1.0


def test_skip_scores_only_the_later_part_of_the_horizon(data: Any) -> None:
    full = backtest(
        [MeanModel()],
        data.consumption,
        data.temperature,
        horizon=48,
        step=24,
        n_windows=2,
        min_train=24 * 10,
    )
    late = backtest(
        [MeanModel()],
        data.consumption,
        data.temperature,
        horizon=48,
        step=24,
        n_windows=2,
        min_train=24 * 10,
        skip=24,
    )
    assert full.leaderboard["n"][0] == 2 * 4 * 48
    assert late.leaderboard["n"][0] == 2 * 4 * 24


def test_failing_windows_are_reported_and_left_out(data: Any) -> None:
    # needs 30 days of history: the early origins fail, the later ones work
    origins = [dt.datetime(2025, 10, 5, tzinfo=dt.UTC), dt.datetime(2025, 10, 25, tzinfo=dt.UTC)]
    result = backtest(
        [MeanModel(min_hours=30 * 24), MeanModel()],
        data.consumption,
        data.temperature,
        horizon=24,
        step=24,
        n_windows=2,
        min_train=0,
        origins=origins,
    )
    assert result.failures.select("model", "error").rows() == [("mean", "InsufficientHistoryError")]
    assert model_names([MeanModel(), MeanModel()]) == ["mean", "mean#2"]
    board = result.leaderboard
    assert board.filter(pl.col("model") == "mean")["windows"][0] == 1
    # the leaderboard compares on the common steps only (the second origin)
    assert board["n"].to_list() == [4 * 24, 4 * 24]


def test_daily_models_and_bad_arguments(data: Any) -> None:
    with pytest.raises(InvalidParameterError, match="freq"):
        backtest(
            [HeatingDegreeRegression()],
            data.consumption,
            data.temperature,
            horizon=30,
            step=30,
            n_windows=2,
            min_train=10,
            freq="day",
        )
    with pytest.raises(InvalidParameterError, match="skip"):
        backtest(
            [MeanModel()],
            data.consumption,
            data.temperature,
            horizon=24,
            step=24,
            n_windows=2,
            min_train=10,
            skip=24,
        )
    with pytest.raises(InvalidParameterError, match="models"):
        backtest(
            [], data.consumption, data.temperature, horizon=24, step=24, n_windows=2, min_train=10
        )
    with pytest.raises(InvalidInputError, match="min_train"):
        backtest(
            [MeanModel()],
            data.consumption,
            data.temperature,
            horizon=24,
            step=24,
            n_windows=2,
            min_train=24 * 100,
        )


def test_spawn_workers_give_the_same_result(data: Any) -> None:
    kwargs: dict[str, Any] = {"horizon": 24, "step": 24, "n_windows": 2, "min_train": 24 * 20}
    models = [HeatingDegreeRegression(), HeatingDegreeRegression(smoothing_hours=6)]
    serial = backtest(models, data.consumption, data.temperature, **kwargs)
    parallel = backtest(models, data.consumption, data.temperature, n_jobs=2, **kwargs)
    assert np.allclose(serial.predictions["volume_m3"], parallel.predictions["volume_m3"])
    assert_frame_equal(
        serial.leaderboard.drop("fit_seconds", "predict_seconds"),
        parallel.leaderboard.drop("fit_seconds", "predict_seconds"),
        check_exact=False,
    )


def _daily(frame: pl.DataFrame, column: str, how: str) -> pl.DataFrame:
    agg = pl.col(column).sum() if how == "sum" else pl.col(column).mean()
    out = frame.group_by("meter_id", pl.col("ts").dt.truncate("1d")).agg(agg).sort("meter_id", "ts")
    return out.with_columns(quality=pl.lit("valid")) if how == "sum" else out


def test_daily_backtest_and_month_ahead_preset(data: Any) -> None:
    cons = _daily(data.consumption, "volume_m3", "sum")
    temp = _daily(data.temperature, "temperature_c", "mean")
    result = backtest(
        [MeanModel(freq="day")],
        cons,
        temp,
        horizon=7,
        step=7,
        n_windows=3,
        min_train=14,
        freq="day",
    )
    assert len(result.origins) == 3
    assert all(o.hour == 0 for o in result.origins)
    assert result.predictions["lead"].max() == 7
    assert result.leaderboard["n"][0] == 3 * 4 * 7
    assert result.leaderboard["mase"][0] > 0  # scaled by the 7-day seasonal naive
    # the month-ahead preset needs a year of daily history: 45 days are not enough
    with pytest.raises(InvalidInputError, match="min_train=365"):
        backtest([MeanModel(freq="day")], cons, temp, n_windows=2, **MONTH_AHEAD_DAILY)
