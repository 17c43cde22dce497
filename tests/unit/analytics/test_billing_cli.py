"""``askug billing run | history | schedule`` and ``askug export`` through the real CLI entry."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl
import pytest

from dashboards.cli import main

_HERE = Path(__file__).with_name("test_billing.py")
_spec = importlib.util.spec_from_file_location("_billing_fixture", _HERE)
assert _spec is not None and _spec.loader is not None
_fixture = importlib.util.module_from_spec(_spec)
sys.modules["_billing_fixture"] = _fixture
_spec.loader.exec_module(_fixture)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "cli.duckdb"
    _fixture._build(path).close()
    return path


def _run(db: Path, *args: str) -> int:
    return main(["--db", str(db), *args])


def test_billing_run_then_history(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dashboards import cli

    monkeypatch.setattr(cli.console, "_width", 250)
    out = tmp_path / "out"
    out.mkdir()
    assert _run(db, "billing", "run", "--period", "2022-03", "--to", str(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["askug_billing_2022-03_r1.csv", "askug_billing_2022-03_r1.xml"]
    root = ET.parse(out / "askug_billing_2022-03_r1.xml").getroot()
    assert root.get("КоличествоСчетов") == "3"
    assert _run(db, "billing", "run", "--period", "2022-03", "--to", str(out), "--format", "csv") == 0
    err = capsys.readouterr().err
    assert "csv r1: unchanged" in err
    assert _run(db, "billing", "history", "--period", "2022-03") == 0
    assert "unchanged" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--period", "2022-13"), "billing period must look like 2022-01"),
        (("--period", "2022-03", "--company", "XX"), "unknown company XX"),
        (("--period", "2021-01"), "no hourly consumption is stored for gas month 2021-01"),
    ],
)
def test_billing_bad_input_is_one_line(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    assert _run(db, "billing", "run", "--to", str(tmp_path), *args) == 1
    err = capsys.readouterr().err
    assert message in " ".join(err.split())
    assert [p.name for p in tmp_path.iterdir()] == ["cli.duckdb"]


def test_billing_schedule_prints_a_cron_line(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(db, "billing", "schedule", "--to", "/srv/billing", "--days", "3-9", "--at", "05:30") == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    fields = line.split()
    assert fields[:5] == ["30", "5", "3-9", "*", "*"]
    assert f"--db {db.resolve()}" in line
    assert "billing run --period previous --to /srv/billing" in line
    assert _run(db, "billing", "schedule", "--to", "x", "--at", "25:00") == 1


def test_export_cli_writes_a_file(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "march.jsonl"
    assert _run(db, "export", "hourly", "--period", "2022-03", "--meter", "m2", "--out", str(out)) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # m2 starts at its gas month (05:00 UTC on 1 March); the UTC month ends at 24:00 on the 31st
    assert len(rows) == 31 * 24 - 5 and {r["meter_id"] for r in rows} == {"m2"}
    assert rows[0]["ts"] == "2022-03-01T05:00:00Z"
    out = tmp_path / "meters.csv"
    assert _run(db, "export", "metering_points", "--out", str(out), "--columns", "meter_id,name") == 0
    assert pl.read_csv(out).get_column("meter_id").to_list() == ["m1", "m2", "m3"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("hourly", "--start", "2022-03-05", "--end", "2022-03-01"), "the range is reversed"),
        (("hourly", "--period", "2020-01"), "no rows in hourly_archive between 2020-01-01"),
        (("hourly", "--period", "2022-03", "--company", "XX"), "unknown company XX"),
        (("hourly", "--period", "2022-03", "--meter", "zz"), "unknown metering point zz"),
        (("hourly",), "is a time series: give the period"),
        (("nonsense", "--period", "2022-03"), "unknown table 'nonsense'"),
        (("metering_points", "--period", "2022-03"), "has no time column"),
        (("hourly", "--period", "March"), "--period must look like 2022-01"),
    ],
)
def test_export_bad_input_is_one_line_and_no_file(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    out = tmp_path / "x.xlsx"
    assert _run(db, "export", *args, "--out", str(out)) == 1
    assert message in " ".join(capsys.readouterr().err.split())
    assert [p.name for p in tmp_path.iterdir()] == ["cli.duckdb"]


def test_export_empty_days_in_the_middle_are_skipped(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    # the daily rollup was never refreshed in this store: no rows, a clear error, no file
    assert _run(db, "export", "daily", "--start", "2022-01-30", "--end", "2022-02-03", "--out", str(out)) == 1
    assert not out.exists()
    store = _fixture.open_store(path=db)
    store.refresh_rollups()
    store.close()
    out = tmp_path / "y.csv"
    assert _run(db, "export", "daily", "--start", "2022-02-27", "--end", "2022-03-03", "--out", str(out)) == 0
    days = pl.read_csv(out).get_column("ts").unique().sort().to_list()
    assert days == [f"2022-{d}T00:00:00Z" for d in ("02-27", "02-28", "03-01", "03-02")]
    _ = dt
