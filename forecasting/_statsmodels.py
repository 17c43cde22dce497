"""Per-meter statsmodels adapters: SARIMAX with exogenous temperature, and ETS.

Both are mainly **daily** models (``freq="day"``: m³ per UTC day against the daily mean
temperature).  One model is fitted per metering point on the regular grid of its
history from its first usable step to the cutoff; missing or non-``valid`` steps are
gaps (SARIMAX's Kalman filter skips them; ETS, which cannot, interpolates them).

statsmodels is imported lazily, inside the adapters.  Its warnings (convergence,
non-invertible starting values, …) are caught per meter and kept in ``warnings_``
rather than let escape.

Shared helpers at the end (:func:`heating_regressors`, :func:`usable_history`) are also
used by the Prophet adapter.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar, Final

import numpy as np
import polars as pl

from forecasting._base import Forecaster, Freq
from forecasting.errors import InsufficientHistoryError, InvalidParameterError

#: Balance-point temperature (°C) of the heating-degree regressor.
HEATING_BASE_C: Final = 15.5


# --- shared helpers (Prophet uses them too) ------------------------------------------------


def heating_regressors(
    temperature: pl.DataFrame, tail: pl.DataFrame | None, freq: str, base_c: float
) -> pl.DataFrame:
    """``temperature`` sorted by meter and time, with ``heating_degrees`` added.

    At ``freq="day"`` the heating degrees are ``max(0, base_c - T)`` of the daily mean;
    at ``freq="hour"`` of the trailing 24 h mean temperature (building inertia), whose
    window reaches into ``tail`` (the history's last hours; ``temperature`` wins where
    both have a row).
    """
    if freq == "day":
        smooth = pl.col("temperature_c")
        out = temperature.sort("meter_id", "ts")
    else:
        own = temperature.select("meter_id", "ts", "temperature_c").with_columns(
            pl.lit(True).alias("_own")
        )
        if tail is not None and tail.height:
            extra = tail.join(own, on=["meter_id", "ts"], how="anti").filter(
                pl.col("meter_id").is_in(own.get_column("meter_id").unique().implode())
            )
            own = pl.concat([own, extra.with_columns(pl.lit(False).alias("_own"))], how="diagonal")
        out = (
            own.sort("meter_id", "ts")
            .with_columns(
                pl.col("temperature_c")
                .rolling_mean_by("ts", window_size="24h")
                .over("meter_id")
                .alias("_smooth")
            )
            .filter(pl.col("_own"))
            .drop("_own")
        )
        out = temperature.join(out.select("meter_id", "ts", "_smooth"), on=["meter_id", "ts"])
        out = out.sort("meter_id", "ts")
        smooth = pl.col("_smooth")
    return out.with_columns(
        (pl.lit(base_c) - smooth).clip(lower_bound=0.0).alias("heating_degrees")
    ).drop("_smooth", strict=False)


def usable_history(
    model: Forecaster,
    consumption: pl.DataFrame,
    temperature: pl.DataFrame,
    *,
    min_steps: int,
    base_c: float,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Valid volumes joined to temperature and heating degrees, per meter.

    Returns ``(rows, tail)``: ``rows`` has ``meter_id, ts, volume_m3, temperature_c,
    heating_degrees`` of the meters with at least ``min_steps`` usable steps and a
    non-zero volume; the others go to ``model.skipped_`` with the reason.  ``tail`` is
    the last 23 h of temperature before the cutoff (for the smoothing at predict time).
    Raises :class:`InsufficientHistoryError` when no meter is left.
    """
    freq = model.freq
    temperature = temperature.filter(
        pl.col("temperature_c").is_not_null() & pl.col("temperature_c").is_not_nan()
    )
    temp = heating_regressors(temperature, None, freq, base_c)
    usable = consumption.filter(
        pl.col("volume_m3").is_not_null()
        & pl.col("volume_m3").is_not_nan()
        & (pl.col("quality") == "valid")
    ).select("meter_id", "ts", "volume_m3")
    rows = usable.join(temp, on=["meter_id", "ts"]).sort("meter_id", "ts")
    stats = rows.group_by("meter_id").agg(
        pl.len().alias("n"), (pl.col("volume_m3").abs().max() > 0).alias("nonzero")
    )
    counts = {m: (n, nz) for m, n, nz in stats.iter_rows()}
    keep = []
    for meter in consumption.get_column("meter_id").unique().sort().to_list():
        n, nonzero = counts.get(meter, (0, False))
        if n < min_steps:
            model.skipped_[meter] = (
                f"only {n} usable {freq}(s) (valid volume with a temperature) before "
                f"{model.cutoff_.isoformat()}, needs {min_steps} (min_history_days)"
            )
        elif not nonzero:
            model.skipped_[meter] = (
                "every usable volume is 0: nothing to learn (a meter that does not consume, "
                "or zeros that stand for missing data — check the meter)"
            )
        else:
            keep.append(meter)
    if not keep:
        best = max((n for n, _ in counts.values()), default=0)
        raise InsufficientHistoryError(
            f"{type(model).__name__}: expected at least {min_steps} usable {freq}s (valid, "
            f"non-zero volumes with a temperature) for some meter, but the best of "
            f"{consumption.get_column('meter_id').n_unique()} meter(s) has {best}; load more "
            f"history or lower min_history_days"
        )
    tail = temperature.filter(
        pl.col("meter_id").is_in(keep) & (pl.col("ts") > model.cutoff_ - dt.timedelta(hours=24))
    ).select("meter_id", "ts", "temperature_c")
    return rows.filter(pl.col("meter_id").is_in(keep)), tail


