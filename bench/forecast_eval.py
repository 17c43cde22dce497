"""Rolling-origin evaluation of the forecasters on the real development data.

Three data sets from ``shared/data`` (see :mod:`forecasting._datasets`):

* **cambridge** — hourly gas of the Cambridge buildings (kWh/h), day-ahead: origins
  every day at 00:00 UTC over late winter and the spring shoulder of 2019, horizon 24 h,
  one year of history before each origin, every building with data;
* **uk_nts** — GB national demand (mcm/d), month-ahead: origins every 14 days over
  2023–2024, horizon 30 days, two years of history;
* **de_slp** — German SLP consumption by class (MWh/d, NCG + GASPOOL), month-ahead:
  origins every 14 days over 2019–2020, horizon 30 days, two years of history
  (the temperature file starts in 2017).

Every model is refitted at every origin on the history before it and predicts the
horizon from the *observed* temperature (a forecast conditioned on the "observed"
scenario, i.e. a perfect temperature forecast — the same for every model).  Metrics per
data set: MASE (scale: in-sample MAE of the seasonal-naive forecast — lag 168 h hourly,
7 days daily — over the history before the first origin, per series; the table shows
the mean over series), WAPE, sMAPE, RMSE (in the data set's unit), coverage and mean
width of the 80 % interval (width relative to the mean actual), and wall seconds.

Models come from ``forecasting`` when their classes exist there; until then the harness
uses small stand-ins of its own (marked ``*`` in the tables): a seasonal naive with
empirical intervals, Prophet with temperature as a regressor, and a per-series choice
among the fast models by the error on validation windows before the evaluation period
(the "auto" stand-in).  A model that cannot run (class absent, frequency not supported,
error) is listed with the reason.

Usage::

    .venv/bin/python bench/forecast_eval.py            # full run (≤ 20 min on 2 cores)
    .venv/bin/python bench/forecast_eval.py --quick    # smoke run (~3 min)

Writes the printed tables also to ``bench/results/forecast_eval.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import logging
import math
import multiprocessing as mp
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np
import polars as pl

import forecasting
from forecasting._datasets import (
    DATASET_UNITS,
    DEFAULT_DATA_DIR,
    load_cambridge_gas,
    load_de_market_area_daily,
    load_uk_nts_daily,
)

UTC = dt.UTC
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
#: A forecast function: (history consumption, history temperature, horizon temperature,
#: origin, freq) -> frame meter_id, ts, volume_m3, volume_m3_lo_80, volume_m3_hi_80.
ForecastFn = Callable[[pl.DataFrame, pl.DataFrame, pl.DataFrame, dt.datetime, str], pl.DataFrame]
PRED_COLS = ["meter_id", "ts", "volume_m3", "volume_m3_lo_80", "volume_m3_hi_80"]


# --- data sets --------------------------------------------------------------------------------


@dataclass
class Dataset:
    name: str
    freq: str  # "hour" | "day"
    unit: str
    consumption: pl.DataFrame
    temperature: pl.DataFrame
    origins: list[dt.datetime]
    horizon: int  # steps
    history: dt.timedelta
    validation: list[dt.datetime] = field(default_factory=list)

    @property
    def step(self) -> dt.timedelta:
        return HOUR if self.freq == "hour" else DAY

    @property
    def season(self) -> int:
        return 168 if self.freq == "hour" else 7


def _dates(first: dt.datetime, count: int, every: dt.timedelta) -> list[dt.datetime]:
    return [first + k * every for k in range(count)]


def cambridge(data_dir: Path, quick: bool) -> Dataset:
    first = dt.datetime(2019, 2, 18, tzinfo=UTC)
    n = 8 if quick else 42
    origins = _dates(first, n, DAY)
    validation = _dates(first - 14 * DAY, 4 if quick else 14, DAY)
    history = dt.timedelta(days=365)
    start = validation[0] - history
    end = origins[-1] + DAY
    cons, temp = load_cambridge_gas(data_dir, start=start, end=end)
    # Buildings with a usable year: enough valid hours before the first origin and in
    # the evaluation window (a building absent in 2019 is not evaluated).
    ok = cons.group_by("meter_id").agg(
        (pl.col("quality").eq("valid") & (pl.col("ts") < origins[0])).sum().alias("hist"),
        (pl.col("quality").eq("valid") & (pl.col("ts") >= origins[0])).sum().alias("eval"),
        pl.col("volume_m3").filter(pl.col("ts") >= origins[0]).sum().alias("eval_sum"),
    )
    keep = ok.filter(
        (pl.col("hist") >= 24 * 120) & (pl.col("eval") >= 0.8 * 24 * n) & (pl.col("eval_sum") > 0)
    ).get_column("meter_id")
    cons = cons.filter(pl.col("meter_id").is_in(keep.implode()))
    temp = temp.filter(pl.col("meter_id").is_in(keep.implode()))
    return Dataset(
        "cambridge",
        "hour",
        DATASET_UNITS["cambridge"],
        cons,
        temp,
        origins,
        24,
        history,
        validation,
    )


def uk_nts(data_dir: Path, quick: bool) -> Dataset:
    first = dt.datetime(2023, 1, 2, tzinfo=UTC)
    n = 6 if quick else 50
    origins = _dates(first, n, 14 * DAY)
    validation = _dates(first - 8 * 14 * DAY, 3 if quick else 8, 14 * DAY)
    cons, temp = load_uk_nts_daily(data_dir)
    return Dataset(
        "uk_nts",
        "day",
        DATASET_UNITS["uk_nts"],
        cons,
        temp,
        origins,
        30,
        dt.timedelta(days=730),
        validation,
    )


def de_slp(data_dir: Path, quick: bool) -> Dataset:
    first = dt.datetime(2019, 1, 7, tzinfo=UTC)
    n = 6 if quick else 50
    origins = _dates(first, n, 14 * DAY)
    validation = _dates(first - 8 * 14 * DAY, 3 if quick else 8, 14 * DAY)
    cons, temp = load_de_market_area_daily(data_dir)
    cons = cons.filter(pl.col("ts") < dt.datetime(2021, 1, 1, tzinfo=UTC))
    return Dataset(
        "de_slp",
        "day",
        DATASET_UNITS["de_market_area"],
        cons,
        temp,
        origins,
        30,
        dt.timedelta(days=730),
        validation,
    )


# --- stand-in models (used only while the project's class is absent) -----------------------------


def _z80() -> float:
    return 1.2815515655446004


def seasonal_naive_fn(
    hist: pl.DataFrame, _t: pl.DataFrame, fut: pl.DataFrame, origin: dt.datetime, freq: str
) -> pl.DataFrame:
    """Repeat the last season (168 h / 7 d); interval from the empirical 10/90 % quantiles of
    the seasonal differences in the history, widened by sqrt(number of seasons ahead)."""
    m = 168 if freq == "hour" else 7
    step = HOUR if freq == "hour" else DAY
    valid = hist.filter(pl.col("quality") == "valid").drop_nulls("volume_m3")
    last = valid.filter(pl.col("ts") >= origin - m * step)
    diffs = (
        valid.sort("meter_id", "ts")
        .with_columns(
            (pl.col("volume_m3") - pl.col("volume_m3").shift(m).over("meter_id")).alias("d")
        )
        .drop_nulls("d")
        .group_by("meter_id")
        .agg(pl.col("d").quantile(0.1).alias("q_lo"), pl.col("d").quantile(0.9).alias("q_hi"))
    )
    step_us = int(step.total_seconds() * 1e6)
    k = (pl.col("ts").cast(pl.Int64) - int(origin.timestamp() * 1e6)) // step_us
    out = (
        fut.select("meter_id", "ts")
        .with_columns(
            (pl.col("ts") - pl.duration(microseconds=(k // m + 1) * m * step_us)).alias("src"),
            (k // m + 1).cast(pl.Float64).sqrt().alias("widen"),
        )
        .join(
            last.select("meter_id", pl.col("ts").alias("src"), "volume_m3"),
            on=["meter_id", "src"],
            how="left",
        )
        .join(diffs, on="meter_id", how="left")
    )
    # A missing lag value falls back to the meter's mean of the last season.
    mean = last.group_by("meter_id").agg(pl.col("volume_m3").mean().alias("mean"))
    out = out.join(mean, on="meter_id", how="left").with_columns(
        pl.coalesce("volume_m3", "mean", pl.lit(0.0)).alias("volume_m3")
    )
    return out.select(
        "meter_id",
        "ts",
        pl.col("volume_m3"),
        (pl.col("volume_m3") + pl.col("q_lo").fill_null(0.0) * pl.col("widen"))
        .clip(0.0)
        .alias("volume_m3_lo_80"),
        (pl.col("volume_m3") + pl.col("q_hi").fill_null(0.0) * pl.col("widen"))
        .clip(0.0)
        .alias("volume_m3_hi_80"),
    )


def _prophet_one(args: tuple[str, Any, Any, Any, str]) -> pl.DataFrame:
    """Fit Prophet with temperature for one series (runs in a spawn worker)."""
    meter, hist_pd, fut_pd, holidays, freq = args
    logging.getLogger("cmdstanpy").setLevel(logging.ERROR)
    logging.getLogger("prophet").setLevel(logging.ERROR)
    from prophet import Prophet

    for name in ("cmdstanpy", "prophet"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = Prophet(
            interval_width=0.8,
            daily_seasonality=freq == "hour",
            weekly_seasonality=True,
            yearly_seasonality=freq == "day",
            uncertainty_samples=200,
        )
        if holidays is not None:
            model.add_country_holidays(country_name=holidays)
        model.add_regressor("temp")
        model.fit(hist_pd)
        fc = model.predict(fut_pd)
    return pl.DataFrame(
        {
            "meter_id": meter,
            "ts": pl.Series(fc["ds"].to_numpy())
            .dt.cast_time_unit("us")
            .dt.replace_time_zone("UTC"),
            "volume_m3": np.maximum(fc["yhat"].to_numpy(), 0.0),
            "volume_m3_lo_80": np.maximum(fc["yhat_lower"].to_numpy(), 0.0),
            "volume_m3_hi_80": np.maximum(fc["yhat_upper"].to_numpy(), 0.0),
        }
    )


class ProphetStandIn:
    """Prophet per series with temperature as a regressor, in a spawn pool (PERFORMANCE.md)."""

    def __init__(self, pool: ProcessPoolExecutor, country: str | None) -> None:
        self.pool, self.country = pool, country

    def __call__(
        self,
        hist: pl.DataFrame,
        temp: pl.DataFrame,
        fut: pl.DataFrame,
        origin: dt.datetime,
        freq: str,
    ) -> pl.DataFrame:
        jobs = []
        data = (
            hist.filter(pl.col("quality") == "valid")
            .drop_nulls("volume_m3")
            .join(temp, on=["meter_id", "ts"], how="inner")
        )
        for meter in fut.get_column("meter_id").unique().sort().to_list():
            h = data.filter(pl.col("meter_id") == meter)
            f = fut.filter(pl.col("meter_id") == meter)
            if h.height < 30:
                continue
            hist_pd = h.select(
                pl.col("ts").dt.replace_time_zone(None).alias("ds"),
                pl.col("volume_m3").alias("y"),
                pl.col("temperature_c").alias("temp"),
            ).to_pandas()
            fut_pd = f.select(
                pl.col("ts").dt.replace_time_zone(None).alias("ds"),
                pl.col("temperature_c").alias("temp"),
            ).to_pandas()
            jobs.append((meter, hist_pd, fut_pd, self.country, freq))
        return pl.concat(list(self.pool.map(_prophet_one, jobs)))


# --- the project's estimators ---------------------------------------------------------------------


def estimator_fn(name: str, **params: Any) -> Callable[[str], ForecastFn | str]:
    """Factory: given a frequency, a ForecastFn around ``forecasting.<name>`` or a reason string."""

    def build(freq: str) -> ForecastFn | str:
        cls = getattr(forecasting, name, None)
        if cls is None:
            return f"forecasting.{name} not available yet"
        kw = dict(params)
        if freq == "day" or "freq" in _param_names(cls):
            kw["freq"] = freq
        kw.update(DAILY_PARAMS.get(name, {}) if freq == "day" else {})
        try:
            cls(**kw)
        except TypeError as exc:
            return f"{name} does not take {sorted(kw)}: {exc}"

        def run(
            hist: pl.DataFrame,
            temp: pl.DataFrame,
            fut: pl.DataFrame,
            origin: dt.datetime,
            freq: str,
        ) -> pl.DataFrame:
            model = cls(**kw).fit(hist, temp, cutoff=origin)
            meters = list(model.meters_)
            return model.predict(fut.filter(pl.col("meter_id").is_in(meters))).select(PRED_COLS)

        return run

    return build


def _param_names(cls: type) -> list[str]:
    import inspect

    sig = inspect.signature(cls.__init__)
    return [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]


# --- evaluation -----------------------------------------------------------------------------------


@dataclass
class Result:
    model: str
    preds: pl.DataFrame | None
    seconds: float
    note: str = ""


def rolling(ds: Dataset, fn: ForecastFn, origins: list[dt.datetime]) -> pl.DataFrame:
    frames = []
    for origin in origins:
        hist = ds.consumption.filter(
            pl.col("ts").is_between(origin - ds.history, origin, closed="left")
        )
        t_hist = ds.temperature.filter(
            pl.col("ts").is_between(origin - ds.history, origin, closed="left")
        )
        end = origin + ds.horizon * ds.step
        fut = ds.temperature.filter(pl.col("ts").is_between(origin, end, closed="left"))
        # Forecast only series that have history before the origin.
        fut = fut.filter(pl.col("meter_id").is_in(hist.get_column("meter_id").unique().implode()))
        out = fn(hist, t_hist, fut, origin, ds.freq)
        frames.append(out.select(PRED_COLS).with_columns(pl.lit(origin).alias("origin")))
    return pl.concat(frames)


def scales(ds: Dataset, before: dt.datetime) -> pl.DataFrame:
    """Per series: in-sample MAE of the seasonal naive over the history before ``before``."""
    valid = ds.consumption.filter(
        (pl.col("ts") < before) & (pl.col("ts") >= before - ds.history)
    ).sort("meter_id", "ts")
    m = ds.season
    return (
        valid.with_columns(
            (pl.col("volume_m3") - pl.col("volume_m3").shift(m).over("meter_id")).abs().alias("e"),
            (pl.col("ts") - pl.col("ts").shift(m).over("meter_id")).alias("gap"),
        )
        .filter(pl.col("gap") == m * ds.step)
        .group_by("meter_id")
        .agg(pl.col("e").mean().alias("scale"))
    )


def score(ds: Dataset, preds: pl.DataFrame, scale: pl.DataFrame) -> dict[str, float]:
    actual = ds.consumption.filter(pl.col("quality") == "valid").drop_nulls("volume_m3")
    j = preds.join(
        actual.select("meter_id", "ts", pl.col("volume_m3").alias("y")),
        on=["meter_id", "ts"],
        how="inner",
    )
    if j.height == 0:
        return {}
    e = (pl.col("volume_m3") - pl.col("y")).abs()
    per = (
        j.group_by("meter_id")
        .agg(e.mean().alias("mae"))
        .join(scale, on="meter_id")
        .filter(pl.col("scale") > 0)
    )
    y = j.get_column("y").to_numpy()
    f = j.get_column("volume_m3").to_numpy()
    lo = j.get_column("volume_m3_lo_80").to_numpy()
    hi = j.get_column("volume_m3_hi_80").to_numpy()
    denom = np.abs(y) + np.abs(f)
    smape = np.where(denom > 0, 2 * np.abs(f - y) / np.where(denom > 0, denom, 1), 0.0)
    return {
        "MASE": float((per["mae"] / per["scale"]).mean()),
        "WAPE": float(np.abs(f - y).sum() / np.abs(y).sum()),
        "sMAPE": float(smape.mean()),
        "RMSE": float(math.sqrt(np.mean((f - y) ** 2))),
        "cov80": float(((y >= lo) & (y <= hi)).mean()),
        "width80": float((hi - lo).mean() / np.abs(y).mean()),
        "rows": float(j.height),
    }


def auto_standin(
    ds: Dataset, candidates: dict[str, ForecastFn]
) -> tuple[ForecastFn, dict[str, str]]:
    """Per series, the candidate with the lowest MAE over the validation origins."""
    errs = []
    actual = ds.consumption.filter(pl.col("quality") == "valid").drop_nulls("volume_m3")
    for name, fn in candidates.items():
        try:
            p = rolling(ds, fn, ds.validation)
        except Exception as exc:  # noqa: BLE001 - a failing candidate is just not chosen
            print(f"  auto stand-in: {name} failed on validation: {exc!r}"[:300], file=sys.stderr)
            continue
        e = (
            p.join(
                actual.select("meter_id", "ts", pl.col("volume_m3").alias("y")),
                on=["meter_id", "ts"],
            )
            .group_by("meter_id")
            .agg((pl.col("volume_m3") - pl.col("y")).abs().mean().alias("mae"))
            .with_columns(pl.lit(name).alias("model"))
        )
        errs.append(e)
    best = pl.concat(errs).sort("meter_id", "mae").group_by("meter_id", maintain_order=True).first()
    choice = dict(zip(best["meter_id"].to_list(), best["model"].to_list(), strict=True))

    def run(
        hist: pl.DataFrame, temp: pl.DataFrame, fut: pl.DataFrame, origin: dt.datetime, freq: str
    ) -> pl.DataFrame:
        outs = []
        for name in sorted(set(choice.values())):
            meters = [m for m, c in choice.items() if c == name]
            sub = fut.filter(pl.col("meter_id").is_in(meters))
            if sub.height:
                outs.append(
                    candidates[name](
                        hist.filter(pl.col("meter_id").is_in(meters)),
                        temp.filter(pl.col("meter_id").is_in(meters)),
                        sub,
                        origin,
                        freq,
                    ).select(PRED_COLS)
                )
        return pl.concat(outs)

    return run, choice


def evaluate(
    ds: Dataset,
    pool: ProcessPoolExecutor,
    quick: bool,
    log: Callable[[str], None],
    *,
    cache: Path | None = None,
    refit_auto: bool = False,
) -> list[tuple[str, dict[str, float], float, str]]:
    country = {"cambridge": "GB", "uk_nts": "GB", "de_slp": "DE"}[ds.name]
    hour = ds.freq == "hour"
    specs: list[tuple[str, Callable[[str], ForecastFn | str]]] = [
        ("seasonal_naive", estimator_fn("SeasonalNaive")),
        ("weekday_hour_mean", estimator_fn("WeekdayHourMean")),
        ("hdd_regression", estimator_fn("HeatingDegreeRegression")),
        ("slp_sigmoid", estimator_fn("StandardLoadProfile")),
        ("global_gbm", estimator_fn("GlobalGradientBoosting")),
    ]
    if not hour:
        specs += [
            ("sarimax", estimator_fn("SarimaxForecaster")),
            ("ets", estimator_fn("ExponentialSmoothingForecaster")),
        ]
    specs.append(("prophet", estimator_fn("ProphetForecaster")))
    fns: dict[str, ForecastFn] = {}
    notes: dict[str, str] = {}
    for name, build in specs:
        got = build(ds.freq)
        if isinstance(got, str):
            if name == "seasonal_naive":
                fns[name], notes[name] = seasonal_naive_fn, "* stand-in (" + got + ")"
            elif name == "prophet":
                fns[name], notes[name] = ProphetStandIn(pool, country), "* stand-in (" + got + ")"
            else:
                notes[name] = got
        else:
            fns[name] = got
    # Prophet is slow at hourly: a subset of series and origins (stated in the table).
    prophet_origins = ds.origins
    prophet_meters: list[str] | None = None
    if hour:
        prophet_origins = ds.origins[:: 6 if not quick else 4]
        prophet_meters = (
            ds.consumption.get_column("meter_id")
            .unique()
            .sort()
            .to_list()[:: 4 if not quick else 8]
        )
    elif not quick:
        prophet_origins = ds.origins[::3]
    if prophet_origins is not ds.origins or prophet_meters is not None:
        n_p = (
            len(prophet_meters)
            if prophet_meters is not None
            else ds.consumption.get_column("meter_id").n_unique()
        )
        notes["prophet"] = (
            notes.get("prophet", "") + f" subset: {n_p} series × {len(prophet_origins)} origins"
        ).strip()

    scale = scales(ds, ds.origins[0])
    results: list[tuple[str, dict[str, float], float, str]] = []
    preds: dict[str, pl.DataFrame] = {}
    track: dict[str, pl.DataFrame] = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        try:
            if name == "prophet":
                sub = _subset(ds, prophet_meters) if prophet_meters is not None else ds
                p = rolling(sub, fn, prophet_origins)
            else:
                # Candidates of the automatic choice also forecast the validation
                # origins before the evaluation: their track record.
                every = ds.validation + ds.origins if name in TRACK_CANDIDATES else ds.origins
                p = _cached_rolling(ds, name, fn, every, cache, quick, log)
                if name in TRACK_CANDIDATES:
                    track[name] = p
                    p = p.filter(pl.col("origin").is_in(ds.origins))
        except Exception as exc:  # noqa: BLE001 - report and carry on
            results.append(
                (
                    name,
                    {},
                    time.perf_counter() - t0,
                    f"failed: {type(exc).__name__}: {str(exc)[:160]}",
                )
            )
            log(traceback.format_exc())
            continue
        secs = time.perf_counter() - t0
        preds[name] = p
        note = notes.get(name, "")
        if (ds.name, name) in FROM_CACHE:
            note = (note + " forecasts from --cache: seconds are not this run's").strip()
        results.append((name, score(ds, p, scale), secs, note))
        log(f"  {ds.name} {name}: {secs:.1f} s")
    for name, note in notes.items():
        if name not in fns:
            results.append((name, {}, 0.0, note))

    # The automatically chosen model, from the candidates' track record.
    t0 = time.perf_counter()
    if track:
        window = TRACK_WINDOW[ds.freq]
        p, note = track_record_auto(ds, track, window)
        secs = time.perf_counter() - t0
        cost = sum(r[2] for r in results if r[0] in track)
        note += f"; cost = the candidates' own runs ({cost:.0f} s) + {secs:.1f} s for the choices"
        results.append(("auto", score(ds, p, scale), secs, note))
        preds["auto"] = p
        # How much the look-back matters (reported, not tuned per data set).
        for w in TRACK_WINDOWS_REPORTED:
            if w != window:
                q, _ = track_record_auto(ds, track, w)
                results.append((f"auto (look-back {w} origins)", score(ds, q, scale), 0.0, ""))
    # The same choice by AutoForecaster, refitting every candidate on rolling windows
    # inside every origin (slow: the internal backtest dominates).
    t0 = time.perf_counter()
    auto_cls = getattr(forecasting, "AutoForecaster", None)
    cand_names = [n for n in FAST_CLASSES[ds.freq] if getattr(forecasting, n, None) is not None]
    if refit_auto and auto_cls is not None and cand_names:
        try:
            fn_auto, desc = auto_fn(ds, cand_names)
            p = rolling(ds, fn_auto, ds.origins)
            results.append(("auto_refit", score(ds, p, scale), time.perf_counter() - t0, desc()))
        except Exception as exc:  # noqa: BLE001
            results.append(
                (
                    "auto_refit",
                    {},
                    time.perf_counter() - t0,
                    f"failed: {type(exc).__name__}: {str(exc)[:160]}",
                )
            )
            log(traceback.format_exc())
            t0 = time.perf_counter()
    if "auto" not in preds:
        results = [r for r in results if r[0] != "auto"]
        fast = {k: v for k, v in fns.items() if k != "prophet"}
        auto_fn2, choice = auto_standin(ds, fast)
        p = rolling(ds, auto_fn2, ds.origins)
        counts: dict[str, int] = {}
        for c in choice.values():
            counts[c] = counts.get(c, 0) + 1
        picks = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        results.append(
            (
                "auto",
                score(ds, p, scale),
                time.perf_counter() - t0,
                f"* stand-in, per series by validation MAE over {len(ds.validation)} origins: {picks}",
            )
        )
        preds["auto"] = p
    # Auto on Prophet's subset, for a like-for-like comparison.
    if "prophet" in preds and (prophet_meters is not None or prophet_origins is not ds.origins):
        meters = (
            prophet_meters
            if prophet_meters is not None
            else ds.consumption.get_column("meter_id").unique().to_list()
        )
        on_subset = pl.col("meter_id").is_in(meters) & pl.col("origin").is_in(prophet_origins)
        results.append(
            (
                "auto@prophet_subset",
                score(ds, preds["auto"].filter(on_subset), scale),
                0.0,
                "auto scored on Prophet's subset",
            )
        )
        sn = preds.get("seasonal_naive")
        if sn is not None:
            results.append(
                ("seasonal_naive@prophet_subset", score(ds, sn.filter(on_subset), scale), 0.0, "")
            )
    return results


#: Month-ahead daily needs lag features no shorter than the 30-day horizon (GBM lags are
#: given in hours at every frequency).
DAILY_PARAMS: dict[str, dict[str, Any]] = {"GlobalGradientBoosting": {"lags": (35 * 24, 364 * 24)}}

#: Candidates of AutoForecaster (Prophet is left out: refitting it inside every origin's
#: internal backtest would take hours; it is compared separately).
FAST_CLASSES: dict[str, list[str]] = {
    "hour": [
        "SeasonalNaive",
        "WeekdayHourMean",
        "HeatingDegreeRegression",
        "StandardLoadProfile",
        "GlobalGradientBoosting",
    ],
    "day": [
        "SeasonalNaive",
        "WeekdayHourMean",
        "HeatingDegreeRegression",
        "StandardLoadProfile",
        "GlobalGradientBoosting",
        "ExponentialSmoothingForecaster",
    ],
}


#: Candidates of the automatic choice (harness names): fast models only.  Prophet is
#: compared separately, on a subset (hourly Prophet for every series would take hours).
TRACK_CANDIDATES: tuple[str, ...] = (
    "seasonal_naive",
    "weekday_hour_mean",
    "hdd_regression",
    "slp_sigmoid",
    "global_gbm",
    "ets",
    "sarimax",
)


#: (data set, model) pairs whose forecasts came from --cache (their seconds are not measured).
FROM_CACHE: set[tuple[str, str]] = set()


#: Origins of track record the automatic choice looks back over: 14 days at day-ahead
#: hourly, 30 origins (~14 months at 14-day spacing) at month-ahead daily; other look-backs
#: are reported next to it.
TRACK_WINDOW: dict[str, int] = {"hour": 14, "day": 30}
TRACK_WINDOWS_REPORTED: tuple[int, ...] = (7, 14, 30, 60)


def _cached_rolling(
    ds: Dataset,
    name: str,
    fn: ForecastFn,
    origins: list[dt.datetime],
    cache: Path | None,
    quick: bool,
    log: Callable[[str], None],
) -> pl.DataFrame:
    """``rolling`` with its result kept in ``cache`` (per data set, model and origins)."""
    if cache is None:
        return rolling(ds, fn, origins)
    path = cache / f"{ds.name}{'-quick' if quick else ''}-{name}.parquet"
    if path.exists():
        got = pl.read_parquet(path)
        if set(got.get_column("origin").unique().to_list()) >= set(origins):
            log(f"  {ds.name} {name}: rolling forecasts from the cache {path}")
            FROM_CACHE.add((ds.name, name))
            return got.filter(pl.col("origin").is_in(origins))
    p = rolling(ds, fn, origins)
    cache.mkdir(parents=True, exist_ok=True)
    p.write_parquet(path)
    return p


def track_record_auto(
    ds: Dataset, track: dict[str, pl.DataFrame], window: int | None = None
) -> tuple[pl.DataFrame, str]:
    """Per origin: ``forecasting.choose_by_track_record`` on the candidates' forecasts from
    the previous validation-length run of origins (only steps metered before the origin),
    applied to the candidates' forecasts at the origin."""
    every = ds.validation + ds.origins
    window = window if window is not None else len(ds.validation)
    frames = pl.concat(
        [p.with_columns(pl.lit(name).alias("model")) for name, p in track.items()],
        how="vertical_relaxed",
    )
    out = []
    counts: dict[str, int] = {}
    for origin in ds.origins:
        k = every.index(origin)
        past = frames.filter(pl.col("origin").is_in(every[max(0, k - window) : k]))
        choice = forecasting.choose_by_track_record(
            past, ds.consumption, as_of=origin, freq="hour" if ds.freq == "hour" else "day"
        )
        for c in choice.choice.values():
            counts[c] = counts.get(c, 0) + 1
        now = frames.filter(pl.col("origin") == origin)
        out.append(choice.apply(now).select(*PRED_COLS, "origin"))
    picks = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    note = (
        f"choose_by_track_record over {sorted(track)}: each origin scores the candidates' "
        f"forecasts from the previous {window} origins (steps metered before it), picks per "
        f"series by MASE, conformal width factor per chosen model; choices (series × origin): {picks}"
    )
    return pl.concat(out), note


