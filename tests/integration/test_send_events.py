"""The fleet simulator over the wire: events, GDP units, daily archives, `askug simulate --send`.

Real loopback TCP/UDP sockets, the ingest service in a thread (or the CLI in a child
process) and a real PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ingest._device_profiles import ProfileRegistry
from ingest._send import FaultRates, Fleet, FleetSender
from ingest._stats import read_stats
from ingest._transports import IngestService, ServiceConfig, TcpConfig, UdpConfig
from ingest._transports.service import open_service
from tests.integration._wire_fleet import check_ground_truth, small_fleet
from warehouse import GDP_CHANNELS

pytestmark = pytest.mark.integration

ASKUG = str(Path(sys.executable).with_name("askug"))
_KEY = ["device_id", "ts", "code"]


@pytest.fixture
def tcp_service(pg_store: Any) -> Iterator[IngestService]:
    svc = open_service(pg_store, ServiceConfig(tcp=TcpConfig(host="127.0.0.1", port=0, idle_timeout_s=2.0, frames_per_minute=6000)))
    svc.start_thread()
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def udp_service(pg_store: Any) -> Iterator[IngestService]:
    svc = open_service(pg_store, ServiceConfig(udp=UdpConfig(host="127.0.0.1", port=0)))
    svc.start_thread()
    try:
        yield svc
    finally:
        svc.stop()


def _simulated_events(folder: Path, fleet: Fleet) -> pl.DataFrame:
    """The simulator's own events of the fleet's units in the sent window, as the sender places
    them in time (rounded to the hour like the readings, shifted by whole weeks)."""
    ids = [u.device_id for u in fleet.units]
    return (
        pl.read_parquet(folder / "events.parquet")
        .filter(pl.col("device_id").is_in(ids))
        .with_columns(pl.col("ts").dt.round("1h") + fleet.shift)
        .filter(pl.col("ts").is_between(fleet.start, fleet.end))
        .select(_KEY)
        .sort(_KEY)
    )


def test_simulated_events_arrive_exactly_once_over_tcp_with_resends(pg_store: Any, tcp_service: IngestService, tmp_path: Path) -> None:
    folder = tmp_path / "sim"
    # the simulator's faults on, with every GDP failing once: tamper, valve, power, door, battery events
    fleet = small_fleet(
        pg_store, folder, meters=24, days=7, seed=8, sim_faults=True,
        power_fail_rate=1.0, valve_closed_rate=1.0, tamper_rate=0.3,
    )  # fmt: skip
    expected = _simulated_events(folder, fleet)
    unsent = fleet.unsent_events.select(_KEY)
    # only a code a unit's profile lacks keeps an event off the wire, and it is listed
    assert set(fleet.unsent_events["why"].str.contains("has no event code").to_list()) <= {True}
    sendable = expected.join(unsent, on=_KEY, how="anti")
    assert sendable.height == fleet.event_count
    assert {"tamper_magnet", "valve_closed", "power_fail", "door_open"} <= set(sendable["code"].to_list())

    assert tcp_service.tcp is not None
    faults = FaultRates(resend=0.3, out_of_order=0.1, truncated=0.05, corrupted=0.05, replayed=0.1, unknown_device=0.05, clock_skew=0.05, drift=0.1)
    sender = FleetSender(fleet, ProfileRegistry(), transport="tcp", host="127.0.0.1", port=tcp_service.tcp.port, faults=faults, concurrency=4, timeout_s=3, seed=8)
    report = sender.run()
    verdict = check_ground_truth(pg_store, report)
    assert verdict.acked_events == sendable.height
    # resends of event frames happened (same bytes again, or again after a lost ack)
    resent = [p for p in report.packets if p.fault in ("resend", "retry") and (p.device_id, p.counter) in report.good_events]
    assert resent, report.summary()

    stored = pg_store.read("events").select(_KEY).sort(_KEY)
    # exactly the simulator's events: each once, none missing, nothing else
    assert stored.to_dicts() == sendable.to_dicts()
    stats = read_stats(pg_store)
    assert stats.received == stats.stored + stats.duplicates + stats.quarantined
    assert stats.duplicates >= sum(1 for p in report.packets if p.fault == "resend")

    # a unit that sends its event log again in new frames (new counters, e.g. after a
    # reboot) stores no event twice
    events_only = dataclasses.replace(fleet, readings={d: w.clear() for d, w in fleet.readings.items()})
    again = FleetSender(
        events_only, ProfileRegistry(), transport="tcp", host="127.0.0.1", port=tcp_service.tcp.port,
        faults=FaultRates.none(), concurrency=4, timeout_s=3, counter_start=max(u.counter for u in fleet.units) + 1000,
    )  # fmt: skip
    second = again.run()
    assert second.summary()["events_acked"] == sendable.height
    assert second.summary()["readings_sent"] == 0
    assert pg_store.read("events").select(_KEY).sort(_KEY).to_dicts() == sendable.to_dicts()
    after = read_stats(pg_store)
    assert after.stored - stats.stored >= len(second.good)  # new frames, stored as frames …
    assert pg_store.count("events") == sendable.height  # … but not their events twice


def test_gdp_units_send_all_nine_channels_and_correctors_daily_archives_over_udp(
    pg_store: Any, udp_service: IngestService, tmp_path: Path
) -> None:
    fleet = small_fleet(pg_store, tmp_path / "sim", meters=20, days=3)
    assert fleet.skipped == []
    gdp = [u for u in fleet.units if u.kind == "gdp_unit"]
    correctors = [u for u in fleet.units if u.profile == "corrector-ek"]
    assert gdp and correctors and all(u.profile == "gdp-telemetry" for u in gdp)
    assert udp_service.udp is not None
    faults = FaultRates(resend=0.2, out_of_order=0.05, truncated=0.05, corrupted=0.05, replayed=0.05, unknown_device=0.05, clock_skew=0.05)
    sender = FleetSender(fleet, ProfileRegistry(), transport="udp", host="127.0.0.1", port=udp_service.udp.port, faults=faults, concurrency=4, timeout_s=2, seed=4)
    report = sender.run()
    verdict = check_ground_truth(pg_store, report)

    stored = pg_store.read("readings", where={"device_id": [u.device_id for u in gdp]})
    for u in gdp:
        mine = stored.filter(pl.col("device_id") == u.device_id)
        hours = fleet.readings[u.device_id].height
        per_channel = dict(mine.group_by("channel").len().iter_rows())
        assert per_channel == dict.fromkeys(GDP_CHANNELS, hours), u.device_id
    # every corrector sent its complete gas days (contract hour, local time) as daily records
    assert verdict.acked_daily >= 2 * len(correctors)
    daily = pg_store.read("device_daily_archive")
    assert set(daily["device_id"].to_list()) == {u.device_id for u in correctors}
    assert daily["volume_m3"].null_count() == 0 and (daily["volume_m3"] > 0).all()


def test_simulate_send_cli_sends_and_prints_a_summary(pg_databases: Any, tmp_path: Path) -> None:
    from warehouse._postgres import PostgresStore

    name = pg_databases.create(template=pg_databases.migrated_template())
    dsn = pg_databases.dsn(name)
    store = PostgresStore(dsn)
    svc = open_service(store, ServiceConfig(tcp=TcpConfig(host="127.0.0.1", port=0, idle_timeout_s=2.0, frames_per_minute=6000)))
    svc.start_thread()
    try:
        assert svc.tcp is not None
        out = tmp_path / "sim"
        proc = subprocess.run(
            [ASKUG, "--dsn", dsn, "simulate", "--meters", "12", "--days", "8", "--last-days", "6", "--seed", "6", "--out", str(out),
             "--send", "tcp", "--to", f"127.0.0.1:{svc.tcp.port}", "--register", "--concurrency", "4"],
            check=False, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "250"},
        )  # fmt: skip
        text = proc.stdout + proc.stderr
        assert proc.returncode == 0, text
        assert "frames:" in text and "acknowledged" in text and "NOT acknowledged" not in text, text
        assert "faults injected: resend" in text, text
        summary = json.loads((out / "send_summary.json").read_text())
        assert summary["acked_frames"] == summary["good_frames"] > 0
        assert summary["readings_acked"] == summary["readings_sent"] > 0
        assert summary["archive_records_acked"] > 0 and summary["daily_records_sent"] > 0
        assert summary["faults_injected"]["resend"] > 0
        # readings, archives and events all landed
        sent_events = pl.read_parquet(out / "sent_events.parquet")
        assert sent_events.height == summary["events_sent"] > 0
        stored = store.read("events").select(_KEY)
        assert sorted(stored.rows()) == sorted(sent_events.select(_KEY).unique().rows())
        assert store.count("readings") == summary["readings_sent"]
        assert store.count("device_daily_archive") == summary["daily_records_sent"]
    finally:
        svc.stop()
        store.close()
        pg_databases.drop(name)


def test_daily_records_follow_the_gas_day_across_dst() -> None:
    """Gas days start at the contract hour, local time (the day over the autumn change has 25
    hours); a register rollover is no gap; a missing register makes its day incomplete."""
    from ingest._send import Unit, _daily_records

    t0 = dt.datetime(2026, 10, 23, tzinfo=dt.UTC)
    ts = pl.datetime_range(t0, dt.datetime(2026, 10, 28, tzinfo=dt.UTC), "1h", eager=True, time_zone="UTC")
    n = ts.len()
    wide = pl.DataFrame(
        {
            "ts": ts,
            "volume_register_m3": [(99_999_990.0 + 0.5 * i) % 1e8 for i in range(n)],  # rolls over on the 23rd
            "volume_work_register_m3": [1000.0 + 1.0 * i for i in range(n)],
            "pressure_kpa": [400.0] * n,
            "temperature_c": [5.0] * n,
        }
    )
    unit = Unit("D0000007", "corrector", "corrector-ek", 1e8, gas_day=("Europe/Berlin", 6))
    recs = _daily_records(unit, ProfileRegistry().profile("corrector-ek"), wide)
    utc = dt.UTC
    assert [(start, last, v["volume_m3"], v["volume_work_m3"]) for start, last, v in recs] == [
        (dt.datetime(2026, 10, 23, 4, tzinfo=utc), dt.datetime(2026, 10, 24, 3, tzinfo=utc), 12.0, 24.0),
        # clocks go back on 25 Oct 2026 at 03:00 CEST: the gas day of the 24th has 25 hours
        (dt.datetime(2026, 10, 24, 4, tzinfo=utc), dt.datetime(2026, 10, 25, 4, tzinfo=utc), 12.5, 25.0),
        (dt.datetime(2026, 10, 25, 5, tzinfo=utc), dt.datetime(2026, 10, 26, 4, tzinfo=utc), 12.0, 24.0),
        (dt.datetime(2026, 10, 26, 5, tzinfo=utc), dt.datetime(2026, 10, 27, 4, tzinfo=utc), 12.0, 24.0),
    ]  # the partial days at both ends are not sent
    assert all(v["pressure_kpa"] == 400.0 and v["temperature_c"] == 5.0 for _, _, v in recs)
    # a gap in the registers: that day is incomplete, the others stay
    gappy = wide.filter(pl.col("ts") != dt.datetime(2026, 10, 24, 12, tzinfo=utc))
    assert [r[0].day for r in _daily_records(unit, ProfileRegistry().profile("corrector-ek"), gappy)] == [23, 25, 26]


def test_event_frames_carry_every_code_of_every_profile() -> None:
    """Each profile's event codes survive the sender's coding: code, profile severity, argument."""
    from ingest._send import Unit, _event_frames

    reg = ProfileRegistry()
    t = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    for name in reg.names():
        prof = reg.profile(name)
        codes = sorted({e.code for e in prof.events.values()})
        if not codes or not any(s.kind == "events" for s in prof.frames):
            continue
        events = [(t + dt.timedelta(hours=i), c, "info", "battery 3.281 V") for i, c in enumerate(codes)]
        unit = Unit("D0000042", prof.device_kind, name, None)
        frames = _event_frames(unit, prof, events, device_time=t + dt.timedelta(days=1), max_frame_bytes=4096)
        got = [e for k, f in enumerate(frames) for e in reg.decode(reg.encode(dataclasses.replace(f, counter=k + 1))).events]
        by_code = {e.code: e for e in prof.events.values()}
        assert [(ts, c, sev) for ts, c, sev, _ in got] == [(ts, c, by_code[c].severity) for ts, c, _, _ in events], name
        battery = next(d for _, c, _, d in got if c == "battery_low")
        arg = next(f for s in prof.frames if s.kind == "events" for f in s.fields if f.role == "event_arg")
        assert battery == (f"{by_code['battery_low'].text}: 3.281 V" if arg.unit == "V" else by_code["battery_low"].text), name
