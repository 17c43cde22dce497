"""The gas-day cube on PostgreSQL: same cells as DuckDB, incremental refresh = full rebuild, CLI."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

pytestmark = pytest.mark.integration

UTC = dt.UTC
START = dt.datetime(2022, 10, 27, tzinfo=UTC)


def _frames() -> dict[str, pl.DataFrame]:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "unit" / "warehouse" / "test_gasday_cube.py"
    spec = importlib.util.spec_from_file_location("_gasday_cube_frames", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    frames: dict[str, pl.DataFrame] = module.make_frames(START, 7 * 24)
    return frames


def _load(store: object, frames: dict[str, pl.DataFrame], hourly: pl.DataFrame) -> None:
    store.write("companies", frames["companies"])  # type: ignore[attr-defined]
    store.write("branches", frames["branches"])  # type: ignore[attr-defined]
    store.write(  # type: ignore[attr-defined]
        "metering_points",
        frames["meters"].with_columns(name=pl.col("meter_id"), time_zone=pl.lit("Europe/London"), contract_hour=pl.lit(5)),
    )
    store.write("hourly_archive", hourly.with_columns(source=pl.lit("archive")))  # type: ignore[attr-defined]


def test_postgres_cube_equals_duckdb_and_refresh_equals_rebuild(pg_store: object, tmp_path: Path) -> None:
    from warehouse import TABLES, build_gas_cube, open_store, read_gas_cube, refresh_gas_cube

    key = list(TABLES["gas_cube"].key)
    frames = _frames()
    late_lo, late_hi = START + dt.timedelta(days=2), START + dt.timedelta(days=3)
    h = frames["hourly"]
    on_time = h.filter((pl.col("ts") < late_lo) | (pl.col("ts") >= late_hi))
    _load(pg_store, frames, on_time)
    days = {"start": dt.date(2022, 10, 26), "end": dt.date(2022, 11, 3)}
    build_gas_cube(pg_store, **days)  # type: ignore[arg-type]
    pg_store.write("hourly_archive", h.filter((pl.col("ts") >= late_lo) & (pl.col("ts") < late_hi))  # type: ignore[attr-defined]
                   .with_columns(source=pl.lit("archive")))
    refresh_gas_cube(pg_store, start=late_lo, end=late_hi)  # type: ignore[arg-type]
    refreshed = pg_store.read("gas_cube").sort(key)  # type: ignore[attr-defined]

    with open_store(path=tmp_path / "duck.duckdb") as duck:
        duck.migrate()
        _load(duck, frames, h)
        build_gas_cube(duck, **days)  # type: ignore[arg-type]
        expected = duck.read("gas_cube").sort(key)
    assert_frame_equal(refreshed, expected, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)

    build_gas_cube(pg_store, engine="polars", **days)  # type: ignore[arg-type]
    assert_frame_equal(pg_store.read("gas_cube").sort(key), expected,  # type: ignore[attr-defined]
                       check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    report = read_gas_cube(pg_store, grouping="company-resource-branch", level="branch")  # type: ignore[arg-type]
    assert report.height == 5


def test_cli_cube_refresh_and_report(small_simulation: Path, tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    env = {**os.environ, "COLUMNS": "200"}

    def askug(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dashboards.cli", "--db", str(db), *args],
                              capture_output=True, text=True, timeout=300, env=env, check=False)

    for args in (["migrate"], ["load", str(small_simulation)]):
        assert askug(*args).returncode == 0
    built = askug("cube", "--grouping", "company", "--level", "company")
    assert built.returncode == 0, built.stderr
    assert "gas-day cube, 5 groupings" in built.stderr
    assert "C01" in built.stdout + built.stderr
    refreshed = askug("cube", "--refresh", "2022-01-05")
    assert refreshed.returncode == 0, refreshed.stderr
    assert "refreshed" in refreshed.stderr
    out = tmp_path / "report.pdf"
    ok = askug("report", "--start", "2022-01-02", "--end", "2022-01-06", "--group-by", "branch,category,day",
               "--out", str(out))
    assert ok.returncode == 0, ok.stderr
    assert out.read_bytes().startswith(b"%PDF")
    bad = tmp_path / "bad.pdf"
    for args in (["--company", "NOPE"], ["--start", "2022-01-06", "--end", "2022-01-02"]):
        base = {"--start": "2022-01-02", "--end": "2022-01-06"}
        argv = [x for k, v in base.items() if k not in args for x in (k, v)]
        proc = askug("report", *argv, *args, "--out", str(bad))
        assert proc.returncode == 1
        assert len(proc.stderr.strip().splitlines()[-1]) > 20 and "Traceback" not in proc.stderr
        assert not bad.exists()
