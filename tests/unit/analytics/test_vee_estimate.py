"""VEE estimation: interpolation for short gaps, heating-degree profile for long ones."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from analytics import (
    AnalyticsError,
    EstimationParams,
    VeeRules,
    complete_grid,
    estimate,
    flagged_intervals,
    quality_summary,
    validate,
)

T0 = dt.datetime(2022, 1, 3, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


def heating_series(days: int = 21) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Use = 0.2 + 0.1 × max(0, 15.5 − T_day) per hour; T_day varies day to day."""
    rows, temps = [], []
    for d in range(days):
        t_day = -5.0 + (d * 7) % 20  # −5 … 14 °C
        for h in range(24):
            ts = T0 + dt.timedelta(days=d) + h * H
            rows.append((ts, 0.2 + 0.1 * max(0.0, 15.5 - t_day)))
            temps.append((ts, t_day))
    frame = pl.DataFrame(rows, schema={"ts": pl.Datetime("us", "UTC"), "volume_m3": pl.Float64}, orient="row")
    outdoor = pl.DataFrame(temps, schema={"ts": pl.Datetime("us", "UTC"), "outdoor_c": pl.Float64}, orient="row")
    return frame.with_columns(meter_id=pl.lit("m1")), outdoor


def test_short_gap_is_interpolated_linearly() -> None:
    v = [1.0, 2.0, None, None, 5.0, 6.0]
    frame = pl.DataFrame({"meter_id": "m1", "ts": [T0 + i * H for i in range(6)], "volume_m3": v})
    est = estimate(complete_grid(frame))
    assert est.get_column("volume_m3").to_list() == pytest.approx([3.0, 4.0])
    assert est.get_column("method").unique().to_list() == ["linear_interpolation"]
    assert est.get_column("old_quality").unique().to_list() == ["missing"]


def test_long_gap_uses_the_heating_degree_profile() -> None:
    frame, outdoor = heating_series()
    hole = (pl.col("ts") >= T0 + dt.timedelta(days=10)) & (pl.col("ts") < T0 + dt.timedelta(days=12))
    truth = frame.filter(hole)
    grid = complete_grid(frame.filter(~hole), start=T0, end=T0 + dt.timedelta(days=21)).join(
        outdoor, on="ts", how="left"
    )
    est = estimate(grid, params=EstimationParams(max_interpolate=4))
    assert est.height == 48
    assert est.get_column("method").unique().to_list() == ["hdd_profile"]
    got = est.join(truth, on=["meter_id", "ts"], suffix="_true")
    # The profile recovers the exact heating-degree law of the series.
    assert got.get_column("volume_m3").to_list() == pytest.approx(got.get_column("volume_m3_true").to_list(), rel=1e-6)


def test_long_gap_without_temperature_falls_back_to_the_hour_mean() -> None:
    frame, _ = heating_series(days=8)
    hole = (pl.col("ts") >= T0 + dt.timedelta(days=3)) & (pl.col("ts") < T0 + dt.timedelta(days=4))
    est = estimate(complete_grid(frame.filter(~hole), start=T0, end=T0 + dt.timedelta(days=8)))
    assert est.height == 24
    assert est.get_column("method").unique().to_list() == ["hour_mean"]


def test_flagged_values_are_replaced_and_edits_never() -> None:
    n = 24 * 10  # the robust baseline needs the same hour on several days
    v = [1.0 + 0.01 * (i % 5) for i in range(n)]
    v[20] = 50.0  # spike
    v[30] = -2.0  # negative, but a metrologist already edited it
    frame = pl.DataFrame(
        {"meter_id": "m1", "ts": [T0 + i * H for i in range(n)], "volume_m3": v,
         "quality": ["edited" if i == 30 else "valid" for i in range(n)]}
    )
    flags = flagged_intervals(validate(frame, rules=VeeRules(spike_min_excess=1.0)))
    est = estimate(complete_grid(frame), flags)
    assert est.select("ts", "volume_m3", "old_volume_m3", "reason").rows() == [(T0 + 20 * H, pytest.approx(1.025), 50.0, "spike")]  # (1.04 + 1.01) / 2


