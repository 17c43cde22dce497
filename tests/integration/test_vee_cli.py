"""``askug vee run|report|edit|audit`` as a user runs them, including bad input."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from warehouse import open_store

pytestmark = pytest.mark.integration


def askug(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160"}
    env.pop("ASKUG_DSN", None)
    return subprocess.run(
        [sys.executable, "-m", "dashboards.cli", "--db", str(db), *args],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "askug: error:" in ln]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def db(small_simulation: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vee_cli") / "askug.duckdb"
    for args in (("migrate",), ("load", str(small_simulation)), ("rollup",)):
        proc = askug(path, *args)
        assert proc.returncode == 0, proc.stderr
    return path


def test_vee_run_report_edit_audit(db: Path, tmp_path: Path) -> None:
    run = askug(db, "vee", "run")
    assert run.returncode == 0, run.stderr
    assert "20 metering points" in run.stderr and "gap" in run.stderr and "audit rows" in run.stderr

    out = tmp_path / "report.csv"
    report = askug(db, "vee", "report", "--level", "branch", "--out", str(out))
    assert report.returncode == 0, report.stderr
    summary = pl.read_csv(out)
    assert summary.get_column("meters").sum() == 20
    assert "valid_share" in summary.columns

    with open_store(path=db, read_only=True) as store:
        meter = store.read("metering_points").get_column("meter_id").sort()[0]
        t0 = store.read("hourly_archive", where={"meter_id": [meter]}).get_column("ts").min()
    assert isinstance(t0, dt.datetime)
    edit = askug(db, "vee", "edit", "--meter", meter, "--start", t0.isoformat(),
                 "--end", (t0 + dt.timedelta(hours=3)).isoformat(),
                 "--value", "2.5", "--reason", "customer reading", "--user", "ivanova")
    assert edit.returncode == 0, edit.stderr
    assert "3 hour(s) edited" in edit.stderr and "3 audit row(s)" in edit.stderr

    trail_out = tmp_path / "audit.csv"
    audit = askug(db, "vee", "audit", "--meter", meter, "--method", "manual", "--out", str(trail_out))
    assert audit.returncode == 0, audit.stderr
    trail = pl.read_csv(trail_out)
    assert trail.height == 3
    assert trail.get_column("changed_by").unique().to_list() == ["ivanova"]
    assert trail.get_column("reason").unique().to_list() == ["customer reading"]
    assert trail.get_column("new_value").unique().to_list() == [2.5]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("vee", "edit", "--meter", "NOPE", "--start", "2022-01-02", "--end", "2022-01-02T02:00",
          "--value", "1", "--reason", "x"), "unknown metering point"),
        (("vee", "edit", "--meter", "NOPE", "--start", "2022-01-03", "--end", "2022-01-02",
          "--value", "1", "--reason", "x"), "is not before --end"),
        (("vee", "run", "--start", "2022-01-05", "--end", "2022-01-01"), "is not before --end"),
        (("vee", "run", "--meter", "NOPE"), "unknown metering point"),
        (("vee", "report", "--company", "ACME"), "unknown company"),
        (("vee", "audit", "--meter", "NOPE"), "unknown metering point"),
        (("vee", "audit", "--start", "yesterday"), "--start must be a date"),
    ],
)
def test_vee_bad_input_is_one_line(db: Path, args: tuple[str, ...], message: str) -> None:
    with open_store(path=db, read_only=True) as store:
        before = store.count("audit_trail")
    assert message in error_line(askug(db, *args))
    with open_store(path=db, read_only=True) as store:
        assert store.count("audit_trail") == before