def auto_fn(ds: Dataset, names: list[str]) -> tuple[ForecastFn, Callable[[], str]]:
    """ForecastFn around forecasting.AutoForecaster with the given candidate classes."""
    cands = []
    for n in names:
        cls = getattr(forecasting, n)
        try:
            cands.append(cls(freq=ds.freq, **(DAILY_PARAMS.get(n, {}) if ds.freq == "day" else {})))
        except TypeError:
            if ds.freq == "hour":
                cands.append(cls())
    if ds.freq == "hour":
        # 5 daily windows before every origin: the internal backtest refits every
        # candidate per window, so this is what dominates the run time.
        kw: dict[str, Any] = {"horizon": 24, "n_windows": 5, "step": 24, "min_train": 24 * 60}
    else:
        kw = {"horizon": 30, "n_windows": 6, "step": 14, "min_train": 365}
    chosen: dict[str, int] = {}

    def run(
        hist: pl.DataFrame, temp: pl.DataFrame, fut: pl.DataFrame, origin: dt.datetime, freq: str
    ) -> pl.DataFrame:
        model = forecasting.AutoForecaster(candidates=cands, freq=ds.freq, **kw)
        model.fit(hist, temp, cutoff=origin)
        for c in model.choice_.values():
            chosen[c] = chosen.get(c, 0) + 1
        meters = list(model.meters_)
        return model.predict(fut.filter(pl.col("meter_id").is_in(meters))).select(PRED_COLS)

    desc = (
        f"AutoForecaster over {[c.alias for c in cands]}, backtest {kw['n_windows']} windows "
        f"× {kw['horizon']} steps before each origin, conformal recalibration (model)"
    )

    def describe() -> str:
        picks = ", ".join(f"{k} {v}" for k, v in sorted(chosen.items()))
        return f"{desc}; choices (meter × origin): {picks}"

    return run, describe


