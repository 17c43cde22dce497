"""Balance, limits and normalisation on a loaded simulation, on DuckDB and PostgreSQL,
and the ``askug balance|limits|normalise`` commands with good and bad input.  The
balance reads the nodes' inflow from the store (``node_inflow``, loaded from the
simulation's ``inflow.parquet``); ``--inflow FILE`` overrides it."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from analytics import balance_from_store, limits_from_store, normalise_from_store, read_inflow_file

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 metering points, 14 January days, with node inflow."""
    from ingest import SimulationConfig, simulate

    out = tmp_path_factory.mktemp("sim_inflow")
    simulate(SimulationConfig(meters=20, days=14, seed=3, write_inflow=True), out)
    return out


@pytest.fixture(scope="module")
def duck_db(sim: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ingest import load_simulation
    from warehouse import open_store

    db = tmp_path_factory.mktemp("duck") / "askug.duckdb"
    with open_store(path=db) as store:
        store.migrate()
        load_simulation(store, sim)
        store.refresh_rollups()
    return db


def askug(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160"}
    env.pop("ASKUG_DSN", None)
    return subprocess.run(
        [sys.executable, "-m", "dashboards.cli", *args], capture_output=True, text=True, timeout=300, env=env, check=False
    )


def _check_results(store: Any, sim: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    monthly, daily = limits_from_store(store, month=dt.date(2022, 1, 1))
    assert monthly.height == 20
    assert set(monthly.get_column("status").to_list()) <= {"ok", "at_risk", "exceeded", "no_limit"}
    assert (monthly.get_column("as_of") == dt.date(2022, 1, 15)).all()  # 14 days of data, UTC+3..UTC
    risky = monthly.filter(pl.col("status") == "at_risk")
    assert risky.height >= 1
    for row in risky.iter_rows(named=True):
        assert row["statement"].startswith(f"consumer {row['meter_id']} (")
        assert f"by {round(row['excess_m3'])} m³ on day {row['exceed_day']}" in row["statement"]
    assert daily.height > 0 and daily.get_column("daily_limit_m3").null_count() == 0

    stored = store.read("node_inflow")
    assert stored.height == store.count("network_nodes") * 14 * 24
    assert set(stored.get_column("source")) == {"archive"}
    balance = balance_from_store(store, freq="day")
    # the stored inflow is the file's: passing the file gives the same balance (sums may
    # differ in the last bit, as rows arrive in another order)
    assert_frame_equal(balance, balance_from_store(store, read_inflow_file(sim / "inflow.parquet"), freq="day"), rel_tol=1e-12)
    full = balance.filter(pl.col("complete"))
    assert full.height > 0
    # losses are 0.3-1.5 % per GDP; a tampered meter under-registers more
    assert full.select(pl.col("imbalance_pct").min()).item() > 0.0
    nodes = store.read("network_nodes")
    for station in nodes.filter(pl.col("kind") == "station").get_column("node_id"):
        gdps = nodes.filter(pl.col("parent_node_id") == station).get_column("node_id").to_list()
        s = balance.filter(pl.col("node_id") == station).sort("period")
        g = balance.filter(pl.col("node_id").is_in(gdps)).group_by("period").agg(pl.col("consumed_m3").sum()).sort("period")
        assert s.get_column("consumed_m3").to_list() == pytest.approx(g.get_column("consumed_m3").to_list())
    return monthly, balance


def test_limits_and_balance_on_duckdb_and_postgres(sim: Path, duck_db: Path, pg_store: Any) -> None:
    from ingest import load_simulation
    from warehouse import open_store

    load_simulation(pg_store, sim)
    pg_store.refresh_rollups()
    # like hourly_archive: range-partitioned on plain PostgreSQL (a hypertable on TimescaleDB)
    assert pg_store.variant == "plain"
    kinds = pg_store.sql_frame(
        "SELECT c.relname, c.relkind::text AS kind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname IN ('node_inflow', 'node_inflow_default') AND n.nspname = current_schema() ORDER BY 1"
    )
    assert kinds.rows() == [("node_inflow", "p"), ("node_inflow_default", "r")]
    with open_store(path=duck_db, read_only=True) as duck:
        m_duck, b_duck = _check_results(duck, sim)
        n_duck = normalise_from_store(duck, period="total")
    m_pg, b_pg = _check_results(pg_store, sim)
    n_pg = normalise_from_store(pg_store, period="total")
    assert m_pg.select("meter_id", "status", "exceed_day").equals(m_duck.select("meter_id", "status", "exceed_day"))
    assert m_pg.get_column("forecast_m3").to_list() == pytest.approx(m_duck.get_column("forecast_m3").to_list())
    assert b_pg.get_column("imbalance_m3").to_list() == pytest.approx(b_duck.get_column("imbalance_m3").to_list())
    assert n_pg.get_column("normalised_m3").to_list() == pytest.approx(n_duck.get_column("normalised_m3").to_list())


def test_cli_commands(sim: Path, duck_db: Path, tmp_path: Path) -> None:
    db = str(duck_db)
    out = tmp_path / "limits.xlsx"
    proc = askug("--db", db, "limits", "--month", "2022-01", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "will exceed its monthly limit by" in proc.stderr and out.stat().st_size > 0

    proc = askug("--db", db, "balance", "--freq", "month", "--out", str(tmp_path / "b.csv"))
    assert proc.returncode == 0, proc.stderr
    stored = pl.read_csv(tmp_path / "b.csv")
    assert stored.height > 0 and stored.get_column("inflow_m3").null_count() == 0
    proc = askug("--db", db, "balance", "--inflow", str(sim / "inflow.parquet"), "--freq", "month", "--out", str(tmp_path / "f.csv"))
    assert proc.returncode == 0, proc.stderr
    assert_frame_equal(pl.read_csv(tmp_path / "f.csv"), stored, rel_tol=1e-9)

    proc = askug("--db", db, "normalise", "--by", "category")
    assert proc.returncode == 0, proc.stderr
    assert "(all)" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["limits", "--month", "2022-01", "--limits", "{bad}"], "line 3: column 'monthly_limit_m3' value 'lots'"),
        (["limits", "--month", "2022-01", "--meter", "M999999"], "unknown metering point"),
        (["limits", "--month", "January"], "--month must look like 2022-01"),
        (["balance", "--start", "2022-01-10", "--end", "2022-01-01"], "reversed"),
        (["balance", "--start", "2022-01-10", "--end", "2022-01-10"], "empty"),
        (["balance", "--node", "GDP-99999"], "unknown network node"),
        (["balance", "--inflow", "{inflow}", "--node", "GDP-99999"], "unknown network node"),
        (["balance", "--inflow", "{tmp}/none.csv"], "does not exist"),
        (["normalise", "--meter", "nobody"], "unknown metering point"),
        (["normalise", "--start", "2023-01-01", "--end", "2023-02-01"], "no complete daily consumption"),
    ],
)
def test_bad_input_is_one_line_and_writes_no_file(
    sim: Path, duck_db: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    bad = tmp_path / "limits.csv"
    bad.write_text("meter_id,valid_from,monthly_limit_m3\nM000001,2022-01-01,100\nM000002,2022-01-01,lots\n")
    out = tmp_path / "result.csv"
    filled = [a.format(bad=bad, inflow=sim / "inflow.parquet", tmp=tmp_path) for a in args]
    proc = askug("--db", str(duck_db), *filled, "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "askug: error:" in ln]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert message in " ".join(proc.stderr.split())
    assert not out.exists()


def test_balance_on_a_store_without_inflow_says_how_to_get_it(sim: Path, tmp_path: Path) -> None:
    """A simulation written with --no-inflow loads without node_inflow rows; the balance
    then asks for the inflow instead of printing a table of nulls."""
    from ingest import load_simulation
    from warehouse import open_store

    folder = tmp_path / "sim"
    shutil.copytree(sim, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"]["inflow"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    db = tmp_path / "askug.duckdb"
    with open_store(path=db) as store:
        store.migrate()
        load_simulation(store, folder)
        assert store.count("node_inflow") == 0
    out = tmp_path / "b.csv"
    proc = askug("--db", str(db), "balance", "--out", str(out))
    assert proc.returncode == 1 and not out.exists()
    assert "no node inflow" in proc.stderr and "--inflow FILE" in " ".join(proc.stderr.split())
    proc = askug("--db", str(db), "balance", "--inflow", str(sim / "inflow.parquet"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0


def test_askug_simulate_writes_inflow_unless_told_not_to(tmp_path: Path) -> None:
    """`askug simulate` (and the demo, which runs it without the flag) writes the nodes'
    inflow; `--no-inflow` leaves it out and changes no other data file."""
    base = ["simulate", "--meters", "10", "--days", "7", "--seed", "5"]
    assert askug(*base, "--out", str(tmp_path / "with")).returncode == 0
    proc = askug(*base, "--no-inflow", "--out", str(tmp_path / "without"))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "with" / "manifest.json").read_text())
    assert manifest["files"]["inflow"] == "inflow.parquet" and manifest["config"]["write_inflow"] is True
    assert pl.read_parquet(tmp_path / "with" / "inflow.parquet").height == manifest["counts"]["network_nodes"] * 7 * 24
    without = tmp_path / "without"
    assert not (without / "inflow.parquet").exists()
    assert "inflow" not in json.loads((without / "manifest.json").read_text())["files"]
    for path in without.rglob("*"):
        if path.is_file() and path.name != "manifest.json":
            assert path.read_bytes() == (tmp_path / "with" / path.relative_to(without)).read_bytes(), path
