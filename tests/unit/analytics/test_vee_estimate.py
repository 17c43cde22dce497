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


# --- scaling estimates to the register difference ------------------------------------------


def registers_of(frame: pl.DataFrame, start: float = 1000.0, modulus: float | None = None) -> pl.DataFrame:
    """Cumulative register readings at every hour boundary of a complete hourly series."""
    v = frame.sort("ts").get_column("volume_m3").fill_null(0.0).to_list()
    ts = frame.sort("ts").get_column("ts").to_list()
    values, total = [], start
    for x in v:
        values.append(total)
        total += x
    values.append(total)
    reg = [r % modulus if modulus else r for r in values]
    return pl.DataFrame({"meter_id": "m1", "ts": [*ts, ts[-1] + H], "register_m3": reg,
                         "counter_modulus_m3": modulus}, schema_overrides={"counter_modulus_m3": pl.Float64})


def test_gap_with_known_register_difference_sums_to_it() -> None:
    frame, outdoor = heating_series()
    hole = (pl.col("ts") >= T0 + dt.timedelta(days=10)) & (pl.col("ts") < T0 + dt.timedelta(days=12))
    truth = frame.filter(hole)
    metered = frame.with_columns(pl.when(hole).then(pl.col("volume_m3") * 1.3).otherwise("volume_m3"))
    regs = registers_of(metered).filter(~hole | (pl.col("ts") == T0 + dt.timedelta(days=10)))
    grid = complete_grid(frame.filter(~hole), start=T0, end=T0 + dt.timedelta(days=21)).join(
        outdoor, on="ts", how="left")
    plain = estimate(grid)
    est = estimate(grid, registers=regs)
    assert est.height == plain.height == 48
    assert est.get_column("method").unique().to_list() == ["hdd_profile_scaled_to_register"]
    # The metered total across the gap (30 % above the profile) is kept, the profile's shape too.
    assert est.get_column("volume_m3").sum() == pytest.approx(metered.filter(hole).get_column("volume_m3").sum())
    assert (est.get_column("volume_m3") / plain.get_column("volume_m3")).to_list() == pytest.approx([1.3] * 48)
    assert plain.get_column("volume_m3").to_list() == pytest.approx(truth.get_column("volume_m3").to_list())


def test_short_gap_interpolation_is_scaled_too_and_rollover_is_undone() -> None:
    v = [1.0, 2.0, None, None, 5.0, 6.0]
    frame = pl.DataFrame({"meter_id": "m1", "ts": [T0 + i * H for i in range(6)], "volume_m3": v})
    metered = frame.with_columns(pl.Series("volume_m3", [1.0, 2.0, 4.0, 5.0, 5.0, 6.0]))
    regs = registers_of(metered, start=99_995.0, modulus=100_000.0)  # wraps inside the gap
    est = estimate(complete_grid(frame), registers=regs)
    assert est.get_column("volume_m3").to_list() == pytest.approx([9.0 * 3 / 7, 9.0 * 4 / 7])
    assert est.get_column("method").unique().to_list() == ["linear_interpolation_scaled_to_register"]


def test_unknown_or_implausible_register_difference_leaves_estimates_unscaled() -> None:
    frame, outdoor = heating_series()
    hole = (pl.col("ts") >= T0 + dt.timedelta(days=10)) & (pl.col("ts") < T0 + dt.timedelta(days=12))
    grid = complete_grid(frame.filter(~hole), start=T0, end=T0 + dt.timedelta(days=21)).join(
        outdoor, on="ts", how="left")
    plain = estimate(grid)
    regs = registers_of(frame)
    missing_end = regs.filter(pl.col("ts") != T0 + dt.timedelta(days=12))
    assert estimate(grid, registers=missing_end).equals(plain)
    # A register that went back with no modulus (a meter replaced in the gap): not used.
    reset = regs.with_columns(
        pl.when(pl.col("ts") >= T0 + dt.timedelta(days=12)).then(pl.col("register_m3") - 5_000.0)
        .otherwise("register_m3"))
    assert estimate(grid, registers=reset).equals(plain)
    # Implausibly large (far above 20 × the meter's mean use per hour): not used either.
    jump = regs.with_columns(
        pl.when(pl.col("ts") >= T0 + dt.timedelta(days=12)).then(pl.col("register_m3") + 1e6)
        .otherwise("register_m3"))
    assert estimate(grid, registers=jump).equals(plain)


def test_no_shape_spreads_the_register_difference_evenly() -> None:
    frame = pl.DataFrame({"meter_id": "m1", "ts": [T0, T0 + 11 * H], "volume_m3": [1.0, 1.0]})
    regs = pl.DataFrame({"meter_id": "m1", "ts": [T0 + H, T0 + 11 * H], "register_m3": [10.0, 15.0]})
    est = estimate(complete_grid(frame), params=EstimationParams(max_interpolate=2), registers=regs)
    assert est.get_column("volume_m3").to_list() == pytest.approx([0.5] * 10)
    assert est.get_column("method").unique().to_list() == ["uniform_scaled_to_register"]


def test_suspect_total_after_a_gap_joins_the_gap() -> None:
    """A register step over several hours lands on its last hour (suspect); the gap before is null."""
    v: list[float | None] = [1.0] * 24
    v[10:13] = [None, None, 4.5]  # hours 10–12 used 1.5 each; the unit sent nothing at 11:00 and 12:00
    q = ["valid"] * 24
    q[12] = "suspect"
    frame = pl.DataFrame({"meter_id": "m1", "ts": [T0 + i * H for i in range(24)], "volume_m3": v, "quality": q})
    regs = pl.DataFrame({"meter_id": "m1", "ts": [T0 + i * H for i in range(25) if i not in (11, 12)],
                         "register_m3": [float(i) if i <= 10 else i + 1.5 for i in range(25) if i not in (11, 12)]})
    est = estimate(complete_grid(frame), registers=regs)
    assert est.get_column("ts").to_list() == [T0 + 10 * H, T0 + 11 * H, T0 + 12 * H]
    assert est.get_column("volume_m3").sum() == pytest.approx(4.5)
    assert est.get_column("reason").to_list() == ["missing", "missing", "gap_total"]
    assert est.get_column("old_volume_m3").to_list() == [None, None, 4.5]
    # Without registers the metered total stays: only the null hours are estimated.
    assert estimate(complete_grid(frame)).height == 2
