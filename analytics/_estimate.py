"""VEE estimation: fill missing and flagged intervals, each estimate naming its method.

Two methods, chosen per run of consecutive intervals to fill:

``linear_interpolation``
    Runs of at most ``max_interpolate`` intervals with a usable value on both sides:
    a straight line between the neighbours.  Short outages in a smooth series.
``hdd_profile``
    Longer runs (or runs at the edge of the series): a heating-degree profile fitted
    per metering point, hour of day and weekday/weekend on the meter's own valid
    history, ``volume = a + b × max(0, base − T_day)`` with ``b ≥ 0`` and ``T_day`` the
    day's mean outdoor temperature.  Without temperature it is the mean of that hour
    (``hour_mean``).

Why a small heating-degree fit here instead of a model from ``forecasting/``: imports
flow ``analytics ← forecasting`` (forecasting may import analytics, not the reverse).
The fit is the same closed-form OLS forecasting's heating-degree model uses, batched for
every meter in one ``group_by`` (PERFORMANCE.md: 1.8 s for 100 k meters).  A caller who
wants a forecasting model passes it as ``long_gap`` (any callable from history and
targets to values), e.g. a wrapper around ``forecasting.HeatingDegreeRegression``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import polars as pl

from analytics._vee_rules import (
    UTC_TS,
    _first_wins,
    _Grid,
    _grid_of,
    _np_bool,
    _np_float,
    _null_index,
    _register_frame,
    _run_lengths,
    _run_starts,
)
from analytics.errors import AnalyticsError

#: Estimates: one row per filled interval.
ESTIMATES_SCHEMA: Final = pl.Schema(
    {
        "meter_id": pl.String(),
        "ts": UTC_TS,
        "volume_m3": pl.Float64(),
        "method": pl.String(),
        "old_volume_m3": pl.Float64(),
        "old_quality": pl.String(),
        "reason": pl.String(),  # the rule(s) that asked for it, or "missing"
    }
)

#: ``long_gap(history, targets) -> values``: history has ``meter_id, ts, volume_m3,
#: outdoor_c``; targets ``meter_id, ts, outdoor_c``; the result ``meter_id, ts, volume_m3``.
LongGapEstimator = Callable[[pl.DataFrame, pl.DataFrame], pl.DataFrame]


@dataclass(frozen=True)
class EstimationParams:
    """How estimates are made.

    Attributes
    ----------
    max_interpolate
        Longest run (in intervals) filled by linear interpolation.
    max_estimate
        Longest run that is estimated at all (default 31 days of hours).  Longer runs
        stay missing (or suspect): a building absent from the archive for a year, or
        closed for a season, is not something to invent values for.
    hdd_base_c
        Heating-degree base temperature, °C (15.5 °C is the UK convention).
    min_points
        Fewest valid history points for a regression per (meter, hour, day type);
        fewer falls back to the hour's mean.
    register_factor, register_min_rate
        A register difference across a run is used to scale the run's estimates only
        when it is plausible: at most ``max(register_min_rate, register_factor × the
        meter's mean valid value)`` per interval (m³).  A larger one (a meter replaced
        inside the gap, a register reset) leaves the estimates unscaled.
    """

    max_interpolate: int = 4
    max_estimate: int = 24 * 31
    hdd_base_c: float = 15.5
    min_points: int = 6
    register_factor: float = 20.0
    register_min_rate: float = 1.0

    def __post_init__(self) -> None:
        if self.max_interpolate < 0 or self.min_points < 2 or self.max_estimate < self.max_interpolate:
            raise AnalyticsError(
                "EstimationParams: need max_interpolate >= 0, max_estimate >= max_interpolate and "
                f"min_points >= 2, got {self.max_interpolate}, {self.max_estimate}, {self.min_points}"
            )
        if self.register_factor <= 0 or self.register_min_rate < 0:
            raise AnalyticsError(
                "EstimationParams: need register_factor > 0 and register_min_rate >= 0, got "
                f"{self.register_factor}, {self.register_min_rate}"
            )


#: Suffix of the method of an estimate scaled to the register difference across its run.
SCALED: Final = "_scaled_to_register"


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema=ESTIMATES_SCHEMA)


def estimate(
    grid: pl.DataFrame,
    flags: pl.DataFrame | None = None,
    *,
    every: str = "1h",
    params: EstimationParams = EstimationParams(),
    long_gap: LongGapEstimator | None = None,
    long_gap_method: str = "custom_profile",
    registers: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Estimate every interval that is missing or flagged for estimation.

    Parameters
    ----------
    grid
        A complete grid (:func:`analytics.complete_grid`) sorted by ``(meter_id, ts)``
        with ``volume_m3``, optionally ``quality`` and ``outdoor_c`` (outdoor °C).
        Intervals already ``edited`` are never touched; intervals already
        ``estimated`` are not estimated again.
    flags
        :func:`analytics.flagged_intervals` output; rows with ``estimate = True`` are
        replaced even though they have a value.
    every
        ``"1h"`` or ``"1d"``.
    params
        See :class:`EstimationParams`.
    long_gap, long_gap_method
        Optional estimator for long runs instead of the built-in heating-degree profile,
        and the method name recorded with its estimates.
    registers
        Cumulative register readings ``meter_id``, ``ts`` (UTC), ``register_m3`` [,
        ``counter_modulus_m3``].  When the readings at both ends of a run of estimated
        intervals are known (snapped to the full hour, rollover corrected, plausible),
        the run's estimates are scaled so that they sum to the register difference: the
        method's shape spread over the metered total, method ``<method>_scaled_to_register``
        (``uniform_scaled_to_register`` when there is no shape).  A ``suspect`` interval
        right after a gap that holds the register step over the whole gap (as
        :func:`ingest.readings_to_hourly` writes it) joins the gap's run, reason
        ``gap_total``.  Without registers, or where a reading is missing, estimates are
        unscaled.

    Returns
    -------
    polars.DataFrame
        :data:`ESTIMATES_SCHEMA`: ``volume_m3`` is the estimate (≥ 0), ``method`` how it
        was made, ``old_volume_m3``/``old_quality`` what it replaces (for the audit
        trail).  Intervals that cannot be estimated (no history at all) are absent.
    """
    if grid.height == 0:
        return _empty()
    return _estimate_grid(
        _grid_of(grid, every), flags, params=params, long_gap=long_gap, long_gap_method=long_gap_method,
        registers=registers,
    )


