"""The TimescaleDB variant's SQL, run for real in PGlite (PostgreSQL 17 + TimescaleDB 2.23
compiled to WebAssembly) under Node: Debian has no TimescaleDB package, so this is what
keeps ``warehouse/sql/timescale/`` honest in CI.  The runner is
``tests/timescale/run_migrations.mjs``; it prints one JSON document."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parents[1] / "timescale"
RUNNER = HERE / "run_migrations.mjs"
PACKAGE = HERE / "node_modules" / "@unni-craftsman" / "pglite"


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node not found; install Node.js 20+: apt-get install nodejs npm", pytrace=False
        )
    if not PACKAGE.is_dir():
        pytest.fail(
            f"{PACKAGE.relative_to(HERE.parents[1])} is missing; run `npm ci --prefix tests/timescale`",
            pytrace=False,
        )
    proc = subprocess.run(
        [node, str(RUNNER)], capture_output=True, text=True, timeout=180, check=False
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{RUNNER.name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}", pytrace=False
        )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_migrations_apply(result: dict[str, Any]) -> None:
    from warehouse import SCHEMA_VERSION

    assert result["schema_version"] == SCHEMA_VERSION
    assert result["timescaledb"].startswith("2.")


def test_hypertables_and_aggregates_exist(result: dict[str, Any]) -> None:
    assert result["hypertables"] == ["events", "hourly_archive", "node_inflow", "readings"]
    assert result["continuous_aggregates"] == [
        {"view_name": "daily_archive", "materialized_only": True},
        {"view_name": "monthly_archive", "materialized_only": True},
    ]


def test_rollups_have_the_contract_columns(result: dict[str, Any]) -> None:
    from warehouse import TABLES

    pg = {"text": "String", "timestamp with time zone": "Datetime", "double precision": "Float64",
          "smallint": "Int16", "integer": "Int32"}  # fmt: skip
    for table in ("daily_archive", "monthly_archive"):
        got = [
            (c["column_name"], pg[c["data_type"]])
            for c in result["rollup_columns"]
            if c["table_name"] == table
        ]
        want = [(name, str(dtype).split("(")[0]) for name, dtype in TABLES[table].schema.items()]
        assert got == want


def test_loading_is_idempotent(result: dict[str, Any]) -> None:
    assert result["hourly_inserted"] == [96, 0]
    assert result["hourly_count"] == 96


def test_daily_and_monthly_sums(result: dict[str, Any]) -> None:
    daily = [
        (r["meter_id"], r["ts"][:10], r["volume_m3"], r["hours"], r["quality"])
        for r in result["daily"]
    ]
    assert daily == [
        ("m1", "2024-01-30", 24, 24, "valid"),
        ("m1", "2024-01-31", 46, 23, "missing"),
        ("m1", "2024-02-01", 12, 24, "estimated"),
        ("m2", "2024-01-30", 72, 24, "valid"),
    ]
    monthly = [
        (r["meter_id"], r["ts"][:10], r["volume_m3"], r["hours"], r["quality"])
        for r in result["monthly"]
    ]
    assert monthly == [
        ("m1", "2024-01-01", 70, 47, "missing"),
        ("m1", "2024-02-01", 12, 24, "estimated"),
        ("m2", "2024-01-01", 72, 24, "valid"),
    ]
    # Aggregates agree with an ad-hoc time_bucket over the hypertable.
    bucketed = {(r["meter_id"], r["ts"]): r["volume_m3"] for r in result["time_bucket_daily"]}
    assert bucketed[("m1", "2024-01-31T00:00:00.000Z")] == 46


def test_windowed_refresh_picks_up_late_data(result: dict[str, Any]) -> None:
    assert [r["volume_m3"] for r in result["daily_after_update"]] == [80]
    assert [r["volume_m3"] for r in result["monthly_after_update"]] == [80]


def test_policies_exist(result: dict[str, Any]) -> None:
    jobs = {(j["proc_name"], j["hypertable_name"]): j["config"] for j in result["jobs"]}
    assert jobs[("policy_compression", "readings")]["compress_after"] == "30 days"
    assert jobs[("policy_retention", "readings")]["drop_after"] == "3 years"
    assert ("policy_refresh_continuous_aggregate", "daily_archive") in jobs
    assert ("policy_refresh_continuous_aggregate", "monthly_archive") in jobs


def test_compressed_chunks_stay_usable(result: dict[str, Any]) -> None:
    c = result["compression"]
    assert c["chunks_compressed"] == c["compressed_chunks"] >= 1
    assert c["readings_after"] == 72
    assert c["conflicting_insert_rows"] == 0
