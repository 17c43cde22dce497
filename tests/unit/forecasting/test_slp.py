"""The standard-load-profile sigmoid: parameter recovery, published fallback, zeros, intervals."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from forecasting import InsufficientHistoryError, InvalidParameterError
from forecasting._slp import (
    LOWER,
    UPPER,
    StandardLoadProfile,
    _curve,
    _fit_sigmoid,
    _published,
    _robust_scale,
    _soft_l1,
    geometric_temperature,
    sigmoid,
)
from warehouse import validate_frame
from warehouse._schemas import FORECASTS

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
TRUE = (2.9, -36.0, 6.8, 0.2)  # A, B, C, D (close to the published GHD set, not equal)
HOUR_SHAPE = 1.0 + 0.6 * np.sin(2 * np.pi * (np.arange(24) - 9) / 24)
HOUR_SHAPE = HOUR_SHAPE / HOUR_SHAPE.sum()


def _weather(days: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    swing = np.zeros(days)
    shocks = rng.normal(0.0, 2.0, days)
    for i in range(1, days):
        swing[i] = 0.7 * swing[i - 1] + shocks[i]
    return 9.0 + 9.0 * np.sin(2 * np.pi * (np.arange(days) - 100) / 365) + swing


def _series(
    *, n_meters: int = 6, days: int = 400, seed: int = 0, noise: float = 0.08, hourly: bool = False
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, float]]:
    """Daily use = scale * h(T_geo) * lognormal noise; hourly = daily * fixed shape * noise."""
    rng = np.random.default_rng(seed)
    tday = _weather(days, seed)
    geo = geometric_temperature(tday[None, :])[0]
    days_ts = pl.datetime_range(
        START, START + dt.timedelta(days=days - 1), "1d", time_zone="UTC", eager=True
    ).dt.cast_time_unit("us")
    cons, temps, scales = [], [], {}
    for k in range(n_meters):
        meter = f"M{k:03d}"
        scale = float(rng.uniform(10.0, 100.0))
        y = scale * sigmoid(geo, *TRUE) * rng.lognormal(0.0, noise, days)
        scales[meter] = scale
        if hourly:
            ts = pl.datetime_range(
                START, START + dt.timedelta(hours=24 * days - 1), "1h", time_zone="UTC", eager=True
            ).dt.cast_time_unit("us")
            yh = np.repeat(y, 24) * np.tile(HOUR_SHAPE, days) * rng.lognormal(0.0, 0.1, 24 * days)
            th = np.repeat(tday, 24) - 3.0 * np.tile(
                np.cos(2 * np.pi * (np.arange(24) - 3) / 24), days
            )
            cons.append(
                pl.DataFrame({"meter_id": meter, "ts": ts, "volume_m3": yh, "quality": "valid"})
            )
            temps.append(pl.DataFrame({"meter_id": meter, "ts": ts, "temperature_c": th}))
        else:
            cons.append(
                pl.DataFrame({"meter_id": meter, "ts": days_ts, "volume_m3": y, "quality": "valid"})
            )
            temps.append(pl.DataFrame({"meter_id": meter, "ts": days_ts, "temperature_c": tday}))
    return pl.concat(cons), pl.concat(temps), scales


def _coverage(out: pl.DataFrame, truth: pl.DataFrame) -> float:
    j = out.join(truth, on=["meter_id", "ts"], suffix="_true")
    y = j["volume_m3_true"]
    return float(((y >= j["volume_m3_lo_80"]) & (y <= j["volume_m3_hi_80"])).mean())


def test_geometric_temperature_is_the_bdew_weighting() -> None:
    t = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    geo = geometric_temperature(t)
    assert geo[0, 4] == pytest.approx((5 + 0.5 * 4 + 0.25 * 3 + 0.125 * 2) / 1.875)
    assert geo[0, 0] == pytest.approx(1.0)  # earlier days absent: weights renormalised


def test_recovers_the_parameters_of_a_known_sigmoid() -> None:
    cons, temp, scales = _series(n_meters=4, days=400, noise=0.02)
    model = StandardLoadProfile(freq="day").fit(cons, temp)
    coef = model.coef_
    assert (coef["method"] == "fitted").all() and model.fallback_ == {}
    s_true = np.array([scales[m] for m in coef["meter_id"]])
    # The fit is identified up to the weekday factors (mean 1) and scale*A, scale*D.
    np.testing.assert_allclose(coef["b"].to_numpy(), TRUE[1], rtol=0.03)
    np.testing.assert_allclose(coef["c"].to_numpy(), TRUE[2], rtol=0.06)
    a_s = (coef["a"] * coef["scale_m3"]).to_numpy()
    d_s = (coef["d"] * coef["scale_m3"]).to_numpy()
    np.testing.assert_allclose(a_s / s_true, TRUE[0], rtol=0.04)
    np.testing.assert_allclose(d_s / s_true, TRUE[3], rtol=0.25)
    # And the curve itself over the usual temperature range, within 3 %.
    grid = np.linspace(-10, 25, 36)
    for row, s in zip(coef.iter_rows(named=True), s_true, strict=True):
        fitted = row["scale_m3"] * sigmoid(grid, row["a"], row["b"], row["c"], row["d"])
        np.testing.assert_allclose(fitted, s * sigmoid(grid, *TRUE), rtol=0.03)
    assert model.fit_seconds_per_meter_ < 0.5


def test_batched_solver_reaches_the_least_squares_cost() -> None:
    # Noisy meters with outliers, gaps and one short one, started from the GHD set.
    rng = np.random.default_rng(7)
    n, days = 6, 365
    geo = geometric_temperature(_weather(days, 7)[None, :] + rng.normal(0.0, 1.0, (n, days)))
    true = np.column_stack(
        [
            rng.uniform(1.0, 4.0, n),
            rng.uniform(-45.0, -30.0, n),
            rng.uniform(3.0, 8.0, n),
            rng.uniform(0.0, 0.4, n),
        ]
    )
    noise = rng.lognormal(0.0, rng.uniform(0.02, 0.3, (n, 1)), (n, days))
    target = sigmoid(geo, *true.T[:, :, None]) * noise
    target[rng.random((n, days)) < 0.03] *= 4.0
    target[rng.random((n, days)) < 0.1] = np.nan
    target[0, :320] = np.nan
    x0 = np.tile(_published("GHD")[0], (n, 1))
    batched = _fit_sigmoid(geo, target, x0)
    reference = _fit_sigmoid(geo, target, x0, solver="scipy")
    assert np.all((batched >= LOWER) & (batched <= UPPER))

    use = ~np.isnan(target)
    t = np.where(use, geo, 10.0)
    start = _curve(t, np.clip(x0, LOWER + 1e-6, UPPER - 1e-6))[0]
    f2 = _robust_scale(np.where(use, start - target, np.nan)) ** 2

    def cost(p: np.ndarray) -> np.ndarray:
        return _soft_l1(np.where(use, _curve(t, p)[0] - np.nan_to_num(target), 0.0), f2)[0]

    assert np.all(cost(batched) <= 1.01 * cost(reference))
    assert np.all(cost(batched) < cost(x0))


def test_short_history_falls_back_to_the_published_profile() -> None:
    cons, temp, _ = _series(n_meters=2, days=200)
    cutoff = START + dt.timedelta(days=199)
    short = cons.filter(
        (pl.col("meter_id") == "M000") | (pl.col("ts") >= cutoff - dt.timedelta(days=10))
    )
    model = StandardLoadProfile(profile="EFH", freq="day").fit(short, temp, cutoff=cutoff)
    assert set(model.meters_) == {"M000", "M001"}
    reason = model.fallback_["M001"]
    assert "only 10 usable day(s)" in reason and "min_history_days=28" in reason
    assert "published EFH profile" in reason
    coef = model.coef_.filter(pl.col("meter_id") == "M001")
    assert coef["method"].item() == "published" and coef["profile"].item() == "EFH"
    # Scaled to the observed mean: the backcast of the observed days has the same mean.
    seen = short.filter((pl.col("meter_id") == "M001") & (pl.col("ts") < cutoff))
    back = model.predict(temp.filter(pl.col("meter_id") == "M001")).join(seen.select("ts"), on="ts")
    assert back["volume_m3"].mean() == pytest.approx(seen["volume_m3"].mean(), rel=1e-6)
    out = model.predict(temp, start=cutoff, end=cutoff + dt.timedelta(days=1))
    assert out.height == 2


def test_hourly_fallback_uses_bdew_hour_shares() -> None:
    cons, temp, _ = _series(n_meters=1, days=20, hourly=True)
    cutoff = START + dt.timedelta(days=19)
    model = StandardLoadProfile(profile="GHD").fit(cons, temp, cutoff=cutoff)
    assert "needs min_history_days=28" in model.fallback_["M000"]
    assert model.shares_.height == 0
    out = model.predict(temp, start=cutoff, end=cutoff + dt.timedelta(days=1))
    assert out.height == 24 and out["volume_m3"].min() > 0
    assert out["volume_m3"].n_unique() > 1  # not a flat split


def test_all_zero_series_is_skipped_with_a_reason() -> None:
    cons, temp, _ = _series(n_meters=2, days=60)
    zero = cons.with_columns(
        pl.when(pl.col("meter_id") == "M000")
        .then(0.0)
        .otherwise(pl.col("volume_m3"))
        .alias("volume_m3")
    )
    model = StandardLoadProfile(freq="day").fit(zero, temp)
    assert model.meters_ == ("M001",)
    assert "are 0 m³" in model.skipped_["M000"]
    with pytest.raises(InsufficientHistoryError, match="0 m³"):
        StandardLoadProfile(freq="day").fit(zero.filter(pl.col("meter_id") == "M000"), temp)


def test_unknown_profile_is_rejected() -> None:
    cons, temp, _ = _series(n_meters=1, days=30)
    with pytest.raises(InvalidParameterError, match="profile: expected None or a published"):
        StandardLoadProfile(profile="XYZ", freq="day").fit(cons, temp)
    with pytest.raises(InvalidParameterError, match="building classes"):
        StandardLoadProfile(profile="EFH42", freq="day").fit(cons, temp)


def test_daily_interval_coverage_on_held_out_days() -> None:
    cons, temp, _ = _series(n_meters=10, days=420, seed=4)
    cutoff = START + dt.timedelta(days=330)
    model = StandardLoadProfile(freq="day").fit(cons, temp, cutoff=cutoff)
    out = model.predict(temp, start=cutoff, end=START + dt.timedelta(days=420))
    assert 0.7 <= _coverage(out, cons) <= 0.9


def test_hourly_forecast_contract_coverage_and_never_negative() -> None:
    cons, temp, _ = _series(n_meters=3, days=150, seed=2, hourly=True)
    cutoff = START + dt.timedelta(days=120)
    model = StandardLoadProfile().fit(cons, temp, cutoff=cutoff)
    assert model.shares_.height == 3 * 48
    np.testing.assert_allclose(
        model.shares_.group_by("meter_id", "day_type").agg(pl.col("share").sum())["share"], 1.0
    )
    out = model.predict(temp, start=cutoff, end=START + dt.timedelta(days=150))
    validate_frame(out, FORECASTS, cast=False)
    assert 0.7 <= _coverage(out, cons) <= 0.9
    full = model.predict(temp)
    assert full.height == temp.height
    assert full.select(pl.col("volume_m3_lo_80").min()).item() >= 0
    # From a cutoff inside a day, the day's mean temperature and the geometric mean
    # reach into the stored history: same values as predicting the whole days.
    noon = cutoff + dt.timedelta(hours=12)
    at_noon = StandardLoadProfile().fit(cons, temp, cutoff=noon)
    part = at_noon.predict(temp, start=noon, end=noon + dt.timedelta(hours=36))
    whole = at_noon.predict(temp).filter(
        pl.col("ts").is_between(noon, noon + dt.timedelta(hours=36), closed="left")
    )
    np.testing.assert_allclose(part["volume_m3"], whole["volume_m3"])
