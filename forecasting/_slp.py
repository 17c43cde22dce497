"""The gas standard-load-profile (SLP) sigmoid, fitted per metering point.

The German BDEW/TU München method models a day's gas use as::

    volume_m3[m, d] = scale[m] * weekday[m, wd(d)] * h(T_geo[m, d])
    h(T) = A / (1 + (B / (T - 40)) ** C) + D
    T_geo[d] = (T_d + 0.5 T_{d-1} + 0.25 T_{d-2} + 0.125 T_{d-3}) / 1.875

with ``T_d`` the daily mean outdoor temperature (°C) of UTC day ``d``.  ``A``–``D``
are fitted per meter by robust (soft-L1), bounded non-linear least squares — a
Levenberg–Marquardt iteration batched over all meters in numpy (IRLS weights, per-meter
damping, projection onto the bounds; see :func:`_fit_sigmoid`) — when the meter has at least
``min_history_days`` usable days; the start is the published BDEW parameter set
(EFH, MFH or GHD) whose shape fits the meter best, and ``scale`` is that start's
least-squares scale.  Meters with less history use the published set of ``profile``
scaled to their observed mean (recorded in ``fallback_``).

Hourly output splits each day's value over its hours with the meter's learned
hour-of-day shares (weekday and weekend separately) or, for fallback meters, the
BDEW hourly shares of the day's temperature band.  Hours are UTC hours.

Intervals are conformal: quantiles of out-of-fold relative residuals, at the output
frequency.  The out-of-fold fits (day-level folds) start from the full fit and take
damped Gauss–Newton steps on the remaining days, batched over all meters with numpy
(an approximate refit: with ~4 parameters and months of days one step is enough).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import ClassVar, Final, Literal

import numpy as np
import polars as pl

from forecasting._base import (
    DAY,
    Forecaster,
    Freq,
    encode,
    group_quantiles,
    meters_in,
    same_rows,
    usable_rows,
    valid_temperature,
)
from forecasting.errors import InsufficientHistoryError, InvalidParameterError
from warehouse import (
    slp_hour_factors,
    slp_sigmoid_parameters,
    slp_temperature_band,
    slp_weekday_factors,
)

#: Weights of today and the three previous days in the geometric mean temperature.
GEO_WEIGHTS: Final = (1.0, 0.5, 0.25, 0.125)
#: Published profile used for fallback meters when ``profile`` is None (all trade).
DEFAULT_PROFILE: Final = "GHD"
#: Published parameter sets tried as the start of each per-meter fit.
WARM_STARTS: Final = ("EFH", "MFH", "GHD")
#: Bounds of (A, B, C, D) in the fit (the published sets lie well inside).
LOWER: Final = np.array([0.0, -200.0, 0.3, 0.0])
UPPER: Final = np.array([100.0, -5.0, 30.0, 100.0])
#: Day-level folds of the out-of-fold residuals.
N_FOLDS: Final = 3
#: Interval coverage (the ``*_80`` columns).
COVERAGE: Final = 0.8
#: Relative residuals are divided by ``prediction + SCALE_FLOOR * mean`` so the
#: interval widens with the level without collapsing at zero.
SCALE_FLOOR: Final = 0.1
#: Fewer residuals than this (days, or hours for hourly models) and a meter's
#: interval uses the quantiles pooled over all meters.
MIN_RESIDUALS: Final = {"day": 14, "hour": 14 * 24}
#: A day of hourly history counts only with all 24 hours valid; its temperature needs
#: at least this many hours.
MIN_TEMPERATURE_HOURS: Final = 12
#: The sigmoid is defined for T < 40 °C; temperatures are clipped below this.
T_MAX_C: Final = 35.0
#: Batched Levenberg–Marquardt: trials per meter, relative cost/step tolerance (as
#: the former ``least_squares`` ftol/xtol: ~4 significant digits are plenty for a load
#: profile), starting damping, and the damping at which a meter gives up improving.
LM_MAX_ITER: Final = 50
LM_TOL: Final = 1e-6
LM_START_DAMPING: Final = 1e-3
LM_MAX_DAMPING: Final = 1e8
#: Meters per batch of the non-linear fits (bounds the ``(meters, days, 4)`` arrays).
CHUNK: Final = 4096

_PROFILE_RE: Final = re.compile(r"^([A-Z]{3})(?:/?(\d{1,2}))?$")


def sigmoid(
    t_c: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray
) -> np.ndarray:
    """The SLP sigmoid ``h(T) = A / (1 + (B / (T - 40)) ** C) + D`` (broadcasting)."""
    u = b / (np.minimum(t_c, T_MAX_C) - 40.0)
    out: np.ndarray = a / (1.0 + u**c) + d
    return out


def geometric_temperature(daily_c: np.ndarray) -> np.ndarray:
    """Geometric 4-day mean of daily means along the last axis (consecutive days).

    ``NaN`` days are left out and the weights of the others renormalised; the result
    is ``NaN`` where the day's own mean is ``NaN``.
    """
    num = np.zeros_like(daily_c)
    den = np.zeros_like(daily_c)
    for lag, w in enumerate(GEO_WEIGHTS):
        shifted = np.full_like(daily_c, np.nan)
        shifted[..., lag:] = daily_c[..., : daily_c.shape[-1] - lag]
        ok = ~np.isnan(shifted)
        num += np.where(ok, w * shifted, 0.0)
        den += np.where(ok, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        geo = num / den
    return np.where(np.isnan(daily_c), np.nan, geo)


def _jacobian(t_c: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``dh/d(A, B, C, D)``; ``t_c`` shape ``(..., n)``, ``p`` shape ``(..., 4)`` → ``(..., n, 4)``."""
    a, b, c = p[..., 0:1], p[..., 1:2], p[..., 2:3]
    u = b / (np.minimum(t_c, T_MAX_C) - 40.0)
    uc = u**c
    q = 1.0 + uc
    return np.stack(
        [1.0 / q, -a * c * uc / (q * q * b), -a * uc * np.log(u) / (q * q), np.ones_like(uc)],
        axis=-1,
    )


