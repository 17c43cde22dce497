"""The fleet simulator: config checks, determinism, enterprise shape, models, faults."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ingest import SimulationConfig, SimulationConfigError, readings_to_hourly, simulate
from warehouse import CATEGORIES, GDP_CHANNELS, TABLES


def _read_refs(d: Path, table: str) -> pl.DataFrame:
    return pl.read_csv(d / "reference" / f"{table}.csv", infer_schema=False)


def _readings(d: Path) -> pl.DataFrame:
    return pl.read_parquet(d / "readings" / "*.parquet")


def _truth(d: Path) -> pl.DataFrame:
    return pl.read_parquet(d / "truth" / "*.parquet")


def _devices(d: Path) -> pl.DataFrame:
    return _read_refs(d, "devices").with_columns(pl.col("counter_modulus_m3").cast(pl.Float64))


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    simulate(
        SimulationConfig(seed=3, meters=40, days=60, faults=False, write_truth=True, near_rollover_share=0.3,
                         block_devices=16),
        out,
    )
    return out


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("faulty")
    simulate(SimulationConfig(seed=11, meters=60, days=14, meters_per_gdp=10, write_truth=True), out)
    return out


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"meters": 5}, "meters"),
        ({"meters": 100_001}, "meters"),
        ({"days": 3}, "days"),
        ({"start": dt.date(2010, 12, 31)}, "start"),
        ({"start": dt.date(2022, 12, 1), "days": 30}, "start/days"),
        ({"start": dt.datetime(2022, 1, 1)}, "start"),
        ({"gap_rate": 1.5}, "gap_rate"),
        ({"excursion_rate": -0.1}, "excursion_rate"),
        ({"companies": 0}, "companies"),
        ({"seed": -1}, "seed"),
        ({"block_devices": 0}, "block_devices"),
        ({"meters": 10.0}, "meters"),
    ],
)
def test_config_rejects_bad_options_with_one_line_naming_the_option(kwargs: dict, option: str) -> None:
    with pytest.raises(SimulationConfigError) as info:
        SimulationConfig(**kwargs)
    msg = str(info.value)
    assert msg.startswith(f"{option}=")
    assert "allowed" in msg and "\n" not in msg
    assert isinstance(info.value, ValueError)


def test_config_is_frozen_and_keyword_only() -> None:
    with pytest.raises(TypeError):
        SimulationConfig(1, 10)  # type: ignore[misc]
    cfg = SimulationConfig()
    with pytest.raises(AttributeError):
        cfg.meters = 20  # type: ignore[misc]


# --- determinism and layout -------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    cfg = SimulationConfig(seed=5, meters=12, days=7, block_devices=5)
    calls: list[tuple[int, int]] = []
    a = simulate(cfg, tmp_path / "a", progress=lambda d, t: calls.append((d, t)))
    simulate(cfg, tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) >= 12
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert calls[-1] == (a.parts, a.parts) and [c[0] for c in calls] == list(range(1, a.parts + 1))
    simulate(SimulationConfig(seed=6, meters=12, days=7, block_devices=5), tmp_path / "c")
    assert (tmp_path / "a/readings/part-00000.parquet").read_bytes() != (
        tmp_path / "c/readings/part-00000.parquet"
    ).read_bytes()


def test_ten_meters_have_every_category_device_kind_and_contract_files(tmp_path: Path) -> None:
    summary = simulate(SimulationConfig(meters=10, days=7), tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["format"] == "askug-sim/1" and manifest["stations"] == ["bedford"]
    assert manifest["counts"]["readings"] == summary.readings
    mp = _read_refs(tmp_path, "metering_points")
    assert set(mp["category"]) == set(CATEGORIES)
    assert mp["meter_id"].str.contains(r"^M\d{6}$").all()
    assert set(mp["std_temperature_c"]) == {"20.0"} and set(mp["std_pressure_kpa"]) == {"101.325"}
    devices = _read_refs(tmp_path, "devices")
    assert set(devices["kind"]) == {"household_unit", "corrector", "gdp_unit"}
    assert devices["device_id"].str.contains(r"^D\d+$").all()
    nodes = _read_refs(tmp_path, "network_nodes")
    assert nodes.filter(pl.col("kind") == "gdp")["node_id"].str.starts_with("GDP-").all()
    companies = _read_refs(tmp_path, "companies")
    assert dict(zip(companies["time_zone"], companies["contract_hour"], strict=True)) == {
        "Europe/Moscow": "10", "Europe/Berlin": "6", "Europe/London": "5"
    }
    assert set(_read_refs(tmp_path, "branches")["weather_station"]) == {"bedford"}
    limits = _read_refs(tmp_path, "gdp_channels")
    assert {"inlet_pressure_kpa", "ch4_pct_lel", "mains_voltage_v"} <= set(limits["channel"])
    for table in ("companies", "branches", "network_nodes", "metering_points", "devices", "contracts", "gdp_channels"):
        header = (tmp_path / "reference" / f"{table}.csv").read_text().splitlines()[0].split(",")
        assert header == list(TABLES[table].schema)
    r = _readings(tmp_path)
    assert dict(r.schema) == dict(TABLES["readings"].schema)
    assert r["received_at"].null_count() == r.height
    kinds = r.join(devices.select("device_id", "kind"), on="device_id")
    channels = kinds.group_by("kind").agg(pl.col("channel").unique()).to_dict(as_series=False)
    got = {k: set(c) for k, c in zip(channels["kind"], channels["channel"], strict=True)}
    assert got["household_unit"] == {"volume_register_m3", "battery_voltage_v"}
    assert got["corrector"] == {"volume_register_m3", "volume_work_register_m3", "pressure_kpa", "temperature_c"}
    assert got["gdp_unit"] == set(GDP_CHANNELS)
    weather = pl.read_parquet(tmp_path / "weather.parquet")
    assert weather.height == (7 + 7) * 24 and weather["ts"].min() == dt.datetime(2022, 1, 1, tzinfo=dt.UTC)


def test_parts_hold_whole_devices(tmp_path: Path) -> None:
    summary = simulate(SimulationConfig(meters=25, days=7, block_devices=10), tmp_path)
    assert summary.parts == 6  # 3 blocks of 10 meter devices + 3 GDP units, one per part (10 // 9)
    seen: set[str] = set()
    for part in sorted((tmp_path / "readings").glob("*.parquet")):
        ids = set(pl.read_parquet(part)["device_id"])
        assert not ids & seen
        seen |= ids


# --- models and counters -------------------------------------------------------------------------


def test_magnitudes_by_category(clean: Path) -> None:
    truth = _truth(clean).join(_read_refs(clean, "metering_points").select("meter_id", "category"), on="meter_id")
    per_meter = truth.group_by("category", "meter_id").agg(pl.col("volume_m3").mean() * 8760)
    med = dict(per_meter.group_by("category").agg(pl.col("volume_m3").median()).iter_rows())
    # January-February rates are above the annual average, so allow headroom.
    assert 500 < med["household"] < 8_000
    assert 20_000 < med["municipal"] < 2_000_000
    assert 100_000 < med["industrial"] < 10_000_000


def test_household_daily_volume_follows_the_temperature(clean: Path) -> None:
    mp = _read_refs(clean, "metering_points")
    households = mp.filter(pl.col("category") == "household")["meter_id"]
    daily = (
        _truth(clean)
        .filter(pl.col("meter_id").is_in(households.implode()))
        .group_by(pl.col("ts").dt.date().alias("day"))
        .agg(pl.col("volume_m3").sum())
    )
    temp = pl.read_parquet(clean / "weather.parquet").group_by(pl.col("ts").dt.date().alias("day")).agg(
        pl.col("temperature_c").mean()
    )
    both = daily.join(temp, on="day").sort("temperature_c")
    assert both.height == 60
    corr = np.corrcoef(both["temperature_c"].to_numpy(), both["volume_m3"].to_numpy())[0, 1]
    assert corr < -0.6
    assert both.head(10)["volume_m3"].mean() > 1.3 * both.tail(10)["volume_m3"].mean()


def test_registers_roll_over_and_derived_consumption_equals_truth(clean: Path) -> None:
    readings = _readings(clean)
    devices = _devices(clean)
    regs = readings.filter(pl.col("channel") == "volume_register_m3").sort("device_id", "ts")
    rolled = regs.with_columns(pl.col("value").diff().over("device_id").alias("d")).filter(pl.col("d") < 0)
    assert rolled["device_id"].n_unique() >= 3
    assert set(rolled.join(devices, on="device_id")["kind"]) == {"household_unit", "corrector"}
    hourly = readings_to_hourly(readings, devices)
    truth = _truth(clean)
    assert hourly.height == truth.height
    both = hourly.join(truth, on=["meter_id", "ts"], suffix="_true")
    assert both.height == truth.height
    assert (both["quality"] == "valid").all()
    assert np.allclose(both["volume_m3"].to_numpy(), both["volume_m3_true"].to_numpy(), atol=1e-6, rtol=0)
    work = both.filter(pl.col("volume_work_m3_true").is_not_null())
    assert work.height > 0
    assert np.allclose(work["volume_work_m3"].to_numpy(), work["volume_work_m3_true"].to_numpy(), atol=1e-6)
    assert work["pressure_kpa"].null_count() == 0 and work["temperature_c"].null_count() == 0
    assert (hourly["volume_m3"] >= 0).all()


def test_contracts_have_limits_above_typical_use_and_some_tight(clean: Path) -> None:
    contracts = _read_refs(clean, "contracts").with_columns(pl.col("daily_limit_m3").cast(pl.Float64))
    daily = _truth(clean).group_by("meter_id", pl.col("ts").dt.date()).agg(pl.col("volume_m3").sum())
    peak = daily.group_by("meter_id").agg(pl.col("volume_m3").max()).join(contracts, on="meter_id")
    over = (peak["volume_m3"] > peak["daily_limit_m3"]).sum()
    assert 0 < over < peak.height // 2
    assert (peak["daily_limit_m3"] > 0).all()


# --- faults ---------------------------------------------------------------------------------


def _labels(d: Path) -> pl.DataFrame:
    return pl.read_csv(d / "labels.csv").with_columns(
        pl.col("ts_start").str.to_datetime(time_zone="UTC"), pl.col("ts_end").str.to_datetime(time_zone="UTC")
    )


def test_every_fault_kind_is_labelled(faulty: Path) -> None:
    kinds = set(_labels(faulty)["fault"])
    assert kinds == {"gap", "spike", "stuck", "drift", "duplicate", "leak", "tamper",
                     "threshold_excursion", "power_fail", "valve_closed"}
    events = pl.read_parquet(faulty / "events.parquet")
    assert {"tamper_magnet", "power_fail", "valve_closed", "door_open"} <= set(events["code"])
    assert set(events["severity"]) <= {"info", "warning", "critical"}


def test_clean_fleet_has_no_labels(clean: Path) -> None:
    assert pl.read_csv(clean / "labels.csv").height == 0


def test_faults_appear_in_the_data_where_labelled(faulty: Path) -> None:
    labels = _labels(faulty)
    r = _readings(faulty)
    reg = r.filter(pl.col("channel") == "volume_register_m3")
    devices = _read_refs(faulty, "devices")
    truth = _truth(faulty)

    def one(kind: str) -> dict:
        return labels.filter(pl.col("fault") == kind).row(0, named=True)

    g = one("gap")
    in_gap = r.filter((pl.col("device_id") == g["object_id"]) & pl.col("ts").is_between(g["ts_start"], g["ts_end"]))
    assert in_gap.height == 0
    assert r.filter(pl.col("device_id") == g["object_id"]).height > 0

    s = one("spike")
    dev = reg.filter(pl.col("device_id") == s["object_id"]).sort("ts")
    steps = dev.with_columns(pl.col("value").diff().alias("d"), pl.col("ts"))
    at = steps.filter(pl.col("ts") == s["ts_start"])["d"][0]
    assert at > 20 * steps["d"].drop_nulls().abs().median()

    st = one("stuck")
    frozen = reg.filter((pl.col("device_id") == st["object_id"]) & pl.col("ts").is_between(st["ts_start"], st["ts_end"]))
    assert frozen.height >= 6 and frozen["value"].n_unique() == 1

    d = one("drift")
    drifting = r.filter(pl.col("device_id") == d["object_id"]).with_columns(
        pl.col("ts").dt.round("1h").alias("hour"),
        (pl.col("ts") - pl.col("ts").dt.round("1h")).dt.total_microseconds().abs().alias("offset_us"),
    )
    assert drifting.filter(pl.col("hour") >= d["ts_start"])["offset_us"].min() > 60e6
    assert drifting.filter(pl.col("hour") < d["ts_start"])["offset_us"].max() <= 60e6

    du = one("duplicate")
    rows = reg.filter((pl.col("device_id") == du["object_id"]) & pl.col("ts").is_between(du["ts_start"], du["ts_end"]))
    assert rows.height == 2 * rows["ts"].n_unique()

    lk = one("leak")
    meter_dev = devices.filter(pl.col("meter_id") == lk["object_id"])["device_id"][0]
    flow = float(lk["detail"].split()[2])
    after = reg.filter((pl.col("device_id") == meter_dev) & (pl.col("ts") >= lk["ts_start"])).sort("ts")
    increments = after["value"].diff().drop_nulls()
    increments = increments.filter(increments >= 0)  # a rollover may happen
    assert increments.min() >= flow - 0.002

    tp = one("tamper")
    tdev = devices.filter(pl.col("meter_id") == tp["object_id"])["device_id"][0]
    ev = pl.read_parquet(faulty / "events.parquet").filter(
        (pl.col("device_id") == tdev) & (pl.col("code") == "tamper_magnet")
    )
    assert ev.height == 1 and ev["ts"][0] == tp["ts_start"]
    hourly = readings_to_hourly(r, _devices(faulty)).filter(pl.col("meter_id") == tp["object_id"])
    span = hourly.join(truth, on=["meter_id", "ts"], suffix="_true").filter(
        pl.col("ts").is_between(tp["ts_start"], tp["ts_end"]) & (pl.col("quality") == "valid")
    )
    k = float(tp["detail"].split()[2])
    assert span.height > 0
    assert abs(span["volume_m3"].sum() / span["volume_m3_true"].sum() - k) < 0.02

    limits = _read_refs(faulty, "gdp_channels").with_columns(pl.col("min_value", "max_value").cast(pl.Float64))
    for ex in labels.filter(pl.col("fault") == "threshold_excursion").iter_rows(named=True):
        gdp_dev = devices.filter(pl.col("node_id") == ex["object_id"])["device_id"][0]
        lim = limits.filter((pl.col("node_id") == ex["object_id"]) & (pl.col("channel") == ex["channel"])).row(0, named=True)
        vals = r.filter((pl.col("device_id") == gdp_dev) & (pl.col("channel") == ex["channel"]))
        inside = vals.filter(pl.col("ts").is_between(ex["ts_start"], ex["ts_end"]))["value"]
        outside = vals.filter(~pl.col("ts").is_between(ex["ts_start"], ex["ts_end"]))["value"]
        assert ((inside > lim["max_value"]) | (inside < lim["min_value"])).all()
        assert outside.is_between(lim["min_value"], lim["max_value"]).all()