def _estimate_grid(
    g: _Grid,
    flags: pl.DataFrame | None,
    *,
    params: EstimationParams,
    long_gap: LongGapEstimator | None,
    long_gap_method: str,
    registers: pl.DataFrame | None,
) -> pl.DataFrame:
    """:func:`estimate` on a prepared grid (one pass of numpy over the rows, then only targets)."""
    fr = g.frame
    n = fr.height
    codes = g.codes()
    quality = pl.col("quality") if "quality" in fr.columns else pl.lit("valid")
    present = pl.col("present") if "present" in fr.columns else pl.lit(True)
    absent = ~present | (pl.col("volume_m3").is_null() & ~quality.is_in(["suspect", "edited"]).fill_null(False))
    q = fr.select(
        pl.when(absent).then(pl.lit("missing")).otherwise(quality.fill_null("missing")).alias("_q")
    ).to_series()
    vol = _np_float(fr, pl.col("volume_m3"))
    why_src = np.full(n, -1, dtype=np.int64)
    why_vals = pl.Series("_why", [], dtype=pl.String)
    if flags is not None and flags.height:
        f = flags.filter("estimate")
        pos = g.instants(f.get_column("meter_id"), f.get_column("ts"))
        f = (
            f.select("rule", pl.Series("_pos", pos))
            .filter(pl.col("_pos") >= 0)
            .group_by("_pos")
            .agg(pl.col("rule").unique().sort().str.join(",").alias("_why"))
        )
        why_src[f.get_column("_pos").to_numpy()] = np.arange(f.height)
        why_vals = f.get_column("_why")
    untouchable = _np_bool(q.to_frame(), pl.col("_q").is_in(["edited", "estimated"]))
    tgt = ~untouchable & (np.isnan(vol) | (why_src >= 0))
    if not tgt.any():
        return _empty()
    reg = _RegisterIndex.build(g, registers) if registers is not None and registers.height else None
    if reg is not None:
        tgt, why_src, why_vals = _join_gap_totals(g, codes, q, vol, tgt, why_src, why_vals, reg)
    starts = _run_starts(codes, np.concatenate([[True], tgt[1:] != tgt[:-1]]))
    lengths = _run_lengths(starts, n)
    run_tgt = tgt[starts]
    # Runs too long to estimate stay as they are, but never serve as history either.
    ok_run = run_tgt & (lengths <= params.max_estimate)
    t_starts, t_len = starts[ok_run], lengths[ok_run]
    if t_starts.size == 0:
        return _empty()
    rows = np.flatnonzero(np.repeat(ok_run, lengths))  # the target runs' rows, in order
    t_code = codes[t_starts]
    # Linear interpolation between the neighbours of a short run (both must exist).
    before, after = t_starts - 1, t_starts + t_len
    has_nb = (t_len <= params.max_interpolate) & (t_starts > g.offset[t_code]) & (after < g.offset[t_code + 1])
    safe_b, safe_a = np.where(has_nb, before, 0), np.where(has_nb, after, 0)
    has_nb &= ~np.isnan(vol[safe_b]) & ~np.isnan(vol[safe_a])
    value = np.full(rows.size, np.nan)
    short_rows = np.zeros(rows.size, dtype=bool)
    run_in_rows = np.repeat(np.arange(t_starts.size), t_len)
    if has_nb.any():
        value, short_rows = _interpolate(vol, t_starts, t_len, has_nb, value, short_rows)
    method = pl.Series("_method", ["linear_interpolation"] * rows.size, dtype=pl.String)
    long_rows = ~short_rows
    if long_rows.any():
        prof, pmethod = _profile(g, codes, q, vol, tgt, rows[long_rows], params=params, long_gap=long_gap,
                                 long_gap_method=long_gap_method)
        value[long_rows] = prof
        method = method.scatter(np.flatnonzero(long_rows), pmethod)
    if reg is not None:
        value, method = _scale_to_registers(g, codes, q, vol, tgt, reg, t_starts, t_len, run_in_rows, value,
                                            method, params)
    old_q = q.gather(rows)
    reason = _gather_why(why_vals, why_src[rows])
    out = pl.DataFrame({
        "meter_id": g.names.gather(codes[rows]),
        "ts": fr.get_column("ts").gather(rows),
        "_v": pl.Series(value, nan_to_null=True),
        "method": method,
        "old_volume_m3": fr.get_column("volume_m3").gather(rows),
        "old_quality": old_q,
        "reason": reason.fill_null("missing"),
    })
    out = out.select(
        "meter_id", "ts",
        # max_horizontal skips nulls: keep "cannot estimate" null instead of 0.
        pl.when(pl.col("_v").is_not_null()).then(pl.max_horizontal(pl.col("_v"), pl.lit(0.0))).alias("volume_m3"),
        "method", "old_volume_m3", "old_quality", "reason",
    )
    return out.filter(pl.col("volume_m3").is_not_null()).cast(dict(ESTIMATES_SCHEMA))  # type: ignore[arg-type]


