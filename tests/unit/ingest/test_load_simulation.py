"""Loading simulator output into a DuckDB store: round trip, idempotence, malformed files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

import warehouse
from ingest import IngestFileError, SimulationConfig, load_simulation, simulate
from warehouse import TABLES

LOADED = ("companies", "branches", "network_nodes", "metering_points", "devices", "contracts", "gdp_channels",
          "weather", "readings", "hourly_archive", "events")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "run"
    simulate(SimulationConfig(seed=2, meters=20, days=7, block_devices=8, write_truth=True), out)
    return out


@pytest.fixture
def store(tmp_path: Path) -> warehouse.Store:
    s = warehouse.open_store(path=tmp_path / "x.duckdb")
    s.migrate()
    yield s
    s.close()


def _counts(store: warehouse.Store) -> dict[str, int]:
    return {t: store.count(t) for t in LOADED}


def _copy(sim: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(sim, target)
    return target


def test_round_trip_and_second_load_stores_nothing(sim: Path, store: warehouse.Store) -> None:
    manifest = json.loads((sim / "manifest.json").read_text())
    calls: list[tuple[int, int]] = []
    first = load_simulation(store, sim, progress=lambda d, t: calls.append((d, t)))
    counts = manifest["counts"]
    readings = pl.read_parquet(sim / "readings" / "*.parquet")
    unique_keys = readings.select("device_id", "channel", "ts").n_unique()
    assert first.rows["readings"] == unique_keys == store.count("readings")
    assert first.duplicates["readings"] == counts["readings"] - unique_keys > 0
    for table in ("companies", "metering_points", "devices", "contracts", "gdp_channels", "weather", "events"):
        assert first.rows[table] == counts[table] == store.count(table), table
    truth = pl.read_parquet(sim / "truth" / "*.parquet")
    hourly = store.read("hourly_archive")
    assert hourly.height == first.rows["hourly_archive"] == truth.height
    assert set(hourly["quality"]) <= {"valid", "suspect", "missing"}
    assert hourly.filter(pl.col("quality") == "missing")["volume_m3"].null_count() == hourly.filter(
        pl.col("quality") == "missing"
    ).height
    assert (hourly["volume_m3"].drop_nulls() >= 0).all()
    assert calls[-1] == (len(manifest["files"]["readings"]),) * 2
    assert store.read("readings")["received_at"].null_count() == unique_keys

    before = _counts(store)
    second = load_simulation(store, sim)
    assert sum(second.rows.values()) == 0
    assert second.duplicates["readings"] == counts["readings"]
    assert _counts(store) == before


def test_incremental_load_continues_from_the_stored_register(tmp_path: Path, store: warehouse.Store) -> None:
    full = tmp_path / "full"
    simulate(SimulationConfig(seed=4, meters=10, days=7, faults=False, write_truth=True), full)
    cut = pl.datetime(2022, 1, 4, time_zone="UTC")
    early, late = tmp_path / "early", tmp_path / "late"
    for target, keep in ((early, pl.col("ts") < cut), (late, pl.col("ts") >= cut)):
        shutil.copytree(full, target)
        for part in (target / "readings").glob("*.parquet"):
            pl.read_parquet(part).filter(keep).write_parquet(part)
    load_simulation(store, early)
    load_simulation(store, late)
    hourly = store.read("hourly_archive")
    truth = pl.read_parquet(full / "truth" / "*.parquet")
    assert hourly.height == truth.height and set(hourly["quality"]) == {"valid"}
    both = hourly.join(truth, on=["meter_id", "ts"], suffix="_true")
    assert (both["volume_m3"] - both["volume_m3_true"]).abs().max() < 1e-6


def _expect_failure(store: warehouse.Store, directory: Path, *fragments: str) -> str:
    before = _counts(store)
    with pytest.raises(IngestFileError) as info:
        load_simulation(store, directory)
    msg = str(info.value)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, msg
    assert _counts(store) == before
    return msg


def test_bad_header_names_file_and_line(sim: Path, tmp_path: Path, store: warehouse.Store) -> None:
    d = _copy(sim, tmp_path)
    path = d / "reference" / "devices.csv"
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace("counter_modulus_m3", "modulus")
    path.write_text("\n".join(lines) + "\n")
    _expect_failure(store, d, "reference/devices.csv line 1", "header")


def test_bad_value_names_file_line_and_column(sim: Path, tmp_path: Path, store: warehouse.Store) -> None:
    d = _copy(sim, tmp_path)
    path = d / "reference" / "metering_points.csv"
    frame = pl.read_csv(path, infer_schema=False)
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 4).then(pl.lit("abc")).otherwise(pl.col("std_pressure_kpa")).alias("std_pressure_kpa")
    )
    frame.write_csv(path)
    _expect_failure(store, d, "reference/metering_points.csv line 6", "std_pressure_kpa", "'abc'")


def test_bad_timestamp_and_unknown_code(sim: Path, tmp_path: Path, store: warehouse.Store) -> None:
    d = _copy(sim, tmp_path)
    path = d / "reference" / "devices.csv"
    text = path.read_text().splitlines()
    text[3] = text[3].replace("T00:00:00Z", " 00:00:00")  # no UTC offset
    path.write_text("\n".join(text) + "\n")
    _expect_failure(store, d, "reference/devices.csv line 4", "installed_at", "UTC")
    shutil.copy(sim / "reference" / "devices.csv", path)
    nodes = d / "reference" / "network_nodes.csv"
    text = nodes.read_text().splitlines()
    text[1] = text[1].replace(",gdp,", ",pipe,").replace(",station,", ",pipe,")
    nodes.write_text("\n".join(text) + "\n")
    _expect_failure(store, d, "reference/network_nodes.csv line 2", "'pipe'")


def test_missing_file_and_bad_manifest(sim: Path, tmp_path: Path, store: warehouse.Store) -> None:
    d = _copy(sim, tmp_path)
    (d / "events.parquet").unlink()
    _expect_failure(store, d, "events.parquet", "missing")
    shutil.copy(sim / "events.parquet", d / "events.parquet")
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["format"] = "askug-sim/99"
    (d / "manifest.json").write_text(json.dumps(manifest))
    _expect_failure(store, d, "manifest.json", "askug-sim/1")
    (d / "manifest.json").unlink()
    _expect_failure(store, d, "manifest.json", "missing")


def test_parquet_schema_mismatch(sim: Path, tmp_path: Path, store: warehouse.Store) -> None:
    d = _copy(sim, tmp_path)
    part = d / "readings" / "part-00001.parquet"
    pl.read_parquet(part).with_columns(pl.col("value").cast(pl.Float32)).write_parquet(part)
    _expect_failure(store, d, "readings/part-00001.parquet", "value", "Float32")


def test_failure_while_writing_rolls_everything_back(sim: Path, tmp_path: Path, store: warehouse.Store) -> None:
    load_simulation(store, sim)
    d = _copy(sim, tmp_path)
    # A later simulation window with one bad channel name in the last part: the schema
    # is fine, so validation passes and the write fails half-way through.
    weather = pl.read_parquet(d / "weather.parquet")
    weather.with_columns(pl.col("ts").dt.offset_by("30d")).write_parquet(d / "weather.parquet")
    parts = sorted((d / "readings").glob("*.parquet"))
    for part in parts:
        frame = pl.read_parquet(part).with_columns(pl.col("ts").dt.offset_by("30d"))
        if part == parts[-1]:
            frame = frame.with_columns(
                pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("bogus_channel")).otherwise(pl.col("channel")).alias("channel")
            )
        frame.write_parquet(part)
    msg = _expect_failure(store, d, parts[-1].relative_to(d).as_posix(), "bogus_channel")
    assert "readings" in msg
    assert TABLES["readings"].name == "readings"
