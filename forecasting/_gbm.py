"""One gradient-boosting model across all metering points (scikit-learn).

Instead of one model per meter, :class:`GlobalGradientBoosting` fits a single
:class:`~sklearn.ensemble.HistGradientBoostingRegressor` on the rows of every meter.
The target is each meter's consumption divided by its mean (a per-meter level, i.e. a
target encoding of the meter), so meters of very different size share one model; the
prediction is multiplied back by the meter's mean.

Features of a row (meter *m*, UTC time *t*):

* outdoor temperature ``T``, its trailing 24 h and 72 h means (building inertia) and
  the heating degrees ``max(0, 15.5 °C - T_24h)``;
* calendar: hour of day, weekday, day of year (sine/cosine) in ``time_zone``;
* meter descriptors: ``log`` of the meter's mean and its heating share (the slope of
  the normalised consumption on heating degrees), which stand in for the consumer
  category;
* lagged normalised consumption ``y[t - L] / mean`` for every ``L`` in ``lags`` (hours).

**Lag rule (no leakage).**  A lag ``L`` is usable for a row at ``t`` only if
``t - L h < cutoff``, i.e. the lagged value was known at the cutoff.  So a model with
``lags=(24, 168)`` forecasts at most 24 h past the cutoff (the smallest lag); asking
for later rows raises :class:`~forecasting.errors.InvalidInputError` rather than
predicting recursively (recursion compounds errors that the conformal interval is not
calibrated for).  For day-ahead at 24–48 h use ``lags=(48, 168)``; for month-ahead
daily forecasts use lags of at least the horizon, or ``lags=()`` (temperature and
calendar only, any horizon).

**Intervals** are conformal: a first model is fitted on the sampled rows of 4 in 5 days,
its relative errors ``(y - ŷ) / (ŷ + 0.1)`` (normalised units) on the held-out days give
the 10 % and 90 % quantiles per meter (pooled over all meters for meters with fewer than
:data:`MIN_CALIBRATION_ROWS` held-out rows), and the final model is refitted on all
sampled rows.
"""

from __future__ import annotations

import copy
import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

import numpy as np
import polars as pl

from forecasting._base import METER_TEMPERATURE, Forecaster, Freq, _check_frame
from forecasting.errors import InsufficientHistoryError, InvalidInputError, InvalidParameterError
from warehouse import CONSUMPTION

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingRegressor

#: Balance-point temperature (°C) of the heating-degree feature.
HEATING_BASE_C: Final = 15.5
#: Trailing windows (hours) of the smoothed temperature features.
SMOOTHING_HOURS: Final = (24, 72)
#: Relative errors are taken against ``prediction + FLOOR`` (normalised units, i.e. 10 %
#: of the meter's mean) so they do not explode when the prediction is near zero.
FLOOR: Final = 0.1
#: Meters with fewer held-out calibration rows use the pooled quantiles of all meters.
MIN_CALIBRATION_ROWS: Final = 50
#: One day in five is held out for the conformal calibration.
N_FOLDS: Final = 5
#: Cap of the calibration rows (a sample of the held-out days), to bound its cost.
MAX_CALIBRATION_ROWS: Final = 500_000
#: Feature names, in column order.
_STATIC_FEATURES: Final = (
    "temperature_c",
    "temperature_24h_c",
    "temperature_72h_c",
    "heating_degrees",
    "hour",
    "weekday",
    "doy_sin",
    "doy_cos",
    "log_mean_m3",
    "heating_share",
)
_KEY_SHIFT: Final = 1 << 34
_KEY_OFFSET: Final = 1 << 33