def _gather_why(values: pl.Series, src: np.ndarray) -> pl.Series:
    if values.len() == 0:
        return pl.Series("reason", [None] * src.size, dtype=pl.String)
    return values.gather(_null_index(src)).alias("reason")


def _interpolate(
    vol: np.ndarray,
    t_starts: np.ndarray,
    t_len: np.ndarray,
    has_nb: np.ndarray,
    value: np.ndarray,
    short_rows: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Straight lines between each short run's neighbours (Polars' ``interpolate``)."""
    s, ln = t_starts[has_nb], t_len[has_nb]
    width = ln + 2
    grp = np.repeat(np.arange(s.size), width)
    first = np.repeat(np.cumsum(width) - width, width)
    idx = np.repeat(s - 1, width) + (np.arange(grp.size) - first)
    vals = vol[idx].copy()
    inner = (idx >= np.repeat(s, width)) & (idx < np.repeat(s + ln, width))
    vals[inner] = np.nan
    lin = (
        pl.DataFrame({"g": grp, "v": pl.Series(vals, nan_to_null=True)})
        .select(pl.col("v").interpolate().over("g"))
        .to_series()
        .to_numpy()
    )
    # ``rows`` lays the runs out in order, so the short runs' rows are these.
    where = np.flatnonzero(np.repeat(has_nb, t_len))
    value[where] = lin[inner]
    short_rows[where] = True
    return value, short_rows


def _profile(
    g: _Grid,
    codes: np.ndarray,
    q: pl.Series,
    vol: np.ndarray,
    candidate: np.ndarray,
    target_rows: np.ndarray,
    *,
    params: EstimationParams,
    long_gap: LongGapEstimator | None,
    long_gap_method: str,
) -> tuple[np.ndarray, pl.Series]:
    """Profile estimates for ``target_rows``: the heating-degree fit or ``long_gap``.

    Only meters with such targets are fitted; their history is every row that is not a
    candidate for estimation, ``valid`` and valued.
    """
    fr = g.frame
    need = np.zeros(g.meters, dtype=bool)
    need[codes[target_rows]] = True
    mrows = np.flatnonzero(need[codes])
    sub = fr.select("_m", "ts", *(["outdoor_c"] if "outdoor_c" in fr.columns else []))[pl.Series(mrows)]
    sub = sub.with_columns(pl.Series("_row", mrows), pl.Series("volume_m3", vol[mrows], nan_to_null=True))
    if "outdoor_c" in sub.columns:
        # Daily mean outdoor temperature per meter (the driver of heating use).
        # One int64 key (meter, UTC day): the same groups as over("_m", day), twice as fast.
        day = pl.col("ts").dt.epoch("d")
        key = pl.col("_m").cast(pl.Int64) * (day.max() - day.min() + 1) + (day - day.min())
        sub = sub.with_columns(pl.col("outdoor_c").mean().over(key).alias("_tday"))
    else:
        sub = sub.with_columns(pl.lit(None, pl.Float64).alias("_tday"))
    hist = ~candidate[mrows] & _np_bool(q.gather(mrows).to_frame(), pl.col("_q") == "valid") & ~np.isnan(vol[mrows])
    history = sub.filter(pl.Series(hist))
    is_target = np.zeros(fr.height, dtype=bool)
    is_target[target_rows] = True
    targets = sub.filter(pl.Series(is_target[mrows]))
    if long_gap is not None:
        got = long_gap(
            history.select(g.names.gather(history.get_column("_m")).alias("meter_id"), "ts", "volume_m3",
                           pl.col("_tday").alias("outdoor_c")),
            targets.select(g.names.gather(targets.get_column("_m")).alias("meter_id"), "ts",
                           pl.col("_tday").alias("outdoor_c")),
        )
        missing = [c for c in ("meter_id", "ts", "volume_m3") if c not in got.columns]
        if missing:
            raise AnalyticsError(f"the long_gap estimator returned no {missing} column(s); it must return "
                                 "meter_id, ts, volume_m3")
        pos, src_rows = _first_wins(g.instants(got.get_column("meter_id"), got.get_column("ts").cast(UTC_TS)))
        src = np.full(fr.height, -1, dtype=np.int64)
        src[pos] = src_rows
        values = got.get_column("volume_m3").cast(pl.Float64).gather(_null_index(src[target_rows]))
        return values.to_numpy(), pl.Series([long_gap_method] * target_rows.size, dtype=pl.String)
    prof = _hdd_profile(history, targets, step_us=g.step_us, params=params)
    # Aligned with ``targets`` (row order) → with ``target_rows``.
    return prof.get_column("_prof").to_numpy(), prof.get_column("_pmethod")


def _hdd_profile(
    history: pl.DataFrame, targets: pl.DataFrame, *, step_us: int, params: EstimationParams
) -> pl.DataFrame:
    """Heating-degree profile per (meter, hour of day, weekend), closed-form OLS, batched.

    Returns ``_prof`` and ``_pmethod`` aligned with the rows of ``targets``.
    """
    hod = pl.col("ts").dt.hour() if step_us < 86_400_000_000 else pl.lit(0, pl.Int8)
    weekend = pl.col("ts").dt.weekday() >= 6
    x = pl.max_horizontal(pl.lit(params.hdd_base_c) - pl.col("_tday"), pl.lit(0.0))
    h = history.select("_m", hod.alias("_h"), weekend.alias("_w"), x.alias("_x"), pl.col("volume_m3").alias("_y"))
    fit = (
        h.group_by("_m", "_h", "_w")
        .agg(
            pl.len().alias("_n"),
            pl.col("_y").mean().alias("_my"),
            pl.col("_x").mean().alias("_mx"),
            ((pl.col("_x") - pl.col("_x").mean()) * (pl.col("_y") - pl.col("_y").mean())).mean().alias("_sxy"),
            ((pl.col("_x") - pl.col("_x").mean()) ** 2).mean().alias("_sxx"),
            pl.col("_x").count().alias("_nx"),
        )
        .with_columns(
            pl.when((pl.col("_nx") >= params.min_points) & (pl.col("_sxx") > 1e-9))
            .then(pl.max_horizontal(pl.col("_sxy") / pl.col("_sxx"), pl.lit(0.0)))
            .otherwise(0.0)
            .alias("_b"),
        )
        .with_columns(
            pl.when(pl.col("_mx").is_not_null()).then(pl.col("_my") - pl.col("_b") * pl.col("_mx"))
            .otherwise(pl.col("_my")).alias("_a")
        )
    )
    hour_mean = h.group_by("_m", "_h").agg(pl.col("_y").mean().alias("_hm"))
    t = targets.select("_m", "ts", hod.alias("_h"), weekend.alias("_w"), x.alias("_x"))
    t = t.join(fit, on=["_m", "_h", "_w"], how="left", maintain_order="left").join(
        hour_mean, on=["_m", "_h"], how="left", maintain_order="left"
    )
    regression = pl.col("_a") + pl.col("_b") * pl.col("_x").fill_null(pl.col("_mx"))
    use_reg = pl.col("_a").is_not_null() & (pl.col("_b") > 0) & pl.col("_x").is_not_null()
    return t.select(
        pl.when(use_reg).then(regression).otherwise(pl.coalesce("_my", "_hm")).cast(pl.Float64).alias("_prof"),
        pl.when(use_reg).then(pl.lit("hdd_profile")).otherwise(pl.lit("hour_mean")).alias("_pmethod"),
    )


# --- scaling to the register difference --------------------------------------------------


class _RegisterIndex:
    """Register readings placed on the grid's instants (``row + meter code``; see ``_Grid.instants``)."""

    def __init__(self, at: np.ndarray, modulus: np.ndarray) -> None:
        self.at = at  # register value at each instant (NaN: no reading)
        self.modulus = modulus  # per meter (NaN: never rolls over)

    @classmethod
    def build(cls, g: _Grid, registers: pl.DataFrame) -> _RegisterIndex:
        # Snapped to the full hour like the sum check; the first reading of an hour wins.
        r = _register_frame(registers).with_columns(pl.col("ts").dt.round("1h"))
        inst, src = _first_wins(g.instants(r.get_column("meter_id"), r.get_column("ts"), extra=1))
        at = np.full(g.frame.height + g.meters, np.nan)
        at[inst] = r.get_column("register_m3").to_numpy()[src]
        modulus = np.full(g.meters, np.nan)
        meter = np.searchsorted(g.offset[:-1] + np.arange(g.meters), inst, side="right") - 1
        modulus[meter] = r.get_column("_mod").to_numpy()[src]
        return cls(at, modulus)

    def difference(self, codes: np.ndarray, first_row: np.ndarray, end_row: np.ndarray) -> np.ndarray:
        """Register at the end instant minus at the first, rollover corrected (NaN if unknown)."""
        d: np.ndarray = self.at[end_row + codes] - self.at[first_row + codes]
        out: np.ndarray = np.where(d < 0, d + self.modulus[codes], d)
        return out


