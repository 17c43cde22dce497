"""AutoForecaster: per-meter / per-group choice by backtest, refit, conformal intervals."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest

from forecasting import (
    AutoForecaster,
    Forecaster,
    HeatingDegreeRegression,
    InsufficientHistoryError,
    InvalidParameterError,
    NotFittedError,
    auto,
    score,
)
from warehouse import validate_frame
from warehouse._schemas import FORECASTS


class Flat(Forecaster):
    """Each meter's mean volume with a deliberately too narrow interval (± 1 % of it)."""

    alias: ClassVar[str] = "flat"

    def __init__(self, *, skip_meters: tuple[str, ...] = ()) -> None:
        self.skip_meters = skip_meters

    def _fit(self, consumption: pl.DataFrame, temperature: pl.DataFrame) -> None:
        for m in self.skip_meters:
            self.skipped_[m] = "told to skip it"
        self.mu_ = (
            consumption.filter(~pl.col("meter_id").is_in(list(self.skip_meters)))
            .group_by("meter_id")
            .agg(pl.col("volume_m3").mean().alias("mu"))
        )
        if self.mu_.height == 0:
            raise InsufficientHistoryError("flat: nothing left to fit")
        self.meters_ = tuple(sorted(self.mu_["meter_id"].to_list()))

    def _predict(self, temperature: pl.DataFrame) -> pl.DataFrame:
        return temperature.join(self.mu_, on="meter_id").select(
            "meter_id",
            "ts",
            pl.col("mu").alias("volume_m3"),
            (pl.col("mu") * 0.99).alias("volume_m3_lo_80"),
            (pl.col("mu") * 1.01).alias("volume_m3_hi_80"),
            "temperature_c",
        )


def _mixed(make_series: Any) -> tuple[pl.DataFrame, pl.DataFrame]:
    """4 heating meters plus 2 meters that only vary randomly around a constant (no
    temperature dependence): there the flat mean is the better forecast."""
    d = make_series(n_meters=6, days=40, seed=11, noise=0.04)
    rng = np.random.default_rng(5)
    flat_ids = ["MP-0004", "MP-0005"]
    noise = pl.Series(rng.normal(0.0, 0.05, d.consumption.height))
    cons = d.consumption.with_columns(
        pl.when(pl.col("meter_id").is_in(flat_ids))
        .then(5.0 + noise)
        .otherwise(pl.col("volume_m3"))
        .alias("volume_m3")
    )
    return cons, d.temperature


@pytest.fixture(scope="module")
def mixed(make_series: Any) -> tuple[pl.DataFrame, pl.DataFrame]:
    return _mixed(make_series)


def _split(cons: pl.DataFrame) -> dt.datetime:
    last: dt.datetime = cons["ts"].max()
    return last + dt.timedelta(hours=1) - dt.timedelta(days=2)


def test_auto_picks_per_meter_refits_and_dispatches(mixed: Any) -> None:
    cons, temp = mixed
    cutoff = _split(cons)
    model = AutoForecaster(
        candidates=[Flat(), HeatingDegreeRegression(smoothing_hours=12)],
        horizon=48,
        skip=24,
        step=24,
        n_windows=4,
        calibrate=None,
    )
    assert model.fit(cons, temp, cutoff=cutoff) is model
    assert model.choice_ == {
        "MP-0000": "hdd_regression",
        "MP-0001": "hdd_regression",
        "MP-0002": "hdd_regression",
        "MP-0003": "hdd_regression",
        "MP-0004": "flat",
        "MP-0005": "flat",
    }
    assert set(model.models_) == {"flat", "hdd_regression"}
    assert model.models_["flat"].meters_ == ("MP-0004", "MP-0005")
    assert model.leaderboard_["model"][0] == "hdd_regression"
    assert model.calibration_["factor"].to_list() == [1.0, 1.0]
    horizon = temp.filter(pl.col("ts") >= cutoff)
    out = model.predict(horizon, start=cutoff, end=cutoff + dt.timedelta(hours=48))
    validate_frame(out, FORECASTS, cast=False)
    assert out.height == 6 * 48 and set(out["model"]) == {"auto"}
    flat_rows = out.filter(pl.col("meter_id") == "MP-0004")
    assert flat_rows["volume_m3"].n_unique() == 1  # the flat model's forecast
    # better than either candidate alone on the held-out two days
    history = cons.filter(pl.col("ts") < cutoff)
    mase = {}
    for name, est in (
        ("auto", model),
        ("flat", Flat()),
        ("hdd", HeatingDegreeRegression(smoothing_hours=12)),
    ):
        pred = est.predict(horizon) if name == "auto" else est.fit(history, temp).predict(horizon)
        mase[name] = score(pred, cons, history=history)["mase"][-1]
    # the two flat meters are noise around a constant, where both candidates are about
    # equally good on two held-out days: auto matches the better candidate overall
    assert mase["auto"] < 0.5 * mase["flat"] and mase["auto"] <= 1.02 * mase["hdd"]
    for meter, name in model.choice_.items():
        own = model.models_[name].predict(horizon.filter(pl.col("meter_id") == meter))
        assert np.allclose(own["volume_m3"], out.filter(pl.col("meter_id") == meter)["volume_m3"])