class GlobalGradientBoosting(Forecaster):
    """A single histogram gradient-boosting model for all metering points.

    Parameters
    ----------
    max_iter
        Boosting iterations (trees) of the final model; early stopping on a 10 %
        validation split may stop earlier when more than 10,000 rows are sampled.
    learning_rate
        Shrinkage of each tree, in ``(0, 1]``.
    lags
        Lags of the consumption features, in **hours** (at ``freq="day"`` multiples of
        24).  A row at ``t`` may only be predicted if ``t - min(lags) h < cutoff``: the
        forecast horizon is at most the smallest lag (see the module docstring).  ``()``
        fits a lag-free model that forecasts any horizon.
    freq
        ``"hour"`` (m³ per UTC hour) or ``"day"`` (m³ per UTC day, daily mean °C).
    random_state
        Seed of the row sample, the calibration sample and the boosting's validation
        split; the fit is deterministic for a given seed.
    max_train_rows
        At most this many (meter, step) rows, sampled uniformly, train the model, so the
        fit cost is bounded however many meters there are (100,000 meters x 1 year
        hourly is 876 M rows).  Lag and temperature features still use every row.
    interval
        Coverage of the conformal prediction interval in ``(0, 1)``; the ``forecasts``
        columns are named for the default 0.8.
    min_history_days
        Meters with fewer days of usable history (valid volume with a temperature) are
        skipped (see ``skipped_``).
    time_zone
        IANA zone of the calendar features (hour of day, weekday, day of year).
    n_jobs
        OpenMP threads of the boosting (fit and predict), set with ``threadpoolctl``
        for the duration of the call only.  The default 1 is deliberate: on a 2-core
        machine that other processes keep busy, 2 OpenMP threads made a fit 14x
        *slower* (65 s instead of 4.7 s for 30,000 rows) because its barriers spin.

    Attributes
    ----------
    cutoff_ : datetime.datetime
        End of the fitted history (UTC).
    meters_ : tuple of str
        Fitted metering points.
    skipped_ : dict of str to str
        Metering points not fitted, with the reason (too little history, all zeros).
    model_ : sklearn.ensemble.HistGradientBoostingRegressor
        The fitted model.  Its target is the meter's consumption divided by its mean,
        minus the meter's linear heating-degree line ``intercept + heating_share *
        heating_degrees`` (so forecasts extrapolate linearly below the coldest history).
    coef_ : polars.DataFrame
        Per meter: ``mean_m3`` (mean usable volume per step), ``heating_share`` and
        ``intercept`` (the normalised heating-degree line),
        ``rows`` (usable rows), ``q_lo`` / ``q_hi`` (relative error quantiles of the
        interval) and ``calibration_rows``.
    feature_names_ : tuple of str
        The model's features, in column order.
    train_rows_ : int
        Rows the final model was trained on (after sampling).

    Examples
    --------
    >>> model = GlobalGradientBoosting(lags=(24, 168)).fit(consumption, temperature)  # doctest: +SKIP
    >>> model.predict(temperature_next_day)  # doctest: +SKIP
    """

    alias: ClassVar[str] = "global_gbm"

    def __init__(
        self,
        *,
        max_iter: int = 300,
        learning_rate: float = 0.05,
        lags: tuple[int, ...] = (24, 168),
        freq: Freq = "hour",
        random_state: int = 0,
        max_train_rows: int = 2_000_000,
        interval: float = 0.8,
        min_history_days: int = 14,
        time_zone: str = "UTC",
        n_jobs: int = 1,
    ) -> None:
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.lags = lags
        self.freq = freq
        self.random_state = random_state
        self.max_train_rows = max_train_rows
        self.interval = interval
        self.min_history_days = min_history_days
        self.time_zone = time_zone
        self.n_jobs = n_jobs

    # --- parameters ---------------------------------------------------------------------
    def _validate_params(self) -> None:
        for name, low in (
            ("max_iter", 1),
            ("max_train_rows", 1000),
            ("min_history_days", 1),
            ("n_jobs", 1),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InvalidParameterError(f"{name}: expected an integer >= {low}, got {v!r}")
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr <= 1:
            raise InvalidParameterError(
                f"learning_rate: expected a number in (0, 1] such as 0.05, got {lr!r}"
            )
        lags = self.lags
        if (
            not isinstance(lags, tuple | list)
            or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in lags)
            or len(set(lags)) != len(lags)
        ):
            raise InvalidParameterError(
                f"lags: expected a tuple of distinct positive integers (hours), e.g. (24, 168), "
                f"or () for no lag features; got {lags!r}"
            )
        if self.freq == "day" and any(x % 24 for x in lags):
            raise InvalidParameterError(
                f"lags: at freq='day' the lags (in hours) must be multiples of 24, got {lags!r}; "
                f"e.g. lags=(24, 168) for the day before and the same weekday a week before"
            )
        iv = self.interval
        if isinstance(iv, bool) or not isinstance(iv, int | float) or not 0 < iv < 1:
            raise InvalidParameterError(
                f"interval: expected a coverage strictly between 0 and 1 (e.g. 0.8), got {iv!r}"
            )
        rs = self.random_state
        if isinstance(rs, bool) or not isinstance(rs, int):
            raise InvalidParameterError(f"random_state: expected an integer seed, got {rs!r}")
        try:
            zoneinfo.ZoneInfo(self.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
            raise InvalidParameterError(
                f"time_zone: expected an IANA zone name such as 'Europe/London', "
                f"got {self.time_zone!r}"
            ) from None

    # --- fit ----------------------------------------------------------------------------
    def _fit(self, consumption: pl.DataFrame, temperature: pl.DataFrame) -> None:
        # Import scikit-learn first: threadpoolctl limits only the libraries loaded.
        import sklearn.ensemble  # noqa: F401
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.n_jobs, user_api="openmp"):
            self._fit_all(consumption, temperature)

    def _prepare(self, consumption: pl.DataFrame, temperature: pl.DataFrame) -> _Prepared:
        """Per-meter level, heating line and key arrays of a history (no trees involved)."""
        step_h = 24 if self.freq == "day" else 1
        temperature = temperature.filter(
            pl.col("temperature_c").is_not_null() & pl.col("temperature_c").is_not_nan()
        )
        usable = consumption.filter(
            pl.col("volume_m3").is_not_null()
            & pl.col("volume_m3").is_not_nan()
            & (pl.col("quality") == "valid")
        )
        names = consumption.get_column("meter_id").unique().sort().to_list()
        temperature = temperature.filter(pl.col("meter_id").is_in(names))
        t_keys, t_values = _keys_values(temperature, names, "temperature_c")
        smooth = {w: _trailing_mean(t_keys, t_values, w) for w in SMOOTHING_HOURS}

        keys, y = _keys_values(usable, names, "volume_m3")
        # Only rows with a temperature are learned from.
        t_pos, t_hit = _lookup(t_keys, keys)
        keys, y, t_pos = keys[t_hit], y[t_hit], t_pos[t_hit]
        code = keys // _KEY_SHIFT
        n_names = len(names)
        rows = np.bincount(code, minlength=n_names)
        total = np.bincount(code, weights=y, minlength=n_names)
        mean = np.divide(total, rows, out=np.zeros(n_names), where=rows > 0)
        need = self.min_history_days * 24 // step_h
        ok = np.zeros(n_names, dtype=bool)
        skipped: dict[str, str] = {}
        for i, name in enumerate(names):
            if rows[i] < need:
                skipped[name] = (
                    f"only {int(rows[i])} usable {self.freq}(s) (valid volume "
                    f"with a temperature) before {self.cutoff_.isoformat()}, needs "
                    f"min_history_days={self.min_history_days}"
                )
            elif not mean[i] > 0:
                skipped[name] = (
                    "every usable volume is 0: nothing to learn (a meter that does not consume, "
                    "or zeros that stand for missing data — check the meter)"
                )
            else:
                ok[i] = True
        if not ok.any():
            raise InsufficientHistoryError(
                f"{type(self).__name__}: no meter has enough usable history: expected at least "
                f"min_history_days={self.min_history_days} days of valid, non-zero volumes with "
                f"a temperature; the best of {n_names} meter(s) has {int(rows.max(initial=0))} "
                f"row(s). Load more history or lower min_history_days"
            )
        keep = ok[code]
        keys, y, t_pos, code = keys[keep], y[keep], t_pos[keep], code[keep]
        y_norm = y / mean[code]
        hdd = np.maximum(0.0, HEATING_BASE_C - smooth[24][t_pos])
        share, intercept = _heating_share(code, hdd, y_norm, n_names)
        return _Prepared(
            names,
            t_keys,
            t_values,
            smooth,
            keys,
            y_norm,
            t_pos,
            code,
            rows,
            mean,
            ok,
            share,
            intercept,
            skipped,
        )

    def _fit_all(self, consumption: pl.DataFrame, temperature: pl.DataFrame) -> None:
        prep = self._prepare(consumption, temperature)
        self.skipped_.update(prep.skipped)
        names, t_values, smooth = prep.names, prep.t_values, prep.smooth
        keys, y_norm, t_pos, code = prep.keys, prep.y_norm, prep.t_pos, prep.code
        mean, share, intercept = prep.mean, prep.share, prep.intercept
        n_names = len(names)
        hdd = np.maximum(0.0, HEATING_BASE_C - smooth[24][t_pos])
        # The trees learn the residual of a per-meter linear heating-degree line, so
        # the forecast extrapolates linearly to temperatures colder than the history
        # (trees alone flatten out there: a cold snap would be under-forecast).
        linear = intercept[code] + share[code] * hdd

        # Sample the training rows (bounded cost), then build features only for them.
        rng = np.random.default_rng(self.random_state)
        n = keys.size
        sample = (
            np.sort(rng.choice(n, size=self.max_train_rows, replace=False))
            if n > self.max_train_rows
            else np.arange(n)
        )
        hours = keys[sample] % _KEY_SHIFT - _KEY_OFFSET
        s_code = code[sample]
        x = self._features(
            t_values[t_pos[sample]],
            smooth[24][t_pos[sample]],
            smooth[72][t_pos[sample]],
            hours,
            np.log(mean[s_code]),
            share[s_code],
            [_lag_values(keys, y_norm, keys[sample], lag) for lag in self.lags],
        )
        target = y_norm[sample] - linear[sample]
        base_line = linear[sample]

        # Conformal calibration on held-out days.
        day = hours // 24
        held = (day * 7 + s_code * 3) % N_FOLDS == 2
        train_idx, cal_idx = np.flatnonzero(~held), np.flatnonzero(held)
        if cal_idx.size > MAX_CALIBRATION_ROWS:
            cal_idx = np.sort(rng.choice(cal_idx, size=MAX_CALIBRATION_ROWS, replace=False))
        lo_q, hi_q = (1 - self.interval) / 2, (1 + self.interval) / 2
        q_lo = np.full(n_names, np.nan)
        q_hi = np.full(n_names, np.nan)
        n_cal = np.zeros(n_names, dtype=np.int64)
        if cal_idx.size and train_idx.size:
            first = self._regressor(train_idx.size).fit(x[train_idx], target[train_idx])
            pred = np.maximum(first.predict(x[cal_idx]) + base_line[cal_idx], 0.0)
            z = (y_norm[sample][cal_idx] - pred) / (pred + FLOOR)
            c_code = s_code[cal_idx]
            n_cal = np.bincount(c_code, minlength=n_names)
            pooled = np.quantile(z, [lo_q, hi_q])
            per = (
                pl.DataFrame({"m": c_code, "z": z})
                .group_by("m")
                .agg(
                    pl.col("z").quantile(lo_q, interpolation="linear").alias("lo"),
                    pl.col("z").quantile(hi_q, interpolation="linear").alias("hi"),
                )
            )
            m_idx = per.get_column("m").to_numpy()
            q_lo[m_idx] = per.get_column("lo").to_numpy()
            q_hi[m_idx] = per.get_column("hi").to_numpy()
            few = n_cal < MIN_CALIBRATION_ROWS
            q_lo[few], q_hi[few] = pooled[0], pooled[1]
        else:  # too little data to hold any out: a wide, honest default
            q_lo[:], q_hi[:] = -0.5, 0.5

        self.model_ = self._regressor(target.size).fit(x, target)
        self.train_rows_ = int(target.size)
        self.feature_names_ = _STATIC_FEATURES + tuple(f"lag_{lag}h" for lag in self.lags)
        self.pooled_q_ = (float(np.nanmedian(q_lo)), float(np.nanmedian(q_hi)))
        self._set_state(prep, q_lo, q_hi, n_cal)

    def _set_state(
        self, prep: _Prepared, q_lo: np.ndarray, q_hi: np.ndarray, n_cal: np.ndarray
    ) -> None:
        """Keep what predict needs per fitted meter: level, heating line, interval
        quantiles, the last ``max(lags)`` hours of consumption and 71 h of temperature."""
        names, ok, keys, t_keys = prep.names, prep.ok, prep.keys, prep.t_keys
        n_names = len(names)
        fitted = np.flatnonzero(ok)
        self.meters_ = tuple(names[i] for i in fitted)
        self.coef_ = pl.DataFrame(
            {
                "meter_id": pl.Series(self.meters_, dtype=pl.String),
                "mean_m3": prep.mean[fitted],
                "heating_share": prep.share[fitted],
                "intercept": prep.intercept[fitted],
                "rows": prep.rows[fitted].astype(np.int64),
                "q_lo": q_lo[fitted],
                "q_hi": q_hi[fitted],
                "calibration_rows": n_cal[fitted].astype(np.int64),
            }
        )
        cut_h = int(self.cutoff_.timestamp()) // 3600
        hist_from = cut_h - max(self.lags, default=0)
        hist = (keys % _KEY_SHIFT - _KEY_OFFSET) >= hist_from
        remap = np.full(n_names, -1, dtype=np.int64)
        remap[fitted] = np.arange(fitted.size)
        h_keys = keys[hist]
        self._history_keys = remap[h_keys // _KEY_SHIFT] * _KEY_SHIFT + h_keys % _KEY_SHIFT
        self._history_values = prep.y_norm[hist]
        t_code = t_keys // _KEY_SHIFT
        tail = ((t_keys % _KEY_SHIFT - _KEY_OFFSET) > cut_h - max(SMOOTHING_HOURS)) & ok[t_code]
        self._tail_keys = remap[t_code[tail]] * _KEY_SHIFT + t_keys[tail] % _KEY_SHIFT
        self._tail_values = prep.t_values[tail]

    # --- extend -------------------------------------------------------------------------
    def extend(
        self,
        consumption: pl.DataFrame,
        temperature: pl.DataFrame,
        *,
        calibration_rows: int = 20_000,
        calibration_days: int = 28,
    ) -> GlobalGradientBoosting:
        """The fitted trees applied to other metering points, without refitting them.

        A global model does not need every meter's rows to learn the shape of gas use:
        fit it on a sample of meters, then ``extend`` it to the rest of the fleet chunk
        by chunk.  Per meter of ``consumption`` this computes what ``fit`` computes
        without the trees — its level (mean), its heating-degree line and the lag and
        temperature history ``predict`` needs — and calibrates its 80 % interval on
        the meter's own most recent ``calibration_days`` before the cutoff, which the
        trees never saw (up to ``calibration_rows`` rows per call, sampled; meters with
        fewer than :data:`MIN_CALIBRATION_ROWS` such rows take the quantiles pooled at
        the fit).  Recent days, not the whole year: a meter's errors in a warm month
        say little about the next heating-season day.

        Returns a new fitted model for exactly the meters of ``consumption`` (same
        cutoff, same trees); this model is unchanged.  Frames follow the contracts of
        :meth:`fit`; rows at or after the cutoff are ignored.
        """
        self._check_fitted()
        for name, v in (
            ("calibration_rows", calibration_rows),
            ("calibration_days", calibration_days),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidParameterError(f"{name}: expected an integer >= 1, got {v!r}")
        freq = self.freq
        consumption = _check_frame(consumption, CONSUMPTION, "consumption", freq=freq)
        temperature = _check_frame(temperature, METER_TEMPERATURE, "temperature", freq=freq)
        if consumption.height == 0:
            raise InvalidInputError(
                "consumption: expected history for at least one meter to extend the model to, "
                "got an empty frame"
            )
        cutoff = self.cutoff_
        new = copy.copy(self)
        new.skipped_ = {}
        import sklearn.ensemble  # noqa: F401
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.n_jobs, user_api="openmp"):
            prep = new._prepare(
                consumption.filter(pl.col("ts") < cutoff),
                temperature.filter(pl.col("ts") < cutoff),
            )
            new.skipped_.update(prep.skipped)
            n_names = len(prep.names)
            rng = np.random.default_rng(self.random_state)
            cut_h = int(cutoff.timestamp()) // 3600
            recent = np.flatnonzero(
                prep.keys % _KEY_SHIFT - _KEY_OFFSET >= cut_h - 24 * calibration_days
            )
            cal = (
                np.sort(rng.choice(recent, size=calibration_rows, replace=False))
                if recent.size > calibration_rows
                else recent
            )
            code = prep.code[cal]
            t_pos = prep.t_pos[cal]
            hours = prep.keys[cal] % _KEY_SHIFT - _KEY_OFFSET
            x = self._features(
                prep.t_values[t_pos],
                prep.smooth[24][t_pos],
                prep.smooth[72][t_pos],
                hours,
                np.log(prep.mean[code]),
                prep.share[code],
                [_lag_values(prep.keys, prep.y_norm, prep.keys[cal], lag) for lag in self.lags],
            )
            hdd = np.maximum(0.0, HEATING_BASE_C - prep.smooth[24][t_pos])
            line = prep.intercept[code] + prep.share[code] * hdd
            pred = np.maximum(self.model_.predict(x) + line, 0.0)
        z = (prep.y_norm[cal] - pred) / (pred + FLOOR)
        lo_q, hi_q = (1 - self.interval) / 2, (1 + self.interval) / 2
        n_cal = np.bincount(code, minlength=n_names)
        q_lo = np.full(n_names, self.pooled_q_[0])
        q_hi = np.full(n_names, self.pooled_q_[1])
        if z.size:
            per = (
                pl.DataFrame({"m": code, "z": z})
                .group_by("m")
                .agg(
                    pl.col("z").quantile(lo_q, interpolation="linear").alias("lo"),
                    pl.col("z").quantile(hi_q, interpolation="linear").alias("hi"),
                    pl.len().alias("n"),
                )
                .filter(pl.col("n") >= MIN_CALIBRATION_ROWS)
            )
            m_idx = per.get_column("m").to_numpy()
            q_lo[m_idx] = per.get_column("lo").to_numpy()
            q_hi[m_idx] = per.get_column("hi").to_numpy()
        new._set_state(prep, q_lo, q_hi, n_cal)
        return new

    def _regressor(self, n_rows: int) -> HistGradientBoostingRegressor:
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=63,
            min_samples_leaf=40,
            l2_regularization=1.0,
            early_stopping=n_rows > 10_000,
            validation_fraction=0.1,
            n_iter_no_change=20,
            random_state=self.random_state,
        )

    def _features(
        self,
        temp: np.ndarray,
        temp24: np.ndarray,
        temp72: np.ndarray,
        hours: np.ndarray,
        log_mean: np.ndarray,
        share: np.ndarray,
        lags: list[np.ndarray],
    ) -> np.ndarray:
        hod, weekday, doy = _calendar(hours, self.time_zone)
        angle = 2 * np.pi * doy / 365.25
        cols = [
            temp,
            temp24,
            temp72,
            np.maximum(0.0, HEATING_BASE_C - temp24),
            hod,
            weekday,
            np.sin(angle),
            np.cos(angle),
            log_mean,
            share,
            *lags,
        ]
        return np.column_stack([np.asarray(c, dtype=np.float64) for c in cols])

    # --- predict ------------------------------------------------------------------------
    def _predict(self, temperature: pl.DataFrame) -> pl.DataFrame:
        # Import scikit-learn first: threadpoolctl limits only the libraries loaded.
        import sklearn.ensemble  # noqa: F401
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.n_jobs, user_api="openmp"):
            return self._predict_all(temperature)

    def _predict_all(self, temperature: pl.DataFrame) -> pl.DataFrame:
        names = list(self.meters_)
        cut_h = int(self.cutoff_.timestamp()) // 3600
        keys, temp = _keys_values(temperature, names, "temperature_c")
        hours = keys % _KEY_SHIFT - _KEY_OFFSET
        if self.lags:
            horizon = min(self.lags)
            late = hours - horizon >= cut_h
            if late.any():
                last_ok = self.cutoff_ + (
                    horizon - (24 if self.freq == "day" else 1)
                ) * dt.timedelta(hours=1)
                worst = temperature.filter(pl.Series(late)).get_column("ts").max()
                assert isinstance(worst, dt.datetime)
                raise InvalidInputError(
                    f"{type(self).__name__}(lags={tuple(self.lags)}) forecasts at most "
                    f"{horizon} h past the cutoff {self.cutoff_.isoformat()} (the smallest lag: "
                    f"later rows would need consumption not known at the cutoff), so the last "
                    f"predictable step is {last_ok.isoformat()}, but {int(late.sum())} row(s) "
                    f"reach up to {worst.isoformat()}; shorten the horizon, refit with a later cutoff, or "
                    f"use lags of at least the horizon (lags=() for a lag-free model)"
                )
        # Smoothing windows reach into the stored history tail; a temperature given
        # here wins over the tail for the same hour.
        all_keys = np.concatenate([keys, self._tail_keys])
        all_values = np.concatenate([temp, self._tail_values])
        order = np.argsort(all_keys, kind="stable")
        first = np.ones(order.size, dtype=bool)
        first[1:] = all_keys[order[1:]] != all_keys[order[:-1]]
        order = order[first]
        s_keys, s_values = all_keys[order], all_values[order]
        pos, _ = _lookup(s_keys, keys)
        code = keys // _KEY_SHIFT
        coef = self.coef_
        mean = coef.get_column("mean_m3").to_numpy()[code]
        x = self._features(
            temp,
            _trailing_mean(s_keys, s_values, 24)[pos],
            _trailing_mean(s_keys, s_values, 72)[pos],
            hours,
            np.log(mean),
            coef.get_column("heating_share").to_numpy()[code],
            [_lag_values(self._history_keys, self._history_values, keys, lag) for lag in self.lags],
        )
        hdd = np.maximum(0.0, HEATING_BASE_C - x[:, 1])
        line = coef.get_column("intercept").to_numpy()[code] + x[:, 9] * hdd
        pred = np.maximum(self.model_.predict(x) + line, 0.0)
        spread = pred + FLOOR
        lo = pred + coef.get_column("q_lo").to_numpy()[code] * spread
        hi = pred + coef.get_column("q_hi").to_numpy()[code] * spread
        return temperature.with_columns(
            pl.Series("volume_m3", pred * mean),
            pl.Series("volume_m3_lo_80", lo * mean),
            pl.Series("volume_m3_hi_80", hi * mean),
        )


