"""HeatingDegreeRegression on seeded synthetic heating series (hermetic)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl
import pytest

from forecasting import (
    ForecastingError,
    HeatingDegreeRegression,
    InsufficientHistoryError,
    InvalidInputError,
    InvalidParameterError,
    MissingTemperatureError,
    NotFittedError,
    UnknownMeterError,
)
from warehouse import validate_frame
from warehouse._schemas import FORECASTS

HOUR = dt.timedelta(hours=1)


def split(data: Any, held_out_days: int = 14) -> tuple[dt.datetime, pl.DataFrame, pl.DataFrame]:
    """Cutoff, held-out actuals and held-out temperature of the last ``held_out_days``."""
    last = data.consumption.get_column("ts").max()
    assert isinstance(last, dt.datetime)
    cutoff = last + HOUR - dt.timedelta(days=held_out_days)
    actual = data.consumption.filter(pl.col("ts") >= cutoff)
    temperature = data.temperature.filter(pl.col("ts") >= cutoff)
    return cutoff, actual, temperature


@pytest.fixture(scope="module")
def fitted(
    synthetic: Any,
) -> tuple[HeatingDegreeRegression, dt.datetime, pl.DataFrame, pl.DataFrame]:
    cutoff, actual, temperature = split(synthetic)
    model = HeatingDegreeRegression().fit(
        synthetic.consumption, synthetic.temperature, cutoff=cutoff
    )
    return model, cutoff, actual, temperature


# --- accuracy ------------------------------------------------------------------------------


def test_recovers_base_temperature_and_slope(fitted, synthetic: Any) -> None:
    model = fitted[0]
    coef = {row["meter_id"]: row for row in model.coef_.iter_rows(named=True)}
    for meter, base in synthetic.base_c.items():
        assert coef[meter]["base_temperature_c"] == pytest.approx(base, abs=0.75), meter
        assert coef[meter]["slope_m3_per_k"] == pytest.approx(synthetic.slope[meter], rel=0.05), (
            meter
        )


def test_fixed_base_temperature_is_used(make_series: Any) -> None:
    data = make_series(n_meters=3, days=40, seed=3)
    model = HeatingDegreeRegression(base_temperature_c=16.0).fit(data.consumption, data.temperature)
    assert model.coef_.get_column("base_temperature_c").to_list() == [16.0, 16.0, 16.0]


def test_beats_same_hour_yesterday_on_held_out_days(fitted, synthetic: Any) -> None:
    model, _, actual, temperature = fitted
    forecast = model.predict(temperature)
    naive = synthetic.consumption.select(
        "meter_id",
        (pl.col("ts") + dt.timedelta(days=1)).alias("ts"),
        pl.col("volume_m3").alias("naive"),
    )
    scored = actual.join(forecast, on=["meter_id", "ts"], suffix="_hat").join(
        naive, on=["meter_id", "ts"]
    )
    assert scored.height == actual.height
    mae_model = (scored["volume_m3"] - scored["volume_m3_hat"]).abs().mean()
    mae_naive = (scored["volume_m3"] - scored["naive"]).abs().mean()
    assert mae_model < 0.8 * mae_naive, (mae_model, mae_naive)


def test_80_percent_interval_covers_about_80_percent_out_of_sample(fitted) -> None:
    model, _, actual, temperature = fitted
    scored = actual.join(model.predict(temperature), on=["meter_id", "ts"], suffix="_hat")
    inside = (scored["volume_m3"] >= scored["volume_m3_lo_80"]) & (
        scored["volume_m3"] <= scored["volume_m3_hi_80"]
    )
    assert 0.70 <= inside.mean() <= 0.90


@pytest.mark.parametrize("seed", [11, 12])
def test_coverage_holds_for_other_seeds(seed: int, make_series: Any) -> None:
    data = make_series(n_meters=6, days=100, seed=seed, noise=0.1)
    cutoff, actual, temperature = split(data, held_out_days=10)
    model = HeatingDegreeRegression().fit(data.consumption, data.temperature, cutoff=cutoff)
    scored = actual.join(model.predict(temperature), on=["meter_id", "ts"], suffix="_hat")
    inside = (scored["volume_m3"] >= scored["volume_m3_lo_80"]) & (
        scored["volume_m3"] <= scored["volume_m3_hi_80"]
    )
    assert 0.70 <= inside.mean() <= 0.90


def test_forecasts_and_bounds_are_never_negative(make_series: Any) -> None:
    # Noisy, small volumes (many hours near 0) and a heat wave in the horizon.
    data = make_series(n_meters=4, days=40, seed=5, noise=0.8)
    model = HeatingDegreeRegression().fit(data.consumption, data.temperature)
    hot = pl.DataFrame(
        {
            "meter_id": "MP-0000",
            "ts": pl.datetime_range(
                model.cutoff_, model.cutoff_ + 47 * HOUR, "1h", time_zone="UTC", eager=True
            ),
            "temperature_c": 35.0,
        }
    )
    for frame in (model.predict(hot), model.predict(data.temperature)):
        assert (
            frame.select(
                pl.min_horizontal("volume_m3", "volume_m3_lo_80", "volume_m3_hi_80").min()
            ).item()
            >= 0
        )
        assert (frame["volume_m3_lo_80"] <= frame["volume_m3"]).all()
        assert (frame["volume_m3"] <= frame["volume_m3_hi_80"]).all()


# --- semantics -----------------------------------------------------------------------------


def test_output_contract_cutoff_and_backcast(fitted, synthetic: Any) -> None:
    model, cutoff, _, temperature = fitted
    assert model.cutoff_ == cutoff
    back = model.predict(synthetic.temperature.filter(pl.col("ts") < cutoff))
    fore = model.predict(temperature)
    for frame in (back, fore):
        validate_frame(frame, FORECASTS, cast=False)
        assert frame["model"].unique().to_list() == ["hdd_regression"]
        assert frame["cutoff"].unique().to_list() == [cutoff]
    assert back["ts"].max() < cutoff <= fore["ts"].min()
    assert fore.height == temperature.height


def test_default_cutoff_is_last_hour_plus_one(make_series: Any) -> None:
    data = make_series(n_meters=2, days=20, seed=1)
    model = HeatingDegreeRegression().fit(data.consumption, data.temperature)
    assert model.cutoff_ == data.consumption["ts"].max() + HOUR


def test_horizon_smoothing_reaches_into_history(fitted, synthetic: Any) -> None:
    """A forecast made from the horizon's temperatures alone equals one made with the
    history attached: the model keeps the tail of the smoothing window."""
    model, cutoff, _, temperature = fitted
    alone = model.predict(temperature)
    with_history = model.predict(synthetic.temperature).filter(pl.col("ts") >= cutoff)
    assert np.allclose(alone["volume_m3"].to_numpy(), with_history["volume_m3"].to_numpy())


def test_non_valid_and_null_hours_are_ignored(make_series: Any) -> None:
    data = make_series(n_meters=2, days=40, seed=4)
    clean = HeatingDegreeRegression().fit(data.consumption, data.temperature)
    bad_hours = pl.col("ts").dt.day() == 10
    dirty = data.consumption.with_columns(
        pl.when(bad_hours & (pl.col("meter_id") == "MP-0000"))
        .then(1e6)
        .otherwise(pl.col("volume_m3"))
        .alias("volume_m3"),
        pl.when(bad_hours).then(pl.lit("suspect")).otherwise(pl.col("quality")).alias("quality"),
    )
    clean_subset = data.consumption.filter(~bad_hours)
    a = HeatingDegreeRegression().fit(dirty, data.temperature, cutoff=clean.cutoff_)
    b = HeatingDegreeRegression().fit(clean_subset, data.temperature, cutoff=clean.cutoff_)
    assert a.coef_.equals(b.coef_)
    nulls = data.consumption.with_columns(
        pl.when(bad_hours).then(None).otherwise(pl.col("volume_m3")).alias("volume_m3")
    )
    c = HeatingDegreeRegression().fit(nulls, data.temperature, cutoff=clean.cutoff_)
    assert c.coef_.equals(b.coef_)


# --- errors --------------------------------------------------------------------------------


def test_predict_before_fit_raises_not_fitted(synthetic: Any) -> None:
    with pytest.raises(NotFittedError, match=r"call \.fit") as info:
        HeatingDegreeRegression().predict(synthetic.temperature)
    assert isinstance(info.value, ValueError) and isinstance(info.value, AttributeError)


def test_too_little_history_for_every_meter(make_series: Any) -> None:
    data = make_series(n_meters=2, days=5, seed=2)  # 120 hours < 168
    with pytest.raises(InsufficientHistoryError, match=r"min_history_hours=168.*has 120"):
        HeatingDegreeRegression().fit(data.consumption, data.temperature)


def test_failed_refit_leaves_the_model_unfitted(synthetic: Any, make_series: Any) -> None:
    model = HeatingDegreeRegression().fit(synthetic.consumption, synthetic.temperature)
    short = make_series(n_meters=1, days=3, seed=9)
    with pytest.raises(InsufficientHistoryError):
        model.fit(short.consumption, short.temperature)
    with pytest.raises(NotFittedError):
        model.predict(synthetic.temperature)


def test_short_meter_is_skipped_and_reported_on_predict(make_series: Any) -> None:
    data = make_series(n_meters=3, days=30, seed=2)
    short = pl.col("meter_id") == "MP-0002"
    last = data.consumption["ts"].max()
    consumption = data.consumption.filter(~short | (pl.col("ts") > last - 100 * HOUR))
    model = HeatingDegreeRegression().fit(consumption, data.temperature)
    assert model.meters_ == ("MP-0000", "MP-0001")
    assert "only 100 usable hour(s)" in model.skipped_["MP-0002"]
    with pytest.raises(UnknownMeterError, match=r"skipped in fit — MP-0002: only 100 usable"):
        model.predict(data.temperature)
    kept = model.predict(data.temperature.filter(pl.col("meter_id").is_in(model.meters_)))
    assert set(kept["meter_id"]) == {"MP-0000", "MP-0001"}


def test_meter_without_temperature_is_skipped(make_series: Any) -> None:
    data = make_series(n_meters=2, days=20, seed=2)
    model = HeatingDegreeRegression().fit(
        data.consumption, data.temperature.filter(pl.col("meter_id") == "MP-0000")
    )
    assert "no outdoor temperature" in model.skipped_["MP-0001"]


def test_missing_horizon_temperature_names_meter_and_hours(fitted) -> None:
    model, cutoff, _, temperature = fitted
    gap = (pl.col("meter_id") == "MP-0003") & pl.col("ts").is_between(
        cutoff + 5 * HOUR, cutoff + 7 * HOUR
    )
    with pytest.raises(MissingTemperatureError) as info:
        model.predict(temperature.filter(~gap), start=cutoff, end=cutoff + 48 * HOUR)
    text = str(info.value)
    stamp = (cutoff + 5 * HOUR).strftime("%Y-%m-%d %H:%M")
    assert "MP-0003" in text and stamp in text and "(3 h)" in text and "weather" in text
    nulls = temperature.with_columns(
        pl.when(gap).then(None).otherwise(pl.col("temperature_c")).alias("temperature_c")
    )
    with pytest.raises(MissingTemperatureError, match="MP-0003"):
        model.predict(nulls)


def test_naive_datetimes_are_rejected(synthetic: Any) -> None:
    naive = synthetic.consumption.with_columns(pl.col("ts").dt.replace_time_zone(None))
    with pytest.raises(InvalidInputError, match=r"naive datetime.*replace_time_zone"):
        HeatingDegreeRegression().fit(naive, synthetic.temperature)
    with pytest.raises(InvalidInputError, match="naive"):
        HeatingDegreeRegression().fit(
            synthetic.consumption, synthetic.temperature, cutoff=dt.datetime(2025, 12, 1)
        )


def test_wrong_columns_are_rejected(synthetic: Any) -> None:
    with pytest.raises(InvalidInputError, match=r"consumption: .*\['quality'\] are missing"):
        HeatingDegreeRegression().fit(synthetic.consumption.drop("quality"), synthetic.temperature)
    renamed = synthetic.temperature.rename({"temperature_c": "temp"})
    with pytest.raises(InvalidInputError, match="temperature"):
        HeatingDegreeRegression().fit(
            synthetic.consumption, renamed.with_columns(pl.col("temp").cast(pl.String))
        )
    with pytest.raises(InvalidInputError, match="polars.DataFrame"):
        HeatingDegreeRegression().fit(synthetic.consumption.to_pandas(), synthetic.temperature)  # type: ignore[arg-type]


def test_off_hour_and_duplicate_rows_are_rejected(synthetic: Any) -> None:
    shifted = synthetic.consumption.with_columns(pl.col("ts") + dt.timedelta(minutes=30))
    with pytest.raises(InvalidInputError, match="not on the hour"):
        HeatingDegreeRegression().fit(shifted, synthetic.temperature)
    doubled = pl.concat([synthetic.consumption, synthetic.consumption.head(2)])
    with pytest.raises(InvalidInputError, match=r"one row per \(meter_id, ts\), got 2 repeated"):
        HeatingDegreeRegression().fit(doubled, synthetic.temperature)


@pytest.mark.parametrize(
    "params",
    [
        {"interval": 1.5},
        {"smoothing_hours": 0},
        {"min_history_hours": 2.5},
        {"base_temperature_c": float("nan")},
        {"time_zone": "Mars/Olympus"},
    ],
)
def test_impossible_parameters_are_rejected_at_fit(params: dict, synthetic: Any) -> None:
    model = HeatingDegreeRegression(**params)  # __init__ only stores
    with pytest.raises(InvalidParameterError, match=next(iter(params))):
        model.fit(synthetic.consumption, synthetic.temperature)


def test_every_error_is_a_value_error() -> None:
    for cls in (
        InvalidInputError,
        InsufficientHistoryError,
        MissingTemperatureError,
        UnknownMeterError,
    ):
        assert issubclass(cls, ForecastingError) and issubclass(cls, ValueError)
