"""Baseline forecasters: seasonal naive and the same weekday-and-hour mean.

Both ignore temperature (they take it only for the grid of rows to predict and pass
it through to ``temperature_c``) and are the yardsticks every other model must beat
(MASE is scaled by the seasonal naive error).

Layout: each meter's history before the cutoff is laid out densely as a matrix
``(blocks, season)`` whose last block ends at the cutoff, so "one season ago" is the
previous block in the same column.  Everything is computed for all meters at once.

Prediction intervals are conformal: the half-width for a forecast ``k`` seasons ahead
is the per-meter 80 % empirical quantile of the in-sample absolute errors the same
rule made ``k`` seasons ahead (``|y - ŷ|``), so the interval is ``ŷ ± q``, clipped at 0.
"""

from __future__ import annotations

from typing import ClassVar, Final

import numpy as np
import polars as pl

from forecasting._base import STEP, Forecaster, Freq, encode
from forecasting.errors import InsufficientHistoryError, InvalidParameterError

#: Coverage of the conformal prediction interval (the ``*_80`` columns).
COVERAGE: Final = 0.8
#: Lags (in seasons) with their own interval calibration; further horizons reuse the
#: last one.  8 weeks covers month-ahead daily forecasts with the weekly season.
MAX_LAGS: Final = 8
#: Steps per week for each frequency (the default season, and the weekday-slot cycle).
WEEK: Final[dict[str, int]] = {"hour": 168, "day": 7}


