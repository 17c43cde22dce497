"""Landing on a real PostgreSQL with the shipped device profiles: good, duplicate,
replayed, truncated, corrupted and unknown-device packets; the stats equation; a failed
batch commits nothing; reprocessing after a profile fix."""

from __future__ import annotations

import datetime as dt
import shutil
import threading
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ingest._device_profiles import SHIPPED_PROFILES, ProfileRegistry
from ingest._landing import Landing
from ingest._security import DeviceRegistration, register_devices
from ingest._wire import Frame, Packet, Reason
from warehouse._postgres import PostgresStore

pytestmark = pytest.mark.integration

UTC = dt.UTC
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)
NOW = T0 + dt.timedelta(days=1, seconds=20)
REG = ProfileRegistry()


def frame(device: str, counter: int, first_hour: int, values: list[float]) -> bytes:
    readings = tuple(
        ("volume_register_m3", T0 + dt.timedelta(hours=first_hour + i), v) for i, v in enumerate(values)
    )
    return REG.encode(Frame("household-nb", device, counter, NOW, "archive", readings=readings))


@pytest.fixture
def store(pg_store: PostgresStore) -> PostgresStore:
    pg_store.write(
        "devices",
        pl.DataFrame(
            {
                "device_id": ["D0000001", "D0000002"],
                "kind": ["household_unit"] * 2,
                "meter_id": ["M1", "M2"],
                "counter_modulus_m3": [1e5, 1e5],
            }
        ),
    )
    register_devices(
        pg_store, [DeviceRegistration("D0000001", "household-nb"), DeviceRegistration("D0000002", "household-nb")], cost=16
    )
    return pg_store


def test_mixed_batch_lands_exactly_once(store: PostgresStore) -> None:
    landing = Landing(store, REG)
    good1 = frame("D0000001", 1, 0, [100.0, 101.0, 102.5])
    good2 = frame("D0000002", 1, 0, [5.0, 6.0])
    replay = frame("D0000001", 1, 5, [200.0])
    truncated = good2[:-5]
    corrupt = bytearray(frame("D0000002", 2, 2, [7.0]))
    corrupt[20] ^= 0x01
    unknown = frame("D0000077", 1, 0, [1.0])
    batch = [
        Packet(good1, "tcp", NOW, device_id="D0000001"),
        Packet(good2, "udp", NOW),
        Packet(good1, "tcp", NOW, device_id="D0000001"),
        Packet(replay, "udp", NOW),
        Packet(truncated, "udp", NOW),
        Packet(bytes(corrupt), "mqtt", NOW),
        Packet(unknown, "mqtt", NOW),
        Packet(good2, "tcp", NOW, device_id="D0000001"),  # same bytes: a duplicate wins over identity
    ]
    out = landing.submit(batch)
    assert [o.status for o in out] == [
        "stored", "stored", "duplicate", "quarantined", "quarantined", "quarantined", "quarantined", "duplicate",
    ]  # fmt: skip
    assert [o.reason for o in out if o.reason] == [
        Reason.REPLAYED, Reason.TRUNCATED, Reason.BAD_CRC, Reason.UNKNOWN_DEVICE,
    ]  # fmt: skip
    # the same batch again (a lost acknowledgement): everything is a duplicate
    again = landing.submit(batch)
    assert {o.status for o in again} == {"duplicate"}
    assert store.count("readings") == 5
    assert store.count("quarantine") == 4
    assert store.count("raw_packets") == 6
    hourly = store.read("hourly_archive").sort("meter_id", "ts")
    assert hourly["volume_m3"].to_list() == [1.0, 1.5, 1.0]
    stats = landing.stats()
    assert stats.balanced
    assert (stats.received, stats.stored, stats.duplicates, stats.quarantined) == (16, 2, 10, 4)
    assert stats.by_reason == {"replayed": 1, "truncated": 1, "bad_crc": 1, "unknown_device": 1}
    assert stats.by_transport["tcp"] == {"received": 6, "stored": 1, "duplicates": 5, "quarantined": 0}
    state = store.read("device_counters").sort("device_id")
    assert state["last_counter"].to_list() == [1, 1] and state["frames"].to_list() == [1, 1]


def test_concurrent_batches_of_one_unit_store_once(store: PostgresStore) -> None:
    # 40 frames; the last 20 re-send the hours of the first 20 (new counters, same readings)
    packets = [Packet(frame("D0000001", n, n % 20, [float(n % 20)]), "udp", NOW) for n in range(1, 41)]
    results: list[list[str]] = []

    def run() -> None:
        results.append([o.status for o in Landing(store, REG).submit(packets)])

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    stored = sum(r.count("stored") for r in results)
    assert len(results) == 3 and stored == 40
    assert store.count("readings") == 20
    stats = Landing(store, REG).stats()
    assert stats.balanced and (stats.received, stats.stored, stats.duplicates) == (120, 40, 80)


