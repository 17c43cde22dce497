"""The UDP collection service over real loopback sockets and a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest._decode import decode_server
from ingest._device_profiles import ProfileRegistry
from ingest._send import FaultRates, FleetSender
from ingest._stats import read_stats
from ingest._transports import IngestService, ServiceConfig, UdpConfig
from ingest._transports.service import open_service
from ingest._wire import Frame, Reason
from tests.integration._wire_fleet import check_ground_truth, small_fleet

pytestmark = pytest.mark.integration


@pytest.fixture
def udp_service(pg_store: Any) -> Iterator[IngestService]:
    svc = open_service(pg_store, ServiceConfig(udp=UdpConfig(host="127.0.0.1", port=0)))
    svc.start_thread()
    try:
        yield svc
    finally:
        svc.stop()


def test_fleet_over_udp_with_faults(pg_store: Any, udp_service: IngestService, tmp_path: Path) -> None:
    fleet = small_fleet(pg_store, tmp_path / "sim", meters=20, days=3)
    assert udp_service.udp is not None
    faults = FaultRates(resend=0.15, out_of_order=0.05, truncated=0.05, corrupted=0.05, replayed=0.05, unknown_device=0.05, clock_skew=0.05)
    sender = FleetSender(fleet, ProfileRegistry(), transport="udp", host="127.0.0.1", port=udp_service.udp.port, faults=faults, concurrency=4, timeout_s=2, seed=9)
    report = sender.run()
    verdict = check_ground_truth(pg_store, report)
    assert verdict.acked_readings > 1000
    stats = read_stats(pg_store)
    assert stats.duplicates >= sum(1 for p in report.packets if p.fault == "resend")


def test_resend_is_a_duplicate_and_acked_again(pg_store: Any, udp_service: IngestService, tmp_path: Path) -> None:
    fleet = small_fleet(pg_store, tmp_path / "sim", meters=10, days=1, units=2)
    unit = next(u for u in fleet.units if u.profile == "household-nb")
    reg = ProfileRegistry()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    hour = now.replace(minute=0, second=0) - dt.timedelta(hours=1)
    raw = reg.encode(Frame("household-nb", unit.device_id, 7, now, "archive", readings=(("volume_register_m3", hour, 12.5),)))
    assert udp_service.udp is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        for _ in range(3):
            s.sendto(raw, ("127.0.0.1", udp_service.udp.port))
            ack = decode_server(s.recv(1000))
            assert (ack.kind, ack.acked_counter) == ("ack", 7)
    stats = read_stats(pg_store)
    assert (stats.received, stats.stored, stats.duplicates) == (3, 1, 2)


def test_garbage_datagrams_never_crash_the_service(pg_store: Any, udp_service: IngestService, tmp_path: Path) -> None:
    fleet = small_fleet(pg_store, tmp_path / "sim", meters=10, days=1, units=2)
    unit = next(u for u in fleet.units if u.profile == "household-nb")
    reg = ProfileRegistry()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    hour = now.replace(minute=0, second=0) - dt.timedelta(hours=1)
    good = reg.encode(Frame("household-nb", unit.device_id, 70, now, "archive", readings=(("volume_register_m3", hour, 3.0),)))
    rng = random.Random(4)
    assert udp_service.udp is not None
    addr = ("127.0.0.1", udp_service.udp.port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(200):
            if i % 3 == 0:
                blob = rng.randbytes(rng.randint(0, 600))
            elif i % 3 == 1:
                m = bytearray(good)
                m[rng.randrange(len(m))] ^= 1 << rng.randrange(8)
                blob = bytes(m)
            else:
                blob = good[: rng.randrange(len(good))]
            s.sendto(blob, addr)
        s.sendto(b"\x01" * 5000, addr)  # above max_frame_bytes
        time.sleep(0.5)
        s.settimeout(3)
        while True:  # drop whatever acks came for lucky mutations
            try:
                s.settimeout(0.2)
                s.recv(2000)
            except TimeoutError:
                break
        s.settimeout(3)
        s.sendto(good, addr)
        ack = decode_server(s.recv(1000))
        assert ack.acked_counter == 70
    q = pg_store.read("quarantine")
    assert set(q["reason"].to_list()) <= {r.value for r in Reason}
    assert "oversized" in q["reason"].to_list()
    stats = read_stats(pg_store)
    assert stats.received == stats.stored + stats.duplicates + stats.quarantined
    assert stats.received == 202


def test_running_service_decodes_a_profile_dropped_into_its_folder(pg_store: Any, tmp_path: Path) -> None:
    """A new device type needs a profile file, not code: the running service picks it up."""
    from ingest._device_profiles import SHIPPED_PROFILES
    from ingest._security import DeviceRegistration, register_devices

    folder = tmp_path / "profiles"
    folder.mkdir()
    svc = open_service(pg_store, ServiceConfig(udp=UdpConfig(host="127.0.0.1", port=0)), profile_dirs=[folder])
    svc.start_thread()
    try:
        assert svc.udp is not None
        text = (SHIPPED_PROFILES / "household-nb.toml").read_text()
        text = text.replace('name = "household-nb"', 'name = "household-new"').replace("code = 0x1101", "code = 0x1199")
        text = text.replace('device_id_format = "D{serial:07d}"', 'device_id_format = "N{serial:07d}"')
        register_devices(pg_store, [DeviceRegistration("N0000001", "household-new", kind="household_unit")], cost=16)
        new_path = folder / "household-new.toml"
        new_path.write_text(text)  # dropped while the service runs
        reg = ProfileRegistry([folder])
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        hour = now.replace(minute=0, second=0) - dt.timedelta(hours=1)
        raw = reg.encode(Frame("household-new", "N0000001", 1, now, "archive", readings=(("volume_register_m3", hour, 42.0),)))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(raw, ("127.0.0.1", svc.udp.port))
            ack = decode_server(s.recv(1000))
        assert ack.acked_counter == 1
    finally:
        svc.stop()
    stored = pg_store.read("readings", where={"device_id": ["N0000001"]})
    assert stored["value"].to_list() == [42.0]