class _DenseBaseline(Forecaster):
    """Shared fit/predict machinery of the baselines (not public)."""

    # Learned state common to both baselines.
    start_: int  # step index (since the epoch) of the first column of the matrices
    backcast_: np.ndarray  # (meters, blocks, season): prediction for each past step
    forecast_: np.ndarray  # (meters, season): prediction for the steps from the cutoff on
    halfwidth_: np.ndarray  # (meters, lags): interval half-width per lag in seasons
    mean_: np.ndarray  # (meters,): mean valid volume, used where a rule has no value

    freq: Freq

    def _season(self) -> int:
        return WEEK[self.freq]

    def _rule(self, y: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Return ``(forecast, preds)``: the prediction for the steps from the cutoff
        (``(meters, season)``) and, for lag ``k = 1..K``, the in-sample prediction of
        each block made ``k`` seasons earlier (``(meters, blocks, season)``, NaN where
        the rule has nothing to go on)."""
        raise NotImplementedError

    def _fit(self, consumption: pl.DataFrame, temperature: pl.DataFrame) -> None:
        del temperature  # the baselines do not use temperature
        season = self._season()
        usable = consumption.filter(
            pl.col("volume_m3").is_not_null()
            & pl.col("volume_m3").is_not_nan()
            & (pl.col("quality") == "valid")
        )
        considered = consumption.get_column("meter_id").unique().sort().to_list()
        names = usable.get_column("meter_id").unique().sort().to_list()
        unit = self.freq
        for m in sorted(set(considered) - set(names)):
            self.skipped_[m] = f"no valid volume before {self.cutoff_.isoformat()}"
        if not names:
            raise InsufficientHistoryError(
                f"{type(self).__name__}: expected valid volumes for at least one meter before "
                f"the cutoff {self.cutoff_.isoformat()}, found none; load more history"
            )
        code, step = encode(usable, names, freq=self.freq)
        cutoff_idx = int(self.cutoff_.timestamp()) // int(STEP[self.freq].total_seconds())
        first = int(step.min())
        blocks = max(1, -(-(cutoff_idx - first) // season))
        start = cutoff_idx - blocks * season
        flat = np.full((len(names), blocks * season), np.nan)
        flat[code, step - start] = usable.get_column("volume_m3").to_numpy()
        y = flat.reshape(len(names), blocks, season)
        valid = ~np.isnan(y)

        forecast, preds = self._rule(y, valid)
        # Conformal half-widths per lag: quantile of |y - ŷ| over the meter's blocks.
        widths = []
        for pred in preds:
            err = np.abs(y - pred).reshape(len(names), -1)
            q = _row_quantile(err, COVERAGE)
            widths.append(q)
        halfwidth = np.stack(widths, axis=1) if widths else np.full((len(names), 1), np.nan)
        # A lag without residuals reuses the nearest shorter lag's calibration.
        for k in range(1, halfwidth.shape[1]):
            halfwidth[:, k] = np.where(
                np.isnan(halfwidth[:, k]), halfwidth[:, k - 1], halfwidth[:, k]
            )
        ok = ~np.isnan(halfwidth[:, 0])
        counts = valid.reshape(len(names), -1).sum(axis=1)
        for i in np.flatnonzero(~ok):
            self.skipped_[names[i]] = (
                f"only {int(counts[i])} valid {unit}(s) before {self.cutoff_.isoformat()}, none "
                f"of them a season ({season} {unit}s) after another valid one; "
                f"{type(self).__name__} needs history spanning more than one season "
                f"(> {season} {unit}s) to calibrate its interval"
            )
        if not ok.any():
            raise InsufficientHistoryError(
                f"{type(self).__name__}: expected history spanning more than one season "
                f"({season} {unit}s) for at least one meter, but no meter has two valid values "
                f"a season apart before {self.cutoff_.isoformat()}; load more history"
            )
        keep = np.flatnonzero(ok)
        self.meters_ = tuple(names[i] for i in keep)
        self.start_ = start
        mean = np.nanmean(y.reshape(len(names), -1)[keep], axis=1)
        self.mean_ = mean
        self.backcast_ = preds[0][keep] if preds else np.full(y[keep].shape, np.nan)
        self.forecast_ = np.where(np.isnan(forecast[keep]), mean[:, None], forecast[keep])
        self.halfwidth_ = halfwidth[keep]

    def _predict(self, temperature: pl.DataFrame) -> pl.DataFrame:
        names = list(self.meters_)
        code, step = encode(temperature, names, freq=self.freq)
        season = self._season()
        blocks = self.backcast_.shape[1]
        offset = step - self.start_
        future = offset >= blocks * season
        inside = (offset >= 0) & ~future
        value = self.mean_[code].copy()
        lag = np.zeros(code.size, dtype=np.int64)  # lag index (seasons ahead - 1)
        b, p = np.divmod(np.where(inside, offset, 0), season)
        back = self.backcast_[code, b, p]
        value = np.where(inside & ~np.isnan(back), back, value)
        o = offset - blocks * season
        fp = np.where(future, o % season, 0)
        value = np.where(future, self.forecast_[code, fp], value)
        lag = np.where(future, np.minimum(o // season, self.halfwidth_.shape[1] - 1), lag)
        half = self.halfwidth_[code, lag]
        return temperature.with_columns(
            pl.Series("volume_m3", value),
            pl.Series("volume_m3_lo_80", value - half),
            pl.Series("volume_m3_hi_80", value + half),
        )


class SeasonalNaive(_DenseBaseline):
    """The value one season ago: same hour last week (hourly) or same weekday last week (daily).

    For a horizon longer than a season the last season before the cutoff is repeated.
    A missing (null, or not ``valid``) value one season ago is replaced by the value
    one more season back, and so on; a step with no value in any earlier season takes
    the meter's mean valid volume.  Backcasts (rows before the cutoff) are the value
    one season before the row; rows earlier than one season after the first history
    get the meter mean.  Temperature is not used (it is passed through).

    Parameters
    ----------
    season
        Season length in steps of ``freq``.  ``None``: one week (168 for hourly, 7
        for daily).
    freq
        ``"hour"`` (m³ per UTC hour) or ``"day"`` (m³ per UTC day).

    Attributes
    ----------
    cutoff_, meters_, skipped_
        As in :class:`Forecaster`.  A meter is skipped when it has no two valid values
        a season apart (no residual to calibrate the interval on).
    forecast_ : numpy.ndarray
        ``(meters, season)``: the repeated last season (m³ per step).
    halfwidth_ : numpy.ndarray
        ``(meters, lags)``: 80 % interval half-width for forecasts 1, 2, … seasons
        ahead (empirical quantile of ``|y - ŷ|`` in-sample at that lag; horizons
        beyond :data:`MAX_LAGS` seasons use the last column).
    backcast_, mean_, start_
        The in-sample predictions (``(meters, blocks, season)``), the mean valid volume
        per meter, and the step index since the epoch of the first column.

    Examples
    --------
    >>> model = SeasonalNaive().fit(consumption, temperature)  # doctest: +SKIP
    >>> model.predict(temperature, start=model.cutoff_, end=model.cutoff_ + day)  # doctest: +SKIP
    """

    alias: ClassVar[str] = "seasonal_naive"

    def __init__(self, *, season: int | None = None, freq: Freq = "hour") -> None:
        self.season = season
        self.freq = freq

    def _validate_params(self) -> None:
        s = self.season
        if s is not None and (isinstance(s, bool) or not isinstance(s, int) or s < 1):
            raise InvalidParameterError(
                f"season: expected None (one week) or an integer >= 1 (steps of "
                f"freq={self.freq!r}), got {s!r}"
            )

    def _season(self) -> int:
        return WEEK[self.freq] if self.season is None else self.season

    def _rule(self, y: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        blocks = y.shape[1]
        # Carry the last valid value of each column forward over the blocks.
        idx = np.where(valid, np.arange(blocks)[None, :, None], -1)
        idx = np.maximum.accumulate(idx, axis=1)
        filled = np.take_along_axis(y, np.maximum(idx, 0), axis=1)
        filled[idx < 0] = np.nan
        preds = []
        for k in range(1, min(MAX_LAGS, blocks - 1) + 1):
            pred = np.full(y.shape, np.nan)
            pred[:, k:, :] = filled[:, :-k, :]
            preds.append(pred)
        return filled[:, -1, :], preds


class WeekdayHourMean(_DenseBaseline):
    """Mean of the same weekday-and-hour (weekday, for daily) over the last weeks.

    The forecast of a step is the mean of the last ``weeks`` valid values of the same
    UTC weekday and hour before the cutoff (missing weeks are passed over, so the mean
    always has ``weeks`` values when the history has them); a slot that never had a
    valid value takes the meter's mean.  Backcasts use the ``weeks`` valid values
    before the row.  Temperature is not used (it is passed through).

    Parameters
    ----------
    weeks
        How many past values of the same slot to average (integer >= 1).
    freq
        ``"hour"`` (168 slots: weekday x hour of the UTC day) or ``"day"`` (7 slots).

    Attributes
    ----------
    cutoff_, meters_, skipped_
        As in :class:`Forecaster`; a meter is skipped when it has no slot with a valid
        value after an earlier valid one of the same slot.
    forecast_ : numpy.ndarray
        ``(meters, slots)``: the forecast of each slot, ordered from the cutoff on.
    halfwidth_ : numpy.ndarray
        ``(meters, lags)``: 80 % half-width for forecasts 1, 2, … weeks ahead.
    backcast_, mean_, start_
        As for :class:`SeasonalNaive`.

    Examples
    --------
    >>> model = WeekdayHourMean(weeks=4).fit(consumption, temperature)  # doctest: +SKIP
    """

    alias: ClassVar[str] = "weekday_hour_mean"

    def __init__(self, *, weeks: int = 4, freq: Freq = "hour") -> None:
        self.weeks = weeks
        self.freq = freq

    def _validate_params(self) -> None:
        w = self.weeks
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise InvalidParameterError(f"weeks: expected an integer >= 1, got {w!r}")

    def _rule(self, y: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        n, blocks, season = y.shape
        w = self.weeks
        # Per column (meter, slot): mean of the last w valid values strictly before each
        # block, from a cumulative sum over the valid values laid end to end.
        vt = np.transpose(valid, (0, 2, 1))  # (meters, slots, blocks)
        yt = np.transpose(y, (0, 2, 1))
        gc = np.concatenate([[0.0], np.cumsum(yt[vt])])
        per_col = vt.sum(axis=2).reshape(-1)
        off = (np.concatenate([[0], np.cumsum(per_col)[:-1]])).reshape(n, season, 1)
        before = np.cumsum(vt, axis=2) - vt  # valid values before each block
        # One more "virtual" block at the cutoff, for the forecast.
        before = np.concatenate([before, vt.sum(axis=2, keepdims=True)], axis=2)
        take = np.minimum(before, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (gc[off + before] - gc[off + before - take]) / take
        mean = np.transpose(mean, (0, 2, 1))  # (meters, blocks + 1, slots)
        preds = []
        for k in range(1, min(MAX_LAGS, blocks - 1) + 1):
            pred = np.full(y.shape, np.nan)
            pred[:, k - 1 :, :] = mean[:, : blocks - k + 1, :]
            preds.append(pred)
        return mean[:, -1, :], preds


def _row_quantile(values: np.ndarray, q: float) -> np.ndarray:
    """Quantile (linear interpolation) of each row, ignoring NaN; NaN for empty rows.

    ``np.nanquantile`` over an axis loops in Python per row; sorting once (NaN sorts
    last) and interpolating between order statistics is the same and vectorised.
    """
    ordered = np.sort(values, axis=1)
    count = (~np.isnan(values)).sum(axis=1)
    pos = q * np.maximum(count - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
    a = np.take_along_axis(ordered, lo[:, None], axis=1)[:, 0]
    b = np.take_along_axis(ordered, hi[:, None], axis=1)[:, 0]
    out = a + (pos - lo) * (b - a)
    return np.where(count > 0, out, np.nan)