def test_failed_batch_commits_nothing(store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from warehouse import _landing as wl

    landing = Landing(store, REG)
    real = wl.write_batch

    def fail_after_writing(s: object, rows: wl.LandingRows) -> None:
        real(s, rows)  # type: ignore[arg-type]
        with store.connection() as conn:
            conn.execute("SELECT 1/0")  # the server fails mid-transaction

    monkeypatch.setattr(wl, "write_batch", fail_after_writing)
    with pytest.raises(Exception, match="division by zero"):
        landing.submit([Packet(frame("D0000001", 1, 0, [1.0, 2.0]), "udp", NOW), Packet(b"junk", "udp", NOW)])
    for table in ("raw_packets", "readings", "hourly_archive", "quarantine", "ingest_counters", "device_counters"):
        assert store.count(table) == 0, table
    monkeypatch.setattr(wl, "write_batch", real)
    out = landing.submit([Packet(frame("D0000001", 1, 0, [1.0, 2.0]), "udp", NOW)])
    assert out[0].status == "stored"


def test_landing_remembers_its_partitions_and_survives_a_dropped_one(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from warehouse import _landing as wl
    from warehouse._postgres import made

    assert store.variant == "plain"  # the test cluster has no TimescaleDB: native monthly partitions
    copies: list[str] = []
    real = wl._pg_copy

    def recording(conn: Any, statement: str, frame: Any) -> None:
        copies.append(statement.split(" (")[0])
        real(conn, statement, frame)

    monkeypatch.setattr(wl, "_pg_copy", recording)
    landing = Landing(store, REG)
    assert landing.submit([Packet(frame("D0000001", 1, 0, [1.0, 2.0]), "udp", NOW)])[0].status == "stored"
    # the months landing made are remembered, so the next batches skip making them, and
    # new rows are COPYed straight into the month's partition (no routing per row)
    assert ("readings", T0) in made(store)
    assert "COPY readings_p202401" in copies and "COPY readings" not in copies
    with store.connection() as conn:  # an operator drops the month (retention) under the running service
        conn.execute("DROP TABLE readings_p202401")
    copies.clear()
    out = landing.submit([Packet(frame("D0000002", 1, 0, [5.0, 6.0]), "udp", NOW)])
    assert out[0].status == "stored"  # the DEFAULT partition takes the rows: nothing fails, nothing is lost
    readings = [c for c in copies if c.startswith("COPY readings")]
    assert readings == ["COPY readings_p202401", "COPY readings"]  # the partition is gone: through the parent
    assert store.count("readings") == 2
    assert store.read("readings").get_column("device_id").to_list() == ["D0000002", "D0000002"]
    assert ("readings", T0) not in made(store)
    # the next batch makes the month again, which moves the parked rows into it
    out = landing.submit([Packet(frame("D0000001", 2, 2, [7.0, 8.0]), "udp", NOW)])
    assert out[0].status == "stored"
    with store.connection() as conn:
        assert conn.execute("SELECT count(*) FROM readings_p202401").fetchone() == (4,)
        assert conn.execute("SELECT count(*) FROM readings_default").fetchone() == (0,)


def test_late_frames_land_their_new_hours_straight(store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit's older frame landing after its newer one: its hours (all before the
    latest stored hour) end as if the frames had come in order, and the new ones take
    the straight COPY, not the upsert."""
    from warehouse import _landing as wl

    monkeypatch.setattr(wl, "LATE_PROBE_MIN", 10)
    monkeypatch.setattr(wl, "LATE_PROBE_PER_METER", 5)
    copies: list[tuple[str, int]] = []
    real = wl._pg_copy

    def recording(conn: Any, statement: str, frame: Any) -> None:
        copies.append((statement.split(" (")[0], frame.height))
        real(conn, statement, frame)

    monkeypatch.setattr(wl, "_pg_copy", recording)
    older = [100.0 + 0.5 * i for i in range(50)]  # hours -60 … -11
    newer = [125.0 + 0.25 * i for i in range(11)]  # hours -10 … 0
    landing = Landing(store, REG)
    # D0000001 (meter M1): newer first, then older; D0000002 (M2): in order
    assert landing.submit([Packet(frame("D0000001", 2, -10, newer), "udp", NOW)])[0].status == "stored"
    assert landing.submit([Packet(frame("D0000002", 1, -60, older), "udp", NOW)])[0].status == "stored"
    assert landing.submit([Packet(frame("D0000002", 2, -10, newer), "udp", NOW)])[0].status == "stored"
    copies.clear()
    assert landing.submit([Packet(frame("D0000001", 1, -60, older), "udp", NOW)])[0].status == "stored"
    hours = store.read("hourly_archive").sort("meter_id", "ts")
    m1 = hours.filter(pl.col("meter_id") == "M1").drop("meter_id")
    m2 = hours.filter(pl.col("meter_id") == "M2").drop("meter_id")
    assert m1.height == 60  # hours -60 … -1, closed by the next reading
    assert m1.equals(m2)
    straight = sum(n for table, n in copies if table.startswith("COPY hourly_archive_p"))
    staged = sum(n for table, n in copies if table == "COPY askug_land_hourly_archive")
    assert straight >= 49 and staged <= 1, copies


def test_reprocess_after_a_profile_fix(store: PostgresStore, tmp_path: Path) -> None:
    # A unit of a new type (profile code 0x7701) calls before its profile file exists.
    text = (SHIPPED_PROFILES / "household-nb.toml").read_text(encoding="utf-8")
    new_profile = text.replace('name = "household-nb"', 'name = "household-v2"').replace(
        "code = 0x1101", "code = 0x7701"
    )
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "household-v2.toml").write_text(new_profile, encoding="utf-8")
    writer = ProfileRegistry([staging])
    raw = writer.encode(
        Frame("household-v2", "D0000002", 9, NOW, "archive", readings=(("volume_register_m3", T0, 50.0), ("volume_register_m3", T0 + dt.timedelta(hours=1), 52.0)))
    )
    live = tmp_path / "live"
    live.mkdir()
    landing = Landing(store, ProfileRegistry([live], rescan_s=0.0))
    out = landing.submit([Packet(raw, "mqtt", NOW)])
    assert out[0].reason == Reason.UNKNOWN_PROFILE
    # the fix: the profile file is installed and the unit re-registered with it
    shutil.copy(staging / "household-v2.toml", live / "household-v2.toml")
    register_devices(store, [DeviceRegistration("D0000002", "household-v2")], rotate=True, cost=16)
    summary = landing.reprocess(reason="unknown_profile")
    assert (summary.examined, summary.stored) == (1, 1)
    assert store.read("readings", where={"device_id": ["D0000002"]})["value"].to_list() == [50.0, 52.0]
    q = store.read("quarantine")
    assert q.height == 1 and q["reprocessed_at"].null_count() == 0
    raw_row = store.read("raw_packets").row(0, named=True)
    assert (raw_row["status"], raw_row["device_id"], raw_row["counter"]) == ("stored", "D0000002", 9)
    stats = landing.stats()
    assert stats.balanced and (stats.received, stats.stored, stats.quarantined, stats.reprocessed) == (1, 1, 0, 1)
    assert landing.submit([Packet(raw, "mqtt", NOW)])[0].status == "duplicate"


def test_pending_commands_fast_path_matches_the_generic_read(store: PostgresStore) -> None:
    """The one-query look-up a TCP session makes after its ident returns what the generic
    ``downlink_commands`` read does: only queued/delivered commands of the asked units,
    oldest first, payloads decoded and times in UTC — on PostgreSQL and on DuckDB."""
    from ingest._downlink import (
        cancel_command,
        list_commands,
        mark_delivered,
        pending_commands,
        queue_command,
    )
    from warehouse import open_store
    from warehouse._landing import PG_ACK_COMMANDS, _pg_rows

    duck = open_store(path=":memory:")
    duck.migrate()
    for s in (store, duck):
        if s is duck:
            s.write("devices", pl.DataFrame({"device_id": ["D0000001", "D0000002"], "kind": ["household_unit"] * 2}))
            register_devices(
                s, [DeviceRegistration("D0000001", "household-nb"), DeviceRegistration("D0000002", "household-nb")], cost=16
            )
        at = dt.datetime(2024, 3, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=5)))
        c1 = queue_command(s, "D0000001", "valve", {"action": "close"}, now=at)
        c2 = queue_command(s, "D0000002", "firmware", {"version": "2.1.0"}, now=at)
        c3 = queue_command(s, "D0000001", "valve", {"action": "open"}, now=at)
        c4 = queue_command(s, "D0000001", "firmware", {"version": "3.0"}, now=at)
        assert mark_delivered(s, c1.command_id, at)
        assert cancel_command(s, c4.command_id)
        if s is store:  # an acknowledged command is not pending any more
            _pg_rows(s, PG_ACK_COMMANDS + " RETURNING c.command_id", [[c2.command_id], ["D0000002"], [at]])
        generic = [c for c in list_commands(s) if c.status in ("queued", "delivered")]
        for wanted in (["D0000001"], ["D0000001", "D0000002"], ["D0000002"], ["nobody"], []):
            got = pending_commands(s, wanted)
            assert got == [c for c in generic if c.device_id in wanted]
            assert all(c.created_at.utcoffset() == dt.timedelta(0) for c in got)
        first = pending_commands(s, ["D0000001"])
        assert [(c.command_id, c.status, c.attempts, c.payload) for c in first] == [
            (c1.command_id, "delivered", 1, {"action": "close"}),
            (c3.command_id, "queued", 0, {"action": "open"}),
        ]
        assert first[0].created_at == at and first[0].delivered_at == at
        assert list_commands(s, device_id="D0000001", pending=True) == first
        assert [c.command_id for c in pending_commands(s, ["D0000002"])] == ([] if s is store else [c2.command_id])
