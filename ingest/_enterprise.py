"""The synthetic enterprise (companies → branches → GDPs → metering points → devices)
and the plan of injected faults, both drawn from the seed before any telemetry."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import numpy as np
import polars as pl

from ingest import _profiles, _shipped

if TYPE_CHECKING:
    from ingest._simulator import SimulationConfig

#: Company templates: name, IANA zone, contract hour, branch city stem.
COMPANY_TEMPLATES: Final = (
    ("Volga Gas Distribution", "Europe/Moscow", 10, "Samara"),
    ("Rhein-Ruhr Gasnetz", "Europe/Berlin", 6, "Essen"),
    ("Thames Valley Gas Networks", "Europe/London", 5, "Reading"),
    ("Ural Gas Supply", "Asia/Yekaterinburg", 10, "Perm"),
    ("Vistula Gas Networks", "Europe/Warsaw", 6, "Krakow"),
    ("Siberian Gas Distribution", "Asia/Novosibirsk", 10, "Tomsk"),
)

CATEGORY_SHARES: Final = {"household": 0.72, "commercial": 0.15, "municipal": 0.06, "industrial": 0.07}
MODULUS_M3: Final = {"household_unit": 1e5, "corrector": 1e8}
STD_TEMPERATURE_C: Final = 20.0
STD_PRESSURE_KPA: Final = 101.325

_STREETS: Final = ("Oak", "Mill", "Station", "Church", "Park", "River", "Garden", "Victoria", "Linden", "Birch",
                   "Lenin", "School", "Market", "Bridge", "Forest", "Meadow")
_COMMERCIAL: Final = {"GKO": "Office", "GHA": "Shop", "GBH": "Hotel"}
_INDUSTRY: Final = ("Bakery", "Brickworks", "Dairy", "Glassworks", "Foundry", "Paper mill", "Brewery", "Greenhouse")


def _allocate(total: int, shares: list[float], minimum: int = 1) -> np.ndarray:
    """Integer counts proportional to ``shares`` (largest remainder), each ≥ ``minimum``."""
    raw = np.asarray(shares) / sum(shares) * total
    counts = np.maximum(np.floor(raw).astype(np.int64), minimum)
    while counts.sum() < total:
        counts[int(np.argmax(raw - counts))] += 1
    while counts.sum() > total:
        counts[int(np.argmax(np.where(counts > minimum, counts - raw, -np.inf)))] -= 1
    return counts


@dataclass
class Enterprise:
    """Arrays describing every metering point (index i ↔ ``meter_ids[i]``) and GDP."""

    company_tz: list[str]
    companies: pl.DataFrame
    branches: pl.DataFrame
    nodes: pl.DataFrame
    meter_ids: list[str]
    meter_frame: pl.DataFrame
    device_ids: list[str]
    device_kind: np.ndarray
    company: np.ndarray
    subtype: np.ndarray
    annual_m3: np.ndarray
    noise_sigma: np.ndarray
    modulus_m3: np.ndarray
    initial_register_l: np.ndarray
    initial_work_register_l: np.ndarray
    pressure_kpa: np.ndarray
    battery_v: np.ndarray
    installed_at: list[dt.datetime]
    gdp_ids: list[str]
    gdp_device_ids: list[str]
    gdp_inlet_kpa: np.ndarray
    gdp_installed_at: list[dt.datetime]
    near_rollover: np.ndarray

    @property
    def n_meters(self) -> int:
        return len(self.meter_ids)

    @property
    def n_gdps(self) -> int:
        return len(self.gdp_ids)

    def reference_frames(self, config: SimulationConfig) -> dict[str, pl.DataFrame]:
        """The reference tables (all but contracts) as frames in contract columns."""
        from warehouse import GDP_CHANNELS

        n, g = self.n_meters, self.n_gdps
        devices = pl.DataFrame(
            {
                "device_id": [*self.device_ids, *self.gdp_device_ids],
                "kind": [*self.device_kind.tolist(), *(["gdp_unit"] * g)],
                "meter_id": [*self.meter_ids, *([None] * g)],
                "node_id": [*([None] * n), *self.gdp_ids],
                "counter_modulus_m3": [*self.modulus_m3.tolist(), *([None] * g)],
                "installed_at": [*self.installed_at, *self.gdp_installed_at],
            },
            schema_overrides={"installed_at": pl.Datetime("us", "UTC"), "counter_modulus_m3": pl.Float64},
        )
        limits = {
            "outlet_pressure_kpa": (102.3, 104.3),
            "gas_temperature_c": (-5.0, 30.0),
            "room_temperature_c": (5.0, 35.0),
            "ch4_pct_lel": (0.0, 10.0),
            "mains_voltage_v": (207.0, 253.0),
            "battery_voltage_v": (11.5, 14.5),
        }
        rows = []
        for j, node in enumerate(self.gdp_ids):
            base = float(self.gdp_inlet_kpa[j])
            rows.append((node, "inlet_pressure_kpa", round(base * 0.85, 1), round(base * 1.15, 1)))
            rows.extend((node, c, lo, hi) for c, (lo, hi) in limits.items())
        order = {c: k for k, c in enumerate(GDP_CHANNELS)}
        rows.sort(key=lambda r: (r[0], order[r[1]]))
        gdp_channels = pl.DataFrame(rows, schema=["node_id", "channel", "min_value", "max_value"], orient="row")
        return {
            "companies": self.companies,
            "branches": self.branches,
            "network_nodes": self.nodes,
            "metering_points": self.meter_frame,
            "devices": devices,
            "gdp_channels": gdp_channels,
        }


def build_enterprise(config: SimulationConfig) -> Enterprise:
    """Draw the enterprise from ``config.seed`` (stream 0)."""
    rng = np.random.default_rng([config.seed, 0])
    n = config.meters
    templates = COMPANY_TEMPLATES[: config.companies]
    companies = pl.DataFrame(
        {
            "company_id": [f"C{k + 1:02d}" for k in range(len(templates))],
            "name": [t[0] for t in templates],
            "time_zone": [t[1] for t in templates],
            "contract_hour": pl.Series([t[2] for t in templates], dtype=pl.Int8),
        }
    )
    per_company = _allocate(n, list(rng.uniform(0.7, 1.3, len(templates))))
    branch_rows: list[tuple[str, str, str, str]] = []
    branch_company: list[int] = []
    branch_counts: list[int] = []
    for c, (tmpl, cnt) in enumerate(zip(templates, per_company, strict=True)):
        nb = int(np.clip(round(cnt / 5000), 1, 20))
        counts = _allocate(int(cnt), list(rng.uniform(0.6, 1.4, nb)), minimum=0)
        for b in range(nb):
            bid = f"BR{len(branch_rows) + 1:03d}"
            branch_rows.append((bid, f"C{c + 1:02d}", f"{tmpl[3]} district {b + 1}", _shipped.STATION_ID))
            branch_company.append(c)
            branch_counts.append(int(counts[b]))
    branches = pl.DataFrame(branch_rows, schema=["branch_id", "company_id", "name", "weather_station"], orient="row")

    # Network: per branch an optional station and ceil(meters / meters_per_gdp) GDPs.
    node_rows: list[tuple[str, str, str | None, str, str]] = []
    gdp_ids: list[str] = []
    meter_branch = np.repeat(np.arange(len(branch_rows)), branch_counts)
    meter_gdp = np.empty(n, dtype=np.int64)
    pos = 0
    for b, (bid, *_rest) in enumerate(branch_rows):
        cnt = branch_counts[b]
        parent = None
        if rng.random() < 0.5:
            parent = f"ST-{b + 1:03d}"
            node_rows.append((parent, bid, None, "station", f"Gas distribution station {b + 1}"))
        ng = max(1, math.ceil(cnt / config.meters_per_gdp))
        first = len(gdp_ids)
        for k in range(ng):
            gid = f"GDP-{first + k + 1:05d}"
            gdp_ids.append(gid)
            node_rows.append((gid, bid, parent, "gdp", f"GDP {first + k + 1} ({_STREETS[(first + k) % len(_STREETS)]} St)"))
        if cnt:
            meter_gdp[pos : pos + cnt] = first + (np.arange(cnt) * ng) // cnt
        pos += cnt
    nodes = pl.DataFrame(
        node_rows,
        schema={c: pl.String for c in ("node_id", "branch_id", "parent_node_id", "kind", "name")},
        orient="row",
    )

    cats = list(CATEGORY_SHARES)
    cat_counts = _allocate(n, list(CATEGORY_SHARES.values()))
    category = rng.permutation(np.repeat(np.arange(len(cats)), cat_counts))
    cat_names = np.array(cats)[category]
    subtype = np.empty(n, dtype=np.int64)
    annual = np.empty(n)
    sigma = np.empty(n)
    for k, cat in enumerate(cats):
        sel = np.flatnonzero(category == k)
        options = _profiles.CATEGORY_SUBTYPES[cat]
        subtype[sel] = rng.choice(options, sel.size)
        sigma[sel] = {"household": 0.25, "commercial": 0.15, "municipal": 0.08, "industrial": 0.06}[cat]
        if cat == "household":
            annual[sel] = np.clip(rng.lognormal(np.log(1800.0), 0.3, sel.size), 900.0, 3500.0)
        else:
            lo, hi = {"commercial": (5e3, 6e4), "municipal": (5e4, 5e5), "industrial": (2e5, 5e6)}[cat]
            annual[sel] = np.exp(rng.uniform(np.log(lo), np.log(hi), sel.size))
    annual = np.round(annual, 0)
    kind = np.where(np.isin(cat_names, ["household", "commercial"]), "household_unit", "corrector")
    modulus = np.where(kind == "household_unit", MODULUS_M3["household_unit"], MODULUS_M3["corrector"])

    # Registers start anywhere; a few start just below the modulus so they roll over.
    window_share = config.days / 365.0
    expected_window = annual * window_share
    modulus_l = np.rint(modulus * 1000).astype(np.int64)
    init = np.floor(rng.uniform(0.0, 0.9, n) * modulus_l).astype(np.int64)
    work_init = np.floor(rng.uniform(0.0, 0.9, n) * modulus_l).astype(np.int64)
    near = np.zeros(n, dtype=bool)
    if config.near_rollover_share > 0:
        # Per device kind, so both household units and correctors roll over.
        for members in (np.flatnonzero(kind == "household_unit"), np.flatnonzero(kind == "corrector")):
            k = min(members.size, max(1, round(config.near_rollover_share * members.size)))
            near[rng.choice(members, k, replace=False)] = True
    back = np.rint(expected_window * rng.uniform(0.1, 0.5, n) * 1000).astype(np.int64)
    init = np.where(near, modulus_l - np.minimum(back, modulus_l // 2), init)
    work_init = np.where(near, modulus_l - np.minimum(back, modulus_l // 2), work_init)

    pressure = np.where(cat_names == "industrial", rng.uniform(150.0, 600.0, n), rng.uniform(103.0, 110.0, n))
    battery = np.where(rng.random(n) < 0.03, rng.uniform(3.31, 3.33, n), rng.uniform(3.45, 3.65, n))
    start = config.start_datetime
    installed = [start - dt.timedelta(days=int(d)) for d in rng.integers(30, 3000, n)]
    gdp_installed = [start - dt.timedelta(days=int(d)) for d in rng.integers(30, 5000, len(gdp_ids))]

    meter_ids = [f"M{i + 1:06d}" for i in range(n)]
    device_ids = [f"D{i + 1:07d}" for i in range(n)]
    gdp_device_ids = [f"D{n + j + 1:07d}" for j in range(len(gdp_ids))]
    streets = rng.integers(0, len(_STREETS), n)
    numbers = rng.integers(1, 200, n)
    names = []
    for i in range(n):
        st = f"{numbers[i]} {_STREETS[streets[i]]} St"
        cat = cat_names[i]
        sub = _profiles.SUBTYPE_NAMES[subtype[i]]
        if cat == "household":
            names.append(f"Flat {i % 97 + 1}, {st}" if sub.startswith("MFH") else f"House, {st}")
        elif cat == "commercial":
            names.append(f"{_COMMERCIAL[sub]}, {st}")
        elif cat == "municipal":
            names.append(f"Boiler house No. {i + 1}")
        else:
            names.append(f"{_INDUSTRY[i % len(_INDUSTRY)]} plant {i + 1}")
    company_of_meter = np.asarray(branch_company, dtype=np.int64)[meter_branch]
    tz = np.array([t[1] for t in templates])[company_of_meter]
    hours = np.array([t[2] for t in templates])[company_of_meter]
    meter_frame = pl.DataFrame(
        {
            "meter_id": meter_ids,
            "branch_id": [branch_rows[b][0] for b in meter_branch],
            "node_id": [gdp_ids[j] for j in meter_gdp],
            "name": names,
            "resource": ["gas"] * n,
            "category": cat_names.tolist(),
            "time_zone": tz.tolist(),
            "contract_hour": pl.Series(hours, dtype=pl.Int8),
            "std_temperature_c": [STD_TEMPERATURE_C] * n,
            "std_pressure_kpa": [STD_PRESSURE_KPA] * n,
        }
    )
    return Enterprise(
        company_tz=[t[1] for t in templates],
        companies=companies,
        branches=branches,
        nodes=nodes,
        meter_ids=meter_ids,
        meter_frame=meter_frame,
        device_ids=device_ids,
        device_kind=kind,
        company=company_of_meter,
        subtype=subtype,
        annual_m3=annual,
        noise_sigma=sigma,
        modulus_m3=modulus,
        initial_register_l=init,
        initial_work_register_l=work_init,
        pressure_kpa=np.round(pressure, 1),
        battery_v=battery,
        installed_at=installed,
        gdp_ids=gdp_ids,
        gdp_device_ids=gdp_device_ids,
        gdp_inlet_kpa=np.round(rng.uniform(300.0, 600.0, len(gdp_ids)), 1),
        gdp_installed_at=gdp_installed,
        near_rollover=near,
    )


# --- faults ------------------------------------------------------------------------------

#: Fault kinds on metering-point devices and on GDPs, with the config rate option.
METER_FAULTS: Final = {
    "gap": "gap_rate",
    "spike": "spike_rate",
    "stuck": "stuck_rate",
    "drift": "drift_rate",
    "duplicate": "duplicate_rate",
    "leak": "leak_rate",
    "tamper": "tamper_rate",
}
NODE_FAULTS: Final = {
    "threshold_excursion": "excursion_rate",
    "power_fail": "power_fail_rate",
    "valve_closed": "valve_closed_rate",
}
_EXCURSION_CHANNELS: Final = (
    "inlet_pressure_kpa",
    "outlet_pressure_kpa",
    "gas_temperature_c",
    "room_temperature_c",
    "ch4_pct_lel",
    "mains_voltage_v",
    "battery_voltage_v",
)


@dataclass(frozen=True)
class Fault:
    """One injected fault: ``index`` is a meter or GDP index, ``t0``/``duration`` in hours
    from the window start; ``value`` is kind-specific (see :func:`plan_faults`)."""

    kind: str
    index: int
    t0: int
    duration: int
    value: float = 0.0
    channel: str | None = None


@dataclass
class FaultPlan:
    faults: list[Fault] = field(default_factory=list)

    def for_meters(self, i0: int, i1: int, kind: str) -> list[Fault]:
        return [f for f in self.faults if f.kind == kind and i0 <= f.index < i1 and kind in METER_FAULTS]

    def for_nodes(self, g0: int, g1: int, kind: str) -> list[Fault]:
        return [f for f in self.faults if f.kind == kind and g0 <= f.index < g1 and kind in NODE_FAULTS]

    def labels(self, config: SimulationConfig, ent: Enterprise) -> pl.DataFrame:
        """The ground truth: one row per fault with the affected object, channel and span."""
        start = config.start_datetime
        last_hour = config.hours  # index of the last register instant

        def iso(h: int) -> str:
            return (start + dt.timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ")

        rows: list[tuple[str, str, str, str | None, str, str, str]] = []
        for f in self.faults:
            end = f.t0 + f.duration - 1
            if f.kind == "gap":
                rows.append(("gap", "device", ent.device_ids[f.index], None, iso(f.t0), iso(end),
                             f"no readings of any channel for {f.duration} h"))
            elif f.kind == "spike":
                rows.append(("spike", "device", ent.device_ids[f.index], "volume_register_m3", iso(f.t0), iso(f.t0),
                             f"register +{f.value:.3f} m3 for one reading"))
            elif f.kind == "stuck":
                rows.append(("stuck", "device", ent.device_ids[f.index], "volume_register_m3", iso(f.t0), iso(end),
                             f"register frozen for {f.duration} readings"))
            elif f.kind == "drift":
                first = math.floor(60.0 / (abs(f.value) / 24.0)) + 1  # first hour with |offset| > 60 s
                rows.append(("drift", "device", ent.device_ids[f.index], None, iso(min(first, last_hour)),
                             iso(last_hour), f"clock drift {f.value:+.1f} s/day; offset > 60 s from ts_start"))
            elif f.kind == "duplicate":
                rows.append(("duplicate", "device", ent.device_ids[f.index], "volume_register_m3", iso(f.t0),
                             iso(end), f"{f.duration} register rows sent twice"))
            elif f.kind == "leak":
                rows.append(("leak", "meter", ent.meter_ids[f.index], "volume_m3", iso(f.t0), iso(last_hour - 1),
                             f"extra flow {f.value:.3f} m3/h"))
            elif f.kind == "tamper":
                rows.append(("tamper", "meter", ent.meter_ids[f.index], "volume_m3", iso(f.t0), iso(end),
                             f"magnet; registers {f.value:.2f} of the true volume"))
            elif f.kind == "threshold_excursion":
                rows.append(("threshold_excursion", "node", ent.gdp_ids[f.index], f.channel, iso(f.t0), iso(end),
                             f"value near {f.value:.2f}, outside its limits"))
            elif f.kind == "power_fail":
                rows.append(("power_fail", "node", ent.gdp_ids[f.index], "mains_voltage_v", iso(f.t0), iso(end),
                             f"mains 0 V for {f.duration} h"))
            elif f.kind == "valve_closed":
                rows.append(("valve_closed", "node", ent.gdp_ids[f.index], "valve_open", iso(f.t0), iso(end),
                             f"valve closed for {f.duration} h"))
        frame = pl.DataFrame(
            rows,
            schema={"fault": pl.String, "object_kind": pl.String, "object_id": pl.String, "channel": pl.String,
                    "ts_start": pl.String, "ts_end": pl.String, "detail": pl.String},
            orient="row",
        )
        return frame.sort("fault", "object_id", "ts_start")


def _count(rate: float, n: int) -> int:
    return 0 if rate <= 0 or n == 0 else min(n, max(1, round(rate * n)))


def plan_faults(config: SimulationConfig, ent: Enterprise) -> FaultPlan:
    """Draw the faults from ``config.seed`` (stream 1).

    Metering-point faults go to distinct devices while there are enough of them, so
    the labels of one device do not overlap.  Power failures and valve closures at
    GDPs also write a critical event; routine door openings and low batteries are
    events, not faults, and are not labelled.
    """
    rng = np.random.default_rng([config.seed, 1])
    H = config.hours
    plan = FaultPlan()

    def span(lo: int, hi: int) -> tuple[int, int]:
        dur = int(rng.integers(lo, min(hi, max(lo + 1, H // 4)) + 1))
        t0 = int(rng.integers(24, max(25, H - dur - 24)))
        return t0, dur

    n = ent.n_meters
    perm = rng.permutation(n)
    pos = 0
    mean_flow = ent.annual_m3 / 8760.0
    for kind, option in METER_FAULTS.items():
        k = _count(getattr(config, option), n) if config.faults else 0
        chosen = [int(perm[(pos + j) % n]) for j in range(k)]
        pos += k
        for i in sorted(chosen):
            if kind == "gap":
                t0, dur = span(3, 72)
                plan.faults.append(Fault(kind, i, t0, dur))
            elif kind == "spike":
                t0, _ = span(1, 1)
                value = round(float(mean_flow[i] * rng.uniform(300, 3000) + 50.0), 3)
                plan.faults.append(Fault(kind, i, t0, 1, value, "volume_register_m3"))
            elif kind == "stuck":
                t0, dur = span(6, 48)
                plan.faults.append(Fault(kind, i, t0, dur, 0.0, "volume_register_m3"))
            elif kind == "drift":
                lo = max(2.0, 180.0 / config.days)
                hi = max(lo * 1.5, 1500.0 / config.days)
                rate = float(rng.uniform(lo, hi) * rng.choice([-1.0, 1.0]))
                plan.faults.append(Fault(kind, i, 0, H + 1, round(rate, 3)))
            elif kind == "duplicate":
                t0, dur = span(6, 48)
                plan.faults.append(Fault(kind, i, t0, dur, 0.0, "volume_register_m3"))
            elif kind == "leak":
                t0, _ = span(1, 1)
                flow = round(float(mean_flow[i] * rng.uniform(0.5, 2.0)), 3)
                plan.faults.append(Fault(kind, i, t0, H - t0, max(flow, 0.001), "volume_m3"))
            elif kind == "tamper":
                t0, dur = span(24, 240)
                plan.faults.append(Fault(kind, i, t0, dur, round(float(rng.uniform(0.3, 0.7)), 2), "volume_m3"))

    g = ent.n_gdps
    limits_hi = {"outlet_pressure_kpa": 104.3, "gas_temperature_c": 30.0, "ch4_pct_lel": 10.0, "mains_voltage_v": 253.0}
    for kind, option in NODE_FAULTS.items():
        k = _count(getattr(config, option), g) if config.faults else 0
        for j in sorted(int(x) for x in rng.choice(g, k, replace=False)):
            if kind == "threshold_excursion":
                t0, dur = span(2, 12)
                channel = str(rng.choice(_EXCURSION_CHANNELS))
                if channel == "inlet_pressure_kpa":
                    value = float(ent.gdp_inlet_kpa[j]) * 1.15 + rng.uniform(20, 60)
                elif channel == "room_temperature_c":
                    value = 5.0 - rng.uniform(2, 6)
                elif channel == "battery_voltage_v":
                    value = 11.5 - rng.uniform(0.5, 1.5)
                else:
                    margin = {"outlet_pressure_kpa": (0.5, 2), "gas_temperature_c": (2, 10), "ch4_pct_lel": (5, 30),
                              "mains_voltage_v": (5, 20)}[channel]
                    value = limits_hi[channel] + rng.uniform(*margin)
                plan.faults.append(Fault(kind, j, t0, dur, round(float(value), 2), channel))
            elif kind == "power_fail":
                t0, dur = span(1, 4)
                plan.faults.append(Fault(kind, j, t0, dur, 0.0, "mains_voltage_v"))
            else:
                t0, dur = span(2, 6)
                plan.faults.append(Fault(kind, j, t0, dur, 0.0, "valve_open"))
    return plan
