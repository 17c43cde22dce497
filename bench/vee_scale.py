"""VEE at scale: rules, estimation and ``run_vee`` on N metering points × 1 year hourly.

A synthetic hourly archive (``--meters`` × ``--days`` × 24 rows, default 2,000 × 365 =
17.5 M) is generated with numpy in meter batches: a heating-degree use profile driven by
a synthetic outdoor temperature (one weather station per 500 meters), cumulative
registers that agree with it, and injected faults — short and long gaps (absent rows,
no register readings), cold zero runs (register stuck), frozen runs, spikes and
negative values.  Three steps, each in its own ``spawn`` process so its peak memory
(``resource.getrusage``) is its own:

* **frames**   ``analytics.validate`` (every rule, with outdoor temperature, registers
               and raw deliveries, as ``run_vee`` calls it) and ``analytics.estimate``
               on in-memory frames, batch by batch (``--batch`` meters each), against a
               **reference** measured in the same process over the same rows: a plain
               Polars pass ``sort(meter_id, ts)`` + centred rolling median per meter
               (the kind of work one rule does).  Generation is not timed.
* **store**    loads the archive, registers and weather into a fresh DuckDB store
               (timed, for information), then times ``run_vee(store)`` end to end
               (findings, estimates, audit rows, rollups) against a **reference**
               measured in the same process: reading the same archive rows from the store
               in the same batches (``store.read``).

Figures: rows/s, seconds, peak RSS per step, and the ratios to the references.

Usage::

    .venv/bin/python bench/vee_scale.py --meters 200          # smoke run (--quick)
    .venv/bin/python bench/vee_scale.py --meters 2000         # 17.5 M rows
    .venv/bin/python bench/vee_scale.py --meters 100000 --batch 2000 --steps frames   # 876 M rows
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

START = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)
UTC_TS = pl.Datetime("us", "UTC")
METERS_PER_STATION = 500
MODULUS_M3 = 1_000_000.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    """CPU seconds of this process (user + system): on a shared machine wall time is noisy."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass(frozen=True)
class Batch:
    """One batch of synthetic meters: archive, outdoor temperature, registers."""

    hourly: pl.DataFrame  # meter_id, ts, volume_m3, quality, source
    outdoor: pl.DataFrame  # meter_id, ts, temperature_c
    registers: pl.DataFrame  # meter_id, ts, register_m3, counter_modulus_m3
    rows: int  # hourly rows on the full grid (present or absent)


def meter_ids(n: int) -> list[str]:
    return [f"M{i:06d}" for i in range(n)]


def station_of(meter_index: int) -> str:
    return f"S{meter_index // METERS_PER_STATION:04d}"


def station_temperature(stations: int, hours: int, seed: int) -> np.ndarray:
    """Hourly outdoor temperature, °C, per station: season + day cycle + weather noise."""
    rng = np.random.default_rng([seed, 1])
    t = np.arange(hours)
    season = 6.0 - 12.0 * np.cos(2 * np.pi * (t / 24.0 - 15.0) / 365.0)
    daily = 3.0 * np.sin(2 * np.pi * ((t % 24) - 9) / 24.0)
    # Weather: a smooth random walk per station (daily steps, interpolated).
    days = hours // 24 + 2
    walk = np.cumsum(rng.normal(0.0, 1.5, (stations, days)), axis=1)
    walk -= walk.mean(axis=1, keepdims=True)
    weather = np.repeat(walk, 24, axis=1)[:, :hours] * 0.6
    out: np.ndarray = np.round(season[None, :] + daily[None, :] + weather, 1)
    return out