def _subset(ds: Dataset, meters: list[str]) -> Dataset:
    return Dataset(
        ds.name,
        ds.freq,
        ds.unit,
        ds.consumption.filter(pl.col("meter_id").is_in(meters)),
        ds.temperature.filter(pl.col("meter_id").is_in(meters)),
        ds.origins,
        ds.horizon,
        ds.history,
        ds.validation,
    )


def table(ds: Dataset, results: list[tuple[str, dict[str, float], float, str]]) -> str:
    n_series = ds.consumption.get_column("meter_id").n_unique()
    out = io.StringIO()
    out.write(
        f"\n### {ds.name} — {n_series} series, freq={ds.freq}, horizon {ds.horizon} steps, "
        f"{len(ds.origins)} origins {ds.origins[0]:%Y-%m-%d}…{ds.origins[-1]:%Y-%m-%d}\n\n"
        f"Unit of RMSE: {ds.unit}.\n\n"
    )
    out.write("| model | MASE | WAPE | sMAPE | RMSE | cov 80 % | width 80 % | seconds | note |\n")
    out.write("|---|---|---|---|---|---|---|---|---|\n")

    def key(r: tuple[str, dict[str, float], float, str]) -> float:
        return r[1].get("MASE", math.inf)

    for name, m, secs, note in sorted(results, key=key):
        if m:
            out.write(
                f"| {name} | {m['MASE']:.3f} | {m['WAPE']:.3f} | {m['sMAPE']:.3f} | {m['RMSE']:.4g} | "
                f"{m['cov80']:.1%} | {m['width80']:.2f} | {secs:.1f} | {note} |\n"
            )
        else:
            out.write(f"| {name} | – | – | – | – | – | – | {secs:.1f} | {note} |\n")
    by = {r[0]: r[1] for r in results}
    auto, sn, pr = by.get("auto", {}), by.get("seasonal_naive", {}), by.get("prophet", {})
    out.write("\nGoals:\n")
    if auto and sn:
        ratio = auto["MASE"] / sn["MASE"]
        goal = " (goal ≤ 0.75 at day-ahead hourly)" if ds.freq == "hour" else ""
        out.write(
            f"- MASE(auto) / MASE(seasonal naive) = {ratio:.3f}{goal}"
            + (
                f": {'met' if ratio <= 0.75 else 'NOT met'}\n"
                if ds.freq == "hour"
                else " (no goal at month-ahead daily)\n"
            )
        )
    a_sub = by.get("auto@prophet_subset") or auto
    if a_sub and pr:
        out.write(
            f"- MASE(auto) = {a_sub['MASE']:.3f} vs MASE(Prophet) = {pr['MASE']:.3f} on the same series/origins "
            f"(ratio {a_sub['MASE'] / pr['MASE']:.3f}; goal: auto better): {'met' if a_sub['MASE'] < pr['MASE'] else 'NOT met'}\n"
        )
    if auto:
        ok = 0.78 <= auto["cov80"] <= 0.82
        out.write(
            f"- 80 % interval coverage of auto = {auto['cov80']:.1%} (goal 78–82 %): {'met' if ok else 'NOT met'}\n"
        )
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (~3 min): fewer origins")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--datasets", default="cambridge,uk_nts,de_slp")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "forecast_eval.md")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--cache", type=Path, default=None, help="keep/reuse rolling forecasts per model here"
    )
    parser.add_argument(
        "--refit-auto",
        action="store_true",
        help="also run AutoForecaster (internal backtest at every origin; hours at full size)",
    )
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.getLogger("cmdstanpy").setLevel(logging.ERROR)
    t_all = time.perf_counter()
    loaders = {"cambridge": cambridge, "uk_nts": uk_nts, "de_slp": de_slp}
    doc = io.StringIO()
    doc.write(
        f"# Forecast evaluation on the real development data\n\n"
        f"Generated by `bench/forecast_eval.py{' --quick' if args.quick else ''}` on "
        f"{dt.datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores. Rolling origin, refit at "
        f"every origin, observed temperature over the horizon. `*` = the harness's stand-in "
        f"while the project's class is absent. MASE scale: in-sample seasonal-naive MAE "
        f"(168 h / 7 d) before the first origin; width = mean interval width / mean actual.\n"
    )

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool:
        for name in args.datasets.split(","):
            t0 = time.perf_counter()
            ds = loaders[name](args.data_dir, args.quick)
            log(f"{name}: loaded {ds.consumption.height} rows in {time.perf_counter() - t0:.1f} s")
            results = evaluate(
                ds, pool, args.quick, log, cache=args.cache, refit_auto=args.refit_auto
            )
            text = table(ds, results)
            print(text, flush=True)
            doc.write(text)
            # Written after every data set, so a long run leaves its finished tables.
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(doc.getvalue() + "\n(run in progress)\n")
    total = time.perf_counter() - t_all
    tail = f"\nTotal wall time: {total:.0f} s.\n"
    print(tail)
    doc.write(tail)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(doc.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