def _join_gap_totals(
    g: _Grid,
    codes: np.ndarray,
    q: pl.Series,
    vol: np.ndarray,
    tgt: np.ndarray,
    why_src: np.ndarray,
    why_vals: pl.Series,
    reg: _RegisterIndex,
) -> tuple[np.ndarray, np.ndarray, pl.Series]:
    """Add the ``suspect`` interval right after a gap to the gap's run when it holds the gap's total.

    ``ingest.readings_to_hourly`` puts a register step spanning several hours on the
    step's last hour (quality ``suspect``) and leaves the hours before it null; the
    registers at the gap's start and after that hour bound the whole span.
    """
    n = tgt.size
    starts = _run_starts(codes, np.concatenate([[True], tgt[1:] != tgt[:-1]]))
    lengths = _run_lengths(starts, n)
    s, ln = starts[tgt[starts]], lengths[tgt[starts]]
    nxt = s + ln
    c = codes[s]
    ok = nxt < g.offset[c + 1]
    nxt_safe = np.where(ok, nxt, 0)
    suspect = _np_bool(q.to_frame(), pl.col("_q") == "suspect")
    ok &= suspect[nxt_safe] & ~np.isnan(vol[nxt_safe]) & ~tgt[nxt_safe]
    ok &= ~np.isnan(reg.difference(c, s, nxt_safe + 1))
    if not ok.any():
        return tgt, why_src, why_vals
    add = nxt[ok]
    tgt = tgt.copy()
    tgt[add] = True
    why_src = why_src.copy()
    why_src[add] = why_vals.len()
    return tgt, why_src, pl.concat([why_vals, pl.Series("_why", ["gap_total"])])