# --- helpers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    """A history reduced to arrays: meters ``names``; sorted temperature keys/values and
    their 24 h/72 h trailing means; usable consumption keys, normalised values, position
    of their temperature and meter code; per meter rows, mean, ``ok`` (fittable), heating
    share and intercept; reasons of the meters skipped."""

    names: list[str]
    t_keys: np.ndarray
    t_values: np.ndarray
    smooth: dict[int, np.ndarray]
    keys: np.ndarray
    y_norm: np.ndarray
    t_pos: np.ndarray
    code: np.ndarray
    rows: np.ndarray
    mean: np.ndarray
    ok: np.ndarray
    share: np.ndarray
    intercept: np.ndarray
    skipped: dict[str, str]


def _keys_values(frame: pl.DataFrame, names: list[str], column: str) -> tuple[Any, Any]:
    """Sorted int64 keys ``code * 2**34 + (hours since epoch + 2**33)`` and the column's
    values; ``code`` is the meter's index in the sorted list ``names`` (rows of other
    meters must have been filtered out)."""
    enc = frame.select(
        pl.col("meter_id").cast(pl.Enum(names)).to_physical().cast(pl.Int64).alias("code"),
        (pl.col("ts").dt.epoch("s") // 3600).alias("hour"),
        pl.col(column).cast(pl.Float64),
    )
    code = enc.get_column("code").to_numpy()
    keys = np.asarray(code * _KEY_SHIFT + enc.get_column("hour").to_numpy() + _KEY_OFFSET)
    values = enc.get_column(column).to_numpy()
    if keys.size > 1 and not bool((np.diff(keys) > 0).all()):
        order = np.argsort(keys, kind="stable")
        keys, values = keys[order], values[order]
    return keys.astype(np.int64), values.astype(np.float64)


def _lookup(sorted_keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``wanted`` keys in ``sorted_keys`` and whether each was found."""
    if sorted_keys.size == 0:
        return np.zeros(wanted.size, dtype=np.int64), np.zeros(wanted.size, dtype=bool)
    if sorted_keys.size == wanted.size and np.array_equal(sorted_keys, wanted):
        return np.arange(wanted.size, dtype=np.int64), np.ones(wanted.size, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, wanted), sorted_keys.size - 1)
    return pos, sorted_keys[pos] == wanted


