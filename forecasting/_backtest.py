"""Rolling-origin cross-validation of forecasters and a leaderboard of their accuracy.

For each forecast origin (a UTC instant) and each model, a fresh clone
``type(m)(**m.get_params())`` is fitted on the history **before** the origin and predicts
the next ``horizon`` steps.  The horizon is conditioned on the **observed** temperature of
those steps: the "perfect temperature forecast" setting, which isolates the model's error
from the weather forecast's (real day-ahead errors are larger by the weather forecast
error times the meter's temperature sensitivity).

Two presets cover the planner's questions (pass them with ``**``):

* :data:`DAY_AHEAD_HOURLY`: hourly data, origins daily at 00:00 UTC, a 48 h horizon of
  which hours 25–48 are scored (``skip=24``): the forecast issued at midnight for the
  next gas day;
* :data:`MONTH_AHEAD_DAILY`: daily data, a 30-day horizon, origins 30 days apart.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Final, Literal, TypedDict

import polars as pl

from forecasting._base import STEP as _STEP
from forecasting._base import Forecaster
from forecasting._metrics import naive_scale, score
from forecasting.errors import ForecastingError, InvalidInputError, InvalidParameterError


class BacktestPreset(TypedDict):
    """Keyword arguments of :func:`backtest` for a standard setup."""

    horizon: int
    step: int
    skip: int
    min_train: int
    freq: Literal["hour", "day"]


#: Day-ahead hourly: issued at 00:00 UTC, scored on hours 25–48 (the next day); origins
#: one day apart; at least 28 days of training history.
DAY_AHEAD_HOURLY: Final[BacktestPreset] = {
    "horizon": 48,
    "step": 24,
    "skip": 24,
    "min_train": 28 * 24,
    "freq": "hour",
}
#: Month-ahead daily: 30 days scored from the origin on; origins 30 days apart; at least
#: one year of training history (a full heating season).
MONTH_AHEAD_DAILY: Final[BacktestPreset] = {
    "horizon": 30,
    "step": 30,
    "skip": 0,
    "min_train": 365,
    "freq": "day",
}


@dataclass(frozen=True)
class BacktestResult:
    """What :func:`backtest` returns.

    Attributes
    ----------
    predictions
        Out-of-sample forecasts: ``model`` (unique name, see :func:`model_names`),
        ``origin`` (UTC; = the fit's cutoff), ``lead`` (1 = first step after the origin),
        ``meter_id``, ``ts``, ``volume_m3``, ``volume_m3_lo_80``, ``volume_m3_hi_80``,
        ``temperature_c`` and ``actual_m3`` (the observed volume, null if not observed
        or not ``valid``), for every lead including the skipped ones.
    leaderboard
        One row per model, sorted by ``mase`` (best first): ``model``, ``rank``, ``n``
        and the metrics of :func:`forecasting.score`, on the steps with ``lead > skip``
        that **every** model forecast (a fair comparison), plus ``windows`` (origins
        the model fitted) and ``fit_seconds``/``predict_seconds`` in total.
    scores
        Per ``model`` and ``meter_id`` (the metrics of :func:`forecasting.score` on that
        model's own scored steps; an overall row per model with a null ``meter_id``).
    failures
        ``model``, ``origin``, ``error`` (class name) and ``message`` for each fit or
        predict that raised a :class:`forecasting.ForecastingError` (e.g. too little
        history); those windows are left out.
    origins
        The origins used, oldest first.
    """

    predictions: pl.DataFrame
    leaderboard: pl.DataFrame
    scores: pl.DataFrame
    failures: pl.DataFrame
    origins: tuple[dt.datetime, ...]


def model_names(models: Sequence[Forecaster]) -> list[str]:
    """Unique names of ``models``: their ``alias``, suffixed ``#2``, ``#3``… on repeats."""
    seen: dict[str, int] = {}
    names = []
    for m in models:
        seen[m.alias] = seen.get(m.alias, 0) + 1
        names.append(m.alias if seen[m.alias] == 1 else f"{m.alias}#{seen[m.alias]}")
    return names


def origins_for(
    consumption: pl.DataFrame,
    *,
    horizon: int,
    step: int,
    n_windows: int,
    min_train: int,
    freq: str = "hour",
) -> list[dt.datetime]:
    """The rolling origins :func:`backtest` uses, oldest first.

    The last origin leaves ``horizon`` steps of observed data after it; with hourly data
    and ``step`` a multiple of 24 it is moved back to 00:00 UTC.  Earlier origins are
    ``step`` steps apart.  Origins with less than ``min_train`` steps between the first
    observation and the origin are dropped.
    """
    delta = _step(freq)
    first, last = consumption.select(
        pl.col("ts").min().alias("a"), pl.col("ts").max().alias("b")
    ).row(0)
    if first is None:
        return []
    end = last + delta
    latest = end - horizon * delta
    if freq == "hour" and step % 24 == 0:
        latest = latest.replace(hour=0)
    out = [latest - k * step * delta for k in range(n_windows)]
    return sorted(o for o in out if o - first >= min_train * delta and o > first)


def backtest(
    models: Sequence[Forecaster],
    consumption: pl.DataFrame,
    temperature: pl.DataFrame,
    *,
    horizon: int,
    step: int,
    n_windows: int,
    min_train: int,
    freq: Literal["hour", "day"] = "hour",
    skip: int = 0,
    origins: Sequence[dt.datetime] | None = None,
    season: int | None = None,
    n_jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Rolling-origin cross-validation of ``models`` on the same meters and windows.

    Parameters
    ----------
    models
        Unfitted (or fitted: only their parameters are used) forecasters; each window
        fits a fresh clone ``type(m)(**m.get_params())``.  They must share ``freq``.
    consumption
        The ``consumption`` frame at ``freq`` (``meter_id``, ``ts`` UTC step start,
        ``volume_m3`` m³ per step, ``quality``).  Only ``valid`` steps are scored.
    temperature
        Outdoor temperature per meter (``meter_id``, ``ts``, ``temperature_c`` °C) for the
        history and the horizons: the observed temperature is the horizon's input.
    horizon
        Steps forecast from each origin.
    step
        Steps between consecutive origins.
    n_windows
        Number of origins (fewer if the history is too short for ``min_train``).
    min_train
        Minimum steps between the first observation and an origin.
    freq
        ``"hour"`` or ``"day"``.
    skip
        Leading steps of each horizon that are forecast but not scored (``skip=24`` with
        ``horizon=48`` scores the day after tomorrow's issue day: the 24–48 h part).
    origins
        Explicit origins (UTC instants on the step grid) instead of the rolling ones.
    season
        Seasonal period of the MASE scale in steps (default 168 h / 7 days).  The scale
        of each meter is the in-sample seasonal-naive MAE of the history before the
        **first** origin (the training window every fold contains), so all windows of a
        meter share one denominator.
    n_jobs
        Worker processes (``spawn`` start method, which Prophet needs); 1 runs in this
        process.  The models' classes must be importable by the workers, and a script
        that calls this with ``n_jobs > 1`` must guard its entry point with
        ``if __name__ == "__main__":`` (spawn re-imports the main module).
    progress
        Called as ``progress(done, total)`` after each (origin, model) fit.

    Returns
    -------
    BacktestResult
        Predictions, leaderboard, per-meter scores, failures and origins.

    Raises
    ------
    InvalidParameterError
        Bad ``horizon``/``step``/``n_windows``/``min_train``/``skip``, no models, or
        models of another frequency.
    InvalidInputError
        No origin fits into the history (says how much history the setup needs).
    """
    _check_args(
        models,
        horizon=horizon,
        step=step,
        n_windows=n_windows,
        min_train=min_train,
        skip=skip,
        n_jobs=n_jobs,
        freq=freq,
    )
    delta = _step(freq)
    if origins is None:
        chosen = origins_for(
            consumption,
            horizon=horizon,
            step=step,
            n_windows=n_windows,
            min_train=min_train,
            freq=freq,
        )
    else:
        chosen = sorted(origins)
    if not chosen:
        n = consumption.get_column("ts").n_unique() if consumption.height else 0
        raise InvalidInputError(
            f"backtest: expected history for at least one origin, i.e. min_train={min_train} "
            f"+ horizon={horizon} steps ({freq}) per meter, got {n} distinct step(s); load more "
            f"history or lower min_train/horizon"
        )
    names = model_names(models)
    tasks = [
        (origin, name, type(model), model.get_params())
        for origin in chosen
        for name, model in zip(names, models, strict=True)
    ]
    total = len(tasks)
    results: list[_TaskResult] = []

    def args(task: tuple[dt.datetime, str, type[Forecaster], dict[str, object]]) -> _TaskArgs:
        origin, name, cls, params = task
        return _TaskArgs(
            name=name,
            cls=cls,
            params=params,
            origin=origin,
            end=origin + horizon * delta,
            consumption=consumption.filter(pl.col("ts") < origin),
            temperature=temperature.filter(pl.col("ts") < origin + horizon * delta),
        )

    if n_jobs == 1:
        for k, task in enumerate(tasks, start=1):
            results.append(_run_task(args(task)))
            if progress is not None:
                progress(k, total)
    else:
        ctx = multiprocessing.get_context("spawn")
        # Keep only a few tasks in flight: each carries its own slice of the history.
        done_by_index: dict[int, _TaskResult] = {}
        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as pool:
            queue = list(enumerate(tasks))[::-1]
            running: dict[Future[_TaskResult], int] = {}
            while queue or running:
                while queue and len(running) < 2 * n_jobs:
                    k, task = queue.pop()
                    running[pool.submit(_run_task, args(task))] = k
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    done_by_index[running.pop(fut)] = fut.result()
                    if progress is not None:
                        progress(len(done_by_index), total)
        results = [done_by_index[k] for k in range(total)]

    failures = pl.DataFrame(
        [(r.name, r.origin, r.error, r.message) for r in results if r.error is not None],
        schema={
            "model": pl.String,
            "origin": pl.Datetime("us", "UTC"),
            "error": pl.String,
            "message": pl.String,
        },
        orient="row",
    )
    frames = [r.predictions for r in results if r.predictions is not None]
    actual = consumption.filter(
        pl.col("volume_m3").is_not_null()
        & pl.col("volume_m3").is_not_nan()
        & (pl.col("quality") == "valid")
    ).select("meter_id", "ts", pl.col("volume_m3").alias("actual_m3"))
    if frames:
        predictions = pl.concat(frames, how="vertical_relaxed")
    else:
        predictions = pl.DataFrame(schema=_PRED_SCHEMA)
    predictions = (
        predictions.join(actual, on=["meter_id", "ts"], how="left")
        .select(list(_PRED_SCHEMA) + ["actual_m3"])
        .sort("model", "origin", "meter_id", "ts")
    )
    scale = naive_scale(consumption.filter(pl.col("ts") < chosen[0]), season=season, freq=freq)
    scored = predictions.filter(pl.col("lead") > skip)
    scores = score(scored, consumption, scale=scale, freq=freq, by=["model"])
    # The leaderboard compares the models on the same steps: those every model forecast.
    key = ["origin", "meter_id", "ts"]
    common = (
        scored.group_by(key)
        .agg(pl.col("model").n_unique().alias("_k"))
        .filter(pl.col("_k") == len(names))
        .drop("_k")
    )
    board = score(
        scored.join(common, on=key, how="semi"), consumption, scale=scale, freq=freq, by=["model"]
    ).filter(pl.col("meter_id").is_null())
    timing = (
        pl.DataFrame(
            [(r.name, r.error is None, r.fit_seconds, r.predict_seconds) for r in results],
            schema={
                "model": pl.String,
                "ok": pl.Boolean,
                "fit_seconds": pl.Float64,
                "predict_seconds": pl.Float64,
            },
            orient="row",
        )
        .group_by("model")
        .agg(
            pl.col("ok").sum().cast(pl.Int64).alias("windows"),
            pl.col("fit_seconds").sum(),
            pl.col("predict_seconds").sum(),
        )
    )
    order = pl.DataFrame({"model": names, "_order": list(range(len(names)))})
    leaderboard = (
        order.join(board.drop("meter_id"), on="model", how="left")
        .join(timing, on="model", how="left")
        .sort(pl.col("mase").is_null(), "mase", "mae", "_order", nulls_last=True)
        .with_row_index("rank", offset=1)
        .with_columns(pl.col("rank").cast(pl.Int64), pl.col("n").fill_null(0))
        .drop("_order")
    )
    return BacktestResult(
        predictions=predictions,
        leaderboard=leaderboard,
        scores=scores,
        failures=failures,
        origins=tuple(chosen),
    )


# --- one (origin, model) task; module level so spawn workers can import it ----------------

_PRED_SCHEMA: Final = pl.Schema(
    {
        "model": pl.String(),
        "origin": pl.Datetime("us", "UTC"),
        "lead": pl.Int64(),
        "meter_id": pl.String(),
        "ts": pl.Datetime("us", "UTC"),
        "volume_m3": pl.Float64(),
        "volume_m3_lo_80": pl.Float64(),
        "volume_m3_hi_80": pl.Float64(),
        "temperature_c": pl.Float64(),
    }
)


@dataclass(frozen=True)
class _TaskArgs:
    name: str
    cls: type[Forecaster]
    params: dict[str, object]
    origin: dt.datetime
    end: dt.datetime
    consumption: pl.DataFrame
    temperature: pl.DataFrame


@dataclass(frozen=True)
class _TaskResult:
    name: str
    origin: dt.datetime
    predictions: pl.DataFrame | None
    error: str | None
    message: str | None
    fit_seconds: float
    predict_seconds: float


def _run_task(a: _TaskArgs) -> _TaskResult:
    import time

    model = a.cls(**a.params)
    t0 = time.perf_counter()
    try:
        model.fit(a.consumption, a.temperature.filter(pl.col("ts") < a.origin), cutoff=a.origin)
    except ForecastingError as exc:
        return _TaskResult(
            a.name, a.origin, None, type(exc).__name__, str(exc), time.perf_counter() - t0, 0.0
        )
    t1 = time.perf_counter()
    # Observed temperature of the horizon ("perfect temperature forecast"); steps without
    # a temperature are not forecast (and so not scored) rather than failing the window.
    horizon = a.temperature.filter(
        (pl.col("ts") >= a.origin)
        & (pl.col("ts") < a.end)
        & pl.col("meter_id").is_in(list(model.meters_))
        & pl.col("temperature_c").is_not_null()
        & pl.col("temperature_c").is_not_nan()
    )
    try:
        pred = model.predict(horizon)
    except ForecastingError as exc:
        return _TaskResult(
            a.name, a.origin, None, type(exc).__name__, str(exc), t1 - t0, time.perf_counter() - t1
        )
    t2 = time.perf_counter()
    step_us = _step_us(a)
    origin_lit = pl.lit(a.origin, dtype=pl.Datetime("us", "UTC"))
    out = pred.select(
        pl.lit(a.name).alias("model"),
        origin_lit.alias("origin"),
        (((pl.col("ts") - origin_lit).dt.total_microseconds() // step_us) + 1)
        .cast(pl.Int64)
        .alias("lead"),
        "meter_id",
        "ts",
        "volume_m3",
        "volume_m3_lo_80",
        "volume_m3_hi_80",
        "temperature_c",
    )
    return _TaskResult(a.name, a.origin, out, None, None, t1 - t0, t2 - t1)


def _step_us(a: _TaskArgs) -> int:
    freq = a.params.get("freq", "hour")
    return int(_step(str(freq)).total_seconds() * 1_000_000)


def _step(freq: str) -> dt.timedelta:
    if freq not in _STEP:
        raise InvalidParameterError(f"freq: expected 'hour' or 'day', got {freq!r}")
    return _STEP[freq]


def _check_args(
    models: Sequence[Forecaster],
    *,
    horizon: int,
    step: int,
    n_windows: int,
    min_train: int,
    skip: int,
    n_jobs: int,
    freq: str,
) -> None:
    _step(freq)
    if not models:
        raise InvalidParameterError("models: expected at least one Forecaster, got none")
    for m in models:
        if not isinstance(m, Forecaster):
            raise InvalidParameterError(
                f"models: expected Forecaster instances, got {type(m).__name__}"
            )
        mf = getattr(m, "freq", "hour")
        if mf != freq:
            raise InvalidParameterError(
                f"models: {m!r} forecasts freq={mf!r} but the backtest runs at freq={freq!r}; "
                f"construct it with freq={freq!r}"
            )
    for name, value, low in (
        ("horizon", horizon, 1),
        ("step", step, 1),
        ("n_windows", n_windows, 1),
        ("min_train", min_train, 0),
        ("n_jobs", n_jobs, 1),
        ("skip", skip, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidParameterError(f"{name}: expected an integer >= {low}, got {value!r}")
    if skip >= horizon:
        raise InvalidParameterError(
            f"skip: expected fewer skipped steps than the horizon ({horizon}), got {skip}; "
            f"nothing would be scored"
        )
