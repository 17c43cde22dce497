"""Helpers of the transport and fault tests: a small registered fleet and the ground-truth checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from ingest import SimulationConfig, simulate
from ingest._device_profiles import ProfileRegistry
from ingest._send import Fleet, SendReport, load_fleet_reference, register_fleet
from ingest._stats import read_stats


def small_fleet(
    store: Any,
    folder: Path,
    *,
    meters: int = 20,
    days: int = 3,
    units: int | None = None,
    seed: int = 3,
    json_share: float = 0.0,
    sim_faults: bool = False,
    **rates: Any,
) -> Fleet:
    """Simulate 7 days, load the reference tables into ``store``, register the units; send the last ``days``.

    ``sim_faults`` turns on the simulator's own faults (tampers, power failures, valve
    closures … and so their events); ``rates`` override its fault rates
    (e.g. ``power_fail_rate=1.0``).
    """
    simulate(SimulationConfig(seed=seed, meters=meters, days=7, faults=sim_faults, **rates), folder)
    load_fleet_reference(store, folder)
    fleet = Fleet.from_simulation(
        folder, max_units=units, json_share=json_share, registry=ProfileRegistry(), seed=seed, last_days=days
    )
    register_fleet(store, fleet)
    return fleet


@dataclass
class Verdict:
    """What the database holds compared with what the fleet sent."""

    acked_readings: int
    stored_readings: int
    bad_packets: int
    quarantined: int
    acked_events: int = 0
    acked_daily: int = 0


def check_ground_truth(store: Any, report: SendReport, *, require_all_acked: bool = True) -> Verdict:
    """Assert: no acknowledged reading lost, none stored twice, every bad packet quarantined
    once with its expected reason, nothing else quarantined, and the stats equation exact."""
    ids = sorted({d for d, _ in report.good})
    sent = report.readings_frame()
    acked = sent.filter(pl.col("acked"))
    if require_all_acked:
        assert report.unacked == [], f"{len(report.unacked)} good frames never acknowledged, e.g. {report.unacked[:3]}"
    stored = store.read("readings", where={"device_id": ids}).select("device_id", "channel", "ts", "value")
    # none stored twice (the natural key is unique) …
    assert stored.height == stored.unique(["device_id", "channel", "ts"]).height
    # … and no acknowledged reading lost, with its value
    joined = acked.join(stored, on=["device_id", "channel", "ts"], how="left", suffix="_db")
    lost = joined.filter(pl.col("value_db").is_null())
    assert lost.height == 0, f"{lost.height} acknowledged readings are not stored:\n{lost.head(5)}"
    wrong = joined.filter((pl.col("value_db") - pl.col("value")).abs() > 1e-6 * (1 + pl.col("value").abs()))
    assert wrong.height == 0, f"{wrong.height} readings stored with another value:\n{wrong.head(5)}"
    # nothing stored that no good frame carried (a replay or a skewed copy never lands)
    expected_keys = sent.select("device_id", "channel", "ts").unique()
    extra = stored.join(expected_keys, on=["device_id", "channel", "ts"], how="anti")
    assert extra.height == 0, f"{extra.height} stored readings were never sent in a good frame:\n{extra.head(5)}"
    acked_events = _check_events(store, report, ids)
    acked_daily = _check_daily(store, report, ids)
    # each stored frame (unit, counter) once
    raw = store.read("raw_packets", where={"status": ["stored"]}).filter(pl.col("counter").is_not_null())
    assert raw.height == raw.unique(["device_id", "counter"]).height
    # every bad packet the transport took (MQTT: PUBACK from the broker) quarantined exactly
    # once (the sha256 is the key) with the expected reason; nothing else quarantined
    bad = report.bad_packets()
    maybe = report.bad_packets(delivered_only=False)
    q = store.read("quarantine")
    got = dict(zip(q["sha256"].to_list(), q["reason"].to_list(), strict=True))
    assert q.height == len(got)
    missing = {s: r for s, r in bad.items() if s not in got}
    assert not missing, f"{len(missing)} bad packets not quarantined: {sorted(set(missing.values()))}"
    wrong_reason = {s: (r, got[s]) for s, r in maybe.items() if s in got and got[s] != r}
    assert not wrong_reason, f"quarantined with another reason (expected, got): {sorted(set(wrong_reason.values()))}"
    unexpected = q.filter(~pl.col("sha256").is_in(list(maybe)))
    assert unexpected.height == 0, f"good packets quarantined:\n{unexpected.select('reason', 'detail', 'device_id')}"
    # the stats equation, exactly
    stats = read_stats(store)
    assert stats.received == stats.stored + stats.duplicates + stats.quarantined, stats
    assert stats.quarantined == q.height
    return Verdict(acked.height, stored.height, len(bad), q.height, acked_events, acked_daily)


def _check_events(store: Any, report: SendReport, ids: list[str]) -> int:
    """Every acknowledged event stored once, as decoded; nothing stored that no good frame carried."""
    key = ["device_id", "ts", "code"]
    sent = report.events_frame()
    acked = sent.filter(pl.col("acked"))
    stored = store.read("events", where={"device_id": ids}).select("device_id", "ts", "code", "severity", "detail")
    assert stored.height == stored.unique(key).height
    joined = acked.join(stored, on=key, how="left", suffix="_db")
    lost = joined.filter(pl.col("severity_db").is_null())
    assert lost.height == 0, f"{lost.height} acknowledged events are not stored:\n{lost.head(5)}"
    wrong = joined.filter((pl.col("severity_db") != pl.col("severity")) | (pl.col("detail_db") != pl.col("detail")))
    assert wrong.height == 0, f"{wrong.height} events stored otherwise than sent:\n{wrong.head(5)}"
    extra = stored.join(sent.select(key).unique(), on=key, how="anti")
    assert extra.height == 0, f"{extra.height} stored events were never sent in a good frame:\n{extra.head(5)}"
    return acked.height


def _check_daily(store: Any, report: SendReport, ids: list[str]) -> int:
    """Every acknowledged daily archive record stored once with its values; no others."""
    cols = ["volume_m3", "volume_work_m3", "pressure_kpa", "temperature_c"]
    sent = report.daily_frame()
    acked = sent.filter(pl.col("acked"))
    stored = store.read("device_daily_archive", where={"device_id": ids}).select("device_id", "ts", *cols)
    assert stored.height == stored.unique(["device_id", "ts"]).height
    joined = acked.join(stored, on=["device_id", "ts"], how="left", suffix="_db")
    lost = joined.filter(pl.all_horizontal(pl.col(f"{c}_db").is_null() for c in cols))
    assert lost.height == 0, f"{lost.height} acknowledged daily records are not stored:\n{lost.head(5)}"
    for c in cols:
        bad = joined.filter((pl.col(f"{c}_db") - pl.col(c)).abs() > 1e-6 * (1 + pl.col(c).abs()))
        assert bad.height == 0, f"{bad.height} daily records stored with another {c}:\n{bad.head(5)}"
    extra = stored.join(sent.select("device_id", "ts").unique(), on=["device_id", "ts"], how="anti")
    assert extra.height == 0, f"{extra.height} stored daily records were never sent:\n{extra.head(5)}"
    return acked.height