def make_batch(first: int, count: int, *, hours: int, temps: np.ndarray, seed: int) -> Batch:
    """Meters ``first … first + count − 1``: archive with faults and consistent registers."""
    rng = np.random.default_rng([seed, 2, first])
    m, h = count, hours
    st = np.array([(first + i) // METERS_PER_STATION for i in range(m)])
    temp = temps[st]  # (m, h)
    tday = temp.reshape(m, h // 24, 24).mean(axis=2).repeat(24, axis=1)
    hod = np.arange(h) % 24
    shape = 0.6 + 0.5 * np.exp(-((hod - 8) ** 2) / 8.0) + 0.4 * np.exp(-((hod - 19) ** 2) / 6.0)
    base = rng.uniform(0.05, 0.5, (m, 1))
    slope = rng.uniform(0.02, 0.3, (m, 1))
    noise = rng.lognormal(0.0, 0.15, (m, h))
    true = np.round((base + slope * np.maximum(0.0, 15.5 - tday)) * shape[None, :] * noise, 3)
    register = np.empty((m, h + 1))
    register[:, 0] = rng.uniform(0, MODULUS_M3 / 2, m).round(3)
    register[:, 1:] = register[:, :1] + np.cumsum(true, axis=1)
    volume = true.copy()
    present = np.ones((m, h), dtype=bool)
    reg_present = np.ones((m, h + 1), dtype=bool)

    def starts(share: float, length: int) -> Iterator[tuple[int, int]]:
        rows = np.flatnonzero(rng.random(m) < share)
        for r in rows:
            yield int(r), int(rng.integers(24, h - length - 24))

    # Short gaps (1–6 h) everywhere, a long one (2–5 days) on 5 % of the meters.
    for r in range(m):
        for _ in range(2):
            n = int(rng.integers(1, 7))
            s = int(rng.integers(24, h - n - 24))
            present[r, s : s + n] = False
            reg_present[r, s + 1 : s + n] = False
    for r, s in starts(0.05, 120):
        n = int(rng.integers(48, 121))
        present[r, s : s + n] = False
        reg_present[r, s + 1 : s + n] = False
    # Cold zero runs: the register sticks for 2 days in January, then catches up.
    for r, _ in starts(0.05, 48):
        s = int(rng.integers(24, min(h, 24 * 30) - 72))
        volume[r, s : s + 48] = 0.0
        register[r, s + 1 : s + 48] = register[r, s]
    for r, s in starts(0.05, 12):  # frozen: one non-zero value repeated 12 h
        volume[r, s : s + 12] = volume[r, s] + 0.5
    for r, s in starts(0.2, 1):  # spikes
        volume[r, s] = volume[r, s] * 40 + 20.0
    for r, s in starts(0.05, 1):  # negative values
        volume[r, s] = -volume[r, s] - 1.0

    ids = pl.Series("meter_id", meter_ids(first + count)[first:], dtype=pl.String)
    t_us = int(START.timestamp() * 1e6) + np.arange(h + 1, dtype=np.int64) * 3_600_000_000
    idx = np.repeat(np.arange(m), h)
    ts = pl.Series("ts", np.tile(t_us[:h], m)).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    full = pl.DataFrame({"meter_id": ids.gather(idx), "ts": ts, "volume_m3": volume.ravel(),
                         "_present": present.ravel()})
    hourly = full.filter("_present").drop("_present").with_columns(
        pl.lit("valid").alias("quality"), pl.lit("register").alias("source")
    )
    outdoor = full.select("meter_id", "ts", pl.Series("temperature_c", temp.ravel()))
    ridx = np.repeat(np.arange(m), h + 1)
    rts = pl.Series("ts", np.tile(t_us, m)).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    registers = pl.DataFrame({
        "meter_id": ids.gather(ridx), "ts": rts, "register_m3": np.round(register % MODULUS_M3, 3).ravel(),
        "_present": reg_present.ravel(),
    }).filter("_present").drop("_present").with_columns(pl.lit(MODULUS_M3).alias("counter_modulus_m3"))
    return Batch(hourly=hourly, outdoor=outdoor, registers=registers, rows=m * h)


# --- step: frames -------------------------------------------------------------------------


def step_frames(meters: int, days: int, batch: int, seed: int) -> dict[str, Any]:
    from analytics import complete_grid, estimate, flagged_intervals, validate

    hours = days * 24
    temps = station_temperature(meters // METERS_PER_STATION + 1, hours, seed)
    t_ref = t_rules = t_est = 0.0
    c_ref = c_rules = c_est = 0.0
    rows = findings = estimates = 0
    for first in range(0, meters, batch):
        b = make_batch(first, min(batch, meters - first), hours=hours, temps=temps, seed=seed)
        rows += b.rows
        t0, c0 = time.perf_counter(), _cpu_s()
        ref = b.hourly.sort("meter_id", "ts").with_columns(
            pl.col("volume_m3").rolling_median(window_size=15, min_samples=8, center=True)
            .over("meter_id").alias("_m")
        )
        t_ref += time.perf_counter() - t0
        c_ref += _cpu_s() - c0
        del ref
        deliveries = b.registers.select("meter_id", "ts", pl.col("register_m3").alias("value"),
                                        pl.col("ts").alias("received_at"))
        t0, c0 = time.perf_counter(), _cpu_s()
        found = validate(b.hourly, outdoor=b.outdoor, registers=b.registers, deliveries=deliveries)
        t_rules += time.perf_counter() - t0
        c_rules += _cpu_s() - c0
        t0, c0 = time.perf_counter(), _cpu_s()
        grid = complete_grid(b.hourly)
        # Every meter's first and last hour are present, so the grid is the outdoor frame's.
        assert grid.height == b.outdoor.height
        grid = grid.with_columns(b.outdoor.get_column("temperature_c").alias("outdoor_c"))
        est = estimate(grid, flagged_intervals(found), registers=b.registers)
        t_est += time.perf_counter() - t0
        c_est += _cpu_s() - c0
        findings += found.height
        estimates += est.height
    return {"rows": rows, "reference_s": t_ref, "rules_s": t_rules, "estimate_s": t_est,
            "reference_cpu_s": c_ref, "rules_cpu_s": c_rules, "estimate_cpu_s": c_est,
            "findings": findings, "estimates": estimates, "peak_mb": _peak_mb()}


# --- step: store --------------------------------------------------------------------------


def _reference_tables(meters: int, hours: int, temps: np.ndarray) -> dict[str, pl.DataFrame]:
    n_st = temps.shape[0]
    stations = [f"S{s:04d}" for s in range(n_st)]
    ids = meter_ids(meters)
    t_us = int(START.timestamp() * 1e6) + np.arange(hours, dtype=np.int64) * 3_600_000_000
    weather = pl.DataFrame({
        "station_id": pl.Series(stations).gather(np.repeat(np.arange(n_st), hours)),
        "ts": pl.Series(np.tile(t_us, n_st)).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        "temperature_c": temps.ravel(),
    }).with_columns(pl.lit("valid").alias("quality"))
    return {
        "companies": pl.DataFrame({"company_id": ["C1"], "name": ["Bench"], "time_zone": ["UTC"],
                                   "contract_hour": pl.Series([0], dtype=pl.Int8)}),
        "branches": pl.DataFrame({"branch_id": [f"B{s}" for s in stations], "company_id": "C1",
                                  "name": stations, "weather_station": stations}),
        "metering_points": pl.DataFrame({
            "meter_id": ids, "branch_id": [f"B{station_of(i)}" for i in range(meters)], "name": ids,
            "resource": "gas", "category": "household", "time_zone": "UTC",
            "contract_hour": pl.Series([0] * meters, dtype=pl.Int8),
        }),
        "devices": pl.DataFrame({"device_id": [f"D{m}" for m in ids], "kind": "household_unit", "meter_id": ids,
                                 "counter_modulus_m3": MODULUS_M3}),
        "weather": weather,
    }


def step_store(meters: int, days: int, batch: int, seed: int, workdir: str) -> dict[str, Any]:
    from analytics import run_vee
    from warehouse import open_store

    hours = days * 24
    temps = station_temperature(meters // METERS_PER_STATION + 1, hours, seed)
    store = open_store(path=Path(workdir) / "vee_scale.duckdb")
    store.migrate()
    t0 = time.perf_counter()
    for table, frame in _reference_tables(meters, hours, temps).items():
        store.write(table, frame)
    rows = 0
    for first in range(0, meters, batch):
        b = make_batch(first, min(batch, meters - first), hours=hours, temps=temps, seed=seed)
        rows += b.rows
        store.write("hourly_archive", b.hourly)
        store.write("readings", b.registers.select(
            pl.format("D{}", "meter_id").alias("device_id"), pl.lit("volume_register_m3").alias("channel"), "ts",
            pl.col("register_m3").alias("value"), pl.lit("valid").alias("quality"),
            pl.col("ts").alias("received_at"),
        ))
    store.refresh_rollups()
    t_load = time.perf_counter() - t0
    ids = meter_ids(meters)
    t0, c0 = time.perf_counter(), _cpu_s()
    read_rows = 0
    for first in range(0, meters, batch):
        read_rows += store.read("hourly_archive", where={"meter_id": ids[first : first + batch]}).height
    t_ref, c_ref = time.perf_counter() - t0, _cpu_s() - c0
    t0, c0 = time.perf_counter(), _cpu_s()
    summary = run_vee(store, batch_meters=batch)
    t_vee, c_vee = time.perf_counter() - t0, _cpu_s() - c0
    store.close()
    return {"rows": rows, "read_rows": read_rows, "load_s": t_load, "reference_s": t_ref, "run_vee_s": t_vee,
            "reference_cpu_s": c_ref, "run_vee_cpu_s": c_vee,
            "findings": sum(summary.findings.values()), "estimates": sum(summary.estimates.values()),
            "marked": summary.marked_suspect, "audit_rows": summary.audit_rows, "peak_mb": _peak_mb()}


def _run_step(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    fn = {"frames": step_frames, "store": step_store}[name]
    return fn(**kwargs)  # type: ignore[operator, no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=2000, help="metering points (default 2,000)")
    parser.add_argument("--days", type=int, default=365, help="days of hourly archive (default 365)")
    parser.add_argument("--batch", type=int, default=2000, help="meters per batch (run_vee batch_meters)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", default="frames,store", help="comma list of frames, store")
    parser.add_argument("--quick", action="store_true", help="200 meters (smoke run)")
    parser.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.meters = 200
    if args.meters < 1 or args.days < 7 or args.batch < 1:
        parser.error("need --meters >= 1, --days >= 7 and --batch >= 1")
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = set(steps) - {"frames", "store"}
    if unknown:
        parser.error(f"unknown steps {sorted(unknown)}; use frames and/or store")
    rows = args.meters * args.days * 24
    print(f"VEE scale: {args.meters:,} meters × {args.days} days hourly = {rows:,} rows, batches of "
          f"{args.batch:,} meters; polars {pl.__version__}, {mp.cpu_count()} CPUs")
    ctx = mp.get_context("spawn")
    results: dict[str, dict[str, Any]] = {}
    workdir = tempfile.mkdtemp(prefix="vee_scale_")
    try:
        for name in steps:
            kwargs: dict[str, Any] = {"meters": args.meters, "days": args.days, "batch": args.batch,
                                      "seed": args.seed}
            if name == "store":
                kwargs["workdir"] = workdir
            with ctx.Pool(1) as pool:
                results[name] = pool.apply(_run_step, (name, kwargs))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def line(label: str, seconds: float, n: int, ref: float | None, cpu: float | None = None,
             peak: float | None = None) -> str:
        ratio = f"{seconds / ref:6.1f}× ref" if ref else " " * 10
        c = f"  cpu {cpu:7.2f} s" if cpu is not None else " " * 16
        mem = f"  peak {peak:,.0f} MB" if peak is not None else ""
        return f"  {label:<34} {seconds:8.2f} s  {n / seconds / 1e6:7.2f} M rows/s  {ratio}{c}{mem}"

    if "frames" in results:
        f = results["frames"]
        print(f"frames ({f['findings']:,} findings, {f['estimates']:,} estimates):")
        print(line("reference: sort + rolling median", f["reference_s"], f["rows"], None, f["reference_cpu_s"]))
        print(line("rules (validate)", f["rules_s"], f["rows"], f["reference_s"], f["rules_cpu_s"]))
        print(line("estimation (grid + estimate)", f["estimate_s"], f["rows"], f["reference_s"], f["estimate_cpu_s"]))
        print(line("rules + estimation", f["rules_s"] + f["estimate_s"], f["rows"], f["reference_s"],
                   f["rules_cpu_s"] + f["estimate_cpu_s"], f["peak_mb"]))
    if "store" in results:
        s = results["store"]
        print(f"store, DuckDB ({s['findings']:,} findings, {s['estimates']:,} estimates, "
              f"{s['marked']:,} marked suspect, {s['audit_rows']:,} audit rows):")
        print(line("load archive + registers (info)", s["load_s"], s["rows"], None))
        print(line("reference: read archive rows", s["reference_s"], s["rows"], None, s["reference_cpu_s"]))
        print(line("run_vee end to end", s["run_vee_s"], s["rows"], s["reference_s"], s["run_vee_cpu_s"],
                   s["peak_mb"]))
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
