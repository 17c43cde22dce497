"""Day-ahead forecasts for 100,000 simulated metering points: fast path vs projected Prophet.

Every metering point gets one year of hourly history (2021, 8,760 h) drawn from the fleet
simulator's own models — :func:`ingest._enterprise.build_enterprise` draws the fleet
(category, BDEW/boiler/shift sub-type, annual volume, noise level, company time zone)
and :func:`ingest._profiles.build_profiles` turns the real Bedford temperature into each
sub-type's hourly profile; the expected use times the simulator's log-normal noise is
the history, exactly as ``ingest.simulate`` computes the true volume (without writing
register files, faults or devices, which forecasting does not need).  The horizon is the
next UTC day (2022-01-01), predicted from the observed Bedford temperature.

Fast path: the heating-degree regression and the global gradient-boosting model for every
meter.  The global model's trees are fitted once, on ``--gbm-sample`` meters spread over
the fleet (``GlobalGradientBoosting.extend`` then gives every other meter its level,
heating line, lags and calibrated interval without refitting).  The meters are cut into
chunks; each chunk is simulated, fitted and predicted inside a worker of a ``spawn``
:class:`~concurrent.futures.ProcessPoolExecutor` (one per core), so no worker ever holds
more than one chunk's history and the parent never holds any.  The SLP sigmoid is the
fallback for meters with too little history (none here); it is timed on
``--sample-chunks`` chunks and projected, outside the fast path.

Prophet: fitted with temperature as a regressor on ``--prophet-sample`` meters (one
core, the same year of history), and projected to all meters on the workers' cores.

Usage::

    .venv/bin/python bench/forecast_scale.py                  # 100,000 meters
    .venv/bin/python bench/forecast_scale.py --meters 2000 --prophet-sample 4   # smoke run

Prints seconds, rows/s (history rows processed) and peak memory (max RSS of the parent
and of the largest worker) per model, and the ratio projected Prophet / fast path.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import multiprocessing as mp
import os
import resource
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np
import polars as pl

START = dt.date(2021, 1, 1)
HISTORY_DAYS = 365
HORIZON_H = 24
#: Fleet size the per-meter costs are projected to.
PROJECT_TO = 100_000
UTC = dt.UTC

#: CPU seconds of finished CmdStan children already attributed (per worker process).
_CHILD_CPU: list[float] = []
# Worker state, set once per process by _init.
_STATE: dict[str, Any] = {}


def _fleet(meters: int, seed: int) -> dict[str, np.ndarray]:
    from ingest._enterprise import build_enterprise
    from ingest._simulator import SimulationConfig

    config = SimulationConfig(
        seed=seed, meters=meters, start=START, days=HISTORY_DAYS + 1, faults=False
    )
    ent = build_enterprise(config)
    return {
        "company": ent.company.astype(np.int64),
        "subtype": ent.subtype.astype(np.int64),
        "annual_m3": ent.annual_m3.astype(np.float64),
        "noise_sigma": ent.noise_sigma.astype(np.float64),
        "company_tz": np.array(ent.company_tz),
        "seed": np.array([seed]),
    }


def _init(fleet: dict[str, np.ndarray], gbm: Any = None) -> None:
    """Per worker: the profiles of every (company, sub-type) over history + horizon, and
    the global model fitted once on a sample of the fleet (extended to each chunk)."""
    _STATE["gbm"] = gbm
    from ingest import _shipped
    from ingest._profiles import build_profiles

    days = HISTORY_DAYS + 1
    hours = days * 24
    start = dt.datetime(START.year, START.month, START.day, tzinfo=UTC)
    ts = pl.datetime_range(
        start, start + dt.timedelta(hours=hours), "1h", closed="left", time_zone="UTC", eager=True
    )
    calendars = []
    for tz in fleet["company_tz"].tolist():
        local = ts.dt.convert_time_zone(tz)
        calendars.append(
            (
                local.dt.hour().to_numpy().astype(np.int64),
                local.dt.weekday().to_numpy().astype(np.int64) - 1,
            )
        )
    _STATE["profiles"] = build_profiles(START, days, calendars)
    first = int((start - _shipped.TEMPERATURE_START).total_seconds() // 3600)
    _STATE["temperature"] = _shipped.hourly_temperature()[first : first + hours].astype(np.float64)
    _STATE["ts"] = ts
    _STATE["fleet"] = fleet
    for name in ("cmdstanpy", "prophet"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.simplefilter("ignore")


def _simulate(i0: int, i1: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """History consumption, history temperature and horizon temperature of meters i0..i1."""
    fleet, profiles = _STATE["fleet"], _STATE["profiles"]
    hist_h = HISTORY_DAYS * 24
    m = i1 - i0
    rng = np.random.default_rng([int(fleet["seed"][0]), 7, i0])
    sigma = fleet["noise_sigma"][i0:i1, None].astype(np.float32)
    z = rng.standard_normal((m, hist_h), dtype=np.float32)
    noise = np.exp(sigma * z - 0.5 * sigma * sigma)
    expected = (
        profiles[fleet["company"][i0:i1], fleet["subtype"][i0:i1], :hist_h]
        * fleet["annual_m3"][i0:i1, None]
    )
    volume = np.round(expected * noise, 3).astype(np.float64).reshape(-1)
    del z, noise, expected
    ids = pl.Series("meter_id", [f"MP{i:06d}" for i in range(i0, i1)], dtype=pl.String)
    idx_hist = np.repeat(np.arange(m), hist_h)
    ts: pl.Series = _STATE["ts"]
    hist_ts = ts.head(hist_h)
    meter_col = ids.gather(idx_hist)
    ts_col = pl.concat([hist_ts] * m) if m else hist_ts.clear()
    consumption = pl.DataFrame(
        {
            "meter_id": meter_col,
            "ts": ts_col,
            "volume_m3": volume,
            "quality": pl.Series(["valid"]).gather(np.zeros(m * hist_h, dtype=np.int64)),
        }
    )
    temp = _STATE["temperature"]
    temperature = pl.DataFrame(
        {"meter_id": meter_col, "ts": ts_col, "temperature_c": np.tile(temp[:hist_h], m)}
    )
    fut_ts = ts.slice(hist_h, HORIZON_H)
    horizon = pl.DataFrame(
        {
            "meter_id": ids.gather(np.repeat(np.arange(m), HORIZON_H)),
            "ts": pl.concat([fut_ts] * m) if m else fut_ts.clear(),
            "temperature_c": np.tile(temp[hist_h : hist_h + HORIZON_H], m),
        }
    )
    return consumption, temperature, horizon


def _models(names: list[str]) -> dict[str, Any]:
    import forecasting

    out: dict[str, Any] = {}
    for name in names:
        cls = getattr(forecasting, name, None)
        if cls is not None:
            out[name] = cls
    return out


def _chunk(args: tuple[int, int, list[str]]) -> dict[str, Any]:
    """Simulate, fit and predict one chunk per model; seconds and the forecast rows."""
    i0, i1, names = args
    c0 = time.process_time()
    t0 = time.perf_counter()
    consumption, temperature, horizon = _simulate(i0, i1)
    cutoff = dt.datetime(2022, 1, 1, tzinfo=UTC)
    out: dict[str, Any] = {
        "sim_s": time.perf_counter() - t0,
        "rows": consumption.height,
        "models": {},
    }
    out["sim_cpu_s"] = time.process_time() - c0
    for name, cls in _models(names).items():
        t1 = time.perf_counter()
        p1 = time.process_time()
        try:
            if name == "GlobalGradientBoosting" and _STATE.get("gbm") is not None:
                # The fleet's one global model: trees fitted once on a sample, each
                # chunk's meters get their level, heating line, lags and interval.
                model = _STATE["gbm"].extend(consumption, temperature)
            else:
                model = cls().fit(consumption, temperature, cutoff=cutoff)
            pred = model.predict(horizon.filter(pl.col("meter_id").is_in(list(model.meters_))))
            out["models"][name] = {
                "s": time.perf_counter() - t1,
                "cpu_s": time.process_time() - p1,
                "pred_rows": pred.height,
                "skipped": len(model.skipped_),
                "volume": float(pred.get_column("volume_m3").sum()),
            }
        except Exception as exc:  # noqa: BLE001 - reported in the table
            out["models"][name] = {
                "s": time.perf_counter() - t1,
                "error": f"{type(exc).__name__}: {str(exc)[:200]}",
            }
    del consumption, temperature, horizon
    out["cpu_s"] = time.process_time() - c0
    out["wall_s"] = time.perf_counter() - t0
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _fit_global(fleet: dict[str, np.ndarray], args: argparse.Namespace) -> tuple[Any, float, float]:
    """Fit the global model's trees on ``--gbm-sample`` meters spread over the fleet."""
    import forecasting

    _init(fleet)
    n = min(args.gbm_sample, args.meters)
    t0 = time.perf_counter()
    # Ten contiguous slices spread over the fleet (every company and sub-type).
    parts = []
    per = max(1, n // 10)
    for start in np.linspace(0, args.meters - per, min(10, n)).astype(int):
        c, t, _ = _simulate(int(start), int(start) + per)
        parts.append((c, t))
    consumption = pl.concat([c for c, _ in parts]).unique(["meter_id", "ts"]).sort("meter_id", "ts")
    temperature = pl.concat([t for _, t in parts]).unique(["meter_id", "ts"]).sort("meter_id", "ts")
    del parts
    model = forecasting.GlobalGradientBoosting(max_train_rows=args.gbm_rows).fit(
        consumption, temperature, cutoff=dt.datetime(2022, 1, 1, tzinfo=UTC)
    )
    return (
        model,
        time.perf_counter() - t0,
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def _prophet_sample(args: tuple[int, int]) -> dict[str, Any]:
    """Fit + predict Prophet with temperature for meters i0..i1, one at a time."""
    from prophet import Prophet

    for name in ("cmdstanpy", "prophet"):
        logging.getLogger(name).setLevel(logging.ERROR)
    i0, i1 = args
    consumption, temperature, horizon = _simulate(i0, i1)
    hist = consumption.join(temperature, on=["meter_id", "ts"])
    times = []
    cpus = []
    for meter in hist.get_column("meter_id").unique().sort().to_list():
        t0 = time.perf_counter()
        c0 = time.process_time()
        h = hist.filter(pl.col("meter_id") == meter).select(
            pl.col("ts").dt.replace_time_zone(None).alias("ds"),
            pl.col("volume_m3").alias("y"),
            pl.col("temperature_c").alias("temp"),
        )
        f = horizon.filter(pl.col("meter_id") == meter).select(
            pl.col("ts").dt.replace_time_zone(None).alias("ds"),
            pl.col("temperature_c").alias("temp"),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = Prophet(
                interval_width=0.8,
                daily_seasonality=True,
                weekly_seasonality=True,
                yearly_seasonality=False,
            )
            model.add_regressor("temp")
            model.fit(h.to_pandas())
            model.predict(f.to_pandas())
        times.append(time.perf_counter() - t0)
        # CmdStan runs as a child process: count its CPU too.
        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(time.process_time() - c0)
        cpus[-1] += child.ru_utime + child.ru_stime - sum(_CHILD_CPU)
        _CHILD_CPU.append(child.ru_utime + child.ru_stime - sum(_CHILD_CPU))
    return {
        "times": times,
        "cpus": cpus,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=1_000, help="meters per worker task")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--prophet-sample", type=int, default=20)
    parser.add_argument(
        "--models",
        default="HeatingDegreeRegression,GlobalGradientBoosting",
        help="the fast path: models run for every meter",
    )
    parser.add_argument(
        "--also",
        default="StandardLoadProfile",
        help="models timed on a sample of chunks only (reported per meter and projected)",
    )
    parser.add_argument(
        "--sample-chunks", type=int, default=4, help="chunks the --also models are timed on"
    )
    parser.add_argument(
        "--gbm-sample",
        type=int,
        default=500,
        help="meters the global model's trees are fitted on (spread over the fleet)",
    )
    parser.add_argument("--gbm-rows", type=int, default=500_000, help="training rows sampled")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    also = [n for n in args.also.split(",") if n and n not in names]

    print(
        f"# forecast_scale: {args.meters:,} meters × {HISTORY_DAYS * 24:,} h history, day-ahead {HORIZON_H} h, "
        f"{args.workers} spawn workers, chunks of {args.chunk:,} meters",
        flush=True,
    )
    t0 = time.perf_counter()
    fleet = _fleet(args.meters, args.seed)
    fleet_s = time.perf_counter() - t0
    available = list(_models(names))
    missing = [n for n in names if n not in available]
    if missing:
        print(f"not exported by forecasting (skipped): {missing}")

    # One thread per worker: the workers already fill the cores (Polars and BLAS
    # would otherwise start a pool per process and oversubscribe them).
    for var in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    ctx = mp.get_context("spawn")
    bounds = [
        (i, min(i + args.chunk, args.meters), available) for i in range(0, args.meters, args.chunk)
    ]
    results: list[dict[str, Any]] = []
    t_run = time.perf_counter()
    gbm = None
    gbm_fit_s = 0.0
    if "GlobalGradientBoosting" in available:
        gbm, gbm_fit_s, gbm_rss = _fit_global(fleet, args)
        print(
            f"  global model: trees fitted on {min(args.gbm_sample, args.meters):,} meters "
            f"({gbm.train_rows_:,} sampled rows) in {gbm_fit_s:.0f} s (one core, in the parent "
            f"before the pool; peak RSS {gbm_rss:.0f} MB)",
            flush=True,
        )
    with ProcessPoolExecutor(
        max_workers=args.workers, mp_context=ctx, initializer=_init, initargs=(fleet, gbm)
    ) as pool:
        for k, res in enumerate(pool.map(_chunk, bounds), 1):
            results.append(res)
            if k % max(1, len(bounds) // 10) == 0 or k == len(bounds):
                print(
                    f"  {k}/{len(bounds)} chunks, {time.perf_counter() - t_run:.0f} s", flush=True
                )
    wall = time.perf_counter() - t_run
    worker_rss = max(r["maxrss_mb"] for r in results)
    also_results: list[dict[str, Any]] = []
    also_avail = list(_models(also))
    if also_avail and args.sample_chunks > 0:
        picks = np.linspace(0, len(bounds) - 1, min(args.sample_chunks, len(bounds))).astype(int)
        with ProcessPoolExecutor(
            max_workers=args.workers, mp_context=ctx, initializer=_init, initargs=(fleet, None)
        ) as pool:
            also_results = list(
                pool.map(_chunk, [(bounds[i][0], bounds[i][1], also_avail) for i in picks])
            )

    rows = sum(r["rows"] for r in results)
    sim_cpu = sum(r["sim_s"] for r in results)
    print(
        f"\nfleet drawn in {fleet_s:.1f} s; {rows:,} history rows simulated "
        f"(simulation CPU {sim_cpu:.0f} s across workers)"
    )
    print(
        "\n| model | worker wall s (sum) | CPU s (sum) | CPU ms per meter | projected idle wall for "
        f"{PROJECT_TO:,} meters on {args.workers} cores | forecast rows | meters skipped | errors |"
    )
    print("|---|---|---|---|---|---|---|---|")
    sim_c = sum(r["sim_cpu_s"] for r in results)
    print(
        f"| (simulate chunk) | {sim_cpu:.0f} | {sim_c:.0f} | {1000 * sim_c / args.meters:.1f} | "
        f"{sim_c / args.meters * PROJECT_TO / args.workers:.0f} s | | | |"
    )
    total_cpu = sim_cpu + sum(m["s"] for r in results for m in r["models"].values())
    for name in available:
        cpu = sum(r["models"][name]["s"] for r in results if name in r["models"])
        pr = sum(r["models"][name].get("pred_rows", 0) for r in results)
        sk = sum(r["models"][name].get("skipped", 0) for r in results)
        errs = [r["models"][name]["error"] for r in results if "error" in r["models"].get(name, {})]
        mcpu = sum(r["models"][name].get("cpu_s", 0.0) for r in results)
        proj_idle = mcpu / args.meters * PROJECT_TO / args.workers
        print(
            f"| {name} | {cpu:.0f} | {mcpu:.0f} | {1000 * mcpu / args.meters:.1f} | {proj_idle:.0f} s "
            f"= {proj_idle / 60:.1f} min | {pr:,} | {sk} | {len(errs)}{': ' + errs[0] if errs else ''} |"
        )
    print(
        f"| (global model: fit trees once on {min(args.gbm_sample, args.meters):,} meters) | "
        f"{gbm_fit_s:.0f} | {gbm_fit_s:.0f} | | {gbm_fit_s:.0f} s (once, not per meter) | | | |"
    )
    also_meters = sum(r["rows"] for r in also_results) // (HISTORY_DAYS * 24) if also_results else 0
    for name in also_avail:
        mcpu = sum(r["models"][name].get("cpu_s", 0.0) for r in also_results)
        proj_idle = mcpu / max(also_meters, 1) * PROJECT_TO / args.workers
        errs = [
            r["models"][name]["error"] for r in also_results if "error" in r["models"].get(name, {})
        ]
        print(
            f"| {name} (not in the fast path; timed on {also_meters:,} meters) | | {mcpu:.0f} | "
            f"{1000 * mcpu / max(also_meters, 1):.1f} | {proj_idle:.0f} s = {proj_idle / 60:.1f} min | "
            f"{sum(r['models'][name].get('pred_rows', 0) for r in also_results):,} | "
            f"{sum(r['models'][name].get('skipped', 0) for r in also_results)} | {len(errs)} |"
        )
    print(
        f"\nfast path wall time ({' + '.join(available)}: global fit, then simulate + every model "
        f"for every meter on {args.workers} workers): {wall:.1f} s = {wall / 60:.1f} min; "
        f"{rows / wall:,.0f} history rows/s"
    )
    fast_only = {
        n: wall * sum(r["models"][n]["s"] for r in results if n in r["models"]) / total_cpu
        for n in available
    }
    cpu = sum(r["cpu_s"] for r in results)
    busy = sum(r["wall_s"] for r in results)
    print(
        f"worker CPU time {cpu:.0f} s over {busy:.0f} s of worker wall time ({cpu / busy:.0%} on CPU; "
        f"below 100 % = the cores were shared with other processes); CPU-bound estimate on an idle "
        f"machine: {cpu / args.workers:.0f} s = {cpu / args.workers / 60:.1f} min; projected to "
        f"{PROJECT_TO:,} meters: {cpu / args.meters * PROJECT_TO / args.workers / 60:.1f} min"
    )
    print(
        f"peak RSS: parent {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, "
        f"largest worker {worker_rss:.0f} MB"
    )

    pr_s = None
    if args.prophet_sample > 0:
        n = min(args.prophet_sample, args.meters)
        t1 = time.perf_counter()
        with ProcessPoolExecutor(
            max_workers=1, mp_context=ctx, initializer=_init, initargs=(fleet, None)
        ) as pool:
            # Spread the sample over the fleet (every category), one meter per task.
            picks = np.linspace(0, args.meters - 1, n).astype(int)
            outs = list(pool.map(_prophet_sample, [(int(i), int(i) + 1) for i in picks]))
        times = [t for o in outs for t in o["times"]]
        pr_s = float(np.mean(times))
        cpus = [c for o in outs for c in o["cpus"]]
        pr_cpu = float(np.mean(cpus))
        proj = pr_s * args.meters / args.workers
        proj_idle = pr_cpu * PROJECT_TO / args.workers
        print(
            f"\nProphet CPU per meter (incl. the CmdStan child): {pr_cpu:.2f} s; projected for "
            f"{PROJECT_TO:,} meters on {args.workers} idle cores: {proj_idle:,.0f} s = "
            f"{proj_idle / 3600:.1f} h; ratio to the fast path's idle projection: "
            f"{proj_idle / (cpu / args.meters * PROJECT_TO / args.workers):,.0f}×"
        )
        print(
            f"\nProphet (hourly, 1 year + temperature) on {len(times)} meters, one core: "
            f"{pr_s:.2f} s per meter (median {np.median(times):.2f}, wall {time.perf_counter() - t1:.0f} s, "
            f"worker RSS {max(o['maxrss_mb'] for o in outs):.0f} MB)"
        )
        print(
            f"projected Prophet for {args.meters:,} meters on {args.workers} cores: {proj:,.0f} s "
            f"= {proj / 3600:.1f} h"
        )
        print(f"ratio projected Prophet / fast path wall: {proj / wall:,.0f}×")
        hdd = fast_only.get("HeatingDegreeRegression")
        if hdd:
            print(f"ratio projected Prophet / HDD regression share of wall: {proj / hdd:,.0f}×")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    goal = "met" if wall < 600 else "NOT met"
    print(
        f"\ngoal: {args.meters:,}-meter day-ahead fast path under 10 min: {goal} ({wall / 60:.1f} min)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
