"""Heating-degree regression: hourly gas use as a load profile plus a heating term.

For metering point *m* and UTC hour *t* the model is::

    volume_m3[m, t] = profile[m, day_type(t), hour(t)]
                      + slope[m] * max(0, base[m] - T_smooth[m, t])

where ``T_smooth`` is the outdoor temperature averaged over the trailing
``smoothing_hours`` (building inertia: a house answers the last day's weather, not the
last hour's), ``day_type`` is weekday/weekend and ``hour`` the hour of the day in
``time_zone``.  ``base`` is the balance-point temperature below which the building
heats; ``slope`` is m³/h per kelvin below it.

With ``freq="day"`` the model is fitted on daily rows (m³ per UTC day against the
daily mean temperature): the profile layer is then only weekday/weekend (of the UTC
day), and the smoothing window is ``max(1, round(smoothing_hours / 24))`` days.

Everything is fitted for all meters at once with numpy group sums (``np.bincount``):
the profile is a set of group intercepts, so the slope follows from the within-group
(Frisch–Waugh–Lovell) sums, and the grid search over ``base`` reuses cumulative sums
over the temperature-sorted rows, so the whole search costs about one pass over the data.
"""

from __future__ import annotations

import math
import zoneinfo
from typing import Any, ClassVar, Final

import numpy as np
import polars as pl

from forecasting._base import (
    STEP,
    Forecaster,
    Freq,
    encode,
    group_quantiles,
    is_checked,
    meters_in,
    row_keys,
    same_rows,
    usable_rows,
    valid_temperature,
)
from forecasting.errors import InsufficientHistoryError, InvalidParameterError

#: Candidate balance-point temperatures (°C) of the grid search.
BASE_GRID_C: Final = np.round(np.arange(5.0, 22.0 + 1e-9, 0.5), 2)
#: When the history cannot tell base temperatures apart (it never got warmer than the
#: candidates, or the meter does not heat), the candidate nearest this one is taken.
BASE_PRIOR_C: Final = 15.5
#: Day-level folds for the out-of-fold residuals the intervals are calibrated on.
N_FOLDS: Final = 5
#: Profile cells: 24 hours x (weekday, weekend); daily models use (weekday, weekend).
N_GROUPS: Final = 48
N_GROUPS_DAY: Final = 2
#: The interval half-widths scale with ``predicted + SCALE_FLOOR * mean volume`` so
#: they widen with the level without collapsing to zero at night.
SCALE_FLOOR: Final = 0.1


