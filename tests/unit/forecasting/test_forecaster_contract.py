"""One contract every forecaster keeps (in the spirit of scikit-learn's
``parametrize_with_checks``): add new estimators to ``FORECASTERS``."""

from __future__ import annotations

import copy
import datetime as dt
import inspect
from typing import Any

import polars as pl
import pytest

from forecasting import (
    Forecaster,
    GlobalGradientBoosting,
    HeatingDegreeRegression,
    NotFittedError,
    SeasonalNaive,
    StandardLoadProfile,
    WeekdayHourMean,
)
from warehouse import validate_frame
from warehouse._schemas import FORECASTS

FORECASTERS: list[Forecaster] = [
    HeatingDegreeRegression(),
    HeatingDegreeRegression(
        base_temperature_c=16.0, smoothing_hours=1, interval=0.9, time_zone="Europe/Moscow"
    ),
    SeasonalNaive(),
    SeasonalNaive(season=24),
    WeekdayHourMean(),
    StandardLoadProfile(),
    StandardLoadProfile(min_history_days=60),
    # the contract predicts 48 h past the cutoff: lags must reach that far back
    GlobalGradientBoosting(lags=(48, 168), max_iter=20),
]


def _id(est: Forecaster) -> str:
    return repr(est)


@pytest.fixture(scope="module")
def data(make_series: Any) -> Any:
    return make_series(n_meters=3, days=30, seed=7)


def _split(data: Any) -> tuple[dt.datetime, pl.DataFrame, pl.DataFrame]:
    cutoff = data.consumption["ts"].max() + dt.timedelta(hours=1) - dt.timedelta(days=2)
    return cutoff, data.consumption.filter(pl.col("ts") < cutoff), data.temperature


@pytest.mark.parametrize("estimator", FORECASTERS, ids=_id)
def test_init_stores_keyword_only_parameters_unchanged(estimator: Forecaster) -> None:
    sig = inspect.signature(type(estimator).__init__)
    params = [p for p in sig.parameters.values() if p.name != "self"]
    assert all(p.kind is p.KEYWORD_ONLY for p in params)
    clone = type(estimator)(**estimator.get_params())
    assert clone.get_params() == estimator.get_params()
    assert not [a for a in vars(clone) if a.endswith("_")], "__init__ must not learn anything"
    assert isinstance(estimator.alias, str) and estimator.alias


@pytest.mark.parametrize("estimator", FORECASTERS, ids=_id)
def test_predict_before_fit_raises(estimator: Forecaster, data: Any) -> None:
    with pytest.raises(NotFittedError):
        type(estimator)(**estimator.get_params()).predict(data.temperature)


@pytest.mark.parametrize("estimator", FORECASTERS, ids=_id)
def test_fit_returns_self_learns_underscore_state_and_keeps_inputs(
    estimator: Forecaster, data: Any
) -> None:
    est = type(estimator)(**estimator.get_params())
    params = copy.deepcopy(est.get_params())
    cutoff, history, temperature = _split(data)
    before = (history.clone(), temperature.clone())
    assert est.fit(history, temperature) is est
    assert est.get_params() == params, "fit must not change hyper-parameters"
    assert history.equals(before[0]) and temperature.equals(before[1]), (
        "fit must not modify its inputs"
    )
    assert est.cutoff_ == cutoff
    assert est.meters_ and isinstance(est.skipped_, dict)


@pytest.mark.parametrize("estimator", FORECASTERS, ids=_id)
def test_predict_output_contract(estimator: Forecaster, data: Any) -> None:
    cutoff, history, temperature = _split(data)
    est = type(estimator)(**estimator.get_params()).fit(history, temperature)
    out = est.predict(temperature)
    assert out.columns == list(FORECASTS.schema)
    validate_frame(out, FORECASTS, cast=False)
    assert out.height == temperature.height
    assert out["model"].unique().to_list() == [est.alias]
    assert out["cutoff"].unique().to_list() == [cutoff]
    assert out.select(pl.col("volume_m3_lo_80").min()).item() >= 0
    assert (
        (out["volume_m3_lo_80"] <= out["volume_m3"]) & (out["volume_m3"] <= out["volume_m3_hi_80"])
    ).all()
    assert out.equals(out.sort("meter_id", "ts"))


@pytest.mark.parametrize("estimator", FORECASTERS, ids=_id)
def test_fit_is_deterministic_and_order_independent(estimator: Forecaster, data: Any) -> None:
    _, history, temperature = _split(data)
    a = type(estimator)(**estimator.get_params()).fit(history, temperature).predict(temperature)
    shuffled = history.sample(fraction=1.0, shuffle=True, seed=1)
    b = (
        type(estimator)(**estimator.get_params())
        .fit(shuffled, temperature.reverse())
        .predict(temperature.reverse())
    )
    assert a.equals(b)


@pytest.mark.parametrize("estimator", FORECASTERS, ids=_id)
def test_predict_horizon_mode_matches_row_mode(estimator: Forecaster, data: Any) -> None:
    cutoff, history, temperature = _split(data)
    est = type(estimator)(**estimator.get_params()).fit(history, temperature)
    end = cutoff + dt.timedelta(hours=24)
    rows = est.predict(temperature.filter(pl.col("ts").is_between(cutoff, end, closed="left")))
    horizon = est.predict(temperature, start=cutoff, end=end)
    assert horizon.equals(rows)
