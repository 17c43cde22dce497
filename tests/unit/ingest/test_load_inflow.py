"""The nodes' metered inflow: written by the simulator on request, loaded into ``node_inflow``."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

import warehouse
from ingest import IngestFileError, SimulationConfig, load_simulation, simulate

CONFIG = SimulationConfig(seed=7, meters=12, days=7, block_devices=5)


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same enterprise simulated without and with inflow."""
    root = tmp_path_factory.mktemp("inflow")
    simulate(CONFIG, root / "plain")
    simulate(dataclasses.replace(CONFIG, write_inflow=True), root / "inflow")
    return root / "plain", root / "inflow"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[warehouse.Store]:
    s = warehouse.open_store(path=tmp_path / "x.duckdb")
    s.migrate()
    yield s
    s.close()


def _copy(sim: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(sim, target)
    return target


def test_inflow_changes_no_other_file(sims: tuple[Path, Path]) -> None:
    plain, inflow = sims
    files = sorted(p.relative_to(plain) for p in plain.rglob("*") if p.is_file())
    assert (inflow / "inflow.parquet").is_file() and not (plain / "inflow.parquet").exists()
    for rel in files:
        if rel.name != "manifest.json":
            assert (plain / rel).read_bytes() == (inflow / rel).read_bytes(), rel
    a = json.loads((plain / "manifest.json").read_text())
    b = json.loads((inflow / "manifest.json").read_text())
    assert "write_inflow" not in a["config"] and b["config"].pop("write_inflow") is True
    assert b["files"].pop("inflow") == "inflow.parquet"
    assert a == b


def test_load_stores_inflow_of_every_node_and_hour_once(sims: tuple[Path, Path], store: warehouse.Store) -> None:
    _, sim = sims
    first = load_simulation(store, sim)
    nodes = store.read("network_nodes")
    stored = store.read("node_inflow")
    assert first.rows["node_inflow"] == stored.height == nodes.height * 7 * 24
    assert set(stored.get_column("node_id")) == set(nodes.get_column("node_id"))
    assert set(stored.get_column("source")) == {"archive"} and set(stored.get_column("quality")) == {"valid"}
    file = pl.read_parquet(sim / "inflow.parquet").sort("node_id", "ts")
    assert stored.select(file.columns).equals(file)
    again = load_simulation(store, sim)
    assert again.rows.get("node_inflow", 0) == 0 and again.duplicates["node_inflow"] == stored.height
    assert store.count("node_inflow") == stored.height


def test_folder_without_inflow_loads_as_before(sims: tuple[Path, Path], store: warehouse.Store) -> None:
    plain, _ = sims
    summary = load_simulation(store, plain)
    assert "node_inflow" not in summary.rows and store.count("node_inflow") == 0
    assert store.count("hourly_archive") > 0


def test_inflow_file_may_carry_its_own_source(sims: tuple[Path, Path], store: warehouse.Store, tmp_path: Path) -> None:
    folder = _copy(sims[1], tmp_path)
    frame = pl.read_parquet(folder / "inflow.parquet").with_columns(pl.lit("act").alias("source"))
    frame.write_parquet(folder / "inflow.parquet")
    load_simulation(store, folder)
    assert set(store.read("node_inflow").get_column("source")) == {"act"}


def _break_inflow(frame: pl.DataFrame, how: str) -> pl.DataFrame:
    if how == "unknown node":
        return frame.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(pl.lit("GDP-99999")).otherwise("node_id").alias("node_id"))
    if how == "negative":
        return frame.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(-1.0).otherwise("volume_m3").alias("volume_m3"))
    if how == "repeated":
        return pl.concat([frame, frame.slice(10, 1)])
    if how == "quality":
        return frame.with_columns(pl.lit("great").alias("quality"))
    if how == "naive ts":
        return frame.with_columns(pl.col("ts").dt.replace_time_zone(None))
    if how == "missing column":
        return frame.drop("quality")
    raise AssertionError(how)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("unknown node", "node_id 'GDP-99999' is not in the network_nodes table"),
        ("negative", "volume_m3 -1.0 of"),
        ("repeated", "rows repeat a (node_id, ts)"),
        ("quality", "great"),
        ("naive ts", "ts: Datetime(time_unit='us', time_zone=None)"),
        ("missing column", "quality: absent"),
    ],
)
def test_bad_inflow_file_names_the_problem_and_stores_nothing(
    sims: tuple[Path, Path], store: warehouse.Store, tmp_path: Path, how: str, message: str
) -> None:
    folder = _copy(sims[1], tmp_path)
    _break_inflow(pl.read_parquet(folder / "inflow.parquet"), how).write_parquet(folder / "inflow.parquet")
    with pytest.raises(IngestFileError) as err:
        load_simulation(store, folder)
    assert str(err.value).startswith("inflow.parquet")
    assert message in str(err.value)
    for table in ("companies", "network_nodes", "readings", "hourly_archive", "node_inflow"):
        assert store.count(table) == 0, table


def test_listed_inflow_file_must_exist(sims: tuple[Path, Path], store: warehouse.Store, tmp_path: Path) -> None:
    folder = _copy(sims[1], tmp_path)
    (folder / "inflow.parquet").unlink()
    with pytest.raises(IngestFileError, match="inflow.parquet: listed in manifest.json as inflow but missing"):
        load_simulation(store, folder)
    assert store.count("companies") == 0