def _lag_values(keys: np.ndarray, values: np.ndarray, wanted: np.ndarray, lag: int) -> np.ndarray:
    """``values`` at ``wanted - lag`` hours of the same meter, NaN where absent."""
    pos, hit = _lookup(keys, wanted - lag)
    return np.where(hit, values[pos] if values.size else np.nan, np.nan)


def _trailing_mean(keys: np.ndarray, values: np.ndarray, window_h: int) -> np.ndarray:
    """Mean of the values of the same meter in the hours ``(t - window_h, t]`` (sorted keys)."""
    if keys.size == 0:
        return np.zeros(0)
    csum = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    last = np.arange(1, keys.size + 1)
    step = np.diff(keys)
    new_meter = step >= _KEY_SHIFT // 2
    if bool(((step == 1) | new_meter).all()):
        # Gap-free hours per meter (the usual case): the window starts w - 1 rows
        # back or at the meter's first row, no search needed.
        seg = np.zeros(keys.size, dtype=np.int64)
        seg[1:] = np.where(new_meter, np.arange(1, keys.size), 0)
        seg = np.maximum.accumulate(seg)
        first = np.maximum(last - window_h, seg)
    else:
        first = np.searchsorted(keys, keys - (window_h - 1), side="left")
    return np.asarray((csum[last] - csum[first]) / (last - first))