def _scale_to_registers(
    g: _Grid,
    codes: np.ndarray,
    q: pl.Series,
    vol: np.ndarray,
    candidate: np.ndarray,
    reg: _RegisterIndex,
    t_starts: np.ndarray,
    t_len: np.ndarray,
    run_in_rows: np.ndarray,
    value: np.ndarray,
    method: pl.Series,
    params: EstimationParams,
) -> tuple[np.ndarray, pl.Series]:
    """Scale each run's estimates to the register difference across it, where it is known."""
    c = codes[t_starts]
    d = reg.difference(c, t_starts, t_starts + t_len)
    # Plausible: at most register_factor × the meter's mean valid value per interval.
    hist = ~candidate & ~np.isnan(vol) & _np_bool(q.to_frame(), pl.col("_q") == "valid")
    hv = np.where(hist & (vol > 0), vol, 0.0)
    total = np.bincount(codes, weights=hv, minlength=g.meters)
    count = np.bincount(codes, weights=(hist & (vol > 0)).astype(np.float64), minlength=g.meters)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), 0.0)
        limit = np.maximum(params.register_min_rate, params.register_factor * mean)
        known = ~np.isnan(d) & (d >= 0) & (d <= t_len * limit[c])
    if not known.any():
        return value, method
    shape = np.where(np.isnan(value), np.nan, np.maximum(value, 0.0))
    run_first = np.cumsum(t_len) - t_len
    has = ~np.isnan(shape)
    n_has = np.add.reduceat(has.astype(np.float64), run_first)
    s_has = np.add.reduceat(np.where(has, shape, 0.0), run_first)
    fill = np.where(n_has > 0, s_has / np.maximum(n_has, 1), 1.0)  # the run's mean shape, or flat
    shape = np.where(has, shape, fill[run_in_rows])
    total_shape = np.add.reduceat(shape, run_first)
    rk = known[run_in_rows]
    ts = total_shape[run_in_rows]
    scaled = np.where(ts > 0, shape * d[run_in_rows] / np.where(ts > 0, ts, 1.0), d[run_in_rows] / t_len[run_in_rows])
    value = np.where(rk, scaled, value)
    base = method.to_frame().with_columns(pl.Series("_has", has), pl.Series("_rk", rk))
    method = base.select(
        pl.when(pl.col("_rk"))
        .then(pl.when(pl.col("_has")).then(pl.col("_method")).otherwise(pl.lit("uniform")) + SCALED)
        .otherwise(pl.col("_method"))
    ).to_series().alias("_method")
    return value, method