def test_conformal_calibration_fixes_a_too_narrow_interval(mixed: Any) -> None:
    cons, temp = mixed
    heating = cons.filter(pl.col("meter_id") < "MP-0004")
    cutoff = _split(cons)
    model = auto(candidates=[Flat()], horizon=24, step=24, n_windows=10)
    model.fit(heating, temp, cutoff=cutoff)
    cal = model.calibration_.row(0, named=True)
    assert cal["coverage_before"] < 0.2  # ± 1 % is far too narrow
    assert cal["factor"] > 5
    assert cal["coverage_after"] == pytest.approx(0.8, abs=0.03)
    future = temp.filter((pl.col("ts") >= cutoff) & (pl.col("meter_id") < "MP-0004"))
    pred = model.predict(future)
    raw = model.models_["flat"].predict(future)
    # the upper half-width is scaled by the factor (the lower bound is clipped at 0)
    upper = (pred["volume_m3_hi_80"] - pred["volume_m3"]).to_numpy()
    raw_upper = (raw["volume_m3_hi_80"] - raw["volume_m3"]).to_numpy()
    assert np.allclose(upper, cal["factor"] * raw_upper)
    assert (pred["volume_m3_lo_80"] >= 0).all()


def test_per_meter_calibration_and_held_out_coverage(make_series: Any) -> None:
    d = make_series(n_meters=8, days=60, seed=21)
    cutoff = _split(d.consumption)
    model = AutoForecaster(
        candidates=[HeatingDegreeRegression()],
        horizon=48,
        skip=24,
        step=24,
        n_windows=14,
        calibrate="meter",
    )
    model.fit(d.consumption, d.temperature, cutoff=cutoff)
    cal = model.calibration_
    assert cal.height == 1 + 8 and cal["meter_id"].null_count() == 1
    assert cal["coverage_after"].min() >= 0.75
    pred = model.predict(d.temperature.filter(pl.col("ts") >= cutoff))
    cov = score(pred, d.consumption)["coverage"][-1]
    assert 0.65 <= cov <= 0.95  # 8 meters x 48 h: a noisy check of the ~80 % goal


def test_per_group_choice_and_fallback_when_the_choice_skips_a_meter(mixed: Any) -> None:
    cons, temp = mixed
    cutoff = _split(cons)
    groups = pl.DataFrame(
        {
            "meter_id": [f"MP-{k:04d}" for k in range(6)],
            "category": ["household"] * 4 + ["industrial"] * 2,
        }
    )
    model = AutoForecaster(
        candidates=[Flat(skip_meters=("MP-0005",)), HeatingDegreeRegression(smoothing_hours=12)],
        horizon=24,
        step=24,
        n_windows=4,
        per="group",
        groups=groups,
    )
    model.fit(cons, temp, cutoff=cutoff)
    # the industrial group prefers the flat model, but it skips MP-0005 at the refit, so
    # that meter falls to the next-ranked candidate
    assert model.choice_["MP-0004"] == "flat"
    assert model.choice_["MP-0005"] == "hdd_regression"
    assert {model.choice_[f"MP-000{k}"] for k in range(4)} == {"hdd_regression"}
    assert model.skipped_ == {}


def test_errors(mixed: Any) -> None:
    cons, temp = mixed
    with pytest.raises(NotFittedError):
        AutoForecaster(candidates=[Flat()], horizon=24).predict(temp)
    with pytest.raises(InvalidParameterError, match="select_by"):
        AutoForecaster(candidates=[Flat()], horizon=24, select_by="r2").fit(  # type: ignore[arg-type]
            cons, temp
        )
    with pytest.raises(InvalidParameterError, match="groups"):
        AutoForecaster(candidates=[Flat()], horizon=24, per="group").fit(cons, temp)
    with pytest.raises(InvalidParameterError, match="candidates"):
        AutoForecaster(candidates=[], horizon=24).fit(cons, temp)
    short = cons.filter(pl.col("ts") < cons["ts"].min() + dt.timedelta(hours=30))
    with pytest.raises(InsufficientHistoryError, match="min_train"):
        AutoForecaster(candidates=[Flat()], horizon=24).fit(short, temp)
    # clones share the parameters unchanged
    est = AutoForecaster(candidates=[Flat()], horizon=24, n_windows=2)
    assert type(est)(**est.get_params()).get_params() == est.get_params()