def _heating_share(
    code: np.ndarray, hdd: np.ndarray, y: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-meter least-squares slope (>= 0) and intercept of normalised consumption on
    heating degrees."""
    c = np.bincount(code, minlength=n).astype(np.float64)
    sx = np.bincount(code, weights=hdd, minlength=n)
    sy = np.bincount(code, weights=y, minlength=n)
    sxx = np.bincount(code, weights=hdd * hdd, minlength=n)
    sxy = np.bincount(code, weights=hdd * y, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = sxx - sx * sx / c
        slope = (sxy - sx * sy / c) / denom
    slope = np.where((c > 1) & (denom > 1e-9), np.maximum(slope, 0.0), 0.0)
    intercept = np.where(c > 0, (sy - slope * sx) / np.maximum(c, 1.0), 0.0)
    return slope, intercept


def _calendar(hours: np.ndarray, time_zone: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local hour of day, weekday (0 = Monday) and day of year of UTC hours since the
    epoch; computed once per distinct hour of the span and looked up."""
    if hours.size == 0:
        empty = np.zeros(0)
        return empty, empty, empty
    lo, hi = int(hours.min()), int(hours.max())
    span = (
        pl.Series("ts", np.arange(lo, hi + 1, dtype=np.int64) * 3_600_000_000)
        .cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC")
        .dt.convert_time_zone(time_zone)
    )
    idx = hours - lo
    hod = span.dt.hour().cast(pl.Float64).to_numpy()[idx]
    weekday = (span.dt.weekday() - 1).cast(pl.Float64).to_numpy()[idx]
    doy = span.dt.ordinal_day().cast(pl.Float64).to_numpy()[idx]
    return hod, weekday, doy