class HeatingDegreeRegression(Forecaster):
    """Per-meter heating-degree regression with an hour-of-day profile and intervals.

    Parameters
    ----------
    base_temperature_c
        Balance-point temperature in °C.  ``None`` learns it per meter by a grid search
        over 5–22 °C in 0.5 K steps (piecewise-linear fit with the lowest squared error).
    smoothing_hours
        Trailing window (hours) of the moving average of outdoor temperature that drives
        the heating term; models the building's thermal inertia.  1 = no smoothing.
    interval
        Coverage of the prediction interval in ``(0, 1)``.  The ``forecasts`` table's
        columns are named for the default 0.8.
    min_history_hours
        Meters with fewer usable hours (``valid`` volume and a temperature) before the
        cutoff are skipped (see ``skipped_``); the others are fitted.
    time_zone
        IANA zone in which the hour of day and weekday/weekend of the profile are taken
        (input and output stay UTC).  Daily models take the weekday of the UTC day.
    freq
        ``"hour"`` (hourly rows, hour-of-day profile) or ``"day"`` (daily rows: m³ per
        UTC day against the daily mean temperature, weekday/weekend levels only).

    Attributes
    ----------
    cutoff_ : datetime.datetime
        End of the fitted history (UTC).
    meters_ : tuple of str
        Fitted metering points.
    skipped_ : dict of str to str
        Metering points not fitted, with the reason.
    coef_ : polars.DataFrame
        Per meter: ``base_temperature_c``, ``slope_m3_per_k`` (m³/h per kelvin below
        base), ``hours`` used, ``rmse_m3``, and the interval calibration ``scale_m3``,
        ``q_lo``, ``q_hi`` (quantiles of out-of-fold residuals divided by
        ``prediction + scale_m3``).
    profile_ : polars.DataFrame
        Per meter, ``day_type`` (weekday/weekend) and local ``hour``: the consumption in
        m³/h at zero heating degrees.
    temperature_tail_ : polars.DataFrame
        The last ``smoothing_hours - 1`` hours of temperature before the cutoff, so a
        forecast's smoothing window can reach into the history.

    Examples
    --------
    >>> model = HeatingDegreeRegression().fit(consumption, temperature)  # doctest: +SKIP
    >>> model.predict(horizon_temperature)  # doctest: +SKIP
    """

    alias: ClassVar[str] = "hdd_regression"

    def __init__(
        self,
        *,
        base_temperature_c: float | None = None,
        smoothing_hours: int = 24,
        interval: float = 0.8,
        min_history_hours: int = 7 * 24,
        time_zone: str = "UTC",
        freq: Freq = "hour",
    ) -> None:
        self.base_temperature_c = base_temperature_c
        self.smoothing_hours = smoothing_hours
        self.interval = interval
        self.min_history_hours = min_history_hours
        self.time_zone = time_zone
        self.freq = freq

    # --- parameters ---------------------------------------------------------------------
    def _validate_params(self) -> None:
        b = self.base_temperature_c
        if b is not None and (
            isinstance(b, bool)
            or not isinstance(b, int | float)
            or not math.isfinite(b)
            or not -30 <= b <= 35
        ):
            raise InvalidParameterError(
                f"base_temperature_c: expected None (learn it) or a temperature in °C "
                f"between -30 and 35, got {b!r}"
            )
        for name, low in (("smoothing_hours", 1), ("min_history_hours", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InvalidParameterError(
                    f"{name}: expected an integer >= {low} (hours), got {v!r}"
                )
        iv = self.interval
        if isinstance(iv, bool) or not isinstance(iv, int | float) or not 0 < iv < 1:
            raise InvalidParameterError(
                f"interval: expected a coverage strictly between 0 and 1 (e.g. 0.8), got {iv!r}"
            )
        try:
            zoneinfo.ZoneInfo(self.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
            raise InvalidParameterError(
                f"time_zone: expected an IANA zone name such as 'Europe/Moscow', got {self.time_zone!r}"
            ) from None

    # --- features -----------------------------------------------------------------------
    def _groups(self, hour: np.ndarray) -> np.ndarray:
        """Profile cell 0..47 of each UTC hour (hours since the epoch): the local hour of
        day in :attr:`time_zone`, plus 24 on Saturday and Sunday.

        Computed once per distinct hour of the span and looked up, not per row.
        """
        if hour.size == 0:
            return np.zeros(0, dtype=np.int64)
        if self.freq == "day":  # days since the epoch; 1970-01-01 was a Thursday
            return np.asarray((hour + 3) % 7 >= 5, dtype=np.int64)
        lo, hi = int(hour.min()), int(hour.max())
        span = pl.Series("ts", np.arange(lo, hi + 1, dtype=np.int64) * 3_600_000_000)
        local = (
            span.cast(pl.Datetime("us"))
            .dt.replace_time_zone("UTC")
            .dt.convert_time_zone(self.time_zone)
        )
        table = (
            local.dt.hour().cast(pl.Int64) + 24 * (local.dt.weekday() >= 6).cast(pl.Int64)
        ).to_numpy()
        return np.asarray(table[hour - lo], dtype=np.int64)

    def _window(self) -> int:
        """Smoothing window in steps of :attr:`freq`."""
        if self.freq == "day":
            return max(1, round(self.smoothing_hours / 24))
        return self.smoothing_hours

    def _min_steps(self) -> int:
        """Usable rows a meter needs, in steps of :attr:`freq`."""
        if self.freq == "day":
            return max(1, math.ceil(self.min_history_hours / 24))
        return self.min_history_hours

    def _n_groups(self) -> int:
        return N_GROUPS_DAY if self.freq == "day" else N_GROUPS

    # --- fit ----------------------------------------------------------------------------
    def _fit(self, consumption: pl.DataFrame, temperature: pl.DataFrame) -> None:
        # The base class hands frames sorted by (meter_id, ts): meters and codes come
        # from runs of equal meter_id, and rows are filtered as numpy masks, not frames.
        temperature = valid_temperature(temperature)
        window = self._window()
        tail_from = self.cutoff_ - (window - 1) * STEP[self.freq]
        self.temperature_tail_ = temperature.filter(pl.col("ts") >= tail_from)
        in_consumption = meters_in(consumption)
        names = pl.concat([in_consumption, meters_in(temperature)]).unique().sort().to_list()

        # Smoothed temperature of every (meter, hour), aligned to the usable consumption rows.
        t_code, t_hour = encode(temperature, names, freq=self.freq)
        t_rows = row_keys(t_code, t_hour)
        t_key, t_smooth = _smooth(
            t_rows,
            temperature.get_column("temperature_c").to_numpy(),
            window,
            presorted=is_checked(temperature),  # sorted rows: sorted keys
        )
        # The usual case: the frames have the same (sorted) rows, so the codes are shared.
        same = same_rows(consumption, temperature)
        c_code, c_hour = (t_code, t_hour) if same else encode(consumption, names, freq=self.freq)
        y = consumption.get_column("volume_m3").to_numpy()
        usable = usable_rows(consumption)
        if usable is not None:
            c_code, c_hour, y = c_code[usable], c_hour[usable], y[usable]
        c_key = t_key if same and usable is None and t_key is t_rows else row_keys(c_code, c_hour)
        if c_key is t_key or np.array_equal(c_key, t_key):
            ts = t_smooth
        else:
            pos = np.minimum(np.searchsorted(t_key, c_key), max(t_key.size - 1, 0))
            hit = t_key[pos] == c_key if t_key.size else np.zeros(c_code.size, dtype=bool)
            c_code, c_hour, y, ts = c_code[hit], c_hour[hit], y[hit], t_smooth[pos[hit]]

        hours_per = _counts(c_code, len(names))
        has_temp = _counts(t_code, len(names)) > 0
        considered = np.zeros(len(names), dtype=bool)
        considered[np.searchsorted(names, in_consumption.to_list())] = True
        need = self._min_steps()
        unit = self.freq
        for i in np.flatnonzero(considered & (hours_per < need)):
            if not has_temp[i]:
                self.skipped_[names[i]] = (
                    "no outdoor temperature before the cutoff; link its branch to a weather "
                    "station with data"
                )
            else:
                self.skipped_[names[i]] = (
                    f"only {hours_per[i]} usable {unit}(s) (valid volume with a temperature) "
                    f"before {self.cutoff_.isoformat()}, needs {need} "
                    f"(min_history_hours={self.min_history_hours})"
                )
        fitted = np.flatnonzero(considered & (hours_per >= need))
        if fitted.size == 0:
            best = int(hours_per[considered].max()) if considered.any() else 0
            raise InsufficientHistoryError(
                f"{type(self).__name__}: expected at least {need} usable {unit}s "
                f"(min_history_hours={self.min_history_hours}; valid volume with a temperature) per "
                f"meter, but the best of {int(considered.sum())} meter(s) has {best}; load more "
                f"history, check that the weather table covers it, or lower min_history_hours"
            )
        self.meters_ = tuple(names[i] for i in fitted)
        n_meters = fitted.size
        remap = np.full(len(names), -1, dtype=np.int64)
        remap[fitted] = np.arange(n_meters)
        m = remap[c_code] if fitted.size < len(names) else c_code
        if fitted.size < len(names):
            keep = m >= 0
            m, y, ts, c_hour = m[keep], y[keep], ts[keep], c_hour[keep]
        # Profile cell and fold of each row, looked up per distinct hour of the span.
        ng = self._n_groups()
        size = n_meters * ng
        first = int(c_hour.min())
        span = np.arange(first, int(c_hour.max()) + 1)
        at = c_hour - first
        key = m * ng
        key += self._groups(span)[at]
        fold_of = (span // (24 if self.freq == "hour" else 1)) % N_FOLDS
        fold_key = (fold_of * size)[at]  # (fold, meter, cell)
        fold_key += key

        if self.base_temperature_c is None:
            base, n, sy = _grid_search_base(key, y, ts, n_meters, ng)
        else:
            base = np.full(n_meters, float(self.base_temperature_c))
            n = np.bincount(key, minlength=size).astype(np.float64)
            sy = np.bincount(key, weights=y, minlength=size)
        x = base[m]
        x -= ts
        np.maximum(0.0, x, out=x)
        # Per (fold, cell) sums; the all-rows sums are their totals over the folds.
        fold_stats = _group_stats(fold_key, x, y, N_FOLDS * size)
        stats = {k: v.reshape(N_FOLDS, size).sum(axis=0) for k, v in fold_stats.items()}
        stats["n"], stats["sy"] = n, sy
        slope, profile = _solve(stats, n_meters, ng)
        hours = hours_per[fitted]
        resid = slope[m]
        resid *= x
        resid += profile[key]
        np.subtract(y, resid, out=resid)
        resid *= resid
        rmse = np.sqrt(np.bincount(m, weights=resid, minlength=n_meters) / hours)
        del resid

        # Out-of-fold predictions (day-level folds): leave each fold out of the cell sums,
        # so the interval is calibrated on errors of hours the fit did not see.
        slopes = np.empty((N_FOLDS, n_meters))
        profiles = np.empty((N_FOLDS, size))
        for f in range(N_FOLDS):
            rest = {k: v - fold_stats[k][f * size : (f + 1) * size] for k, v in stats.items()}
            slopes[f], profiles[f] = _solve(rest, n_meters, ng)
        oof = profiles.reshape(-1)[fold_key]
        oof += np.repeat(slopes, ng, axis=1).reshape(-1)[fold_key] * x
        np.maximum(oof, 0.0, out=oof)
        scale = SCALE_FLOOR * np.bincount(m, weights=np.abs(y), minlength=n_meters) / hours + 1e-9
        z = y - oof
        oof += scale[m]
        z /= oof
        lo_q, hi_q = (1 - self.interval) / 2, (1 + self.interval) / 2
        q_lo, q_hi = group_quantiles(z, m, n_meters, (lo_q, hi_q))
        meter_ids = pl.Series("meter_id", self.meters_, dtype=pl.String)
        self.coef_ = pl.DataFrame(
            {
                "meter_id": meter_ids,
                "base_temperature_c": base,
                "slope_m3_per_k": slope,
                "hours": hours.astype(np.int64),
                "rmse_m3": rmse,
                "scale_m3": scale,
                "q_lo": q_lo,
                "q_hi": q_hi,
            }
        )
        cells = np.arange(ng)
        self.profile_ = pl.DataFrame(
            {
                "meter_id": np.repeat(meter_ids.to_numpy(), ng),
                "day_type": np.tile(np.where(cells >= ng // 2, "weekend", "weekday"), n_meters),
                "hour": np.tile(cells % (ng // 2) if ng > 2 else cells * 0, n_meters).astype(
                    np.int8
                ),
                "volume_m3": profile,
            }
        )

    # --- predict ------------------------------------------------------------------------
    def _predict(self, temperature: pl.DataFrame) -> pl.DataFrame:
        names = list(self.meters_)
        code, hour = encode(temperature, names, freq=self.freq)
        # The smoothing window of the first hours reaches back into the history (the
        # stored tail); a temperature given here wins over the tail for the same hour.
        tail = self.temperature_tail_.filter(pl.col("meter_id").is_in(names))
        tail_code, tail_hour = encode(tail, names, freq=self.freq)
        keys = np.concatenate([row_keys(code, hour), row_keys(tail_code, tail_hour)])
        values = np.concatenate(
            [
                temperature.get_column("temperature_c").to_numpy(),
                tail.get_column("temperature_c").to_numpy(),
            ]
        )
        order = np.argsort(keys, kind="stable")
        first = np.ones(order.size, dtype=bool)
        first[1:] = keys[order[1:]] != keys[order[:-1]]
        order = order[first]
        _, smooth_sorted = _smooth(keys[order], values[order], self._window(), presorted=True)
        mine = order < code.size
        t_smooth = np.empty(code.size)
        t_smooth[order[mine]] = smooth_sorted[mine]

        coef = self.coef_
        base = coef.get_column("base_temperature_c").to_numpy()[code]
        slope = coef.get_column("slope_m3_per_k").to_numpy()[code]
        scale = coef.get_column("scale_m3").to_numpy()[code]
        profile = (
            self.profile_.get_column("volume_m3").to_numpy().reshape(len(names), self._n_groups())
        )
        expected = np.maximum(
            profile[code, self._groups(hour)] + slope * np.maximum(0.0, base - t_smooth), 0.0
        )
        spread = expected + scale
        return temperature.with_columns(
            pl.Series("volume_m3", expected),
            pl.Series(
                "volume_m3_lo_80", expected + coef.get_column("q_lo").to_numpy()[code] * spread
            ),
            pl.Series(
                "volume_m3_hi_80", expected + coef.get_column("q_hi").to_numpy()[code] * spread
            ),
        )


def _smooth(
    keys: np.ndarray, values: np.ndarray, window: int, *, presorted: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Sort rows by key (unique per meter and hour) and return ``(keys, trailing mean)``.

    The mean covers the hours ``(t - window, t]`` of the same meter that are present
    (the meter code sits in the key's high bits, so a window never crosses meters).
    """
    n = keys.size
    if not presorted and n > 1 and bool((keys[1:] <= keys[:-1]).any()):
        order = np.argsort(keys, kind="stable")
        keys, values = keys[order], values[order]
    if window == 1:
        return keys, values.astype(np.float64, copy=True)
    csum = np.empty(n + 1)
    csum[0] = 0.0
    np.cumsum(values, dtype=np.float64, out=csum[1:])
    # Fast path for complete hourly runs: the window starts exactly window-1 rows back,
    # so its sum is a difference of prefix sums at a fixed offset.
    k = window - 1
    mean = np.empty(n)
    inexact = np.ones(n, dtype=bool)
    if n > k:
        np.subtract(csum[k + 1 :], csum[: n - k], out=mean[k:])
        np.not_equal(keys[: n - k] + k, keys[k:], out=inexact[k:])
    mean /= window
    # Elsewhere (a meter's first hours, gaps) the window starts at the first present
    # hour of the meter at or after t - window + 1.
    idx = np.flatnonzero(inexact)
    if idx.size:
        first = np.searchsorted(keys, keys[idx] - k, side="left")
        mean[idx] = (csum[idx + 1] - csum[first]) / (idx + 1 - first)
    return keys, mean


def _counts(codes: np.ndarray, n: int) -> np.ndarray:
    """``np.bincount(codes, minlength=n)``; by binary search when ``codes`` is sorted
    (rows of a frame sorted by meter), which skips a pass of scattered increments."""
    if codes.size > 1 and bool((codes[1:] < codes[:-1]).any()):
        return np.bincount(codes, minlength=n)
    return np.diff(np.searchsorted(codes, np.arange(n + 1)))


# --- batched least squares ------------------------------------------------------------------


def _group_stats(key: np.ndarray, x: np.ndarray, y: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Per-cell sums of 1, x, x², xy, y, y² (one ``bincount`` each)."""
    return {
        "n": np.bincount(key, minlength=size).astype(np.float64),
        "sx": np.bincount(key, weights=x, minlength=size),
        "sxx": np.bincount(key, weights=x * x, minlength=size),
        "sxy": np.bincount(key, weights=x * y, minlength=size),
        "sy": np.bincount(key, weights=y, minlength=size),
    }


def _within(
    stats: dict[str, Any], n_meters: int, n_groups: int = N_GROUPS
) -> tuple[np.ndarray, np.ndarray]:
    """Within-cell ``Σ(x-x̄)²`` and ``Σ(x-x̄)(y-ȳ)`` per meter."""
    n = stats["n"]
    inv = np.divide(1.0, n, out=np.zeros_like(n), where=n > 0)
    sx = stats["sx"]
    denom = (stats["sxx"] - sx * sx * inv).reshape(n_meters, n_groups).sum(axis=1)
    num = (stats["sxy"] - sx * stats["sy"] * inv).reshape(n_meters, n_groups).sum(axis=1)
    return denom, num


def _solve(
    stats: dict[str, np.ndarray], n_meters: int, n_groups: int = N_GROUPS
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope (clipped at 0: gas use does not fall as it gets colder) and
    per-cell intercepts; an empty cell takes the meter's mean intercept."""
    denom, num = _within(stats, n_meters, n_groups)
    ok = denom > 1e-9 * (1.0 + stats["sxx"].reshape(n_meters, n_groups).sum(axis=1))
    slope = np.where(ok, np.maximum(num, 0.0) / np.where(ok, denom, 1.0), 0.0)
    n = stats["n"]
    slope_cell = np.repeat(slope, n_groups)
    resid_sum = stats["sy"] - slope_cell * stats["sx"]
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = resid_sum / n
        meter_n = n.reshape(n_meters, n_groups).sum(axis=1)
        meter_mean = resid_sum.reshape(n_meters, n_groups).sum(axis=1) / meter_n
    profile = np.where(n > 0, profile, np.repeat(np.nan_to_num(meter_mean), n_groups))
    return slope, profile


#: Spacing of :data:`BASE_GRID_C`: a power of two, so scaling by its inverse is exact.
_GRID_STEP: Final = float(BASE_GRID_C[1] - BASE_GRID_C[0])
assert np.array_equal(BASE_GRID_C, BASE_GRID_C[0] + _GRID_STEP * np.arange(BASE_GRID_C.size))
assert math.frexp(_GRID_STEP)[0] == 0.5  # a power of two


def _grid_slot(ts: np.ndarray) -> np.ndarray:
    """``np.searchsorted(BASE_GRID_C, ts, side="right")`` (the first candidate strictly
    above each temperature; ``NaN`` sorts last), by arithmetic on the evenly spaced grid
    instead of a binary search per row.

    ``e = (ts - grid[0]) / spacing`` rounds only in the subtraction (the spacing is a
    power of two), and rounding is monotonic: it can land *on* a grid point but never
    cross one.  So ``floor(e) + 1`` is exact wherever ``e`` is not a whole number, and
    the few rows where it is are looked up exactly.
    """
    grid = BASE_GRID_C
    est = ts - float(grid[0])
    est *= 1.0 / _GRID_STEP
    low = np.floor(est)
    edge = np.flatnonzero(est == low)  # on (or rounded onto) a grid point, or ±inf
    np.fmin(low, grid.size - 1, out=low)  # NaN becomes the top: it sorts last
    np.fmax(low, -1.0, out=low)
    slot = low.astype(np.int64)
    slot += 1
    if edge.size:
        slot[edge] = np.searchsorted(grid, ts[edge], side="right")
    return slot


def _grid_search_base(
    key: np.ndarray,
    y: np.ndarray,
    ts: np.ndarray,
    n_meters: int,
    n_groups: int = N_GROUPS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balance point per meter minimising the squared error over :data:`BASE_GRID_C`;
    also the per-cell row counts and sums of ``y`` (``key`` = meter * n_groups + cell).

    A row adds to the heating term of candidate ``b`` only when ``ts < b``, and then
    ``x = b - ts``; so the sums for each candidate are cumulative sums of per-cell sums
    of ``1, ts, ts², y, ts·y`` over the rows whose temperature lies below it.  One
    ``bincount`` per sum over (grid interval, cell) and a cumulative sum over the grid
    intervals make the whole search one pass over the rows.
    """
    grid = BASE_GRID_C
    n_grid = len(grid)
    size = n_meters * n_groups
    sy = np.bincount(key, weights=y, minlength=size)
    syy = np.bincount(key, weights=y * y, minlength=size)

    # Rows at or above the last candidate (slot == n_grid) fall in a layer never used.
    layer = _grid_slot(ts)
    layer *= size
    layer += key
    cells = (n_grid + 1) * size

    def cumulative(sums: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.cumsum(sums.reshape(n_grid + 1, size)[:n_grid], axis=0)
        return out

    counts = np.bincount(layer, minlength=cells)
    n = counts.reshape(n_grid + 1, size).sum(axis=0).astype(np.float64)  # rows per cell
    acc_c = cumulative(counts.astype(np.float64))
    acc_t = cumulative(np.bincount(layer, weights=ts, minlength=cells))
    acc_tt = cumulative(np.bincount(layer, weights=ts * ts, minlength=cells))
    acc_y = cumulative(np.bincount(layer, weights=y, minlength=cells))
    acc_ty = cumulative(np.bincount(layer, weights=ts * y, minlength=cells))
    inv = np.divide(1.0, n, out=np.zeros_like(n), where=n > 0)
    syy_within = (syy - sy * sy * inv).reshape(n_meters, n_groups).sum(axis=1)
    sse = np.empty((n_meters, n_grid))
    for k, b in enumerate(grid):
        c, t = acc_c[k], acc_t[k]
        stats = {
            "n": n,
            "sx": b * c - t,
            "sxx": b * b * c - 2 * b * t + acc_tt[k],
            "sxy": b * acc_y[k] - acc_ty[k],
            "sy": sy,
        }
        denom, num = _within(stats, n_meters, n_groups)
        ok = (denom > 1e-9 * (1.0 + stats["sxx"].reshape(n_meters, n_groups).sum(axis=1))) & (
            num > 0
        )
        gain = np.where(ok, num * num / np.where(ok, denom, 1.0), 0.0)
        sse[:, k] = syy_within - gain
    best = sse.min(axis=1, keepdims=True)
    # Candidates the data cannot tell apart tie; take the one nearest the usual prior.
    tied = sse <= best + 1e-9 * np.abs(syy_within)[:, None] + 1e-12
    distance = np.where(tied, np.abs(grid - BASE_PRIOR_C)[None, :], np.inf)
    return np.asarray(grid[np.argmin(distance, axis=1)], dtype=np.float64), n, sy
