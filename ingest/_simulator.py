"""The fleet simulator: a seeded synthetic gas enterprise and its telemetry files.

The output directory is the contract :func:`ingest.load_simulation` reads (see
``ingest/README.md``).  Everything is vectorised per block of devices with numpy; no
Python loop runs per hour or per reading, so memory stays bounded by the block size.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import polars as pl

from ingest import _profiles, _shipped
from ingest._enterprise import (
    COMPANY_TEMPLATES,
    Enterprise,
    FaultPlan,
    build_enterprise,
    plan_faults,
)
from ingest.errors import SimulationConfigError
from warehouse import REFERENCE_TABLES, TABLES, validate_frame

FORMAT: Final = "askug-sim/1"
LABEL_COLUMNS: Final = ("fault", "object_kind", "object_id", "channel", "ts_start", "ts_end", "detail")
TRUTH_SCHEMA: Final = pl.Schema(
    {
        "meter_id": pl.String(),
        "ts": pl.Datetime("us", "UTC"),
        "volume_m3": pl.Float64(),
        "volume_work_m3": pl.Float64(),
    }
)
_US_PER_HOUR: Final = 3_600_000_000
_MAX_METERS: Final = 100_000

Progress = Callable[[int, int], None]


@dataclass(frozen=True, kw_only=True)
class SimulationConfig:
    """Options of :func:`simulate`.  Every option is keyword-only and checked on creation.

    Parameters
    ----------
    seed
        Seed of every random choice; the same config gives byte-identical files.
    meters
        Number of metering points, 10 … 100,000.
    start
        First UTC day of the window.  The window and the 7 days of weather after it must
        lie inside the shipped temperature series (2011-01-01 … 2022-12-31).
    days
        Length of the window in days (≥ 7).
    companies
        Number of companies (1 … 6), each with its own time zone and contract hour.
    meters_per_gdp
        Average metering points fed by one GDP (5 … 5,000).
    block_devices
        Metering-point devices per readings part; ``None`` picks a size that keeps a
        block near 4 M register values.  GDP units use a ninth of it (9 channels).
    faults
        Inject faults at the rates below (False: a clean fleet, no labels but events).
    gap_rate, spike_rate, stuck_rate, drift_rate, duplicate_rate, leak_rate, tamper_rate
        Share of metering-point devices (0 … 1) that get one fault of the kind.  A
        non-zero rate affects at least one device.
    excursion_rate, power_fail_rate, valve_closed_rate
        Share of GDPs (0 … 1) with one threshold excursion, power failure or valve closure.
    tight_limit_share
        Share of contracts whose limits are set below the simulated use (0 … 1).
    near_rollover_share
        Share of devices whose register starts just below its modulus so it rolls over
        inside the window (0 … 1; at least one device when non-zero).
    write_truth
        Also write ``truth/part-*.parquet``: the true hourly volume of every metering point.
    write_inflow
        Also write ``inflow.parquet``: the metered hourly gas inflow of every network node
        (GDPs and stations), for the gas balance (see ``ingest/README.md``).  Off by
        default; turning it on draws from its own random stream, so every other file is
        unchanged.
    """

    seed: int = 0
    meters: int = 300
    start: dt.date = dt.date(2022, 1, 1)
    days: int = 90
    companies: int = 3
    meters_per_gdp: int = 100
    block_devices: int | None = None
    faults: bool = True
    gap_rate: float = 0.02
    spike_rate: float = 0.01
    stuck_rate: float = 0.01
    drift_rate: float = 0.01
    duplicate_rate: float = 0.01
    leak_rate: float = 0.005
    tamper_rate: float = 0.005
    excursion_rate: float = 0.2
    power_fail_rate: float = 0.1
    valve_closed_rate: float = 0.05
    tight_limit_share: float = 0.1
    near_rollover_share: float = 0.08
    write_truth: bool = False
    write_inflow: bool = False

    def __post_init__(self) -> None:
        def bad(option: str, value: object, allowed: str, fix: str) -> SimulationConfigError:
            return SimulationConfigError(f"{option}={value!r} is invalid: allowed {allowed}; {fix}")

        for name in ("seed", "meters", "days", "companies", "meters_per_gdp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad(name, value, "an int", f"pass {name} as an integer")
        if self.seed < 0:
            raise bad("seed", self.seed, "0 or more", "pass a non-negative seed")
        if not 10 <= self.meters <= _MAX_METERS:
            raise bad("meters", self.meters, f"10..{_MAX_METERS}", "pass meters between 10 and 100000")
        if not 1 <= self.companies <= len(COMPANY_TEMPLATES):
            raise bad("companies", self.companies, f"1..{len(COMPANY_TEMPLATES)}", "pass fewer companies")
        if not 5 <= self.meters_per_gdp <= 5000:
            raise bad("meters_per_gdp", self.meters_per_gdp, "5..5000", "pass a value in that range")
        if self.block_devices is not None and (
            isinstance(self.block_devices, bool)
            or not isinstance(self.block_devices, int)
            or not 1 <= self.block_devices <= 50_000
        ):
            raise bad("block_devices", self.block_devices, "None or 1..50000", "pass None for automatic")
        if isinstance(self.start, dt.datetime) or not isinstance(self.start, dt.date):
            raise bad("start", self.start, "a datetime.date", "pass e.g. start=datetime.date(2022, 1, 1)")
        if self.days < 7:
            raise bad("days", self.days, "7 or more", "pass days >= 7 so faults fit in the window")
        first, last = _shipped.TEMPERATURE_START.date(), _shipped.TEMPERATURE_END.date()
        if self.start < first:
            raise bad("start", self.start.isoformat(), f"{first} or later", "move start into 2011..2022")
        weather_end = self.start + dt.timedelta(days=self.days + 7)
        if weather_end > last:
            latest = last - dt.timedelta(days=self.days + 7)
            raise bad(
                "start/days",
                f"{self.start.isoformat()}+{self.days}d",
                f"window plus 7 days of weather ending by {last}",
                f"start on or before {latest} or shorten days",
            )
        if not isinstance(self.faults, bool):
            raise bad("faults", self.faults, "True or False", "pass a bool")
        if not isinstance(self.write_truth, bool):
            raise bad("write_truth", self.write_truth, "True or False", "pass a bool")
        if not isinstance(self.write_inflow, bool):
            raise bad("write_inflow", self.write_inflow, "True or False", "pass a bool")
        for name in (*FAULT_RATES, "tight_limit_share", "near_rollover_share"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise bad(name, value, "a number in 0..1", f"pass {name} as a share, e.g. 0.01")

    @property
    def hours(self) -> int:
        """Hours in the window."""
        return self.days * 24

    @property
    def start_datetime(self) -> dt.datetime:
        """The window start as a UTC datetime."""
        return dt.datetime.combine(self.start, dt.time(), tzinfo=dt.UTC)

    @property
    def end_datetime(self) -> dt.datetime:
        """The window end (exclusive for consumption hours) as a UTC datetime."""
        return self.start_datetime + dt.timedelta(days=self.days)


FAULT_RATES: Final = (
    "gap_rate",
    "spike_rate",
    "stuck_rate",
    "drift_rate",
    "duplicate_rate",
    "leak_rate",
    "tamper_rate",
    "excursion_rate",
    "power_fail_rate",
    "valve_closed_rate",
)


@dataclass(frozen=True)
class SimulationSummary:
    """What :func:`simulate` wrote.

    Attributes
    ----------
    meters, devices, readings, events, fault_labels
        Row counts (readings include injected duplicate rows).
    parts
        Number of readings part files.
    seconds
        Wall time of the run.
    """

    meters: int
    devices: int
    readings: int
    events: int
    fault_labels: int
    parts: int
    seconds: float

    @property
    def readings_per_second(self) -> float:
        """Readings written per second of wall time."""
        return self.readings / self.seconds if self.seconds > 0 else float("inf")


def simulate(config: SimulationConfig, out_dir: str | Path, *, progress: Progress | None = None) -> SimulationSummary:
    """Simulate a gas enterprise and write its reference data and telemetry files.

    Parameters
    ----------
    config
        The options; see :class:`SimulationConfig`.
    out_dir
        Directory to write (created if needed).  Existing simulation files in it are
        overwritten.
    progress
        Called as ``progress(done, total)`` after each readings part is written.

    Returns
    -------
    SimulationSummary
        Counts and wall time.

    Notes
    -----
    All timestamps are UTC.  Volumes are m³ at standard conditions (20 °C,
    101.325 kPa) unless the column says ``work``.  The layout is documented in
    ``ingest/README.md``; registers are written at every hour from ``start`` to
    ``end`` inclusive, instantaneous channels from ``start`` to ``end`` exclusive.

    Examples
    --------
    >>> from ingest import SimulationConfig, simulate
    >>> summary = simulate(SimulationConfig(meters=10, days=7), "/tmp/sim")  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    if not isinstance(config, SimulationConfig):
        raise TypeError(f"config must be a SimulationConfig, got {type(config).__name__}")
    out = Path(out_dir)
    (out / "reference").mkdir(parents=True, exist_ok=True)
    (out / "readings").mkdir(exist_ok=True)
    for old in (*out.glob("readings/part-*.parquet"), *out.glob("truth/part-*.parquet")):
        old.unlink()

    ent = build_enterprise(config)
    plan = plan_faults(config, ent)
    H = config.hours
    calendars = [_local_calendar(config, tz) for tz in ent.company_tz]
    profiles = _profiles.build_profiles(config.start, config.days, calendars)
    temp = _window_temperature(config)

    n = ent.n_meters
    block = config.block_devices or int(np.clip(4_000_000 // (H + 1), 50, 5000))
    meter_blocks = [(i, min(i + block, n)) for i in range(0, n, block)]
    gblock = max(1, block // 9)
    gdp_blocks = [(i, min(i + gblock, ent.n_gdps)) for i in range(0, ent.n_gdps, gblock)]
    total = len(meter_blocks) + len(gdp_blocks)

    stats = _ContractStats(n, _NodeInflow(ent, H) if config.write_inflow else None)
    files: list[str] = []
    truth_files: list[str] = []
    event_frames: list[pl.DataFrame] = []
    readings = 0
    for k, (i0, i1) in enumerate(meter_blocks):
        frame, truth, events = _simulate_meter_block(config, ent, plan, profiles, temp, i0, i1, k, stats)
        name = f"readings/part-{k:05d}.parquet"
        _write_parquet(frame, out / name)
        files.append(name)
        readings += frame.height
        event_frames.append(events)
        if truth is not None:
            (out / "truth").mkdir(exist_ok=True)
            tname = f"truth/part-{k:05d}.parquet"
            _write_parquet(truth, out / tname)
            truth_files.append(tname)
        if progress is not None:
            progress(k + 1, total)
    for j, (g0, g1) in enumerate(gdp_blocks):
        k = len(meter_blocks) + j
        frame, events = _simulate_gdp_block(config, ent, plan, temp, g0, g1, k)
        name = f"readings/part-{k:05d}.parquet"
        _write_parquet(frame, out / name)
        files.append(name)
        readings += frame.height
        event_frames.append(events)
        if progress is not None:
            progress(k + 1, total)

    reference = ent.reference_frames(config)
    reference["contracts"] = stats.contracts(config, ent)
    ref_files = {}
    for table in REFERENCE_TABLES:
        name = f"reference/{table}.csv"
        _write_reference_csv(validate_frame(reference[table], table), out / name)
        ref_files[table] = name

    weather = _weather_frame(config)
    _write_parquet(weather, out / "weather.parquet")
    events_df = validate_frame(
        pl.concat(event_frames, how="vertical").sort("device_id", "ts", "code"), "events"
    )
    _write_parquet(events_df, out / "events.parquet")
    labels = plan.labels(config, ent)
    labels.write_csv(out / "labels.csv")
    if stats.inflow is not None:
        _write_parquet(stats.inflow.frame(config, ent), out / "inflow.parquet")

    counts = {
        "companies": len(ent.company_tz),
        "branches": reference["branches"].height,
        "network_nodes": reference["network_nodes"].height,
        "metering_points": n,
        "devices": reference["devices"].height,
        "contracts": reference["contracts"].height,
        "gdp_channels": reference["gdp_channels"].height,
        "weather": weather.height,
        "readings": readings,
        "events": events_df.height,
        "labels": labels.height,
    }
    manifest = {
        "format": FORMAT,
        "seed": config.seed,
        "meters": config.meters,
        "start": config.start_datetime.isoformat().replace("+00:00", "Z"),
        "end": config.end_datetime.isoformat().replace("+00:00", "Z"),
        "stations": [_shipped.STATION_ID],
        "config": _config_json(config),
        "files": {
            "reference": ref_files,
            "weather": "weather.parquet",
            "readings": files,
            "events": "events.parquet",
            "labels": "labels.csv",
            **({"truth": truth_files} if truth_files else {}),
            **({"inflow": "inflow.parquet"} if config.write_inflow else {}),
        },
        "counts": counts,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return SimulationSummary(
        meters=n,
        devices=counts["devices"],
        readings=readings,
        events=events_df.height,
        fault_labels=labels.height,
        parts=len(files),
        seconds=time.perf_counter() - t0,
    )


# --- helpers ---------------------------------------------------------------------------


def _config_json(config: SimulationConfig) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "write_inflow" and not value:
            continue  # added later: leave manifests of runs without it byte-identical
        out[f.name] = value.isoformat() if isinstance(value, dt.date) else value
    return out


def _write_parquet(frame: pl.DataFrame, path: Path) -> None:
    # Statistics off and one row group per ~1 M rows keep files byte-stable and compact.
    frame.write_parquet(path, compression="zstd", compression_level=3, statistics=False, row_group_size=1 << 20)


def _write_reference_csv(frame: pl.DataFrame, path: Path) -> None:
    exprs = []
    for col, dtype in frame.schema.items():
        if isinstance(dtype, pl.Datetime):
            exprs.append(pl.col(col).dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
        elif dtype == pl.Date:
            exprs.append(pl.col(col).dt.strftime("%Y-%m-%d"))
        else:
            exprs.append(pl.col(col))
    frame.select(exprs).write_csv(path)


def _local_calendar(config: SimulationConfig, tz: str) -> tuple[np.ndarray, np.ndarray]:
    ts = pl.datetime_range(
        config.start_datetime, config.end_datetime, "1h", closed="left", time_zone="UTC", eager=True
    ).dt.convert_time_zone(tz)
    hour = ts.dt.hour().to_numpy().astype(np.int64)
    weekday = ts.dt.weekday().to_numpy().astype(np.int64) - 1  # polars: Monday = 1
    return hour, weekday


def _window_temperature(config: SimulationConfig) -> np.ndarray:
    first = int((config.start_datetime - _shipped.TEMPERATURE_START).total_seconds() // 3600)
    return _shipped.hourly_temperature()[first : first + config.hours]


def _weather_frame(config: SimulationConfig) -> pl.DataFrame:
    first = int((config.start_datetime - _shipped.TEMPERATURE_START).total_seconds() // 3600)
    hours = config.hours + 7 * 24
    ts = pl.datetime_range(
        config.start_datetime,
        config.start_datetime + dt.timedelta(hours=hours),
        "1h",
        closed="left",
        time_zone="UTC",
        eager=True,
    )
    return pl.DataFrame(
        {
            "station_id": pl.Series([_shipped.STATION_ID]).gather(np.zeros(hours, dtype=np.int64)),
            "ts": ts,
            "temperature_c": _shipped.hourly_temperature()[first : first + hours],
            "quality": pl.Series(["valid"]).gather(np.zeros(hours, dtype=np.int64)),
        }
    ).pipe(validate_frame, "weather")


def _ts_series(us: np.ndarray) -> pl.Series:
    return pl.Series("ts", us, dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def _long_frame(
    device_ids: list[str], dev: np.ndarray, channel_names: tuple[str, ...], chan: np.ndarray,
    ts_us: np.ndarray, value: np.ndarray,
) -> pl.DataFrame:
    """Build a readings frame from flat numpy columns (device/channel as small codes)."""
    zeros = np.zeros(dev.shape[0], dtype=np.int64)
    return pl.DataFrame(
        {
            "device_id": pl.Series(device_ids, dtype=pl.String).gather(dev),
            "channel": pl.Series(list(channel_names), dtype=pl.String).gather(chan),
            "ts": _ts_series(ts_us),
            "value": value,
            "quality": pl.Series(["valid"], dtype=pl.String).gather(zeros),
            "received_at": pl.Series([None], dtype=pl.Datetime("us", "UTC")).gather(zeros),
        }
    )


def _events_frame(rows: list[tuple[str, int, str, str, str]]) -> pl.DataFrame:
    schema = TABLES["events"].schema
    if not rows:
        return pl.DataFrame(schema=schema)
    device, ts_us, code, severity, detail = zip(*rows, strict=True)
    return pl.DataFrame(
        {
            "device_id": list(device),
            "ts": _ts_series(np.asarray(ts_us, dtype=np.int64)),
            "code": list(code),
            "severity": list(severity),
            "detail": list(detail),
        },
        schema=schema,
    )


class _ContractStats:
    """Per-meter daily statistics collected block by block, turned into contracts."""

    def __init__(self, n: int, inflow: _NodeInflow | None = None) -> None:
        self.max_daily = np.zeros(n)
        self.max_month_rate = np.zeros(n)  # m³/day of the heaviest month in the window
        self.mean_daily = np.zeros(n)
        self.inflow = inflow

    def add(self, config: SimulationConfig, i0: int, truth_l: np.ndarray) -> None:
        if self.inflow is not None:
            self.inflow.add(i0, truth_l)
        daily = truth_l.reshape(truth_l.shape[0], config.days, 24).sum(axis=2) / 1000.0
        self.max_daily[i0 : i0 + daily.shape[0]] = daily.max(axis=1)
        self.mean_daily[i0 : i0 + daily.shape[0]] = daily.mean(axis=1)
        months = np.array(
            [(config.start + dt.timedelta(days=d)).month for d in range(config.days)], dtype=np.int64
        )
        edges = np.flatnonzero(np.diff(months, prepend=-1))
        per_month = np.add.reduceat(daily, edges, axis=1) / np.diff(np.append(edges, config.days))
        self.max_month_rate[i0 : i0 + daily.shape[0]] = per_month.max(axis=1)

    def contracts(self, config: SimulationConfig, ent: Enterprise) -> pl.DataFrame:
        rng = np.random.default_rng([config.seed, 7])
        n = ent.n_meters
        tight = rng.random(n) < config.tight_limit_share
        f_day = np.where(tight, rng.uniform(0.85, 0.98, n), rng.uniform(1.1, 1.4, n))
        f_month = np.where(tight, rng.uniform(0.85, 0.98, n), rng.uniform(1.05, 1.25, n))
        valid_from = config.start.replace(day=1)
        return pl.DataFrame(
            {
                "meter_id": ent.meter_ids,
                "valid_from": [valid_from] * n,
                "valid_to": pl.Series([None] * n, dtype=pl.Date),
                "daily_limit_m3": np.round(self.max_daily * f_day, 1),
                "monthly_limit_m3": np.round(self.max_month_rate * 30.5 * f_month, 0),
                "monthly_plan_m3": np.round(self.mean_daily * 30.4 * rng.uniform(0.95, 1.05, n), 0),
            }
        )


class _NodeInflow:
    """Metered hourly inflow of every network node, accumulated block by block.

    A GDP's inflow is the true gas of its metering points (leaks included, before any
    tampering: a magnet slows the consumer's register, not the gas) times
    ``1 + loss`` (technological losses and unmetered use, 0.3–1.5 % per GDP) times the
    inlet meter's error (±0.2 % per hour, normal).  A station's inflow is the sum of its
    GDPs' true inflow times ``1 + loss`` (0.1–0.5 %) and its own meter error.  Draws come
    from stream ``[seed, 8]`` so enabling inflow changes no other output.
    """

    def __init__(self, ent: Enterprise, hours: int) -> None:
        index = {g: j for j, g in enumerate(ent.gdp_ids)}
        self.meter_gdp = np.array([index[g] for g in ent.meter_frame.get_column("node_id")], dtype=np.int64)
        self.gdp_l = np.zeros((ent.n_gdps, hours), dtype=np.int64)

    def add(self, i0: int, truth_l: np.ndarray) -> None:
        np.add.at(self.gdp_l, self.meter_gdp[i0 : i0 + truth_l.shape[0]], truth_l)

    def frame(self, config: SimulationConfig, ent: Enterprise) -> pl.DataFrame:
        rng = np.random.default_rng([config.seed, 8])
        H = config.hours
        g = ent.n_gdps
        gdp_true = self.gdp_l / 1000.0 * (1.0 + rng.uniform(0.003, 0.015, g))[:, None]
        nodes = ent.nodes
        stations = nodes.filter(pl.col("kind") == "station").get_column("node_id").to_list()
        parents = dict(zip(nodes.get_column("node_id").to_list(), nodes.get_column("parent_node_id").to_list(), strict=True))
        station_loss = rng.uniform(0.001, 0.005, len(stations))
        ids: list[str] = list(ent.gdp_ids)
        rows = [gdp_true]
        if stations:
            st = np.zeros((len(stations), H))
            pos = {s: k for k, s in enumerate(stations)}
            for j, gid in enumerate(ent.gdp_ids):
                parent = parents[gid]
                if parent is not None:
                    st[pos[parent]] += gdp_true[j]
            rows.append(st * (1.0 + station_loss)[:, None])
            ids.extend(stations)
        true_m3 = np.concatenate(rows, axis=0)
        metered = np.round(true_m3 * (1.0 + 0.002 * rng.standard_normal(true_m3.shape)), 3)
        start_us = int(config.start_datetime.timestamp()) * 1_000_000
        hours_us = start_us + np.arange(H, dtype=np.int64) * _US_PER_HOUR
        k = len(ids)
        order = np.argsort(np.asarray(ids))
        return pl.DataFrame(
            {
                "node_id": pl.Series(ids, dtype=pl.String).gather(np.repeat(order, H)),
                "ts": _ts_series(np.tile(hours_us, k)),
                "volume_m3": metered[order].reshape(-1),
                "quality": pl.Series(["valid"], dtype=pl.String).gather(np.zeros(k * H, dtype=np.int64)),
            }
        )


# --- metering points ---------------------------------------------------------------------


_HH_CHANNELS: Final = ("volume_register_m3", "battery_voltage_v")
_CORR_CHANNELS: Final = ("volume_register_m3", "volume_work_register_m3", "pressure_kpa", "temperature_c")
_NOISE_SIGMA: Final = {"household": 0.25, "commercial": 0.15, "municipal": 0.08, "industrial": 0.06}


def _simulate_meter_block(
    config: SimulationConfig,
    ent: Enterprise,
    plan: FaultPlan,
    profiles: np.ndarray,
    temp: np.ndarray,
    i0: int,
    i1: int,
    block_no: int,
    stats: _ContractStats,
) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame]:
    H = config.hours
    rng = np.random.default_rng([config.seed, 2, block_no])
    idx = np.arange(i0, i1)
    m = idx.shape[0]
    start_us = int(config.start_datetime.timestamp()) * 1_000_000
    hours_us = start_us + np.arange(H + 1, dtype=np.int64) * _US_PER_HOUR

    # Expected hourly use times multiplicative log-normal noise (mean 1).
    sigma = ent.noise_sigma[idx][:, None].astype(np.float32)
    z = rng.standard_normal((m, H), dtype=np.float32)
    noise = np.exp(sigma * z - 0.5 * sigma * sigma)
    expected = profiles[ent.company[idx], ent.subtype[idx]] * ent.annual_m3[idx][:, None]
    truth_l = np.rint(expected * noise * 1000.0).astype(np.int64)  # litres, non-negative
    del z, noise, expected

    local = {int(g): k for k, g in enumerate(idx)}
    for f in plan.for_meters(i0, i1, "leak"):
        truth_l[local[f.index], f.t0 :] += round(f.value * 1000)
    registered_l = truth_l
    tampers = plan.for_meters(i0, i1, "tamper")
    if tampers:
        registered_l = truth_l.copy()
        for f in tampers:
            r = local[f.index]
            registered_l[r, f.t0 : f.t0 + f.duration] = np.rint(truth_l[r, f.t0 : f.t0 + f.duration] * f.value)
    stats.add(config, i0, truth_l)

    modulus_l = np.rint(ent.modulus_m3[idx] * 1000).astype(np.int64)
    reg_l = np.empty((m, H + 1), dtype=np.int64)
    reg_l[:, 0] = ent.initial_register_l[idx]
    np.cumsum(registered_l, axis=1, out=reg_l[:, 1:])
    reg_l[:, 1:] += reg_l[:, :1]
    reg_l %= modulus_l[:, None]
    register = reg_l / 1000.0
    del reg_l

    # Clock drift: device time = true time + rate * elapsed.
    drift_s_per_h = np.zeros(m)
    for f in plan.for_meters(i0, i1, "drift"):
        drift_s_per_h[local[f.index]] = f.value / 24.0
    elapsed_h = np.arange(H + 1, dtype=np.float64)
    ts_us = hours_us[None, :] + np.rint(drift_s_per_h[:, None] * elapsed_h[None, :] * 1e6).astype(np.int64)

    for f in plan.for_meters(i0, i1, "stuck"):
        r = local[f.index]
        register[r, f.t0 : f.t0 + f.duration] = register[r, f.t0]
    for f in plan.for_meters(i0, i1, "spike"):
        register[local[f.index], f.t0] += f.value

    present = np.ones((m, H + 1), dtype=bool)
    for f in plan.for_meters(i0, i1, "gap"):
        present[local[f.index], f.t0 : f.t0 + f.duration] = False

    is_corr = ent.device_kind[idx] == "corrector"
    events: list[tuple[str, int, str, str, str]] = []
    frames = []
    dev_ids = [ent.device_ids[i] for i in idx]

    hh = np.flatnonzero(~is_corr)
    if hh.size:
        # Battery voltage once a day at 00:00 (device time), slowly discharging.
        day_cols = np.arange(config.days) * 24
        b0 = ent.battery_v[idx[hh]]
        batt = b0[:, None] - 0.0006 * np.arange(config.days)[None, :]
        batt = np.round(batt + rng.normal(0.0, 0.004, batt.shape), 3)
        low = batt < 3.3
        for row in np.flatnonzero(low.any(axis=1)):
            d = int(np.argmax(low[row]))
            g = hh[row]
            events.append((dev_ids[g], int(ts_us[g, day_cols[d]]), "battery_low", "warning", f"battery {batt[row, d]:.3f} V"))
        values = np.concatenate([register[hh], batt], axis=1)
        tsm = np.concatenate([ts_us[hh], ts_us[hh][:, day_cols]], axis=1)
        mask = np.concatenate([present[hh], present[hh][:, day_cols]], axis=1)
        chan = np.concatenate([np.zeros(H + 1, dtype=np.int64), np.ones(config.days, dtype=np.int64)])
        frames.append(_flatten(dev_ids, hh, values, tsm, mask, chan, _HH_CHANNELS))

    corr = np.flatnonzero(is_corr)
    truth_work_l = None
    if corr.size:
        gi = idx[corr]
        k = corr.size
        pressure = np.round(ent.pressure_kpa[gi][:, None] * (1.0 + 0.01 * rng.standard_normal((k, H))), 3)
        gas_t = np.round(7.0 + 0.35 * (temp[None, :] - 7.0) + 0.5 * rng.standard_normal((k, H)), 2)
        # Working volume = standard volume * (p_std / p) * (T / T_std); compressibility ignored.
        factor = (101.325 / pressure) * ((gas_t + 273.15) / 293.15)
        work_inc = np.rint(registered_l[corr] * factor).astype(np.int64)
        truth_work_l = np.rint(truth_l[corr] * factor).astype(np.int64)
        wreg = np.empty((k, H + 1), dtype=np.int64)
        wreg[:, 0] = ent.initial_work_register_l[gi]
        np.cumsum(work_inc, axis=1, out=wreg[:, 1:])
        wreg[:, 1:] += wreg[:, :1]
        wreg %= modulus_l[corr][:, None]
        values = np.concatenate([register[corr], wreg / 1000.0, pressure, gas_t], axis=1)
        tsc = ts_us[corr]
        tsm = np.concatenate([tsc, tsc, tsc[:, :H], tsc[:, :H]], axis=1)
        pc = present[corr]
        mask = np.concatenate([pc, pc, pc[:, :H], pc[:, :H]], axis=1)
        chan = np.concatenate(
            [np.zeros(H + 1, np.int64), np.ones(H + 1, np.int64), np.full(H, 2, np.int64), np.full(H, 3, np.int64)]
        )
        frames.append(_flatten(dev_ids, corr, values, tsm, mask, chan, _CORR_CHANNELS))

    for f in tampers:
        r = local[f.index]
        events.append((dev_ids[r], int(ts_us[r, f.t0]), "tamper_magnet", "critical", "magnetic field detected"))

    # Duplicates: the unit re-sends a span of register rows (appended at the end).
    dups = plan.for_meters(i0, i1, "duplicate")
    if dups:
        parts = []
        for f in dups:
            r = local[f.index]
            sl = slice(f.t0, f.t0 + f.duration)
            cnt = f.duration
            parts.append(
                _long_frame(dev_ids, np.full(cnt, r), ("volume_register_m3",), np.zeros(cnt, np.int64),
                            ts_us[r, sl], register[r, sl])
            )
        frames.append(pl.concat(parts))
    frame = pl.concat(frames, how="vertical", rechunk=True)

    truth = None
    if config.write_truth:
        work = np.full((m, H), np.nan)
        if truth_work_l is not None:
            work[corr] = truth_work_l / 1000.0
        truth = pl.DataFrame(
            {
                "meter_id": pl.Series([ent.meter_ids[i] for i in idx]).gather(np.repeat(np.arange(m), H)),
                "ts": _ts_series(np.tile(hours_us[:H], m)),
                "volume_m3": (truth_l / 1000.0).reshape(-1),
                "volume_work_m3": work.reshape(-1),
            },
            schema=TRUTH_SCHEMA,
        ).with_columns(pl.col("volume_work_m3").fill_nan(None))
    return frame, truth, _events_frame(events)


def _flatten(
    dev_ids: list[str], rows: np.ndarray, values: np.ndarray, ts: np.ndarray, mask: np.ndarray,
    chan: np.ndarray, channel_names: tuple[str, ...],
) -> pl.DataFrame:
    """Flatten ``[device, column]`` matrices device-major, dropping masked-out cells."""
    flat = mask.reshape(-1)
    dev = np.repeat(rows, values.shape[1])[flat]
    ch = np.tile(chan, rows.shape[0])[flat]
    return _long_frame(dev_ids, dev, channel_names, ch, ts.reshape(-1)[flat], values.reshape(-1)[flat])


# --- GDP units -----------------------------------------------------------------------------


def _simulate_gdp_block(
    config: SimulationConfig, ent: Enterprise, plan: FaultPlan, temp: np.ndarray, g0: int, g1: int, block_no: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    from warehouse import GDP_CHANNELS

    H = config.hours
    rng = np.random.default_rng([config.seed, 3, block_no])
    gi = np.arange(g0, g1)
    g = gi.shape[0]
    start_us = int(config.start_datetime.timestamp()) * 1_000_000
    hours_us = start_us + np.arange(H, dtype=np.int64) * _US_PER_HOUR
    hod = (np.arange(H) % 24)[None, :]
    noise = rng.standard_normal((len(GDP_CHANNELS), g, H))
    base = ent.gdp_inlet_kpa[gi][:, None]
    ch = {
        "inlet_pressure_kpa": base + 5.0 * np.sin(2 * np.pi * (hod - 8) / 24) + 2.0 * noise[0],
        "outlet_pressure_kpa": 103.3 + 0.05 * noise[1] + np.zeros((g, 1)),
        "gas_temperature_c": 6.0 + 0.3 * (temp[None, :] - 6.0) + 0.3 * noise[2],
        "room_temperature_c": 14.0 + 0.25 * (temp[None, :] - 10.0) + 0.3 * noise[3],
        "ch4_pct_lel": np.abs(0.3 * noise[4]),
        "door_open": np.zeros((g, H)),
        "valve_open": np.ones((g, H)),
        "mains_voltage_v": 230.0 + 1.5 * noise[7],
        "battery_voltage_v": 13.4 + 0.03 * noise[8],
    }
    dev_ids = [ent.gdp_device_ids[i] for i in gi]
    local = {int(x): k for k, x in enumerate(gi)}
    events: list[tuple[str, int, str, str, str]] = []
    # Routine door openings (inspections): 0-3 per GDP, one hour each, during the day.
    n_open = rng.integers(0, 4, g)
    for r in range(g):
        if n_open[r]:
            hours = np.unique(rng.integers(0, config.days, n_open[r]) * 24 + rng.integers(8, 17, n_open[r]))
            ch["door_open"][r, hours] = 1.0
            events.extend((dev_ids[r], int(hours_us[h]), "door_open", "info", "door opened") for h in hours)
    for f in plan.for_nodes(g0, g1, "power_fail"):
        r, sl = local[f.index], slice(f.t0, f.t0 + f.duration)
        ch["mains_voltage_v"][r, sl] = 0.0
        ch["battery_voltage_v"][r, sl] -= 0.15 * np.arange(1, f.duration + 1)
        events.append((dev_ids[r], int(hours_us[f.t0]), "power_fail", "critical", f"mains lost for {f.duration} h"))
    for f in plan.for_nodes(g0, g1, "valve_closed"):
        r, sl = local[f.index], slice(f.t0, f.t0 + f.duration)
        ch["valve_open"][r, sl] = 0.0
        events.append((dev_ids[r], int(hours_us[f.t0]), "valve_closed", "critical", f"shut-off valve closed for {f.duration} h"))
    for f in plan.for_nodes(g0, g1, "threshold_excursion"):
        r = local[f.index]
        assert f.channel is not None  # plan_faults always sets the channel of an excursion
        ch[f.channel][r, f.t0 : f.t0 + f.duration] = f.value + 0.2 * np.abs(rng.standard_normal(f.duration)) * np.sign(
            f.value - ch[f.channel][r, f.t0]
        )
    decimals = {"door_open": 0, "valve_open": 0, "ch4_pct_lel": 2}
    values = np.concatenate([np.round(ch[c], decimals.get(c, 2)) for c in GDP_CHANNELS], axis=1)
    ts = np.tile(hours_us, len(GDP_CHANNELS))[None, :].repeat(g, axis=0)
    chan = np.repeat(np.arange(len(GDP_CHANNELS)), H)
    mask = np.ones(values.shape, dtype=bool)
    frame = _flatten(dev_ids, np.arange(g), values, ts, mask, chan, tuple(GDP_CHANNELS))
    return frame, _events_frame(events)
