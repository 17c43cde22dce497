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

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import polars as pl

from analytics._vee_rules import UTC_TS, _parse_every, _runs
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
    """

    max_interpolate: int = 4
    max_estimate: int = 24 * 31
    hdd_base_c: float = 15.5
    min_points: int = 6

    def __post_init__(self) -> None:
        if self.max_interpolate < 0 or self.min_points < 2 or self.max_estimate < self.max_interpolate:
            raise AnalyticsError(
                "EstimationParams: need max_interpolate >= 0, max_estimate >= max_interpolate and "
                f"min_points >= 2, got {self.max_interpolate}, {self.max_estimate}, {self.min_points}"
            )


def estimate(
    grid: pl.DataFrame,
    flags: pl.DataFrame | None = None,
    *,
    every: str = "1h",
    params: EstimationParams = EstimationParams(),
    long_gap: LongGapEstimator | None = None,
    long_gap_method: str = "custom_profile",
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

    Returns
    -------
    polars.DataFrame
        :data:`ESTIMATES_SCHEMA`: ``volume_m3`` is the estimate (≥ 0), ``method`` how it
        was made, ``old_volume_m3``/``old_quality`` what it replaces (for the audit
        trail).  Intervals that cannot be estimated (no history at all) are absent.
    """
    step = _parse_every(every)
    if grid.height == 0:
        return pl.DataFrame(schema=ESTIMATES_SCHEMA)
    quality = pl.col("quality") if "quality" in grid.columns else pl.lit("valid")
    present = pl.col("present") if "present" in grid.columns else pl.lit(True)
    absent = ~present | (pl.col("volume_m3").is_null() & ~quality.is_in(["suspect", "edited"]).fill_null(False))
    g = grid.with_columns(pl.when(absent).then(pl.lit("missing")).otherwise(quality.fill_null("missing")).alias("_q"))
    if "outdoor_c" not in g.columns:
        g = g.with_columns(pl.lit(None, pl.Float64).alias("outdoor_c"))
    if flags is not None and flags.height:
        why = (
            flags.filter("estimate")
            .group_by("meter_id", "ts")
            .agg(pl.col("rule").unique().sort().str.join(",").alias("_why"))
        )
        g = g.join(why, on=["meter_id", "ts"], how="left")
    else:
        g = g.with_columns(pl.lit(None, pl.String).alias("_why"))
    untouchable = pl.col("_q").is_in(["edited", "estimated"])
    target = ~untouchable & (pl.col("volume_m3").is_null() | pl.col("_why").is_not_null())
    g = g.with_columns(target.alias("_target"))
    if not g.get_column("_target").any():
        return pl.DataFrame(schema=ESTIMATES_SCHEMA)
    g = _runs(g, "_target").sort("meter_id", "ts")
    # Runs too long to estimate stay as they are, but never serve as history either.
    g = g.with_columns(
        pl.col("_target").alias("_candidate"),
        (pl.col("_target") & (pl.col("_len") <= params.max_estimate)).alias("_target"),
    )
    anchor = pl.when(~pl.col("_candidate")).then(pl.col("volume_m3"))
    g = g.with_columns(anchor.alias("_anchor")).with_columns(
        pl.col("_anchor").interpolate().over("meter_id").alias("_lin")
    )
    short = pl.col("_target") & (pl.col("_len") <= params.max_interpolate) & pl.col("_lin").is_not_null()

    # Daily mean outdoor temperature per meter (the driver of heating use).
    day = pl.col("ts").dt.truncate("1d")
    g = g.with_columns(pl.col("outdoor_c").mean().over("meter_id", day).alias("_tday"))
    history = g.filter(~pl.col("_candidate") & (pl.col("_q") == "valid") & pl.col("volume_m3").is_not_null())
    targets = g.filter(pl.col("_target") & ~short)
    if long_gap is not None:
        got = long_gap(
            history.select("meter_id", "ts", "volume_m3", pl.col("_tday").alias("outdoor_c")),
            targets.select("meter_id", "ts", pl.col("_tday").alias("outdoor_c")),
        )
        missing = [c for c in ("meter_id", "ts", "volume_m3") if c not in got.columns]
        if missing:
            raise AnalyticsError(f"the long_gap estimator returned no {missing} column(s); it must return "
                                 "meter_id, ts, volume_m3")
        prof = got.select("meter_id", pl.col("ts").cast(UTC_TS), pl.col("volume_m3").alias("_prof"),
                          pl.lit(long_gap_method).alias("_pmethod"))
    else:
        prof = _hdd_profile(history, targets, step=step, params=params)
    g = g.join(prof, on=["meter_id", "ts"], how="left")
    value = pl.when(short).then(pl.col("_lin")).otherwise(pl.col("_prof"))
    method = pl.when(short).then(pl.lit("linear_interpolation")).otherwise(pl.col("_pmethod"))
    out = g.filter(pl.col("_target")).select(
        "meter_id",
        "ts",
        # max_horizontal skips nulls: keep "cannot estimate" null instead of 0.
        pl.when(value.is_not_null()).then(pl.max_horizontal(value, pl.lit(0.0))).alias("volume_m3"),
        method.alias("method"),
        pl.col("volume_m3").alias("old_volume_m3"),
        pl.col("_q").alias("old_quality"),
        pl.col("_why").fill_null("missing").alias("reason"),
    )
    return out.filter(pl.col("volume_m3").is_not_null()).cast(dict(ESTIMATES_SCHEMA))  # type: ignore[arg-type]


def _hdd_profile(
    history: pl.DataFrame, targets: pl.DataFrame, *, step: dt.timedelta, params: EstimationParams
) -> pl.DataFrame:
    """Heating-degree profile per (meter, hour of day, weekend), closed-form OLS, batched."""
    hod = pl.col("ts").dt.hour() if step < dt.timedelta(days=1) else pl.lit(0, pl.Int8)
    weekend = pl.col("ts").dt.weekday() >= 6
    x = pl.max_horizontal(pl.lit(params.hdd_base_c) - pl.col("_tday"), pl.lit(0.0))
    h = history.select("meter_id", hod.alias("_h"), weekend.alias("_w"), x.alias("_x"), pl.col("volume_m3").alias("_y"))
    fit = (
        h.group_by("meter_id", "_h", "_w")
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
    hour_mean = h.group_by("meter_id", "_h").agg(pl.col("_y").mean().alias("_hm"))
    t = targets.select("meter_id", "ts", hod.alias("_h"), weekend.alias("_w"), x.alias("_x"))
    t = t.join(fit, on=["meter_id", "_h", "_w"], how="left").join(hour_mean, on=["meter_id", "_h"], how="left")
    regression = pl.col("_a") + pl.col("_b") * pl.col("_x").fill_null(pl.col("_mx"))
    use_reg = pl.col("_a").is_not_null() & (pl.col("_b") > 0) & pl.col("_x").is_not_null()
    return t.select(
        "meter_id",
        "ts",
        pl.when(use_reg).then(regression).otherwise(pl.coalesce("_my", "_hm")).alias("_prof"),
        pl.when(use_reg).then(pl.lit("hdd_profile")).otherwise(pl.lit("hour_mean")).alias("_pmethod"),
    )