def run_quietly(fn: Callable[[], Any]) -> tuple[Any, list[str]]:
    """Call ``fn`` with every warning recorded instead of shown; return the result and
    the distinct warning messages (``Category: message``) in order of appearance."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    seen: list[str] = []
    for w in caught:
        text = f"{w.category.__name__}: {w.message}"
        if text not in seen:
            seen.append(text)
    return result, seen


def _check_int(value: object, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidParameterError(f"{name}: expected an integer >= {low}, got {value!r}")


def _check_interval(iv: object) -> None:
    if isinstance(iv, bool) or not isinstance(iv, int | float) or not 0 < iv < 1:
        raise InvalidParameterError(
            f"interval: expected a coverage strictly between 0 and 1 (e.g. 0.8), got {iv!r}"
        )


def _check_hourly_season(freq: str, period: int, what: str, example: str) -> None:
    if freq == "hour" and period not in (0, 1) and period % 24:
        raise InvalidParameterError(
            f"{what}: a season of {period} steps means {period} hours at freq='hour'; the "
            f"default 7 is the weekly season of daily data. Use freq='day' (recommended: "
            f"these are daily models), or a daily season at hourly data, e.g. {example} "
            f"(slow: a 24-step season makes each hourly fit seconds to minutes per meter)"
        )


def _grid(rows: pl.DataFrame, end: dt.datetime, freq: str) -> pl.DataFrame:
    """A meter's rows on the regular grid from its first row to ``end`` (exclusive)."""
    start = rows.get_column("ts").min()
    assert isinstance(start, dt.datetime)
    ts = pl.datetime_range(
        start, end, "1h" if freq == "hour" else "1d", closed="left", time_zone="UTC", eager=True
    ).dt.cast_time_unit("us")
    return pl.DataFrame({"ts": ts}).join(rows.drop("meter_id"), on="ts", how="left")


