"""VEE rules on hand-built frames whose findings are known by construction."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from analytics import (
    AnalyticsError,
    VeeRules,
    check_clipping,
    check_clock,
    check_corrector,
    check_counter,
    check_gaps,
    check_negative,
    check_ranges,
    check_spikes,
    check_sums,
    check_zero_and_frozen,
    complete_grid,
    flagged_intervals,
    validate,
)

T0 = dt.datetime(2022, 1, 3, tzinfo=dt.UTC)  # a Monday
H = dt.timedelta(hours=1)


def series(values: list[float | None], meter: str = "m1", start: dt.datetime = T0, **extra: list[float]) -> pl.DataFrame:
    ts = [start + i * H for i in range(len(values))]
    return pl.DataFrame({"meter_id": meter, "ts": ts, "volume_m3": values, **extra},
                        schema_overrides={"volume_m3": pl.Float64, "ts": pl.Datetime("us", "UTC")})


def base(n: int = 24 * 14) -> list[float | None]:
    """A daily cycle between 1.0 and 2.0 m³/h with a slight trend (no exact repeats)."""
    return [1.0 + (h % 24) / 23 + h * 1e-5 for h in range(n)]


def spans(findings: pl.DataFrame, rule: str) -> list[tuple[int, int]]:
    """(first hour index, intervals) of each finding of ``rule``."""
    f = findings.filter(pl.col("rule") == rule).sort("ts")
    return [(int((t - T0) / H), n) for t, n in f.select("ts", "intervals").iter_rows()]


def test_gaps_absent_and_null() -> None:
    v = base(48)
    v[5] = None
    frame = series(v).filter(~pl.col("ts").is_in([T0 + 10 * H, T0 + 11 * H, T0 + 12 * H]))
    got = check_gaps(complete_grid(frame))
    assert spans(got, "gap") == [(5, 1), (10, 3)]
    assert got.get_column("quality").unique().to_list() == ["missing"]
    assert got.sort("ts").get_column("detail").to_list() == ["0 absent, 1 null", "3 absent, 0 null"]


def test_gaps_inside_requested_period() -> None:
    frame = series([1.0, 1.0], start=T0 + 2 * H)
    got = check_gaps(complete_grid(frame, start=T0, end=T0 + 6 * H))
    assert spans(got, "gap") == [(0, 2), (4, 2)]


def test_zero_run_judged_against_temperature() -> None:
    v = base(24 * 6)
    for i in range(24, 54):  # 30 h of zeros, cold
        v[i] = 0.0
    for i in range(80, 110):  # 30 h of zeros, warm
        v[i] = 0.0
    for i in range(120, 130):  # 10 h of zeros, cold but short
        v[i] = 0.0
    temps = [(-5.0 if i < 60 or i >= 115 else 18.0) for i in range(len(v))]
    grid = complete_grid(series(v)).with_columns(pl.Series("outdoor_c", temps))
    zeros, _ = check_zero_and_frozen(grid, rules=VeeRules(zero_run_min=24, cold_c=8.0))
    assert spans(zeros, "zero_run") == [(24, 30)]
    assert zeros.item(0, "expected") == pytest.approx(-5.0)


def test_zero_run_without_temperature_is_not_flagged() -> None:
    v = base(72)
    for i in range(10, 40):
        v[i] = 0.0
    zeros, _ = check_zero_and_frozen(complete_grid(series(v)))
    assert zeros.height == 0


def test_frozen_values() -> None:
    v = base(72)
    for i in range(30, 38):  # 8 identical non-zero values
        v[i] = 2.5
    for i in range(50, 54):  # 4 identical: too short
        v[i] = 3.5
    _, frozen = check_zero_and_frozen(complete_grid(series(v)), rules=VeeRules(frozen_min=6))
    assert spans(frozen, "frozen") == [(30, 8)]
    assert frozen.item(0, "value") == 2.5


def test_frozen_run_is_broken_by_a_gap() -> None:
    v: list[float | None] = [2.5] * 10
    v[5] = None
    _, frozen = check_zero_and_frozen(complete_grid(series(v)), rules=VeeRules(frozen_min=6))
    assert frozen.height == 0


def test_spike_against_baseline_and_explicit_expected() -> None:
    v = base()
    v[100] = 40.0
    v[200] = 3.0  # within the normal range of the cycle: not a spike
    got = check_spikes(complete_grid(series(v)))
    assert spans(got, "spike") == [(100, 1)]
    # Expected: the same hour on other days (1.17), floored at the meter's median (~1.5).
    assert got.item(0, "expected") == pytest.approx(pl.Series(v).median(), rel=0.01)
    # With an explicit expected value of 10 m³/h, 40 is no longer 4x above it.
    grid = complete_grid(series(v)).with_columns(pl.lit(10.0).alias("expected_m3"))
    assert check_spikes(grid).height == 0


def test_spike_baseline_ignores_outages_and_shutdowns() -> None:
    # A 10-day outage filled with zeros, then normal use: the first days back are not spikes.
    v = base(24 * 30)
    for i in range(24 * 5, 24 * 15):
        v[i] = 0.0
    assert check_spikes(complete_grid(series(v)), rules=VeeRules(zero_run_min=24)).height == 0
    v[24 * 20] = 40.0
    assert spans(check_spikes(complete_grid(series(v))), "spike") == [(24 * 20, 1)]


def test_negative() -> None:
    v = base(48)
    v[7] = -0.5
    v[8] = -1.5
    got = check_negative(complete_grid(series(v)))
    assert spans(got, "negative") == [(7, 2)]
    assert got.item(0, "value") == -1.5
    assert got.item(0, "severity") == "critical"


def test_clipping_needs_repeats_of_the_maximum() -> None:
    v = base(96)
    for i in (10, 40, 70):
        v[i] = 9.0
    got = check_clipping(complete_grid(series(v)), rules=VeeRules(clipping_min_repeats=3))
    assert spans(got, "clipping") == [(10, 1), (40, 1), (70, 1)]
    v[70] = 8.0  # the maximum now occurs twice only
    assert check_clipping(complete_grid(series(v)), rules=VeeRules(clipping_min_repeats=3)).height == 0
    # A tiny meter at its register resolution repeats its maximum without being clipped.
    tiny = [0.1, 0.2, 0.1, 0.2, 0.1, 0.2, 0.1]
    assert check_clipping(complete_grid(series(tiny)), rules=VeeRules(clipping_min_repeats=3)).height == 0


def test_estimated_and_edited_values_are_not_judged() -> None:
    v = base(48)
    v[7] = -0.5
    frame = series(v).with_columns(
        pl.when(pl.col("ts") == T0 + 7 * H).then(pl.lit("edited")).otherwise(pl.lit("valid")).alias("quality")
    )
    assert check_negative(complete_grid(frame)).height == 0


def test_corrector_cross_check() -> None:
    # V_std = V_work * P/P_std * T_std/T; at P = 2 * P_std and T = T_std it is 2 * V_work.
    work = [1.0] * 6
    std = [2.0, 2.0, 2.2, 2.0, 2.01, 2.0]  # hour 2 is 10 % off; hour 4 is 0.5 % off (tolerated)
    frame = series(std, volume_work_m3=work, pressure_kpa=[202.65] * 6, temperature_c=[20.0] * 6)
    got = check_corrector(complete_grid(frame), rules=VeeRules(corrector_rel_tol=0.02))
    assert spans(got, "corrector_mismatch") == [(2, 1)]
    assert got.item(0, "expected") == pytest.approx(2.0)
    # The metering point's own standard conditions are used when given (15 °C, ISO 13443).
    meters = pl.DataFrame({"meter_id": ["m1"], "std_temperature_c": [15.0], "std_pressure_kpa": [101.325]})
    got_iso = check_corrector(complete_grid(frame), meters=meters)
    # Expected is now 2 × 288.15/293.15 = 1.966: 2.0 is 1.7 % off (fine), 2.01 is 2.2 % off.
    assert spans(got_iso, "corrector_mismatch") == [(2, 1), (4, 1)]
    assert got_iso.sort("ts").item(1, "expected") == pytest.approx(2 * 288.15 / 293.15)


def test_pressure_and_temperature_ranges() -> None:
    frame = series([1.0] * 5, pressure_kpa=[101.0, 5.0, 101.0, 101.0, 2000.0], temperature_c=[5.0, 5.0, 90.0, 5.0, 5.0])
    got = check_ranges(complete_grid(frame))
    assert spans(got, "pressure_range") == [(1, 1), (4, 1)]
    assert spans(got, "temperature_range") == [(2, 1)]
    p = got.filter(pl.col("rule") == "pressure_range").sort("ts")
    assert p.get_column("value").to_list() == [5.0, 2000.0]
    assert p.get_column("expected").to_list() == [80.0, 1300.0]


def test_counter_rollover_versus_regression() -> None:
    ts = [T0 + i * H for i in range(8)]
    reg = [99_998.0, 99_999.0, 0.5, 1.5, 2.5, 1.0, 2.0, 0.01]
    frame = pl.DataFrame({"meter_id": "m1", "ts": ts, "register_m3": reg, "counter_modulus_m3": 100_000.0})
    got = check_counter(frame).sort("ts")
    assert got.get_column("rule").to_list() == ["rollover", "counter_regression", "counter_regression"]
    assert got.get_column("quality").to_list() == ["valid", "suspect", "suspect"]
    assert "meter replaced" in got.item(2, "detail")
    # Without a modulus the wrap is a regression.
    no_mod = check_counter(frame.drop("counter_modulus_m3"))
    assert no_mod.get_column("rule").to_list().count("counter_regression") == 3


def test_clock_shift_and_duplicates() -> None:
    ts = [T0 + i * H for i in range(6)]
    ts[3] = ts[3] + dt.timedelta(minutes=7)  # off the grid
    frame = pl.DataFrame({"meter_id": "m1", "ts": ts, "value": [1.0, 2, 3, 4, 5, 6],
                          "received_at": [t + dt.timedelta(minutes=1) for t in ts]})
    ahead = frame.with_columns(
        pl.when(pl.col("value") == 6).then(pl.col("ts") - dt.timedelta(minutes=30)).otherwise("received_at")
        .alias("received_at")
    )
    dup = pl.concat([ahead, ahead.filter(pl.col("value") == 2), ahead.filter(pl.col("value") == 5)
                     .with_columns(value=pl.lit(99.0))])
    clock, dups = check_clock(dup)
    assert spans(clock, "clock_shift") == [(3, 1), (5, 1)]
    assert clock.sort("ts").item(0, "value") == pytest.approx(420.0)
    assert spans(dups, "duplicate_interval") == [(1, 1), (4, 1)]
    details = dups.sort("ts").get_column("detail").to_list()
    assert details == ["up to 2 identical copies", "up to 2 copies with different values"]


def test_sum_check_hourly_daily_counter() -> None:
    hourly = pl.concat([series([1.0] * 24), series([1.0] * 24, start=T0 + 24 * H)])
    day2 = T0 + dt.timedelta(days=1)
    daily = pl.DataFrame({"meter_id": "m1", "ts": [T0, day2], "volume_m3": [24.0, 30.0]})
    registers = pl.DataFrame({"meter_id": "m1", "ts": [T0, day2, day2 + dt.timedelta(days=1)],
                              "register_m3": [100.0, 124.0, 148.0]})
    got = check_sums(hourly, daily=daily, registers=registers)
    assert spans(got, "sum_mismatch") == [(24, 24)]
    assert got.item(0, "detail") == "hourly sum 24.0, daily archive 30.0, counter difference 24.0"
    assert check_sums(hourly, registers=registers).height == 0


def test_sum_check_day_starting_at_contract_hour() -> None:
    start = T0 + 10 * H  # a corrector whose day starts at 10:00 UTC
    hourly = series([1.0] * 24, start=start)
    daily = pl.DataFrame({"meter_id": "m1", "ts": [start], "volume_m3": [24.0]})
    assert check_sums(hourly, daily=daily).height == 0
    assert check_sums(hourly, daily=daily.with_columns(volume_m3=pl.lit(20.0))).height == 1


def test_validate_runs_every_rule_and_flags_intervals() -> None:
    v = base()
    v[10] = None
    v[100] = 40.0
    v[150] = -1.0
    frame = pl.concat([series(v), series(base(), meter="m2")])
    findings = validate(frame)
    assert set(findings.get_column("rule")) == {"gap", "spike", "negative"}
    assert findings.filter(pl.col("meter_id") == "m2").height == 0
    flags = flagged_intervals(findings)
    assert flags.height == 3 and flags.get_column("estimate").all()


def test_validate_daily_series() -> None:
    days = [T0 + dt.timedelta(days=i) for i in range(30)]
    v = [300.0 + (i % 7) for i in range(30)]
    v[12] = 5810.3  # a gross first-publication error
    v[20] = 0.0
    frame = pl.DataFrame({"meter_id": "uk", "ts": days, "volume_m3": v})
    rules = VeeRules(every="1d", zero_run_min=1, spike_window=15, spike_min_excess=10.0)
    outdoor = pl.DataFrame({"meter_id": "uk", "ts": days, "temperature_c": 3.0})
    got = validate(frame, rules=rules, outdoor=outdoor)
    assert sorted(got.get_column("rule").to_list()) == ["spike", "zero_run"]


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(AnalyticsError, match="lacks columns"):
        validate(pl.DataFrame({"meter_id": ["m"], "ts": [T0]}))
    with pytest.raises(AnalyticsError, match="UTC"):
        validate(pl.DataFrame({"meter_id": ["m"], "ts": [T0.replace(tzinfo=None)], "volume_m3": [1.0]}))
    with pytest.raises(AnalyticsError, match="reversed"):
        validate(series([1.0]), start=T0 + H, end=T0)
    with pytest.raises(AnalyticsError, match="every"):
        VeeRules(every="15min")
    with pytest.raises(AnalyticsError, match="frozen_min"):
        VeeRules(frozen_min=0)


def test_sum_check_skips_readings_inside_estimated_runs() -> None:
    """A stuck register inside a run of estimated hours says nothing about those days."""
    v = [1.0] * 72
    q = ["valid"] * 72
    for h in range(20, 50):  # estimated (scaled to R(20) and R(50)), crossing two midnights
        v[h], q[h] = 1.0, "estimated"
    hourly = series(v).with_columns(pl.Series("quality", q))
    stuck = [100.0 + min(h, 20) if h <= 49 else 100.0 + h for h in range(73)]  # frozen from 20:00 to 49:00
    registers = pl.DataFrame({"meter_id": "m1", "ts": [T0 + h * H for h in range(73)], "register_m3": stuck})
    assert check_sums(hourly, registers=registers).height == 0
    # The same readings next to valid hours are a real disagreement.
    assert spans(check_sums(hourly.drop("quality"), registers=registers), "sum_mismatch") == [(0, 24), (24, 24), (48, 24)]


def test_baseline_equals_polars_rolling_median_per_meter_and_hour() -> None:
    """The strided-numpy baseline reproduces the plain Polars expression it replaces."""
    import numpy as np

    from analytics._vee_rules import expected_baseline

    rng = np.random.default_rng(7)
    n = 24 * 40
    parts = []
    for m, start in (("a", T0), ("b", T0 + 5 * H), ("c", T0 + 24 * H)):
        vals = rng.lognormal(0.0, 0.5, n).round(2)  # rounding makes ties and even windows
        vals[rng.random(n) < 0.15] = np.nan
        parts.append(series(list(vals), meter=m, start=start).with_columns(pl.col("volume_m3").fill_nan(None)))
    grid = complete_grid(pl.concat(parts).filter(pl.col("ts") != T0 + 30 * H))
    for rules in (VeeRules(), VeeRules(spike_window=4)):
        half = max(1, rules.spike_window // 2)
        reference = grid.select(
            pl.col("volume_m3").rolling_median(window_size=2 * half + 1, min_samples=half + 1, center=True)
            .over("meter_id", pl.col("ts").dt.hour())
        ).to_series()
        got = expected_baseline(grid, rules=rules)
        assert got.null_count() == reference.null_count()
        assert got.fill_null(-1.0).to_list() == reference.fill_null(-1.0).to_list()


def test_findings_do_not_depend_on_row_order() -> None:
    v = base()
    v[30] = None
    v[50] = 40.0
    v[60:70] = [0.5] * 10
    frame = pl.concat([series(v), series(v, meter="m0").filter(pl.col("ts") != T0 + 7 * H)])
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=1)
    repeated = pl.concat([frame, frame.with_columns(pl.col("volume_m3") * 3)])  # later copies lose
    rules = VeeRules(frozen_min=6)
    expected = validate(frame, rules=rules)
    assert {"gap", "spike", "frozen"} <= set(expected.get_column("rule"))
    assert validate(shuffled, rules=rules).equals(expected)
    assert validate(repeated, rules=rules).equals(expected)
