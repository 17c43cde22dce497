"""VEE against real stores (DuckDB file and PostgreSQL) on a small simulated enterprise."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import psycopg
import pytest

from analytics import AnalyticsError, edit_values, read_audit, read_findings, run_vee, vee_report
from warehouse import Store
from warehouse._duckdb import DuckDBStore
from warehouse._postgres import PostgresStore

pytestmark = pytest.mark.integration


@pytest.fixture(params=["duckdb", "postgres"])
def loaded(request: pytest.FixtureRequest, small_simulation: Path, tmp_path: Path) -> Iterator[Store]:
    """A migrated store with the small simulation loaded (no VEE run yet)."""
    from ingest import load_simulation

    if request.param == "postgres":
        store: Store = request.getfixturevalue("pg_store")
    else:
        store = DuckDBStore(tmp_path / "askug.duckdb")
        store.migrate()
    try:
        load_simulation(store, small_simulation)
        store.refresh_rollups()
        yield store
    finally:
        if request.param == "duckdb":
            store.close()


def test_run_vee_stores_findings_estimates_and_audit(loaded: Store) -> None:
    before = loaded.read("hourly_archive")
    summary = run_vee(loaded)
    assert summary.meters == 20
    assert summary.findings.get("gap", 0) >= 1  # the simulator injects gaps
    assert sum(summary.estimates.values()) >= 1
    after = loaded.read("hourly_archive")
    estimated = after.filter(pl.col("quality") == "estimated")
    assert estimated.height == sum(summary.estimates.values())
    assert estimated.get_column("source").unique().to_list() == ["estimate"]
    assert estimated.get_column("volume_m3").null_count() == 0
    # Nothing else changed: every row that was not estimated or marked is as it was.
    untouched = after.filter(pl.col("quality").is_in(["valid", "missing"]))
    joined = untouched.join(before, on=["meter_id", "ts"], suffix="_b")
    assert (joined.get_column("quality") == joined.get_column("quality_b")).all()
    assert (joined.get_column("volume_m3").fill_null(-1) == joined.get_column("volume_m3_b").fill_null(-1)).all()
    # One audit row per estimate, naming the method; the pipeline is the author.
    trail = read_audit(loaded)
    assert trail.height == summary.audit_rows == estimated.height
    base = {"linear_interpolation", "hdd_profile", "hour_mean", "uniform"}
    assert set(trail.get_column("method")) <= base | {f"{m}_scaled_to_register" for m in base}
    # The simulator's units report registers, so gaps bounded by readings are scaled to them.
    assert trail.get_column("method").str.ends_with("_scaled_to_register").any()
    assert trail.get_column("changed_by").unique().to_list() == ["vee"]
    assert trail.get_column("reason").str.starts_with("VEE: ").all()
    stored = read_findings(loaded)
    assert stored.height == sum(summary.findings.values())
    assert set(stored.get_column("rule")) == set(summary.findings)
    # Rollups follow the estimates.
    daily = loaded.read("daily_archive")
    assert daily.get_column("volume_m3").sum() == pytest.approx(after.get_column("volume_m3").sum(), rel=1e-9)


def test_run_vee_twice_changes_nothing_more(loaded: Store) -> None:
    run_vee(loaded)
    archive, trail = loaded.read("hourly_archive"), loaded.count("audit_trail")
    findings = read_findings(loaded)
    again = run_vee(loaded)
    assert again.estimates == {} and again.audit_rows == 0 and again.marked_suspect == 0
    assert loaded.count("audit_trail") == trail
    assert loaded.read("hourly_archive").equals(archive)
    # Nothing new is found either: in particular no sum_mismatch on the days whose gaps were
    # filled (the simulator's stuck register M000017 and gap M000008): the estimates were
    # scaled to the register difference across each gap.
    assert read_findings(loaded).height == findings.height
    assert "sum_mismatch" not in again.findings


def test_estimates_across_a_gap_sum_to_the_register_difference(loaded: Store) -> None:
    run_vee(loaded)
    trail = read_audit(loaded).filter(pl.col("method").str.ends_with("_scaled_to_register"))
    assert trail.height
    devices = loaded.read("devices").filter(pl.col("meter_id").is_not_null())
    readings = loaded.read("readings", where={"channel": ["volume_register_m3"]}).join(
        devices.select("device_id", "meter_id", "counter_modulus_m3"), on="device_id")
    # One row per run of consecutive estimated hours of a meter.
    runs = (
        trail.sort("meter_id", "ts")
        .with_columns(((pl.col("ts").diff() != dt.timedelta(hours=1)) | (pl.col("meter_id") != pl.col("meter_id")
                       .shift(1))).fill_null(True).cum_sum().alias("run"))
        .group_by("run")
        .agg(pl.col("meter_id").first(), pl.col("ts").min().alias("t0"),
             (pl.col("ts").max() + dt.timedelta(hours=1)).alias("t1"), pl.col("new_value").sum().alias("sum"))
    )
    reg = readings.select("meter_id", pl.col("ts").dt.round("1h"), "value", "counter_modulus_m3").unique(
        subset=["meter_id", "ts"], keep="first")
    got = runs.join(reg.rename({"ts": "t0", "value": "r0"}), on=["meter_id", "t0"]).join(
        reg.select("meter_id", pl.col("ts").alias("t1"), pl.col("value").alias("r1")), on=["meter_id", "t1"])
    assert got.height == runs.height
    diff = got.select(pl.when(pl.col("r1") >= pl.col("r0")).then(pl.col("r1") - pl.col("r0"))
                      .otherwise(pl.col("r1") - pl.col("r0") + pl.col("counter_modulus_m3"))).to_series()
    assert got.get_column("sum").to_list() == pytest.approx(diff.to_list(), rel=1e-9, abs=1e-9)


def test_edit_keeps_an_append_only_audit_trail(loaded: Store) -> None:
    meter = loaded.read("metering_points").get_column("meter_id").sort()[0]
    t0 = loaded.read("hourly_archive", where={"meter_id": [meter]}).get_column("ts").min()
    assert isinstance(t0, dt.datetime)
    old = loaded.read("hourly_archive", start=t0, end=t0 + dt.timedelta(hours=2), where={"meter_id": [meter]})
    s1 = edit_values(loaded, meter_id=meter, start=t0, end=t0 + dt.timedelta(hours=2), value_m3=3.5,
                     reason="customer reading", user="ivanova")
    s2 = edit_values(loaded, meter_id=meter, start=t0, end=t0 + dt.timedelta(hours=1), value_m3=4.0,
                     reason="corrected the correction", user="petrov")
    assert (s1.hours, s2.hours) == (2, 1)
    assert s1.old_total_m3 == pytest.approx(old.get_column("volume_m3").fill_null(0).sum())
    rows = loaded.read("hourly_archive", start=t0, end=t0 + dt.timedelta(hours=2), where={"meter_id": [meter]})
    assert rows.get_column("volume_m3").to_list() == [4.0, 3.5]
    assert rows.get_column("quality").unique().to_list() == ["edited"]
    assert rows.get_column("source").unique().to_list() == ["edit"]
    trail = read_audit(loaded, meter_id=meter)
    assert trail.height == 3  # both edits stay: the second does not rewrite the first
    first = trail.filter(pl.col("changed_by") == "petrov").row(0, named=True)
    assert (first["old_value"], first["new_value"], first["old_quality"], first["method"]) == (3.5, 4.0, "edited", "manual")
    assert first["reason"] == "corrected the correction"
    # VEE never overrides an edit.
    run_vee(loaded)
    assert loaded.read("hourly_archive", start=t0, end=t0 + dt.timedelta(hours=2),
                       where={"meter_id": [meter]}).get_column("volume_m3").to_list() == [4.0, 3.5]


def test_edit_bad_input(loaded: Store) -> None:
    t0 = dt.datetime(2022, 1, 2, tzinfo=dt.UTC)
    meter = loaded.read("metering_points").get_column("meter_id")[0]
    with pytest.raises(AnalyticsError, match="unknown metering point"):
        edit_values(loaded, meter_id="NOPE", start=t0, end=t0 + dt.timedelta(hours=1), value_m3=1.0,
                    reason="x", user="u")
    with pytest.raises(AnalyticsError, match="reversed"):
        edit_values(loaded, meter_id=meter, start=t0, end=t0 - dt.timedelta(hours=1), value_m3=1.0,
                    reason="x", user="u")
    with pytest.raises(AnalyticsError, match="reason"):
        edit_values(loaded, meter_id=meter, start=t0, end=t0 + dt.timedelta(hours=1), value_m3=1.0,
                    reason="  ", user="u")
    with pytest.raises(AnalyticsError, match="≥ 0"):
        edit_values(loaded, meter_id=meter, start=t0, end=t0 + dt.timedelta(hours=1), value_m3=-1.0,
                    reason="x", user="u")
    with pytest.raises(AnalyticsError, match="whole hour"):
        edit_values(loaded, meter_id=meter, start=t0 + dt.timedelta(minutes=5), end=t0 + dt.timedelta(hours=1),
                    value_m3=1.0, reason="x", user="u")
    assert loaded.count("audit_trail") == 0


def test_postgres_refuses_to_rewrite_the_audit_trail(pg_store: PostgresStore) -> None:
    pg_store.write("metering_points", pl.DataFrame({
        "meter_id": ["m1"], "branch_id": ["b"], "name": ["M"], "resource": ["gas"], "category": ["household"],
        "time_zone": ["UTC"], "contract_hour": [6]}))
    t0 = dt.datetime(2022, 1, 2, tzinfo=dt.UTC)
    edit_values(pg_store, meter_id="m1", start=t0, end=t0 + dt.timedelta(hours=1), value_m3=1.0, reason="r", user="u")
    for statement in ("UPDATE audit_trail SET new_value = 0", "DELETE FROM audit_trail", "TRUNCATE audit_trail"):
        with pytest.raises(psycopg.Error, match="append-only"), pg_store.connection() as conn:
            conn.execute(statement.encode())
    with pytest.raises(psycopg.Error, match="append-only"):
        pg_store.replace("audit_trail", pg_store.read("audit_trail"))
    assert pg_store.count("audit_trail") == 1


def test_vee_report_levels_and_filters(loaded: Store) -> None:
    run_vee(loaded)
    meters = loaded.read("metering_points")
    per_meter = vee_report(loaded, level="meter")
    assert per_meter.summary.height == meters.height
    shares = per_meter.summary.select(pl.sum_horizontal(pl.col("^.*_share$"))).to_series()
    assert shares.to_list() == pytest.approx([1.0] * meters.height)
    company = vee_report(loaded, level="company")
    assert company.summary.get_column("intervals").sum() == per_meter.summary.get_column("intervals").sum()
    assert company.summary.get_column("findings").sum() == per_meter.findings.height
    assert per_meter.findings.get_column("company_id").null_count() == 0
    branch = meters.get_column("branch_id")[0]
    one = vee_report(loaded, level="branch", branch_id=branch)
    assert one.summary.get_column("branch_id").to_list() == [branch]
    with pytest.raises(AnalyticsError, match="unknown company"):
        vee_report(loaded, company_id="ACME")
    with pytest.raises(AnalyticsError, match="reversed"):
        vee_report(loaded, start=dt.datetime(2022, 2, 1, tzinfo=dt.UTC), end=dt.datetime(2022, 1, 1, tzinfo=dt.UTC))