def test_repr_with_a_groups_frame() -> None:
    groups = pl.DataFrame({"meter_id": ["a"], "category": ["x"]})
    text = repr(AutoForecaster(candidates=[Flat()], horizon=24, per="group", groups=groups))
    assert text == (
        "AutoForecaster(candidates=[Flat()], horizon=24, per='group', "
        "groups=<1 x ['meter_id', 'category']>)"
    )


# --- choose_by_track_record -----------------------------------------------------------------------


def _track_case() -> tuple[pl.DataFrame, pl.DataFrame, dt.datetime]:
    """Two meters, 20 days hourly; model "good_a" is right on meter A and off on B,
    "good_b" the reverse.  Forecasts were made daily (cutoff at midnight) for 14 days."""
    import numpy as np

    start = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)
    hours = 20 * 24
    ts = [start + dt.timedelta(hours=h) for h in range(hours)]
    rng = np.random.default_rng(3)
    rows = []
    for meter in ("A", "B"):
        y = 10 + 3 * np.sin(np.arange(hours) * 2 * np.pi / 24) + rng.normal(0, 0.5, hours)
        rows.append(pl.DataFrame({"meter_id": meter, "ts": ts, "volume_m3": y, "quality": "valid"}))
    consumption = pl.concat(rows).with_columns(pl.col("ts").dt.cast_time_unit("us"))
    track = []
    for day in range(6, 20):
        cutoff = start + dt.timedelta(days=day)
        fut = consumption.filter(
            (pl.col("ts") >= cutoff) & (pl.col("ts") < cutoff + dt.timedelta(days=1))
        )
        for model, good in (("good_a", "A"), ("good_b", "B")):
            err = pl.when(pl.col("meter_id") == good).then(0.0).otherwise(4.0)
            # Intervals of +-0.3: too narrow for noise of sd 0.5, so the factor must grow.
            f = fut.select(
                pl.lit(model).alias("model"),
                pl.lit(cutoff).dt.cast_time_unit("us").alias("cutoff"),
                "meter_id",
                "ts",
                (
                    pl.col("volume_m3") * 0
                    + 10
                    + 3 * (pl.col("ts").dt.hour() * 2 * np.pi / 24).sin()
                    + err
                ).alias("volume_m3"),
            ).with_columns(
                (pl.col("volume_m3") - 0.3).alias("volume_m3_lo_80"),
                (pl.col("volume_m3") + 0.3).alias("volume_m3_hi_80"),
            )
            track.append(f)
    return consumption, pl.concat(track), start + dt.timedelta(days=16)


def test_track_record_picks_per_meter_and_calibrates() -> None:
    from forecasting import choose_by_track_record

    consumption, track, as_of = _track_case()
    choice = choose_by_track_record(track, consumption, as_of=as_of)
    assert choice.choice == {"A": "good_a", "B": "good_b"}
    cal = {r["model"]: r for r in choice.calibration.iter_rows(named=True)}
    assert cal["good_a"]["factor"] > 1.5  # +-0.3 covers far less than 80 % of sd-0.5 noise
    assert cal["good_a"]["coverage_before"] < 0.6
    assert 0.78 <= cal["good_a"]["coverage_after"] <= 0.85
    # Only steps metered before as_of were scored: 10 days x 24 h per meter and model.
    assert set(choice.scores.get_column("steps").to_list()) == {10 * 24}  # days 6..15

    new = track.filter(pl.col("cutoff") == as_of)
    out = choice.apply(new)
    assert out.height == 2 * 24
    assert set(out.get_column("model").to_list()) == {"auto"}
    assert dict(out.select("meter_id", "chosen_model").unique().iter_rows()) == choice.choice
    for meter, model in choice.choice.items():
        mine = out.filter(pl.col("meter_id") == meter)
        width = (mine["volume_m3_hi_80"] - mine["volume_m3_lo_80"]).mean()
        assert width == pytest.approx(0.6 * cal[model]["factor"], rel=1e-6)


def test_track_record_ignores_the_future_and_needs_a_record() -> None:
    from forecasting import choose_by_track_record
    from forecasting.errors import InsufficientHistoryError, InvalidInputError

    consumption, track, _ = _track_case()
    first = dt.datetime(2022, 1, 7, tzinfo=dt.UTC)
    with pytest.raises(InsufficientHistoryError, match="no past forecast"):
        choose_by_track_record(track, consumption, as_of=first)
    with pytest.raises(InvalidInputError, match="volume_m3_lo_80"):
        choose_by_track_record(track.drop("volume_m3_lo_80"), consumption, as_of=first)
