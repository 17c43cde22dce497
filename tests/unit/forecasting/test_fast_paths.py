"""The numpy fast paths of the base checks, the heating-degree regression and the SLP
sigmoid agree with the plain Polars / numpy computations they replace."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasting import InvalidInputError
from forecasting._base import (
    METER_TEMPERATURE,
    _check_frame,
    encode,
    group_quantiles,
    is_checked,
    meters_in,
    same_rows,
)
from forecasting._hdd import BASE_GRID_C, _grid_slot, _smooth
from forecasting._slp import MIN_TEMPERATURE_HOURS, _kahan_sums, _Rows
from warehouse import CONSUMPTION

T0 = dt.datetime(2025, 1, 6, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def _frame(rows: list[tuple[str, dt.datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "meter_id": [m for m, _ in rows],
            "ts": [t for _, t in rows],
            "temperature_c": [float(i) for i in range(len(rows))],
        },
        schema=METER_TEMPERATURE.schema,
    )


# --- group quantiles, Kahan sums, grid slots -------------------------------------------------


@pytest.mark.parametrize("equal", [True, False])
def test_group_quantiles_equal_polars_linear_quantiles(equal: bool) -> None:
    rng = np.random.default_rng(1)
    sizes = np.full(40, 37) if equal else rng.integers(1, 90, 40)
    group = np.repeat(np.arange(40), sizes)
    z = rng.standard_normal(group.size) * rng.exponential(size=group.size)
    ref = (
        pl.DataFrame({"m": group, "z": z})
        .group_by("m")
        .agg(
            pl.col("z").quantile(0.1, interpolation="linear").alias("lo"),
            pl.col("z").quantile(0.9, interpolation="linear").alias("hi"),
        )
        .sort("m")
    )
    perm = rng.permutation(group.size)  # row order must not matter
    for g, v in ((group, z), (group[perm], z[perm])):
        lo, hi = group_quantiles(v, g, 42, (0.1, 0.9))
        assert np.array_equal(lo[:40], ref["lo"].to_numpy())
        assert np.array_equal(hi[:40], ref["hi"].to_numpy())
        assert np.isnan(lo[40:]).all() and np.isnan(hi[40:]).all()  # groups without rows


@pytest.mark.parametrize("ragged", [False, True])
def test_kahan_sums_equal_polars_group_sums_bit_for_bit(ragged: bool) -> None:
    rng = np.random.default_rng(2)
    sizes = rng.integers(1, 25, 3000) if ragged else np.full(20000, 24)
    key = np.repeat(np.arange(sizes.size), sizes)
    v = rng.normal(5.0, 8.0, key.size) * rng.exponential(3.0, key.size)
    ref = pl.DataFrame({"k": key, "v": v}).group_by("k").agg(pl.col("v").sum()).sort("k")
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    assert np.array_equal(_kahan_sums(v, start, sizes), ref["v"].to_numpy())


def test_grid_slot_equals_searchsorted_including_edges() -> None:
    rng = np.random.default_rng(3)
    ts = np.concatenate(
        [
            rng.normal(10.0, 9.0, 200_000),
            BASE_GRID_C,
            np.nextafter(BASE_GRID_C, -np.inf),
            np.nextafter(BASE_GRID_C, np.inf),
            [np.nan, np.inf, -np.inf, 1e300, -1e300, 0.0, -0.0, -0.25, -1.0, 4.75, 22.25],
        ]
    )
    assert np.array_equal(_grid_slot(ts), np.searchsorted(BASE_GRID_C, ts, side="right"))


def test_smooth_is_the_trailing_mean_of_present_hours() -> None:
    rng = np.random.default_rng(4)
    code = np.repeat(np.arange(3), 200)
    hour = np.tile(np.arange(200), 3)
    keep = rng.random(code.size) > 0.2  # gaps
    code, hour = code[keep], hour[keep]
    values = rng.normal(size=code.size)
    keys = code * (1 << 34) + hour
    for window in (1, 5, 24):
        out_keys, mean = _smooth(keys[::-1].copy(), values[::-1].copy(), window)  # unsorted in
        assert np.array_equal(out_keys, keys)
        ref = [
            values[(code == c) & (hour > h - window) & (hour <= h)].mean()
            for c, h in zip(code, hour, strict=True)
        ]
        np.testing.assert_allclose(mean, ref, rtol=1e-12)


# --- base checks -------------------------------------------------------------------------------


def test_check_frame_sorts_unsorted_input_and_remembers_it() -> None:
    rows = [(m, T0 + k * HOUR) for m in ("B", "A") for k in (3, 0, 1, 5)]
    frame = _frame(rows)
    out = _check_frame(frame, METER_TEMPERATURE, "t", check_step=True)  # gaps are fine
    assert out.equals(frame.sort("meter_id", "ts"))
    assert is_checked(out) and not is_checked(frame)
    assert not is_checked(out.filter(pl.col("ts") > T0))
    assert meters_in(out).sort().to_list() == ["A", "B"]
    code, hour = encode(out, ["A", "B"])
    assert code.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert (hour - hour[0]).tolist() == [0, 1, 3, 5, 0, 1, 3, 5]
    # encode of an unchecked, unsorted frame gives the same per-row codes as the frame
    code, _ = encode(frame, ["A", "B"])
    assert code.tolist() == [1, 1, 1, 1, 0, 0, 0, 0]


def test_check_frame_errors_keep_their_precedence() -> None:
    dup = _frame([("A", T0 + HOUR), ("B", T0), ("A", T0 + HOUR)])
    with pytest.raises(InvalidInputError, match=r"got 1 repeated row\(s\)"):
        _check_frame(dup, METER_TEMPERATURE, "t")
    # an off-grid row is reported before the duplicate, sorted or not
    both = _frame([("A", T0 + HOUR), ("A", T0 + HOUR), ("B", T0 + dt.timedelta(minutes=30))])
    with pytest.raises(InvalidInputError, match=r"1 row\(s\) are not on the hour"):
        _check_frame(both, METER_TEMPERATURE, "t")
    with pytest.raises(InvalidInputError, match=r"1 row\(s\) are not on the hour"):
        _check_frame(both.reverse(), METER_TEMPERATURE, "t")
    two_hourly = _frame([("A", T0 + 2 * k * HOUR) for k in range(5)])
    with pytest.raises(InvalidInputError, match="closest rows of any meter are 2 h apart"):
        _check_frame(two_hourly, METER_TEMPERATURE, "t", check_step=True)
    # one row per meter: no step to check
    single = _frame([("A", T0), ("B", T0 + 5 * HOUR)])
    assert _check_frame(single, METER_TEMPERATURE, "t", check_step=True).height == 2


def _reference_check(frame: pl.DataFrame) -> str:
    """The checks as plain Polars expressions (the implementation before the fast path)."""
    off = frame.filter(pl.col("ts") != pl.col("ts").dt.truncate("1h")).height
    if off:
        return "off-grid"
    out = frame.sort("meter_id", "ts")
    m, t = pl.col("meter_id"), pl.col("ts")
    if out.filter((m == m.shift(1)) & (t == t.shift(1))).height:
        return "duplicate"
    smallest = out.select((t - t.shift(1)).filter(m == m.shift(1)).min().dt.total_seconds()).item()
    if smallest is not None and smallest != 3600:
        return f"step {smallest}"
    return "ok"


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["A", "B", "C"]), st.integers(0, 12), st.sampled_from([0, 0, 0, 30])
        ),
        min_size=1,
        max_size=14,
    )
)
def test_check_frame_agrees_with_the_reference(rows: list[tuple[str, int, int]]) -> None:
    frame = _frame([(m, T0 + h * HOUR + dt.timedelta(minutes=mi)) for m, h, mi in rows])
    want = _reference_check(frame)
    try:
        out = _check_frame(frame, METER_TEMPERATURE, "t", check_step=True)
    except InvalidInputError as exc:
        text = str(exc)
        got = (
            "off-grid"
            if "not on the hour" in text
            else "duplicate"
            if "repeated row" in text
            else f"step {want.split()[-1]}"
            if "closest rows" in text
            else text
        )
    else:
        got = "ok"
        assert out.equals(frame.sort("meter_id", "ts"))
    assert got == want


def test_same_rows_compares_meters_and_hours() -> None:
    a = _frame([("A", T0), ("A", T0 + HOUR), ("B", T0)])
    b = a.with_columns(pl.col("temperature_c") * 2)
    c = _frame([("A", T0), ("A", T0 + HOUR), ("B", T0 + HOUR)])
    assert same_rows(a, b) and not same_rows(a, c) and not same_rows(a, a.head(2))
    ca, cb, cc = (_check_frame(f, METER_TEMPERATURE, "t") for f in (a, b, c))
    assert same_rows(ca, cb) and not same_rows(ca, cc)


# --- SLP daily aggregation ------------------------------------------------------------------


def test_slp_daily_values_equal_polars_group_by(make_series: object) -> None:
    data = make_series(n_meters=3, days=12, seed=9)  # type: ignore[operator]
    rng = np.random.default_rng(5)
    cons = data.consumption.filter(pl.Series(rng.random(data.consumption.height) > 0.01))
    cons = cons.with_columns(
        pl.when(pl.Series(rng.random(cons.height) < 0.01))
        .then(pl.lit("suspect"))
        .otherwise(pl.col("quality"))
        .alias("quality")
    )
    temp = data.temperature.filter(pl.Series(rng.random(data.temperature.height) > 0.3))
    cons = _check_frame(cons, CONSUMPTION, "c")
    temp = _check_frame(temp, METER_TEMPERATURE, "t")
    names = sorted(set(cons["meter_id"]))
    rows = _Rows.of(cons, temp, names, "hour")

    day = pl.col("ts").dt.truncate("1d").dt.epoch("d").alias("day")
    code = pl.col("meter_id").cast(pl.Enum(names)).to_physical().cast(pl.Int64).alias("code")
    ref = (
        cons.filter(pl.col("quality") == "valid")
        .group_by(code, day)
        .agg(pl.col("volume_m3").sum(), pl.len().alias("n"))
        .filter(pl.col("n") == 24)
        .sort("code", "day")
    )
    assert rows.d_code.tolist() == ref["code"].to_list()
    assert rows.d_day.tolist() == ref["day"].to_list()
    assert np.array_equal(rows.d_value, ref["volume_m3"].to_numpy())
    ref_t = (
        temp.group_by(code, day)
        .agg(pl.col("temperature_c").mean(), pl.len().alias("n"))
        .filter(pl.col("n") >= MIN_TEMPERATURE_HOURS)
        .sort("code", "day")
    )
    assert rows.dt_day.tolist() == ref_t["day"].to_list()
    assert np.array_equal(rows.dt_value, ref_t["temperature_c"].to_numpy())
