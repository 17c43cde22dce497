"""The askug command line end to end: the demo pipeline, the PostgreSQL path, and bad input.

Each command runs as a real subprocess, the way a user runs it.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from warehouse import SCHEMA_VERSION, open_store

pytestmark = pytest.mark.integration


def askug(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    run_env = {**os.environ, "COLUMNS": "120"}
    run_env.pop("ASKUG_DSN", None)
    run_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "dashboards.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=run_env, check=False,
    )


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines, f"no error printed; stdout={proc.stdout!r}"
    assert len([ln for ln in lines if "askug: error:" in ln]) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return next(ln for ln in lines if "askug: error:" in ln)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("demo")
    proc = askug("demo", "--no-serve", "--meters", "40", "--days", "28", "--workdir", str(workdir))
    assert proc.returncode == 0, proc.stderr
    return workdir


def test_demo_runs_every_step_and_fills_every_layer(demo: Path) -> None:
    with open_store(path=demo / "askug.duckdb") as store:
        store.check_schema()
        meters = store.count("metering_points")
        assert meters == 40
        hourly = store.count("hourly_archive")
        assert hourly >= 40 * 28 * 24 * 0.9  # gaps become null rows, not lost hours
        assert store.count("daily_archive") >= 40 * 27
        assert store.count("monthly_archive") >= 40
        cube = store.read("cube")
        total = cube.filter(pl.col("level") == "total").get_column("volume_m3").sum()
        hourly_sum = store.read("hourly_archive", columns=["volume_m3"]).get_column("volume_m3").sum()
        assert total == pytest.approx(hourly_sum, rel=1e-9)
        forecasts = store.read("forecasts")
        assert forecasts.height > 0
        cutoff = forecasts.get_column("cutoff").max()
        future = forecasts.filter(pl.col("ts") >= cutoff)
        assert future.get_column("meter_id").n_unique() >= 30
        assert (forecasts.get_column("volume_m3") >= 0).all()
        assert (forecasts.get_column("volume_m3_lo_80") <= forecasts.get_column("volume_m3_hi_80")).all()


def test_demo_alerts_match_the_injected_threshold_excursions(demo: Path) -> None:
    labels_path = demo / "simulation" / "labels.csv"
    with labels_path.open() as fh:
        excursions = [r for r in csv.DictReader(fh) if "threshold" in r["fault"]]
    assert excursions, "the default demo must inject GDP threshold excursions"
    with open_store(path=demo / "askug.duckdb") as store:
        alerts = store.read("alerts")
    found = {(r["object_id"], r["channel"]) for r in alerts.iter_rows(named=True)}
    for label in excursions:
        assert (label["object_id"], label["channel"]) in found, label


def test_each_subcommand_has_help() -> None:
    for command in ("demo", "simulate", "migrate", "load", "rollup", "cube", "forecast", "detect", "serve"):
        proc = askug(command, "--help")
        assert proc.returncode == 0 and "usage: askug" in proc.stdout, command


def test_wrong_simulator_option_is_one_line(tmp_path: Path) -> None:
    proc = askug("simulate", "--meters", "5", "--out", str(tmp_path / "sim"))
    assert proc.returncode == 1
    line = error_line(proc)
    assert "meters" in line and "10" in line and "100000" in line.replace(",", "").replace("_", "")


def test_unreachable_database_is_one_line() -> None:
    proc = askug("--dsn", "postgresql://askug:secret@127.0.0.1:1/nowhere", "migrate")
    assert proc.returncode == 1
    line = error_line(proc)
    assert "127.0.0.1" in line and "secret" not in line


def test_unmigrated_store_asks_for_migrate(tmp_path: Path) -> None:
    proc = askug("--db", str(tmp_path / "empty.duckdb"), "cube")
    assert proc.returncode == 1
    assert "askug migrate" in error_line(proc)


def test_store_with_other_schema_version_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "future.duckdb"
    with open_store(path=db) as store:
        store.migrate()
        store.sql_frame("SELECT 1")  # the store is usable
    import duckdb

    con = duckdb.connect(str(db))
    con.execute("INSERT INTO askug_schema_version (version, name, variant) VALUES (?, 'future', 'duckdb')", [SCHEMA_VERSION + 1])
    con.close()
    proc = askug("--db", str(db), "rollup")
    assert proc.returncode == 1
    assert f"schema version {SCHEMA_VERSION + 1}" in error_line(proc)


def test_malformed_input_file_leaves_the_store_as_it_was(tmp_path: Path, small_simulation: Path) -> None:
    db = str(tmp_path / "x.duckdb")
    assert askug("--db", db, "migrate").returncode == 0
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", str(small_simulation), str(broken)], check=True)
    meters_csv = broken / "reference" / "metering_points.csv"
    lines = meters_csv.read_text().splitlines()
    lines[3] = lines[3].replace("household", "spaceship", 1).replace("industrial", "spaceship", 1)
    lines[3] = lines[3].replace("municipal", "spaceship", 1).replace("commercial", "spaceship", 1)
    meters_csv.write_text("\n".join(lines) + "\n")
    proc = askug("--db", db, "load", str(broken))
    assert proc.returncode == 1
    line = error_line(proc)
    assert "metering_points" in line
    with open_store(path=db) as store:
        for table in ("companies", "metering_points", "readings", "hourly_archive"):
            assert store.count(table) == 0, table


def test_postgres_pipeline_matches_duckdb(pg_empty_dsn: str, small_simulation: Path, tmp_path: Path) -> None:
    dsn = pg_empty_dsn
    db = str(tmp_path / "same.duckdb")
    for args in (["migrate"], ["load", str(small_simulation)], ["rollup"], ["cube"], ["forecast"], ["detect"]):
        for target in (["--dsn", dsn], ["--db", db]):
            proc = askug(*target, *args)
            assert proc.returncode == 0, (target, args, proc.stderr)
    # loading the same folder again stores nothing new (idempotent on natural keys)
    with open_store(dsn) as pg:
        before = {t: pg.count(t) for t in ("readings", "hourly_archive", "events")}
    assert askug("--dsn", dsn, "load", str(small_simulation)).returncode == 0
    with open_store(dsn) as pg, open_store(path=db) as duck:
        after = {t: pg.count(t) for t in before}
        assert after == before
        for table in ("hourly_archive", "daily_archive", "cube", "alerts"):
            assert pg.count(table) == duck.count(table), table
        key = ["level", "company_id", "branch_id", "resource", "year", "month", "day", "hour"]
        a = pg.read("cube").sort(key)
        b = duck.read("cube").sort(key)
        assert a.select(key).equals(b.select(key))
        assert a.get_column("volume_m3").to_list() == pytest.approx(b.get_column("volume_m3").to_list())


def test_serve_answers_on_its_port_and_stops_cleanly(demo: Path, tmp_path: Path) -> None:
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ}
    env.pop("ASKUG_DSN", None)
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dashboards.cli", "--db", str(demo / "askug.duckdb"), "serve", "--port", str(port)],
            stdout=sink, stderr=subprocess.STDOUT, env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                    assert resp.status == 200
                    assert "askug" in resp.read().decode()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_dash-layout", timeout=5) as resp:
                    assert resp.status == 200
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "askug serve did not answer within 60 s"
                time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
