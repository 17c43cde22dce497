"""Landing rules on the embedded store with a tiny JSON decoder (no profiles, no server)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import polars as pl
import pytest

from ingest._landing import EdgePolicy, Landing
from ingest._security import DeviceRegistration, register_devices
from ingest._wire import Frame, FrameError, Packet, Reason
from warehouse import Store, open_store
from warehouse._schemas import QUARANTINE_REASONS

UTC = dt.UTC
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)
NOW = dt.datetime(2024, 1, 2, 0, 0, 30, tzinfo=UTC)


class JsonRegistry:
    """Decodes ``{"dev", "n", "time", "r": [[channel, ts, value]], "a", "e", "acks"}``."""

    def decode(self, raw: bytes, *, profile: str | None = None) -> Frame:
        try:
            d = json.loads(raw)
        except ValueError:
            raise FrameError(Reason.TRUNCATED, "not a whole JSON document") from None
        if d.get("crc") == "bad":
            raise FrameError(Reason.BAD_CRC, "crc mismatch")
        t = dt.datetime.fromisoformat
        return Frame(
            profile=d.get("profile", "p1"),
            device_id=d["dev"],
            counter=d["n"],
            device_time=t(d["time"]),
            kind=d.get("kind", "archive"),
            readings=tuple((c, t(ts), v) for c, ts, v in d.get("r", [])),
            archives=tuple((k, t(ts), v) for k, ts, v in d.get("a", [])),
            events=tuple((t(ts), c, s, x) for ts, c, s, x in d.get("e", [])),
            command_acks=tuple(d.get("acks", [])),
        )


def packet(
    n: int,
    regs: list[tuple[int, float | None]] = (),  # type: ignore[assignment]
    *,
    dev: str = "D1",
    time: dt.datetime = NOW,
    received: dt.datetime = NOW,
    transport: str = "udp",
    claimed: str | None = None,
    channel: str = "volume_register_m3",
    **extra: Any,
) -> Packet:
    body = {
        "dev": dev,
        "n": n,
        "time": time.isoformat(),
        "r": [[channel, (T0 + dt.timedelta(hours=h)).isoformat(), v] for h, v in regs],
        **extra,
    }
    return Packet(json.dumps(body).encode(), transport, received, device_id=claimed)  # type: ignore[arg-type]


@pytest.fixture
def store() -> Iterator[Store]:
    s = open_store(path=":memory:")
    s.migrate()
    s.write(
        "devices",
        pl.DataFrame(
            {
                "device_id": ["D1", "D2"],
                "kind": ["household_unit", "corrector"],
                "meter_id": ["M1", "M2"],
                "counter_modulus_m3": [1000.0, 1e8],
            }
        ),
    )
    register_devices(s, [DeviceRegistration("D1", "p1"), DeviceRegistration("D2", "p1")], cost=2)
    try:
        yield s
    finally:
        s.close()


def test_reasons_are_the_closed_set() -> None:
    assert tuple(r.value for r in Reason) == QUARANTINE_REASONS


def test_stored_duplicate_replayed_and_stats(store: Store) -> None:
    landing = Landing(store, JsonRegistry())
    good = packet(1, [(0, 10.0), (1, 11.0)])
    out = landing.submit([good, good, packet(1, [(2, 12.0)]), packet(2, [(2, 12.5)])])
    assert [o.status for o in out] == ["stored", "duplicate", "quarantined", "stored"]
    assert out[2].reason == Reason.REPLAYED
    assert out[0].readings == 2
    # a resend in a later batch is a duplicate too
    assert landing.submit([good])[0].status == "duplicate"
    assert store.count("readings") == 3
    stats = landing.stats()
    assert (stats.received, stats.stored, stats.duplicates, stats.quarantined) == (5, 2, 2, 1)
    assert stats.balanced and stats.by_reason == {"replayed": 1}


def test_a_resent_quarantined_packet_is_a_duplicate(store: Store) -> None:
    landing = Landing(store, JsonRegistry())
    bad = Packet(b'{"dev": "D1", "n"', "mqtt", NOW)
    assert landing.submit([bad])[0].reason == Reason.TRUNCATED
    assert landing.submit([bad])[0].status == "duplicate"
    assert store.count("quarantine") == 1
    assert landing.stats().quarantined == 1


def test_out_of_order_inside_the_window_is_accepted(store: Store) -> None:
    landing = Landing(store, JsonRegistry(), EdgePolicy(counter_window=10))
    assert landing.submit([packet(20, [(5, 15.0)])])[0].status == "stored"
    assert landing.submit([packet(12, [(4, 14.0)])])[0].status == "stored"
    old = landing.submit([packet(10, [(3, 13.0)])])[0]
    assert old.reason == Reason.REPLAYED and "window" in old.detail


@pytest.mark.parametrize(
    ("drift_s", "status", "quality"),
    [
        (0, "stored", "valid"),
        (60, "stored", "valid"),
        (-60, "stored", "valid"),
        (61, "stored", "suspect"),
        (-4 * 3600, "stored", "suspect"),
        (4 * 3600, "stored", "suspect"),
        (4 * 3600 + 1, "quarantined", None),
        (-4 * 3600 - 1, "quarantined", None),
    ],
)
def test_clock_policy_boundaries(store: Store, drift_s: int, status: str, quality: str | None) -> None:
    landing = Landing(store, JsonRegistry())
    out = landing.submit([packet(1, [(0, 1.0)], time=NOW + dt.timedelta(seconds=drift_s))])[0]
    assert out.status == status
    if quality is None:
        assert out.reason == Reason.CLOCK_SKEW
    else:
        assert store.read("readings")["quality"].to_list() == [quality]


def test_records_in_the_future_or_too_late_are_clock_skew(store: Store) -> None:
    landing = Landing(store, JsonRegistry(), EdgePolicy(late_window=dt.timedelta(days=10)))
    future = packet(1, [(30, 1.0)])  # T0 + 30 h is after the frame's time and NOW
    late = packet(2, [(0, 1.0)], time=T0 + dt.timedelta(days=11), received=T0 + dt.timedelta(days=11))
    out = landing.submit([future, late])
    assert [o.reason for o in out] == [Reason.CLOCK_SKEW, Reason.CLOCK_SKEW]
    assert "future" in out[0].detail and "late-data window" in out[1].detail


def test_identity_size_schema_and_range_checks(store: Store) -> None:
    landing = Landing(store, JsonRegistry(), EdgePolicy(max_frame_bytes=400))
    out = landing.submit(
        [
            packet(1, [(0, 1.0)], dev="D9"),  # not registered
            packet(2, [(0, 1.0)], claimed="D2"),  # transport says D2, frame says D1
            packet(3, [(0, 1.0)], profile="other"),  # registered with p1
            packet(4, [(0, 5000.0)]),  # register above the modulus 1000
            packet(5, [(0, -1.0)], channel="pressure_kpa"),  # negative pressure
            packet(6, [(0, 1.0)], channel="no_such_channel"),
            packet(7, [(h, 1.0) for h in range(20)]),  # > 400 bytes
            packet(8, [(0, 1.0)], crc="bad"),
        ]
    )
    assert [o.reason for o in out] == [
        Reason.UNKNOWN_DEVICE,
        Reason.UNKNOWN_DEVICE,
        Reason.UNKNOWN_PROFILE,
        Reason.OUT_OF_RANGE,
        Reason.OUT_OF_RANGE,
        Reason.SCHEMA,
        Reason.OVERSIZED,
        Reason.BAD_CRC,
    ]
    assert store.count("readings") == 0 and store.count("quarantine") == 8
    assert store.count("raw_packets") == 8
    assert landing.stats().balanced


def test_rate_limit_per_device(store: Store) -> None:
    landing = Landing(store, JsonRegistry(), EdgePolicy(max_frames_per_minute=3))
    batch = [packet(i, [(0, 1.0)], received=NOW + dt.timedelta(seconds=i)) for i in range(1, 5)]
    out = landing.submit(batch)
    assert [o.status for o in out] == ["stored"] * 3 + ["quarantined"]
    assert out[3].reason == Reason.OVERSIZED and "rate" in out[3].detail
    later = packet(10, [(1, 2.0)], received=NOW + dt.timedelta(seconds=70))
    assert landing.submit([later])[0].status == "stored"


def test_rollover_and_meter_replacement(store: Store) -> None:
    landing = Landing(store, JsonRegistry())
    # D1 rolls over at 1000 m3 between hours 1 and 2; after hour 4 its meter is replaced
    # by a new one starting at 0.2 m3 (a drop that a rollover cannot explain).
    regs = [(0, 998.0), (1, 999.5), (2, 0.5), (3, 2.0), (4, 3.0), (5, 0.2), (6, 1.2)]
    landing.submit([packet(1, regs)])
    hourly = store.read("hourly_archive").sort("ts")
    assert hourly["volume_m3"].to_list()[:4] == [1.5, 1.0, 1.5, 1.0]
    assert hourly["volume_m3"][4] is None and hourly["quality"][4] == "suspect"
    assert hourly["volume_m3"][5] == 1.0


def test_late_data_heals_a_gap_and_batches_join(store: Store) -> None:
    landing = Landing(store, JsonRegistry())
    landing.submit([packet(1, [(0, 10.0), (1, 11.0)])])
    landing.submit([packet(2, [(3, 14.0)])])  # reading 2 missing: hour 2 carries 3 m3
    before = store.read("hourly_archive").sort("ts")
    assert before["volume_m3"].to_list() == [1.0, None, 3.0]
    assert before["quality"].to_list() == ["valid", "missing", "suspect"]
    landing.submit([packet(3, [(2, 12.0)])])  # the late reading arrives
    after = store.read("hourly_archive").sort("ts")
    assert after["volume_m3"].to_list() == [1.0, 1.0, 2.0]
    assert after["quality"].to_list() == ["valid", "valid", "valid"]


def test_corrector_archives_events_and_command_acks(store: Store) -> None:
    from ingest._downlink import list_commands, queue_command

    cmd = queue_command(store, "D2", "gas_parameters", {"co2_mol_pct": 1.5})
    landing = Landing(store, JsonRegistry())
    ts = (T0 + dt.timedelta(hours=5)).isoformat()
    out = landing.submit(
        [
            packet(
                1,
                dev="D2",
                a=[["hourly", ts, {"volume_m3": 12.5, "pressure_kpa": 350.0}], ["daily", T0.isoformat(), {"volume_m3": 300.0}]],
                e=[[ts, "door_open", "info", "cabinet"]],
                acks=[cmd.command_id],
            )
        ]
    )
    assert out[0].status == "stored" and out[0].readings == 2
    hourly = store.read("hourly_archive")
    assert hourly.select("meter_id", "volume_m3", "source").row(0) == ("M2", 12.5, "archive")
    assert store.read("device_daily_archive")["volume_m3"].to_list() == [300.0]
    assert store.read("events")["code"].to_list() == ["door_open"]
    (after,) = list_commands(store, device_id="D2")
    assert after.status == "acknowledged" and after.acknowledged_at == NOW


def test_reprocess_after_registration(store: Store) -> None:
    landing = Landing(store, JsonRegistry())
    first = landing.submit([packet(1, [(0, 1.0), (1, 2.0)], dev="D3")])[0]
    assert first.reason == Reason.UNKNOWN_DEVICE
    summary = landing.reprocess()
    assert (summary.examined, summary.stored) == (1, 0)
    assert summary.still_quarantined == {"unknown_device": 1}
    register_devices(store, [DeviceRegistration("D3", "p1")], cost=2)
    summary = landing.reprocess()
    assert (summary.examined, summary.stored) == (1, 1)
    assert store.count("readings") == 2
    q = store.read("quarantine")
    assert q["reprocessed_at"].null_count() == 0
    assert store.read("raw_packets")["status"].to_list() == ["stored"]
    stats = landing.stats()
    assert (stats.received, stats.stored, stats.quarantined, stats.reprocessed) == (1, 1, 0, 1)
    assert stats.balanced
    assert landing.reprocess().examined == 0


def test_failed_batch_commits_nothing(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from warehouse import _landing as wl

    landing = Landing(store, JsonRegistry())

    def boom(*_: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(wl, "write_batch", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        landing.submit([packet(1, [(0, 1.0)]), Packet(b"x", "tcp", NOW)])
    for table in ("raw_packets", "readings", "quarantine", "ingest_counters", "device_counters"):
        assert store.count(table) == 0, table
    monkeypatch.undo()
    assert [o.status for o in landing.submit([packet(1, [(0, 1.0)])])] == ["stored"]
