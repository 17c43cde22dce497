"""Balance, limits and normalisation on a loaded simulation, on DuckDB and PostgreSQL,
and the ``askug balance|limits|normalise`` commands with good and bad input."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

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

    inflow = read_inflow_file(sim / "inflow.parquet")
    balance = balance_from_store(store, inflow, freq="day")
    full = balance.filter(pl.col("complete"))
    assert full.height > 0
    # losses are 0.3-1.5 % per GDP; a tampered meter under-registers more
    assert full.get_column("imbalance_pct").min() > 0.0
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

    proc = askug("--db", db, "balance", "--inflow", str(sim / "inflow.parquet"), "--freq", "month", "--out", str(tmp_path / "b.csv"))
    assert proc.returncode == 0, proc.stderr
    assert pl.read_csv(tmp_path / "b.csv").height > 0

    proc = askug("--db", db, "normalise", "--by", "category")
    assert proc.returncode == 0, proc.stderr
    assert "(all)" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["limits", "--month", "2022-01", "--limits", "{bad}"], "line 3: column 'monthly_limit_m3' value 'lots'"),
        (["limits", "--month", "2022-01", "--meter", "M999999"], "unknown metering point"),
        (["limits", "--month", "January"], "--month must look like 2022-01"),
        (["balance", "--inflow", "{inflow}", "--start", "2022-01-10", "--end", "2022-01-01"], "reversed"),
        (["balance", "--inflow", "{inflow}", "--start", "2022-01-10", "--end", "2022-01-10"], "empty"),
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