def test_runs_longer_than_max_estimate_stay_missing_and_are_not_history() -> None:
    frame, outdoor = heating_series()
    hole = (pl.col("ts") >= T0 + dt.timedelta(days=5)) & (pl.col("ts") < T0 + dt.timedelta(days=15))
    zeros = frame.with_columns(pl.when(hole).then(0.0).otherwise(pl.col("volume_m3")).alias("volume_m3"))
    grid = complete_grid(zeros).join(outdoor, on="ts", how="left")
    flags = pl.DataFrame({"meter_id": "m1", "ts": grid.filter(hole).get_column("ts"), "rule": "zero_run",
                          "quality": "suspect", "estimate": True})
    assert estimate(grid, flags, params=EstimationParams(max_estimate=24 * 7)).height == 0
    est = estimate(grid, flags, params=EstimationParams(max_estimate=24 * 31))
    assert est.height == 240
    # The zeros were not learnt from: the estimates follow the heating law, not 0.
    assert est.get_column("volume_m3").min() > 0.2


def test_custom_long_gap_estimator() -> None:
    frame = pl.DataFrame({"meter_id": "m1", "ts": [T0, T0 + 10 * H], "volume_m3": [1.0, 1.0]})

    def constant(history: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
        assert set(history.columns) == {"meter_id", "ts", "volume_m3", "outdoor_c"}
        return targets.select("meter_id", "ts", pl.lit(7.0).alias("volume_m3"))

    est = estimate(complete_grid(frame), params=EstimationParams(max_interpolate=2), long_gap=constant,
                   long_gap_method="forecasting:hdd")
    assert est.height == 9
    assert est.get_column("method").unique().to_list() == ["forecasting:hdd"]

    def broken(history: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
        return targets.select("meter_id")

    with pytest.raises(AnalyticsError, match="volume_m3"):
        estimate(complete_grid(frame), params=EstimationParams(max_interpolate=2), long_gap=broken)


def test_estimates_are_never_negative_and_idempotent() -> None:
    v = [1.0, 0.0, None, 0.0, 1.0]
    frame = pl.DataFrame({"meter_id": "m1", "ts": [T0 + i * H for i in range(5)], "volume_m3": v})
    est = estimate(complete_grid(frame))
    assert est.get_column("volume_m3").to_list() == [0.0]
    done = frame.with_columns(
        pl.col("volume_m3").fill_null(0.0),
        pl.when(pl.col("volume_m3").is_null()).then(pl.lit("estimated")).otherwise(pl.lit("valid")).alias("quality"),
    )
    assert estimate(complete_grid(done)).height == 0


def test_quality_summary_shares() -> None:
    ts = [T0 + i * H for i in range(8)]
    frame = pl.DataFrame({"meter_id": "m1", "ts": ts[:6],
                          "quality": ["valid", "valid", "estimated", "edited", "suspect", "missing"]})
    meters = pl.DataFrame({"meter_id": ["m1", "m2"], "branch_id": ["b1", "b1"], "company_id": ["c", "c"]})
    two = pl.concat([frame, frame.with_columns(meter_id=pl.lit("m2"))])
    got = quality_summary(two, meters=meters, level="branch", start=T0, end=T0 + 8 * H)
    row = got.row(0, named=True)
    assert (row["meters"], row["intervals"], row["valid"], row["missing"]) == (2, 16, 4, 6)
    assert row["missing_share"] == pytest.approx(6 / 16)
    assert row["estimated_share"] == pytest.approx(2 / 16)
    with pytest.raises(AnalyticsError, match="level"):
        quality_summary(two, level="planet")  # type: ignore[arg-type]
    with pytest.raises(AnalyticsError, match="needs a meters frame"):
        quality_summary(two, level="company")
