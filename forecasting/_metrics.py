"""Point and interval accuracy of forecasts against observed consumption.

Everything here is pure: arrays or frames in, numbers or frames out.  Conventions:

* the error is ``e = actual - forecast`` (m³ per step);
* ``smape`` and ``wape`` are **fractions**, not percent (``0.12`` = 12 %); sMAPE lies in
  ``[0, 2]`` and a step where actual and forecast are both 0 counts as a zero error;
* ``mase`` divides the MAE by the **in-sample MAE of the seasonal naive forecast**
  ``y[t] = y[t - season]`` on the training window (the ``history`` frame): ``season``
  defaults to one week, 168 steps for hourly and 7 for daily data
  (:data:`DEFAULT_SEASON`).  A MASE below 1 beats a one-step seasonal naive on the
  training data; a multi-step forecast of a noisy series usually lands near 1 for the
  seasonal naive itself.  A meter whose training window has no seasonal pair, or whose
  seasonal-naive MAE is 0 (a constant series), has a null MASE;
* ``coverage`` is the share of steps whose actual lies in ``[lo, hi]`` of the 80 %
  interval (goal ≈ 0.8) and ``width`` the mean ``hi - lo`` in m³ per step.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Final

import numpy as np
import polars as pl

from forecasting._base import STEP as _STEP
from forecasting.errors import InvalidInputError

#: Default seasonal period of the MASE scale, in steps of each frequency (one week).
DEFAULT_SEASON: Final[dict[str, int]] = {"hour": 168, "day": 7}
#: The metric columns of :func:`score`, in order.
METRICS: Final = ("mae", "rmse", "smape", "wape", "mase", "mase_pooled", "coverage", "width")


def _arrays(actual: object, forecast: object) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(actual, dtype=np.float64)
    f = np.asarray(forecast, dtype=np.float64)
    if y.shape != f.shape:
        raise InvalidInputError(
            f"expected actual and forecast of the same length, got {y.shape} and {f.shape}"
        )
    return y, f


def mae(actual: object, forecast: object) -> float:
    """Mean absolute error (m³ per step)."""
    y, f = _arrays(actual, forecast)
    return float(np.mean(np.abs(y - f))) if y.size else float("nan")


def rmse(actual: object, forecast: object) -> float:
    """Root mean squared error (m³ per step)."""
    y, f = _arrays(actual, forecast)
    return float(np.sqrt(np.mean((y - f) ** 2))) if y.size else float("nan")


def smape(actual: object, forecast: object) -> float:
    """Symmetric MAPE as a fraction in ``[0, 2]``: mean of ``2|e| / (|y| + |ŷ|)``, 0/0 = 0."""
    y, f = _arrays(actual, forecast)
    if not y.size:
        return float("nan")
    den = np.abs(y) + np.abs(f)
    ratio = np.divide(2.0 * np.abs(y - f), den, out=np.zeros_like(den), where=den > 0)
    return float(np.mean(ratio))


def wape(actual: object, forecast: object) -> float:
    """Weighted absolute percentage error as a fraction: ``Σ|e| / Σ|y|`` (NaN if Σ|y| = 0)."""
    y, f = _arrays(actual, forecast)
    den = float(np.sum(np.abs(y)))
    return float(np.sum(np.abs(y - f))) / den if den > 0 else float("nan")


def mase(actual: object, forecast: object, *, scale: float) -> float:
    """MAE divided by ``scale``, the in-sample seasonal-naive MAE (see :func:`naive_scale`)."""
    return mae(actual, forecast) / scale if scale > 0 else float("nan")


def coverage(actual: object, lower: object, upper: object) -> float:
    """Share of steps with ``lower <= actual <= upper`` (the interval's empirical coverage)."""
    y, lo = _arrays(actual, lower)
    _, hi = _arrays(actual, upper)
    return float(np.mean((y >= lo) & (y <= hi))) if y.size else float("nan")


def interval_width(lower: object, upper: object) -> float:
    """Mean width ``upper - lower`` of the interval (m³ per step)."""
    lo, hi = _arrays(lower, upper)
    return float(np.mean(hi - lo)) if lo.size else float("nan")


def naive_scale(
    history: pl.DataFrame, *, season: int | None = None, freq: str = "hour"
) -> pl.DataFrame:
    """In-sample MAE of the seasonal naive forecast per meter: the MASE denominator.

    Parameters
    ----------
    history
        Training consumption: ``meter_id``, ``ts`` (UTC step start), ``volume_m3``
        (m³ per step); with a ``quality`` column only ``valid`` rows count.
    season
        Seasonal period in steps (default :data:`DEFAULT_SEASON`: 168 h or 7 days).
    freq
        ``"hour"`` or ``"day"``: the step of ``ts``.

    Returns
    -------
    polars.DataFrame
        ``meter_id``, ``scale_m3`` (mean ``|y[t] - y[t - season]|`` over the pairs where
        both steps are observed; null when there is no pair) and ``pairs``.
    """
    step = _step(freq)
    lag = _season(season, freq) * step
    obs = _observed(history, "history")
    lagged = obs.select(
        "meter_id", (pl.col("ts") + lag).alias("ts"), pl.col("volume_m3").alias("_lag")
    )
    pairs = obs.join(lagged, on=["meter_id", "ts"], how="inner")
    per = pairs.group_by("meter_id").agg(
        (pl.col("volume_m3") - pl.col("_lag")).abs().mean().alias("scale_m3"),
        pl.len().cast(pl.Int64).alias("pairs"),
    )
    meters = obs.select("meter_id").unique()
    return (
        meters.join(per, on="meter_id", how="left")
        .with_columns(pl.col("pairs").fill_null(0))
        .sort("meter_id")
    )


def score(
    forecast: pl.DataFrame,
    actual: pl.DataFrame,
    *,
    history: pl.DataFrame | None = None,
    scale: pl.DataFrame | None = None,
    season: int | None = None,
    freq: str = "hour",
    by: Sequence[str] = (),
) -> pl.DataFrame:
    """Accuracy of forecasts per meter, plus one overall row (per ``by`` group).

    Parameters
    ----------
    forecast
        ``meter_id``, ``ts`` (UTC), ``volume_m3`` and, for the interval metrics,
        ``volume_m3_lo_80`` / ``volume_m3_hi_80`` (m³ per step), plus the ``by`` columns.
        More than one row per ``(by…, meter_id, ts)`` is allowed (e.g. several backtest
        origins forecasting the same step).
    actual
        Observed consumption: ``meter_id``, ``ts``, ``volume_m3``; with a ``quality``
        column only ``valid`` rows count.  Steps without an observation are not scored.
    history
        The training consumption the MASE is scaled by (see :func:`naive_scale`).
    scale
        Instead of ``history``: a ready ``meter_id, scale_m3`` frame.
    season, freq
        Seasonal period (steps) and frequency of the MASE scale.
    by
        Extra grouping columns of ``forecast`` (e.g. ``["model"]``); the scores are
        computed separately for each group.

    Returns
    -------
    polars.DataFrame
        One row per ``(by…, meter_id)`` and, per ``by`` group, an overall row whose
        ``meter_id`` is null.  Columns: the ``by`` columns, ``meter_id``, ``n`` (steps
        scored), ``mae``, ``rmse``, ``smape``, ``wape``, ``mase``, ``mase_pooled``,
        ``coverage``, ``width``.  Per meter ``mase_pooled == mase``.  Overall rows pool
        every scored step for MAE, RMSE, sMAPE, WAPE (``Σ|e| / Σ|y|``), coverage and
        width; ``mase`` is the mean of the per-meter MASE (each meter weighs the same,
        nulls ignored) and ``mase_pooled`` the ratio ``Σ|e| / Σ n_m·scale_m`` (big meters
        weigh more).  Without ``history``/``scale`` the MASE columns are null; without
        interval columns ``coverage``/``width`` are null.
    """
    by = list(by)
    need = ["meter_id", "ts", "volume_m3", *by]
    absent = [c for c in need if c not in forecast.columns]
    if absent:
        raise InvalidInputError(
            f"forecast: expected columns {need}, but {absent} are missing (got {forecast.columns})"
        )
    has_interval = {"volume_m3_lo_80", "volume_m3_hi_80"} <= set(forecast.columns)
    lo = pl.col("volume_m3_lo_80") if has_interval else pl.lit(None, dtype=pl.Float64)
    hi = pl.col("volume_m3_hi_80") if has_interval else pl.lit(None, dtype=pl.Float64)
    obs = _observed(actual, "actual").select("meter_id", "ts", pl.col("volume_m3").alias("_y"))
    rows = (
        forecast.select(
            *by, "meter_id", "ts", pl.col("volume_m3").alias("_f"), lo.alias("_lo"), hi.alias("_hi")
        )
        .filter(pl.col("_f").is_not_null() & pl.col("_f").is_not_nan())
        .join(obs, on=["meter_id", "ts"], how="inner")
    )
    if scale is None and history is not None:
        scale = naive_scale(history, season=season, freq=freq)
    if scale is not None:
        rows = rows.join(scale.select("meter_id", "scale_m3"), on="meter_id", how="left")
    else:
        rows = rows.with_columns(pl.lit(None, dtype=pl.Float64).alias("scale_m3"))
    scale_ok = pl.col("scale_m3") > 0
    rows = (
        rows.with_columns(
            (pl.col("_y") - pl.col("_f")).alias("_e"),
            pl.when(scale_ok).then(pl.col("scale_m3")).otherwise(None).alias("_s"),
        )
        .with_columns(
            pl.col("_e").abs().alias("_ae"),
            (pl.col("_y").abs() + pl.col("_f").abs()).alias("_den"),
        )
        .with_columns(
            pl.when(pl.col("_den") > 0)
            .then(2.0 * pl.col("_ae") / pl.col("_den"))
            .otherwise(0.0)
            .alias("_sape"),
            ((pl.col("_y") >= pl.col("_lo")) & (pl.col("_y") <= pl.col("_hi")))
            .cast(pl.Float64)
            .alias("_in"),
            (pl.col("_hi") - pl.col("_lo")).alias("_w"),
        )
    )

    def pooled() -> list[pl.Expr]:
        sum_y = pl.col("_y").abs().sum()
        return [
            pl.len().cast(pl.Int64).alias("n"),
            pl.col("_ae").mean().alias("mae"),
            (pl.col("_e") ** 2).mean().sqrt().alias("rmse"),
            pl.col("_sape").mean().alias("smape"),
            pl.when(sum_y > 0).then(pl.col("_ae").sum() / sum_y).otherwise(None).alias("wape"),
            pl.col("_in").mean().alias("coverage"),
            pl.col("_w").mean().alias("width"),
        ]

    group = [*by, "meter_id"]
    per_meter = (
        rows.group_by(group)
        .agg(*pooled(), pl.col("_s").first().alias("_s"))
        .with_columns((pl.col("mae") / pl.col("_s")).alias("mase"))
        .with_columns(pl.col("mase").alias("mase_pooled"))
    )
    weights = per_meter.group_by(by or pl.lit(0).alias("_all")).agg(
        pl.col("mase").mean().alias("mase"),
        (pl.col("n") * pl.col("_s")).filter(pl.col("_s").is_not_null()).sum().alias("_ns"),
    )
    overall = rows.group_by(by or pl.lit(0).alias("_all")).agg(
        *pooled(), pl.col("_ae").filter(pl.col("_s").is_not_null()).sum().alias("_aes")
    )
    key = by or ["_all"]
    overall = overall.join(weights, on=key, how="left").with_columns(
        pl.when(pl.col("_ns") > 0)
        .then(pl.col("_aes") / pl.col("_ns"))
        .otherwise(None)
        .alias("mase_pooled"),
        pl.lit(None, dtype=pl.String).alias("meter_id"),
    )
    cols = [*by, "meter_id", "n", *METRICS]
    if not by:
        overall = overall.drop("_all")
    out = pl.concat(
        [per_meter.select(cols), overall.select(cols)], how="vertical_relaxed"
    ).with_columns(pl.col(m).cast(pl.Float64).fill_nan(None) for m in METRICS)
    return out.sort([*by, pl.col("meter_id").is_null(), "meter_id"], nulls_last=True)


def _observed(frame: pl.DataFrame, what: str) -> pl.DataFrame:
    absent = [c for c in ("meter_id", "ts", "volume_m3") if c not in frame.columns]
    if absent:
        raise InvalidInputError(
            f"{what}: expected columns ['meter_id', 'ts', 'volume_m3'], but {absent} are "
            f"missing (got {frame.columns})"
        )
    ok = pl.col("volume_m3").is_not_null() & pl.col("volume_m3").is_not_nan()
    if "quality" in frame.columns:
        ok = ok & (pl.col("quality") == "valid")
    return frame.filter(ok).select("meter_id", "ts", pl.col("volume_m3").cast(pl.Float64))


def _step(freq: str) -> dt.timedelta:
    if freq not in _STEP:
        raise InvalidInputError(f"freq: expected 'hour' or 'day', got {freq!r}")
    return _STEP[freq]


def _season(season: int | None, freq: str) -> int:
    if season is None:
        return DEFAULT_SEASON[freq]
    if isinstance(season, bool) or not isinstance(season, int) or season < 1:
        raise InvalidInputError(f"season: expected a positive number of steps, got {season!r}")
    return season