def _curve(t_c: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, ...]:
    """``h`` and the pieces its Jacobian reuses, per meter row: ``t_c`` ``(m, n)`` (no
    ``NaN``), ``p`` ``(m, 4)`` → ``(h, u**C, 1 + u**C, log u)``, each ``(m, n)``."""
    a, b, c, d = p[:, 0:1], p[:, 1:2], p[:, 2:3], p[:, 3:4]
    logu = np.log(b / (np.minimum(t_c, T_MAX_C) - 40.0))  # B < 0 and T - 40 < 0: u > 0
    uc = np.exp(c * logu)
    q = 1.0 + uc
    return a / q + d, uc, q, logu


def _normal_equations(
    p: np.ndarray, uc: np.ndarray, q: np.ndarray, logu: np.ndarray, w: np.ndarray, wr: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(Jᵀ W J, Jᵀ W r)`` of the sigmoid, ``(m, 4, 4)`` and ``(m, 4)``, from the pieces of
    :func:`_curve`, the row weights ``w`` (0 = unused day) and ``wr = w * r``."""
    a, b, c = p[:, 0:1], p[:, 1:2], p[:, 2:3]
    g = a * uc / (q * q)
    cols = (1.0 / q, -c * g / b, -g * logu)  # dh/dA, dh/dB, dh/dC; dh/dD = 1
    wcols = (*(w * col for col in cols), w)
    hess = np.empty((p.shape[0], 4, 4))
    for i in range(4):
        for j in range(i, 4):
            v = (wcols[i] * cols[j]).sum(axis=1) if j < 3 else wcols[i].sum(axis=1)
            hess[:, i, j] = v
            hess[:, j, i] = v
    grad = np.stack([*((col * wr).sum(axis=1) for col in cols), wr.sum(axis=1)], axis=1)
    return hess, grad


def _soft_l1(r: np.ndarray, f2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row soft-L1 cost ``½ f² Σ 2(√(1 + r²/f²) − 1)`` (as ``least_squares``
    reports it) and the IRLS weights ``ρ'(r²/f²) = 1 / √(1 + r²/f²)``."""
    root = np.sqrt(1.0 + r * r / f2[:, None])
    cost = f2 * (root - 1.0).sum(axis=1)
    return cost, 1.0 / root


def _robust_scale(r: np.ndarray) -> np.ndarray:
    """Per-row ``f_scale`` of the soft-L1 loss: the normalised MAD of the start's
    residuals (``NaN`` = unused), at least 1e-3."""
    mad = _nanmedian_rows(np.abs(r - _nanmedian_rows(r)[:, None]))
    return np.maximum(np.nan_to_num(1.4826 * mad, nan=1e-3), 1e-3)


def _nanmedian_rows(x: np.ndarray) -> np.ndarray:
    """Median of each row over its non-``NaN`` entries (``NaN`` for an all-``NaN`` row);
    a sort instead of :func:`numpy.nanmedian`'s masked-array path for short rows."""
    srt = np.sort(x, axis=1)  # NaN last
    k = (~np.isnan(x)).sum(axis=1)
    rows = np.arange(x.shape[0])
    lo = srt[rows, np.maximum(k - 1, 0) // 2]
    hi = srt[rows, k // 2]
    return np.where(k > 0, 0.5 * (lo + hi), np.nan)


def _fit_sigmoid(
    t_c: np.ndarray,
    target: np.ndarray,
    x0: np.ndarray,
    *,
    solver: Literal["batched", "scipy"] = "batched",
    max_iter: int = LM_MAX_ITER,
    ftol: float = LM_TOL,
) -> np.ndarray:
    """Robust bounded fit of ``A``–``D`` per row of ``target ≈ h(t_c)`` (``NaN`` =
    unused day), from ``x0`` ``(m, 4)``; returns ``(m, 4)``.

    ``"batched"``: Levenberg–Marquardt over all rows at once — IRLS weights of the
    soft-L1 loss (``f_scale`` the MAD of the start's residuals), per-row damping ``λ``
    on the diagonal of ``JᵀWJ``, a step accepted only if it lowers the row's soft-L1
    cost, parameters projected onto the bounds (a parameter on a bound whose gradient
    points outwards is held there for the step); a row stops when an accepted step
    lowers its cost by less than ``ftol`` relatively, its step is below ``ftol``
    relatively, ``λ`` exceeds ``LM_MAX_DAMPING``, or after ``max_iter`` trials.
    ``"scipy"``: :func:`scipy.optimize.least_squares` per row with the same loss and
    scale (for comparison; ~10 ms per row).
    """
    use = ~np.isnan(target) & ~np.isnan(t_c)
    t = np.where(use, t_c, 10.0)
    yv = np.where(use, target, 0.0)
    p: np.ndarray = np.clip(x0, LOWER + 1e-6, UPPER - 1e-6)
    h, uc, q, logu = _curve(t, p)
    f2 = _robust_scale(np.where(use, h - yv, np.nan)) ** 2
    if solver == "scipy":
        return _fit_sigmoid_scipy(t, yv, use, p, np.sqrt(f2))
    n_m = p.shape[0]
    eye = np.eye(4, dtype=bool)
    r = np.where(use, h - yv, 0.0)
    cost, w = _soft_l1(r, f2)
    w = w * use
    hess, grad = _normal_equations(p, uc, q, logu, w, w * r)
    lam = np.full(n_m, LM_START_DAMPING)
    running = np.ones(n_m, dtype=bool)
    for _ in range(max_iter):
        ix = np.flatnonzero(running)
        if ix.size == 0:
            break
        ps, gs, hs = p[ix], grad[ix], hess[ix]
        held = ((ps <= LOWER) & (gs > 0)) | ((ps >= UPPER) & (gs < 0))
        free = ~held
        diag = np.einsum("mii->mi", hs)
        damp = lam[ix, None] * diag + 1e-12 * diag.max(axis=1, keepdims=True) + 1e-300
        lhs = (hs + damp[:, :, None] * eye) * (free[:, :, None] & free[:, None, :])
        lhs = lhs + held[:, :, None] * eye
        step = np.linalg.solve(lhs, -(gs * free)[:, :, None])[:, :, 0]
        trial = np.clip(ps + step, LOWER, UPPER)
        th, tuc, tq, tlogu = _curve(t[ix], trial)
        tr = np.where(use[ix], th - yv[ix], 0.0)
        tcost, tw = _soft_l1(tr, f2[ix])
        better = tcost < cost[ix]  # False for NaN
        small = np.all(np.abs(trial - ps) <= ftol * (ftol + np.abs(ps)), axis=1)
        settled = better & (cost[ix] - tcost <= ftol * cost[ix])
        acc = ix[better]
        if acc.size:
            p[acc] = trial[better]
            cost[acc] = tcost[better]
            wa = tw[better] * use[acc]
            hess[acc], grad[acc] = _normal_equations(
                trial[better], tuc[better], tq[better], tlogu[better], wa, wa * tr[better]
            )
        lam[ix] = np.where(better, np.maximum(lam[ix] / 3.0, 1e-12), lam[ix] * 4.0)
        running[ix] = ~(small | settled | (lam[ix] > LM_MAX_DAMPING))
    return p


def _fit_sigmoid_scipy(
    t: np.ndarray, yv: np.ndarray, use: np.ndarray, x0: np.ndarray, f_scale: np.ndarray
) -> np.ndarray:
    """The per-row :func:`scipy.optimize.least_squares` reference of :func:`_fit_sigmoid`."""
    from scipy.optimize import least_squares  # comparison path only: import lazily

    out = x0.copy()
    for j in range(x0.shape[0]):
        tj, yj = t[j, use[j]], yv[j, use[j]]
        res = least_squares(
            lambda p, tj=tj, yj=yj: sigmoid(tj, *p) - yj,
            x0[j],
            jac=lambda p, tj=tj: _jacobian(tj, p),
            bounds=(LOWER, UPPER),
            loss="soft_l1",
            f_scale=float(f_scale[j]),
            method="trf",
            ftol=1e-6,
            xtol=1e-6,
            gtol=1e-6,
        )
        out[j] = res.x
    return out


class StandardLoadProfile(Forecaster):
    """Gas standard-load-profile sigmoid per metering point, with a published fallback.

    Parameters
    ----------
    profile
        Published BDEW profile for meters with too little history: a type such as
        ``"GHD"`` (all trade), ``"GKO"``, ``"GBA"`` …, or ``"EFH"`` / ``"MFH"``
        (homes) with an optional building class 1–11, e.g. ``"EFH03"`` or ``"MFH/5"``
        (default class 1).  ``None``: ``"GHD"``.  See
        :func:`warehouse.slp_sigmoid_parameters`.
    min_history_days
        Usable days (valid daily volume — for hourly data all 24 hours valid — and a
        daily temperature) a meter needs for its own fit; with fewer (but at least
        one) it gets the published ``profile`` scaled to its observed mean.
    freq
        ``"hour"`` (hourly rows; daily values split over the hours) or ``"day"``
        (m³ per UTC day against the daily mean temperature).

    Attributes
    ----------
    cutoff_, meters_, skipped_
        As in :class:`Forecaster`.  Meters whose valid history is all zeros are
        skipped (a meter that never used gas has no temperature response to learn,
        and zeros are often outages): the reason says so.
    fallback_ : dict of str to str
        Meters predicted with the published profile instead of their own fit, with
        the history found and needed.
    coef_ : polars.DataFrame
        Per meter: ``method`` (``"fitted"`` / ``"published"``), ``profile`` (the
        start or fallback set), ``a``, ``b``, ``c``, ``d`` (the sigmoid), ``scale_m3``
        (m³ per day per unit of ``h``), ``days`` used, ``rmse_m3`` (daily, in-sample),
        and the interval calibration ``floor_m3``, ``q_lo``, ``q_hi``.
    weekday_ : polars.DataFrame
        Per meter and ``weekday`` (1 = Monday … 7 = Sunday, UTC): ``factor`` on the
        daily value (mean 1 for fitted meters; the BDEW factors for fallback ones).
    shares_ : polars.DataFrame
        Hourly models: per meter, ``day_type`` and UTC ``hour``, the learned share of
        the day's use (sums to 1 per day type).  Fallback meters are absent (they use
        the BDEW shares).
    fit_seconds_per_meter_ : float
        Wall time of the (batched) non-linear fits divided by the meters fitted.

    Examples
    --------
    >>> model = StandardLoadProfile(profile="EFH", freq="day")  # doctest: +SKIP
    >>> model.fit(daily_consumption, daily_temperature).fallback_  # doctest: +SKIP
    """

    alias: ClassVar[str] = "slp_sigmoid"

    def __init__(
        self, *, profile: str | None = None, min_history_days: int = 28, freq: Freq = "hour"
    ) -> None:
        self.profile = profile
        self.min_history_days = min_history_days
        self.freq = freq

    # --- parameters -----------------------------------------------------------------
    def _validate_params(self) -> None:
        v = self.min_history_days
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InvalidParameterError(
                f"min_history_days: expected an integer >= 1 (days), got {v!r}"
            )
        _published(self.profile or DEFAULT_PROFILE)  # raises for unknown names

    # --- fit ------------------------------------------------------------------------
    def _fit(self, consumption: pl.DataFrame, temperature: pl.DataFrame) -> None:
        profile = self.profile or DEFAULT_PROFILE
        self.fallback_: dict[str, str] = {}
        hourly = self.freq == "hour"
        temperature = valid_temperature(temperature)
        # Keep the last days of temperature for the geometric mean of forecast days.
        tail_from = _day_start(self.cutoff_) - (len(GEO_WEIGHTS) - 1) * DAY
        self.temperature_tail_ = temperature.filter(pl.col("ts") >= tail_from)
        names = meters_in(consumption).sort().to_list()
        # Rows as numpy arrays (the base class hands frames sorted by meter and time, so
        # the hours of a meter's UTC day are consecutive rows).
        hist = _Rows.of(consumption, temperature, names, self.freq)
        cutoff_day = _day_index(_day_start(self.cutoff_))
        firsts = [int(d.min()) for d in (hist.d_day, hist.dt_day) if d.size]
        first_day = min(firsts) if firsts else cutoff_day - 1
        n_days = max(
            1, cutoff_day - first_day + (1 if self.cutoff_ > _day_start(self.cutoff_) else 0)
        )
        n_m = len(names)
        y = _dense(hist.d_code, hist.d_day - first_day, hist.d_value, n_m, n_days)
        tmean = _dense(hist.dt_code, hist.dt_day - first_day, hist.dt_value, n_m, n_days)
        tgeo = geometric_temperature(tmean)
        ok = ~np.isnan(y) & ~np.isnan(tgeo)
        days_per = ok.sum(axis=1)
        weekday = (np.arange(first_day, first_day + n_days) + 3) % 7  # 0 = Monday
        ysum = np.where(ok, y, 0.0).sum(axis=1)

        fit_idx: list[int] = []
        fb_idx: list[int] = []
        unit_hint = "all 24 hours valid and " if hourly else ""
        for i, name in enumerate(names):
            if days_per[i] == 0:
                self.skipped_[name] = (
                    f"no usable day before {self.cutoff_.isoformat()} (a valid daily volume — "
                    f"{unit_hint}a daily mean temperature); load history and weather for it"
                )
            elif ysum[i] <= 0:
                self.skipped_[name] = (
                    f"all {int(days_per[i])} usable day(s) before {self.cutoff_.isoformat()} are "
                    f"0 m³: there is no temperature response to learn or level to scale a "
                    f"profile to (zeros are often outages); check the meter"
                )
            elif days_per[i] >= self.min_history_days:
                fit_idx.append(i)
            else:
                fb_idx.append(i)
                self.fallback_[name] = (
                    f"only {int(days_per[i])} usable day(s) ({unit_hint}a daily mean "
                    f"temperature) before {self.cutoff_.isoformat()}, needs "
                    f"min_history_days={self.min_history_days} for its own fit; used the "
                    f"published {profile} profile scaled to the observed mean"
                )
        if not fit_idx and not fb_idx:
            raise InsufficientHistoryError(
                f"{type(self).__name__}: expected at least one usable day (valid daily volume — "
                f"{unit_hint}a daily mean temperature — not all zero) for at least one "
                f"meter before {self.cutoff_.isoformat()}, found none among {n_m} meter(s): "
                f"{'; '.join(f'{k}: {v}' for k, v in list(self.skipped_.items())[:3])}"
            )
        keep = np.array(sorted(fit_idx + fb_idx), dtype=np.int64)
        fitted_mask = np.zeros(n_m, dtype=bool)
        fitted_mask[fit_idx] = True
        n_k = keep.size
        y, tgeo, ok, tmean = y[keep], tgeo[keep], ok[keep], tmean[keep]
        fitted_mask = fitted_mask[keep]
        self.meters_ = tuple(names[i] for i in keep)

        params = np.zeros((n_k, 4))
        scale = np.zeros(n_k)
        wfac = np.ones((n_k, 7))
        prof_name = np.array([profile] * n_k, dtype=object)
        pub_p, pub_w, _ = _published(profile)
        yz = np.where(ok, y, 0.0)
        onehot = weekday[None, :] == np.arange(7)[:, None]  # (7, days)

        # Fallback meters: the published curve and weekday factors, scaled to the mean.
        fb = np.flatnonzero(~fitted_mask)
        if fb.size:
            g = sigmoid(tgeo[fb], *pub_p) * pub_w[weekday][None, :]
            g = np.where(ok[fb], g, 0.0)
            params[fb] = pub_p
            wfac[fb] = pub_w
            scale[fb] = yz[fb].sum(axis=1) / np.maximum(g.sum(axis=1), 1e-12)

        # Fitted meters: choose the best-shaped published start, estimate weekday
        # factors against it, then refine A-D (batched robust LM) on y / (scale * factor).
        fi = np.flatnonzero(fitted_mask)
        seconds = 0.0
        if fi.size:
            best_sse = np.full(fi.size, np.inf)
            for cand in WARM_STARTS:
                cp, _, _ = _published(cand)
                g = np.where(ok[fi], sigmoid(tgeo[fi], *cp), 0.0)
                s = (yz[fi] * g).sum(axis=1) / np.maximum((g * g).sum(axis=1), 1e-12)
                sse = ((yz[fi] - s[:, None] * g) ** 2).sum(axis=1)
                better = sse < best_sse
                best_sse = np.where(better, sse, best_sse)
                params[fi[better]] = cp
                scale[fi[better]] = s[better]
                prof_name[fi[better]] = cand
            base = np.where(ok[fi], sigmoid(tgeo[fi], *params[fi].T[:, :, None]), 0.0)
            num = yz[fi] @ onehot.T.astype(np.float64)
            den = (scale[fi, None] * base) @ onehot.T.astype(np.float64)
            has = den > 0
            f = np.where(has, num / np.where(has, den, 1.0), np.nan)
            f = f / np.nanmean(np.where(has, f, np.nan), axis=1, keepdims=True)
            wfac[fi] = np.where(np.isnan(f) | (f <= 0), 1.0, f)
            started = time.perf_counter()
            for lo in range(0, fi.size, CHUNK):
                j = fi[lo : lo + CHUNK]
                target = np.where(ok[j], y[j] / (scale[j, None] * wfac[j][:, weekday]), np.nan)
                params[j] = _fit_sigmoid(tgeo[j], target, params[j])
            seconds = time.perf_counter() - started
        self.fit_seconds_per_meter_ = seconds / max(fi.size, 1)

        # In-sample and out-of-fold daily predictions.
        mult = scale[:, None] * wfac[:, weekday]
        pred = mult * sigmoid(tgeo, *params.T[:, :, None])
        pred_oof = pred.copy()
        if fi.size:
            for lo in range(0, fi.size, CHUNK):
                j = fi[lo : lo + CHUNK]
                pred_oof[j] = mult[j] * _oof_curve(
                    tgeo[j], np.where(ok[j], y[j] / mult[j], np.nan), params[j], first_day
                )
        pred_oof = np.maximum(pred_oof, 0.0)
        resid_in = np.where(ok, y - pred, np.nan)
        rmse = np.sqrt(np.nanmean(resid_in**2, axis=1))
        daily_mean = yz.sum(axis=1) / np.maximum(ok.sum(axis=1), 1)

        meter_ids = pl.Series("meter_id", self.meters_, dtype=pl.String)
        if hourly:
            kept = np.full(n_m, -1, dtype=np.int64)  # meter code -> row of the kept meters
            kept[keep] = np.arange(n_k)
            shares, learned = _learn_shares(hist, kept, n_k, fitted_mask)
            z, zm = _hourly_residuals(
                hist, kept, pred_oof, ok, first_day, shares, learned, tmean, profile, daily_mean
            )
            floor = SCALE_FLOOR * daily_mean / 24.0 + 1e-9
        else:
            shares, learned = np.zeros((n_k, 2, 24)), np.zeros(n_k, dtype=bool)
            floor = SCALE_FLOOR * daily_mean + 1e-9
            z = np.where(ok, (y - pred_oof) / (pred_oof + floor[:, None]), np.nan)
            zm = np.repeat(np.arange(n_k), z.shape[1])
            z = z.reshape(-1)
            zm, z = zm[~np.isnan(z)], z[~np.isnan(z)]
        q_lo, q_hi = _quantiles(z, zm, n_k, MIN_RESIDUALS[self.freq])

        self.coef_ = pl.DataFrame(
            {
                "meter_id": meter_ids,
                "method": np.where(fitted_mask, "fitted", "published"),
                "profile": prof_name.astype(str),
                "a": params[:, 0],
                "b": params[:, 1],
                "c": params[:, 2],
                "d": params[:, 3],
                "scale_m3": scale,
                "days": ok.sum(axis=1).astype(np.int64),
                "rmse_m3": rmse,
                "floor_m3": floor,
                "q_lo": q_lo,
                "q_hi": q_hi,
            }
        )
        self.weekday_ = pl.DataFrame(
            {
                "meter_id": np.repeat(meter_ids.to_numpy(), 7),
                "weekday": np.tile(np.arange(1, 8), n_k).astype(np.int64),
                "factor": wfac.reshape(-1),
            }
        )
        rows = np.flatnonzero(learned)
        self.shares_ = pl.DataFrame(
            {
                "meter_id": np.repeat(meter_ids.to_numpy()[rows], 48),
                "day_type": np.tile(np.repeat(["weekday", "weekend"], 24), rows.size),
                "hour": np.tile(np.arange(24), 2 * rows.size).astype(np.int8),
                "share": shares[rows].reshape(-1),
            },
            schema={
                "meter_id": pl.String,
                "day_type": pl.String,
                "hour": pl.Int8,
                "share": pl.Float64,
            },
        )
        self._params = params
        self._scale = scale
        self._wfac = wfac
        self._shares = shares
        self._learned = learned

    # --- predict --------------------------------------------------------------------
    def _predict(self, temperature: pl.DataFrame) -> pl.DataFrame:
        names = list(self.meters_)
        profile = self.profile or DEFAULT_PROFILE
        asked = temperature.select("meter_id", "ts", "temperature_c")
        tail = self.temperature_tail_.filter(
            pl.col("meter_id").is_in(asked.get_column("meter_id").unique().to_list())
        ).join(asked, on=["meter_id", "ts"], how="anti")
        both = pl.concat([asked, tail])
        daily = (
            both.group_by("meter_id", pl.col("ts").dt.truncate("1d").alias("day"))
            .agg(pl.col("temperature_c").mean())
            .with_columns(
                pl.col("meter_id").cast(pl.Enum(names)).to_physical().cast(pl.Int64).alias("code"),
                (pl.col("day").dt.epoch("s") // 86400).alias("dayno"),
            )
        )
        code = daily.get_column("code").to_numpy()
        dayno = daily.get_column("dayno").to_numpy()
        tday = daily.get_column("temperature_c").to_numpy()
        # Geometric mean over the days present (sorted lookups on (code, day) keys).
        key = code * (1 << 32) + dayno
        order = np.argsort(key)
        skey, st = key[order], tday[order]
        num = np.zeros(key.size)
        den = np.zeros(key.size)
        for lag, w in enumerate(GEO_WEIGHTS):
            pos = np.searchsorted(skey, key - lag)
            pos = np.minimum(pos, skey.size - 1)
            hit = skey[pos] == key - lag
            num += np.where(hit, w * st[pos], 0.0)
            den += np.where(hit, w, 0.0)
        tgeo = num / den
        wd = (dayno + 3) % 7
        dval = self._scale[code] * self._wfac[code, wd] * sigmoid(tgeo, *self._params[code].T)
        daily = daily.with_columns(pl.Series("dval", dval), pl.Series("tday", tday)).select(
            "meter_id", "day", "dval", "tday"
        )
        rows = temperature.with_columns(pl.col("ts").dt.truncate("1d").alias("day")).join(
            daily, on=["meter_id", "day"], how="left"
        )
        rcode = (
            rows.get_column("meter_id").cast(pl.Enum(names)).to_physical().cast(pl.Int64).to_numpy()
        )
        value = rows.get_column("dval").to_numpy()
        if self.freq == "hour":
            sec = rows.get_column("ts").dt.epoch("s").to_numpy()
            share = _share_lookup(
                rcode,
                sec // 86400,
                (sec // 3600) % 24,
                self._shares,
                self._learned,
                rows.get_column("tday").to_numpy(),
                profile,
            )
            value = value * share
        value = np.maximum(value, 0.0)
        coef = self.coef_
        floor = coef.get_column("floor_m3").to_numpy()[rcode]
        spread = value + floor
        return rows.drop("day", "dval", "tday").with_columns(
            pl.Series("volume_m3", value),
            pl.Series(
                "volume_m3_lo_80", value + coef.get_column("q_lo").to_numpy()[rcode] * spread
            ),
            pl.Series(
                "volume_m3_hi_80", value + coef.get_column("q_hi").to_numpy()[rcode] * spread
            ),
        )


# --- helpers ------------------------------------------------------------------------------


def _day_start(ts: dt.datetime) -> dt.datetime:
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


def _day_index(ts: dt.datetime) -> int:
    return int(ts.timestamp()) // 86400


def _dense(
    code: np.ndarray, day: np.ndarray, value: np.ndarray, n_meters: int, n_days: int
) -> np.ndarray:
    """``(meters, days)`` matrix of daily values (``NaN`` where absent); rows outside
    ``[0, n_days)`` are dropped."""
    out = np.full((n_meters, n_days), np.nan)
    inside = (day >= 0) & (day < n_days)
    out[code[inside], day[inside]] = value[inside]
    return out


class _Rows:
    """The usable history as numpy arrays, built once per fit.

    Consumption rows (``valid`` volume) in ``value`` (m³), in runs of one meter's UTC
    day: per run its ``start`` row, ``size`` (rows; 24 = a complete day of hourly data,
    1 for daily data), ``total`` (sum), ``code`` (the meter's index in the sorted names)
    and ``day`` (days since the epoch).  The rows of a complete day are its hours 0-23
    in order (the base class hands frames sorted by meter and time, one row per hour).
    Daily series: ``d_*`` (daily volumes: complete days of hourly data, or the daily
    rows) and ``dt_*`` (daily mean temperatures: days with at least
    :data:`MIN_TEMPERATURE_HOURS` hours, or the daily rows).

    Day sums are compensated (Kahan) sums in row order, as Polars' group-by sums, so
    the daily values equal a ``group_by(meter, day).sum()`` to the last bit.
    """

    value: np.ndarray
    start: np.ndarray
    size: np.ndarray
    total: np.ndarray
    code: np.ndarray
    day: np.ndarray
    d_code: np.ndarray
    d_day: np.ndarray
    d_value: np.ndarray
    dt_code: np.ndarray
    dt_day: np.ndarray
    dt_value: np.ndarray

    @classmethod
    def of(
        cls, consumption: pl.DataFrame, temperature: pl.DataFrame, names: list[str], freq: Freq
    ) -> _Rows:
        self = cls()
        c_code, c_step = encode(consumption, names, freq=freq)
        if same_rows(consumption, temperature):
            t_code, t_step = c_code, c_step
        else:
            t_code, t_step = _codes_of_known(temperature, names, freq)
        t_value = temperature.get_column("temperature_c").to_numpy()
        known = t_code >= 0
        if not bool(known.all()):
            t_code, t_step, t_value = t_code[known], t_step[known], t_value[known]
        value = consumption.get_column("volume_m3").to_numpy()
        usable = usable_rows(consumption)
        if usable is not None:
            c_code, c_step, value = c_code[usable], c_step[usable], value[usable]
        self.value = value
        if freq == "day":
            # Daily rows are unique per meter and day (checked by the base class).
            self.start = np.arange(c_step.size)
            self.size = np.ones(c_step.size, dtype=np.int64)
            self.total, self.code, self.day = value, c_code, c_step
            self.d_code, self.d_day, self.d_value = c_code, c_step, value
            self.dt_code, self.dt_day, self.dt_value = t_code, t_step, t_value
            return self
        day = c_step // 24
        start, size = _day_runs(c_code, day)
        total = _kahan_sums(value, start, size)
        self.start, self.size, self.total = start, size, total
        self.code, self.day = c_code[start], day[start]
        full = size == 24
        self.d_code, self.d_day, self.d_value = self.code[full], self.day[full], total[full]
        if t_code is not c_code:  # else the temperature rows are the consumption rows
            day = t_step // 24
            start, size = _day_runs(t_code, day)
        mean = _kahan_sums(t_value, start, size) / size
        enough = size >= MIN_TEMPERATURE_HOURS
        self.dt_code, self.dt_day = t_code[start[enough]], day[start[enough]]
        self.dt_value = mean[enough]
        return self

    def hours(self, sel: np.ndarray) -> np.ndarray:
        """The values of the selected complete days (``sel`` per run) as a ``(days,
        24)`` matrix: hour of day along the second axis (no copy if all are selected)."""
        chosen = self.value if bool(sel.all()) else self.value[np.repeat(sel, self.size)]
        out: np.ndarray = chosen.reshape(-1, 24)
        return out


def _codes_of_known(
    frame: pl.DataFrame, names: list[str], freq: Freq
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`encode` with the codes of ``names``; rows of other meters get code -1."""
    every = pl.concat([pl.Series(names, dtype=pl.String), meters_in(frame)]).unique().sort()
    code, step = encode(frame, every.to_list(), freq=freq)
    if every.len() > len(names):
        remap = np.full(every.len(), -1, dtype=np.int64)
        remap[np.searchsorted(every.to_numpy(), np.asarray(names))] = np.arange(len(names))
        code = remap[code]
    return code, step


def _day_runs(code: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start row and row count of each run of equal ``(code, day)`` (rows sorted by
    meter and time, so a run is one meter's UTC day)."""
    if code.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    new = np.empty(code.size, dtype=bool)
    new[0] = True
    np.not_equal(code[1:], code[:-1], out=new[1:])
    new[1:] |= day[1:] != day[:-1]
    start = np.flatnonzero(new)
    return start, np.diff(np.append(start, code.size))


#: Runs per block of :func:`_kahan_sums` (a block's columns stay in the CPU cache).
_KAHAN_BLOCK: Final = 8192


def _kahan_sums(values: np.ndarray, start: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Compensated (Kahan) sum of each run ``values[start : start + size]`` in row
    order, the summation Polars' group-by ``sum``/``mean`` use; vectorised over the
    runs, one step per position within a run (at most 24 for the hours of a day)."""
    total = np.zeros(start.size)
    if start.size == 0:
        return total
    longest = int(size.max())
    if int(size.min()) == longest and longest * start.size == values.size:
        # All runs equally long: blocks of runs, transposed so a step reads a row.
        runs = values.reshape(start.size, longest)
        for lo in range(0, start.size, _KAHAN_BLOCK):
            block = runs[lo : lo + _KAHAN_BLOCK].T.copy()
            acc = np.zeros(block.shape[1])
            comp = np.zeros(block.shape[1])
            step = np.empty(block.shape[1])
            new = np.empty(block.shape[1])
            for j in range(longest):
                np.subtract(block[j], comp, out=step)
                np.add(acc, step, out=new)
                np.subtract(new, acc, out=comp)
                comp -= step
                acc, new = new, acc
            total[lo : lo + _KAHAN_BLOCK] = acc
        return total
    comp = np.zeros(start.size)
    for j in range(longest):
        live = np.flatnonzero(size > j)
        step = values[start[live] + j] - comp[live]
        new = total[live] + step
        comp[live] = (new - total[live]) - step
        total[live] = new
    return total


_PUBLISHED_CACHE: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _published(profile: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A..D, weekday factors Mon..Sun, hour shares [weekday, hour, band])`` of a
    published profile name such as ``"GHD"``, ``"EFH"``, ``"EFH03"`` or ``"MFH/5"``."""
    if profile in _PUBLISHED_CACHE:
        return _PUBLISHED_CACHE[profile]
    sig = slp_sigmoid_parameters()
    known = sorted(set(sig.get_column("shlp_type").to_list()))
    match = _PROFILE_RE.match(profile) if isinstance(profile, str) else None
    if match is None or match.group(1) not in known:
        raise InvalidParameterError(
            f"profile: expected None or a published BDEW gas profile type {known} (EFH/MFH "
            f"optionally with a building class 1-11, e.g. 'EFH03'), got {profile!r}"
        )
    kind = match.group(1)
    homes = kind in ("EFH", "MFH")
    cls = int(match.group(2)) if match.group(2) else (1 if homes else 0)
    row = sig.filter(
        (pl.col("shlp_type") == kind)
        & (pl.col("building_class") == cls)
        & (pl.col("wind_impact") == 0)
    )
    if row.height != 1:
        classes = sorted(set(sig.filter(pl.col("shlp_type") == kind).get_column("building_class")))
        raise InvalidParameterError(
            f"profile: {kind} has building classes {classes}, got {profile!r}"
        )
    params = row.select("parameter_a", "parameter_b", "parameter_c", "parameter_d").to_numpy()[0]
    wk = (
        slp_weekday_factors()
        .filter(pl.col("shlp_type") == kind)
        .sort("weekday")
        .get_column("factor")
        .to_numpy()
    )
    hours = slp_hour_factors().filter(
        (pl.col("shlp_type") == kind) & (pl.col("building_class") == (cls if homes else 0))
    )
    bands = [f"temp_intervall_{k:02d}" for k in range(1, 11)]
    table = np.zeros((7, 24, 10))
    for wdn in range(7):
        part = hours.filter(pl.col("weekday").is_in([0, wdn + 1])).sort("hour_of_day")
        table[wdn] = part.select(bands).to_numpy()[:24]
    table = table / table.sum(axis=1, keepdims=True)  # shares of the day per band
    out = (params.astype(np.float64), wk.astype(np.float64), table)
    _PUBLISHED_CACHE[profile] = out
    return out


def _learn_shares(
    rows: _Rows, kept: np.ndarray, n: int, fitted: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Hour-of-day shares ``(meters, day_type, 24)`` from complete valid days, and which
    meters have them (fitted meters with complete days of positive use).  ``kept`` maps
    a row's meter code to its index among the ``n`` kept meters (-1 = not kept).

    A cell's share is the sum of its hours' use over the sum of those days' totals; the
    denominator is the same for the 24 hours of a day type, so it is summed per day.
    """
    shares = np.zeros((n, 2, 24))
    k = kept[rows.code]  # per day
    sel = (k >= 0) & (rows.size == 24) & (rows.total > 0)
    if not bool(sel.any()):
        return shares, np.zeros(n, dtype=bool)
    day_cell = k[sel] * 2 + ((rows.day[sel] + 3) % 7 >= 5)  # (meter, day_type)
    den = np.bincount(day_cell, weights=rows.total[sel], minlength=n * 2)
    cell = day_cell[:, None] * 24 + _HOURS
    num = np.bincount(cell.reshape(-1), weights=rows.hours(sel).reshape(-1), minlength=n * 48)
    has = den.reshape(n, 2) > 0  # (meters, day_type)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = num.reshape(n, 2, 24) / den.reshape(n, 2, 1)
    # A day type without complete days borrows the other's shares.
    s[:, 0] = np.where(has[:, 0:1], s[:, 0], s[:, 1])
    s[:, 1] = np.where(has[:, 1:2], s[:, 1], s[:, 0])
    learned = fitted & has.any(axis=1)
    shares[learned] = s[learned]
    return shares, learned


#: Hours of a UTC day, for ``(days, 24)`` matrices.
_HOURS: Final = np.arange(24)


def _hourly_residuals(
    rows: _Rows,
    kept: np.ndarray,
    pred_oof: np.ndarray,
    ok: np.ndarray,
    first_day: int,
    shares: np.ndarray,
    learned: np.ndarray,
    tmean: np.ndarray,
    profile: str,
    daily_mean: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Relative residuals of hourly values against out-of-fold daily values split
    into hours (flattened, with their kept-meter index).

    Works on ``(days, 24)`` matrices: a usable day (``ok``) is a complete one, so the
    day's prediction, share row and floor are looked up once per day.
    """
    n_days = ok.shape[1]
    k = kept[rows.code]  # per day run
    d = rows.day - first_day
    cell = np.where((k >= 0) & (d >= 0) & (d < n_days), k * n_days + d, -1)
    good = cell >= 0
    good[good] = ok.reshape(-1)[cell[good]]
    k, cell, wd = k[good], cell[good], (rows.day[good] + 3) % 7
    # Index of each hour's share in `lookup`: learned meters' own shares (meter, day
    # type, hour), the others' the BDEW table's (weekday, hour, temperature band).
    own = learned[k]
    base = (k * 2 + (wd >= 5)) * 24
    if bool(own.all()):
        share = shares.reshape(-1)[base[:, None] + _HOURS]
    else:
        _, _, table = _published(profile)  # (weekday, hour, band)
        lookup = np.concatenate([shares.reshape(-1), table.reshape(-1)])
        band = slp_temperature_band(np.nan_to_num(tmean.reshape(-1)[cell[~own]], nan=10.0))
        base[~own] = shares.size + wd[~own] * 240 + band
        stride = np.where(own, 1, 10)
        share = lookup[base[:, None] + stride[:, None] * _HOURS]
    yhat = pred_oof.reshape(-1)[cell][:, None] * share
    floor = SCALE_FLOOR * daily_mean / 24.0 + 1e-9
    z = (rows.hours(good) - yhat) / (yhat + floor[k][:, None])
    return z.reshape(-1), np.repeat(k, 24)


def _share_lookup(
    code: np.ndarray,
    dayno: np.ndarray,
    hour: np.ndarray,
    shares: np.ndarray,
    learned: np.ndarray,
    tday: np.ndarray,
    profile: str,
) -> np.ndarray:
    """Share of the day's use in each UTC hour: learned, or BDEW by weekday and band."""
    wd = (dayno + 3) % 7
    weekend = (wd >= 5).astype(np.int64)
    out = shares.reshape(-1)[(code * 2 + weekend) * 24 + hour]
    bdew = ~learned[code]
    if bdew.any():
        _, _, table = _published(profile)
        band = slp_temperature_band(np.nan_to_num(tday[bdew], nan=10.0))
        out = out.copy()
        out[bdew] = table[wd[bdew], hour[bdew], band]
    return np.asarray(out, dtype=np.float64)


def _oof_curve(
    tgeo: np.ndarray, target: np.ndarray, params: np.ndarray, first_day: int
) -> np.ndarray:
    """Out-of-fold sigmoid values ``h`` per meter and day (batched over meters).

    For each day-level fold, two damped Gauss–Newton steps from the full fit on the
    other folds' days (``target`` NaN = unusable), projected onto the bounds.
    """
    n_m, n_d = tgeo.shape
    fold = (np.arange(first_day, first_day + n_d)) % N_FOLDS
    out = np.full((n_m, n_d), np.nan)
    t = np.where(np.isnan(tgeo), 10.0, tgeo)
    valid = ~np.isnan(target)
    yv = np.where(valid, target, 0.0)
    eye = np.eye(4)
    # The first step of every fold starts from ``params``: its normal equations are
    # those of all days minus those of the fold's own days.
    h, uc, q, logu = _curve(t, params)
    r = np.where(valid, h - yv, 0.0)
    part = [
        _normal_equations(
            params, uc[:, c], q[:, c], logu[:, c], valid[:, c].astype(np.float64), r[:, c]
        )
        for c in (fold[None, :] == np.arange(N_FOLDS)[:, None])
    ]
    for f in range(N_FOLDS):
        use = valid & (fold != f)[None, :]
        w = use.astype(np.float64)
        p = params.copy()
        for step_no in range(2):
            if step_no == 0:
                jtj = sum(part[g][0] for g in range(N_FOLDS) if g != f)
                jtr = sum(part[g][1] for g in range(N_FOLDS) if g != f)
            else:
                h, uc, q, logu = _curve(t, p)
                r = np.where(use, h - yv, 0.0)
                jtj, jtr = _normal_equations(p, uc, q, logu, w, r)
            jtj, jtr = np.nan_to_num(jtj), np.nan_to_num(jtr)
            damp = 1e-3 * np.einsum("mii->mi", jtj) + 1e-9
            jtj = jtj + damp[:, :, None] * eye[None]
            step = np.linalg.solve(jtj, jtr[:, :, None])[:, :, 0]
            p = np.clip(p - step, LOWER, UPPER)
        cols = fold == f
        out[:, cols] = _curve(t[:, cols], p)[0]
    return out


def _quantiles(
    z: np.ndarray, zm: np.ndarray, n: int, min_count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-meter quantiles of relative residuals; meters with fewer than ``min_count``
    residuals take the quantiles pooled over all meters."""
    lo_q, hi_q = (1 - COVERAGE) / 2, (1 + COVERAGE) / 2
    q_lo = np.zeros(n)
    q_hi = np.zeros(n)
    if z.size == 0:
        return q_lo, q_hi
    own_lo, own_hi = group_quantiles(z, zm, n, (lo_q, hi_q))
    enough = np.bincount(zm, minlength=n) >= min_count
    q_lo[enough], q_hi[enough] = own_lo[enough], own_hi[enough]
    if not bool(enough.all()):
        q_lo[~enough] = float(np.quantile(z, lo_q))
        q_hi[~enough] = float(np.quantile(z, hi_q))
    return np.minimum(q_lo, 0.0), np.maximum(q_hi, 0.0)