def _index(ts: pl.Series, start: dt.datetime, freq: str) -> np.ndarray:
    """Step index of each ``ts`` relative to ``start``."""
    seconds = 3600 if freq == "hour" else 86400
    delta = (ts - start).dt.total_seconds()
    return np.asarray(delta.to_numpy() // seconds, dtype=np.int64)


class _PerMeter(Forecaster):
    """Shared fit/predict loop of the per-meter statsmodels adapters."""

    interval: float
    min_history_days: int
    results_: dict[str, Any]
    warnings_: dict[str, list[str]]
    starts_: dict[str, dt.datetime]
    scales_: dict[str, float]
    temperature_tail_: pl.DataFrame

    def _fit(self, consumption: pl.DataFrame, temperature: pl.DataFrame) -> None:
        steps = self.min_history_days * (24 if self.freq == "hour" else 1)
        rows, self.temperature_tail_ = usable_history(
            self, consumption, temperature, min_steps=steps, base_c=HEATING_BASE_C
        )
        from threadpoolctl import threadpool_limits

        # Load statsmodels (and scipy's own BLAS) before limiting threads: threadpoolctl
        # limits only libraries already loaded.  One BLAS thread per fit: the matrices
        # are tiny, and on a busy 2-core machine a second thread made fits 6x slower.
        _import_backend()
        self.results_, self.warnings_, self.starts_, self.scales_ = {}, {}, {}, {}
        for (meter,), part in rows.group_by("meter_id", maintain_order=True):
            assert isinstance(meter, str)
            grid = _grid(part, self.cutoff_, self.freq)
            # Fit in units of the meter's mean: the optimiser converges far more often.
            scale = float(grid.select(pl.col("volume_m3").abs().mean()).item() or 1.0)
            grid = grid.with_columns(pl.col("volume_m3") / scale)
            try:
                with threadpool_limits(limits=1):
                    result, caught = run_quietly(partial(self._fit_one, grid))
            except (ValueError, np.linalg.LinAlgError) as exc:
                self.skipped_[meter] = f"{type(self).__name__} fit failed: {exc}"
                continue
            if caught:
                self.warnings_[meter] = caught
            self.results_[meter] = result
            self.scales_[meter] = scale
            start = grid.get_column("ts").min()
            assert isinstance(start, dt.datetime)
            self.starts_[meter] = start
        if not self.results_:
            raise InsufficientHistoryError(
                f"{type(self).__name__}: the fit failed for every meter: "
                + "; ".join(f"{m}: {r}" for m, r in list(self.skipped_.items())[:5])
            )
        self.meters_ = tuple(sorted(self.results_))

    def _predict(self, temperature: pl.DataFrame) -> pl.DataFrame:
        from threadpoolctl import threadpool_limits

        frame = heating_regressors(temperature, self.temperature_tail_, self.freq, HEATING_BASE_C)
        parts = []
        for (meter,), part in frame.group_by("meter_id", maintain_order=True):
            assert isinstance(meter, str)
            idx = _index(part.get_column("ts"), self.starts_[meter], self.freq)
            with threadpool_limits(limits=1):
                (mean, lo, hi), _ = run_quietly(
                    partial(self._predict_one, self.results_[meter], part, idx)
                )
            scale = self.scales_[meter]
            parts.append(
                part.with_columns(
                    pl.Series("volume_m3", mean * scale),
                    pl.Series("volume_m3_lo_80", lo * scale),
                    pl.Series("volume_m3_hi_80", hi * scale),
                )
            )
        return pl.concat(parts).drop("heating_degrees")

    def _fit_one(self, grid: pl.DataFrame) -> Any:
        raise NotImplementedError

    def _predict_one(
        self, result: Any, rows: pl.DataFrame, idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError


def _import_backend() -> None:
    import scipy.linalg  # noqa: F401
    import statsmodels.tsa.exponential_smoothing.ets
    import statsmodels.tsa.statespace.sarimax  # noqa: F401


def _exog(frame: pl.DataFrame) -> np.ndarray:
    """Regressors ``[temperature_c, heating_degrees]``; gaps interpolated (they are
    only filler: see :meth:`SarimaxForecaster._predict_one`)."""
    cols = frame.select(
        pl.col("temperature_c").interpolate().forward_fill().backward_fill(),
        pl.col("heating_degrees").interpolate().forward_fill().backward_fill(),
    )
    return cols.to_numpy().astype(np.float64)


def _z(interval: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf((1 + interval) / 2))


class SarimaxForecaster(_PerMeter):
    """Per-meter SARIMAX with exogenous temperature and heating degrees (statsmodels).

    A regression with seasonal ARMA errors, per metering point::

        volume[t] = c + b1 * T[t] + b2 * max(0, 15.5 - T[t]) + u[t],
        u ~ SARIMA(order) x (seasonal_order)

    at ``freq="day"`` (daily mean °C); at ``freq="hour"`` the heating degrees are taken
    of the trailing 24 h mean temperature.  Intervals are the model's normal forecast
    intervals.  Forecast rows (from the cutoff on) use the Kalman forecast of ``u`` plus
    the regression on the *given* temperature; backcast rows inside the history use the
    one-step-ahead prediction, moved by the regression on the given instead of the
    observed temperature; rows before a meter's first step get the regression part only.

    Cost: about 0.6 s per meter for two years of daily data.  Hourly data needs a
    seasonal period of 24 (``seasonal_order=(1, 0, 1, 24)``) and is slow (seconds to
    minutes per meter); prefer ``freq="day"``.

    Parameters
    ----------
    order
        ``(p, d, q)`` of the ARMA errors.
    seasonal_order
        ``(P, D, Q, s)``; ``s`` in steps (7 = weekly at daily data).  ``(0, 0, 0, 0)``
        for none.
    freq
        ``"day"`` (default) or ``"hour"``.
    interval
        Coverage of the prediction interval, in ``(0, 1)``.
    min_history_days
        Meters with fewer usable steps than this many days are skipped.
    maxiter
        Iterations of the likelihood optimiser per meter.

    Attributes
    ----------
    results_ : dict of str to statsmodels SARIMAXResults
        The fitted model of each meter, in units of ``scales_[meter]`` m³.
    scales_ : dict of str to float
        Each meter's mean usable volume per step (m³): the unit the model is fitted in.
    warnings_ : dict of str to list of str
        Warnings statsmodels raised while fitting a meter (e.g. ``ConvergenceWarning``).
    meters_, skipped_, cutoff_
        As in :class:`Forecaster`.

    Examples
    --------
    >>> SarimaxForecaster().fit(daily, daily_temperature).predict(next_days)  # doctest: +SKIP
    """

    alias: ClassVar[str] = "sarimax"

    def __init__(
        self,
        *,
        order: tuple[int, int, int] = (1, 0, 1),
        seasonal_order: tuple[int, int, int, int] = (1, 0, 1, 7),
        freq: Freq = "day",
        interval: float = 0.8,
        min_history_days: int = 28,
        maxiter: int = 50,
    ) -> None:
        self.order = order
        self.seasonal_order = seasonal_order
        self.freq = freq
        self.interval = interval
        self.min_history_days = min_history_days
        self.maxiter = maxiter

    def _validate_params(self) -> None:
        def ints(v: object, n: int) -> bool:
            return (
                isinstance(v, tuple | list)
                and len(v) == n
                and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)
            )

        if not ints(self.order, 3):
            raise InvalidParameterError(
                f"order: expected (p, d, q), three integers >= 0, e.g. (1, 0, 1); got {self.order!r}"
            )
        if not ints(self.seasonal_order, 4):
            raise InvalidParameterError(
                f"seasonal_order: expected (P, D, Q, s), four integers >= 0, e.g. (1, 0, 1, 7); "
                f"got {self.seasonal_order!r}"
            )
        p_, d_, q_, s = self.seasonal_order
        if s == 1 or (s == 0 and (p_ or d_ or q_)):
            raise InvalidParameterError(
                f"seasonal_order: the period s must be >= 2 when P, D or Q is set (or all four "
                f"0 for no season), got {self.seasonal_order!r}"
            )
        _check_hourly_season(
            self.freq, s, f"seasonal_order={tuple(self.seasonal_order)!r}", "(1, 0, 1, 24)"
        )
        _check_interval(self.interval)
        _check_int(self.min_history_days, "min_history_days", 1)
        _check_int(self.maxiter, "maxiter", 1)

    def _fit_one(self, grid: pl.DataFrame) -> Any:
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        y = grid.get_column("volume_m3").to_numpy().astype(np.float64)
        x = np.column_stack([np.ones(grid.height), _exog(grid)])
        model = SARIMAX(
            y,
            exog=x,
            order=tuple(self.order),
            seasonal_order=tuple(self.seasonal_order),
            trend="n",
        )
        return model.fit(disp=False, maxiter=self.maxiter)

    def _predict_one(
        self, result: Any, rows: pl.DataFrame, idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nobs = int(result.nobs)
        x_given = np.column_stack([np.ones(rows.height), _exog(rows)])
        beta = np.asarray(result.params[:3], dtype=np.float64)  # const, T, heating degrees
        mean = np.empty(rows.height)
        se = np.empty(rows.height)
        inside = (idx >= 0) & (idx < nobs)
        if inside.any():
            pred = result.get_prediction(start=0, end=nobs - 1)
            x_train = np.asarray(result.model.exog, dtype=np.float64)
            pm = np.asarray(pred.predicted_mean)
            ps = np.sqrt(np.asarray(pred.var_pred_mean))
            i = idx[inside]
            mean[inside] = pm[i] + (x_given[inside] - x_train[i]) @ beta
            se[inside] = ps[i]
        before = idx < 0
        if before.any():
            mean[before] = x_given[before] @ beta
            se[before] = math.sqrt(float(np.asarray(result.params)[-1]))  # sigma2
        after = idx >= nobs
        if after.any():
            steps = int(idx.max()) - nobs + 1
            # Exogenous values of every step up to the last requested one; steps that were
            # not requested are interpolated filler (they do not change the requested
            # rows: the forecast of the ARMA errors does not depend on the regressors).
            future = np.full((steps, 2), np.nan)
            future[idx[after] - nobs] = x_given[after, 1:]
            filled = pl.DataFrame(future, schema=["a", "b"], orient="row").select(
                pl.all().interpolate().forward_fill().backward_fill()
            )
            fx = np.column_stack([np.ones(steps), filled.to_numpy()])
            fc = result.get_forecast(steps=steps, exog=fx)
            fm = np.asarray(fc.predicted_mean)
            fs = np.sqrt(np.asarray(fc.var_pred_mean))
            j = idx[after] - nobs
            mean[after] = fm[j]
            se[after] = fs[j]
        z = _z(self.interval)
        return mean, mean - z * se, mean + z * se


class ExponentialSmoothingForecaster(_PerMeter):
    """Per-meter exponential smoothing (statsmodels ``ETSModel``, additive errors).

    **Ignores temperature**: ETS has no exogenous input, so it extrapolates level,
    trend and season from the consumption alone (a useful baseline, and fine for short
    horizons; it cannot react to a cold snap).  The temperature rows passed to
    :meth:`predict` only say which steps to predict and are copied to the output.

    Gaps in a meter's history are linearly interpolated (ETS needs a complete series).
    Intervals are the model's own (analytic for these additive models); backcast rows
    use the one-step-ahead prediction, rows before a meter's first step the first
    season's values.

    Parameters
    ----------
    seasonal_periods
        Season length in steps (7 = weekly at daily data; 24 = daily at hourly data,
        which is slow).  ``0`` for no season.
    trend
        ``None`` or ``"add"`` (damped additive trend).
    freq
        ``"day"`` (default) or ``"hour"``.
    interval
        Coverage of the prediction interval, in ``(0, 1)``.
    min_history_days
        Meters with fewer usable steps than this many days are skipped.

    Attributes
    ----------
    results_ : dict of str to statsmodels ETSResults
        The fitted model of each meter, in units of ``scales_[meter]`` m³.
    scales_ : dict of str to float
        Each meter's mean usable volume per step (m³): the unit the model is fitted in.
    warnings_ : dict of str to list of str
        Warnings statsmodels raised while fitting a meter.
    meters_, skipped_, cutoff_
        As in :class:`Forecaster`.

    Examples
    --------
    >>> ExponentialSmoothingForecaster().fit(daily, daily_temperature)  # doctest: +SKIP
    """

    alias: ClassVar[str] = "ets"

    def __init__(
        self,
        *,
        seasonal_periods: int = 7,
        trend: str | None = None,
        freq: Freq = "day",
        interval: float = 0.8,
        min_history_days: int = 28,
    ) -> None:
        self.seasonal_periods = seasonal_periods
        self.trend = trend
        self.freq = freq
        self.interval = interval
        self.min_history_days = min_history_days

    def _validate_params(self) -> None:
        sp = self.seasonal_periods
        if isinstance(sp, bool) or not isinstance(sp, int) or sp < 0 or sp == 1:
            raise InvalidParameterError(
                f"seasonal_periods: expected 0 (no season) or an integer >= 2, got {sp!r}"
            )
        if self.trend not in (None, "add"):
            raise InvalidParameterError(
                f"trend: expected None or 'add' (damped additive), got {self.trend!r}"
            )
        _check_hourly_season(self.freq, sp, f"seasonal_periods={sp!r}", "seasonal_periods=24")
        _check_interval(self.interval)
        _check_int(self.min_history_days, "min_history_days", 1)

    def _fit_one(self, grid: pl.DataFrame) -> Any:
        import pandas as pd
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        # A pandas Series with a RangeIndex: ETSResults.get_prediction needs an index.
        y = pd.Series(grid.get_column("volume_m3").interpolate().to_numpy().astype(np.float64))
        season = self.seasonal_periods if self.seasonal_periods >= 2 else None
        model = ETSModel(
            y,
            error="add",
            trend=self.trend,
            damped_trend=self.trend is not None,
            seasonal="add" if season else None,
            seasonal_periods=season,
        )
        return model.fit(disp=False)

    def _predict_one(
        self, result: Any, rows: pl.DataFrame, idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        period = self.seasonal_periods if self.seasonal_periods >= 2 else 1
        idx = np.where(idx < 0, idx % period, idx)
        end = max(int(idx.max()), 0)
        pred = result.get_prediction(start=0, end=end)
        frame = pred.summary_frame(alpha=1 - self.interval)
        mean = frame["mean"].to_numpy()[idx]
        lo = frame["pi_lower"].to_numpy()[idx]
        hi = frame["pi_upper"].to_numpy()[idx]
        return mean, lo, hi
