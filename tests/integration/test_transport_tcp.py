"""The TCP collection service over real loopback sockets and a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest._decode import decode_server
from ingest._device_profiles import ProfileRegistry
from ingest._downlink import list_commands, queue_command
from ingest._send import FaultRates, FleetSender
from ingest._stats import read_stats
from ingest._transports import IngestService, ServiceConfig, TcpConfig
from ingest._transports.service import open_service
from ingest._wire import Frame, Reason
from tests.integration._wire_fleet import check_ground_truth, small_fleet

pytestmark = pytest.mark.integration

_LEN = struct.Struct(">I")


@pytest.fixture
def tcp_service(pg_store: Any) -> Iterator[IngestService]:
    svc = open_service(pg_store, ServiceConfig(tcp=TcpConfig(host="127.0.0.1", port=0, idle_timeout_s=2.0, frames_per_minute=600)))
    svc.start_thread()
    try:
        yield svc
    finally:
        svc.stop()


def _send_frames(port: int, frames: list[bytes], *, wait: float = 2.0, expect: int | None = None) -> list[Any]:
    """Send length-prefixed frames in one session; the server frames received until EOF/timeout."""
    got: list[Any] = []
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(b"".join(_LEN.pack(len(f)) + f for f in frames))
        buf = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and (expect is None or len(got) < expect):
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except (TimeoutError, OSError):
                break
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 4 and len(buf) >= 4 + _LEN.unpack_from(buf)[0]:
                n = _LEN.unpack_from(buf)[0]
                got.append(decode_server(buf[4 : 4 + n]))
                buf = buf[4 + n :]
    return got


def _frame(reg: ProfileRegistry, device: str, counter: int, kind: str = "archive", **kw: Any) -> bytes:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    if kind == "archive" and "readings" not in kw:
        hour = now.replace(minute=0, second=0) - dt.timedelta(hours=2)
        kw["readings"] = (("volume_register_m3", hour, 100.0 + counter), ("volume_register_m3", hour + dt.timedelta(hours=1), 100.5 + counter))
    return reg.encode(Frame(profile="household-nb", device_id=device, counter=counter, device_time=now, kind=kind, **kw))


def test_fleet_over_tcp_with_faults(pg_store: Any, tcp_service: IngestService, tmp_path: Path) -> None:
    fleet = small_fleet(pg_store, tmp_path / "sim", meters=20, days=3)
    assert tcp_service.tcp is not None
    faults = FaultRates(resend=0.1, out_of_order=0.05, truncated=0.05, corrupted=0.05, replayed=0.05, unknown_device=0.05, clock_skew=0.05, drift=0.1)
    sender = FleetSender(fleet, ProfileRegistry(), transport="tcp", host="127.0.0.1", port=tcp_service.tcp.port, faults=faults, concurrency=4, timeout_s=3, seed=5)
    report = sender.run()
    verdict = check_ground_truth(pg_store, report)
    assert verdict.acked_readings > 1000
    assert verdict.bad_packets > 5
    reasons = set(report.bad_packets().values())
    assert {"truncated", "bad_crc", "unknown_device", "clock_skew"} <= reasons
    # the idents were landed and acknowledged too, every session
    assert sum(1 for p in report.packets if p.fault == "ident") == report.sessions


def test_ident_rules(pg_store: Any, tcp_service: IngestService, tmp_path: Path) -> None:
    fleet = small_fleet(pg_store, tmp_path / "sim", meters=10, days=1, units=2)
    reg = ProfileRegistry()
    unit = next(u for u in fleet.units if u.profile == "household-nb")
    assert tcp_service.tcp is not None
    port = tcp_service.tcp.port
    # a good ident and a frame: both acknowledged
    ident = _frame(reg, unit.device_id, 10, kind="ident", secret=unit.secret.encode())
    acks = _send_frames(port, [ident, _frame(reg, unit.device_id, 11)], expect=2)
    assert sorted(a.acked_counter for a in acks if a.kind == "ack") == [10, 11]
    # a wrong secret: the session is closed, nothing is acknowledged or stored
    before = read_stats(pg_store).received
    bad_ident = _frame(reg, unit.device_id, 12, kind="ident", secret=b"not-the-secret")
    assert _send_frames(port, [bad_ident, _frame(reg, unit.device_id, 13)]) == []
    assert read_stats(pg_store).received == before
    # an unregistered unit: its ident is quarantined as unknown_device, nothing else
    ghost = _frame(reg, "D0999999", 1, kind="ident", secret=b"whatever")
    assert _send_frames(port, [ghost, _frame(reg, "D0999999", 2)]) == []
    q = pg_store.read("quarantine")
    assert q["reason"].to_list() == [Reason.UNKNOWN_DEVICE.value]
    # a frame of another unit inside a session is quarantined as unknown_device
    ident2 = _frame(reg, unit.device_id, 14, kind="ident", secret=unit.secret.encode())
    other = _frame(reg, "D0000777", 15)
    acks = _send_frames(port, [ident2, other], expect=1)
    assert [a.acked_counter for a in acks] == [14]
    stats = read_stats(pg_store)
    assert stats.received == stats.stored + stats.duplicates + stats.quarantined
    assert stats.by_reason.get("unknown_device") == 2


def test_oversized_and_cut_frames(pg_store: Any, tcp_service: IngestService, tmp_path: Path) -> None:
    fleet = small_fleet(pg_store, tmp_path / "sim", meters=10, days=1, units=2)
    reg = ProfileRegistry()
    unit = next(u for u in fleet.units if u.profile == "household-nb")
    assert tcp_service.tcp is not None
    ident = _frame(reg, unit.device_id, 20, kind="ident", secret=unit.secret.encode())
    with socket.create_connection(("127.0.0.1", tcp_service.tcp.port), timeout=3) as s:
        s.sendall(_LEN.pack(len(ident)) + ident + _LEN.pack(100_000) + b"\x01" * 5000)
        s.settimeout(3)
        data = b""
        while True:  # the server acks the ident, then closes the session
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert decode_server(data[4:]).acked_counter == 20
    # a frame cut off by the end of the connection is quarantined as truncated
    ident = _frame(reg, unit.device_id, 21, kind="ident", secret=unit.secret.encode())
    frame = _frame(reg, unit.device_id, 22)
    with socket.create_connection(("127.0.0.1", tcp_service.tcp.port), timeout=3) as s:
        s.sendall(_LEN.pack(len(ident)) + ident + _LEN.pack(len(frame)) + frame[:25])
        time.sleep(0.3)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and pg_store.read("quarantine").height < 2:
        time.sleep(0.1)
    reasons = sorted(pg_store.read("quarantine")["reason"].to_list())
    assert reasons == ["oversized", "truncated"]


def test_garbage_never_crashes_the_service(pg_store: Any, tcp_service: IngestService, tmp_path: Path) -> None:
    fleet = small_fleet(pg_store, tmp_path / "sim", meters=10, days=1, units=2)
    reg = ProfileRegistry()
    unit = next(u for u in fleet.units if u.profile == "household-nb")
    assert tcp_service.tcp is not None
    port = tcp_service.tcp.port
    rng = random.Random(11)
    good = _frame(reg, unit.device_id, 50)
    for i in range(60):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            kind = i % 4
            if kind == 0:  # raw garbage, no framing at all
                s.sendall(rng.randbytes(rng.randint(0, 400)))
            elif kind == 1:  # framed garbage as the first frame
                blob = rng.randbytes(rng.randint(0, 300))
                s.sendall(_LEN.pack(len(blob)) + blob)
            elif kind == 2:  # a good ident, then framed garbage and mutated frames
                ident = _frame(reg, unit.device_id, 100 + i, kind="ident", secret=unit.secret.encode())
                out = _LEN.pack(len(ident)) + ident
                for _ in range(3):
                    mutated = bytearray(good)
                    mutated[rng.randrange(len(mutated))] = rng.randrange(256)
                    blob = bytes(mutated) if rng.random() < 0.5 else rng.randbytes(rng.randint(0, 200))
                    out += _LEN.pack(len(blob)) + blob
                s.sendall(out)
            else:  # a length prefix and then nothing / a half prefix
                s.sendall(rng.randbytes(rng.randint(1, 3)))
            time.sleep(0.01)
    # the service still serves a proper session afterwards
    ident = _frame(reg, unit.device_id, 500, kind="ident", secret=unit.secret.encode())
    acks = _send_frames(port, [ident, _frame(reg, unit.device_id, 501)], expect=2, wait=5)
    assert sorted(a.acked_counter for a in acks) == [500, 501]
    q = pg_store.read("quarantine")
    assert set(q["reason"].to_list()) <= {r.value for r in Reason}
    assert q.height > 10
    stats = read_stats(pg_store)
    assert stats.received == stats.stored + stats.duplicates + stats.quarantined


def test_rate_limit_and_idle_timeout(pg_store: Any, tmp_path: Path) -> None:
    fleet = small_fleet(pg_store, tmp_path / "sim", meters=10, days=1, units=2)
    reg = ProfileRegistry()
    unit = next(u for u in fleet.units if u.profile == "household-nb")
    svc = open_service(pg_store, ServiceConfig(tcp=TcpConfig(host="127.0.0.1", port=0, idle_timeout_s=0.5, frames_per_minute=5)))
    svc.start_thread()
    try:
        assert svc.tcp is not None
        ident = _frame(reg, unit.device_id, 1000, kind="ident", secret=unit.secret.encode())
        frames = [ident] + [_frame(reg, unit.device_id, 1001 + i) for i in range(9)]
        acks = _send_frames(svc.tcp.port, frames, wait=3)
        assert len(acks) == 5  # the bucket holds 5 frames a minute; the rest is dropped unacknowledged
        assert svc.stats.snapshot()["rate_limited"] == 5
        # an idle session is closed by the server after idle_timeout_s
        with socket.create_connection(("127.0.0.1", svc.tcp.port), timeout=3) as s:
            started = time.monotonic()
            s.settimeout(3)
            assert s.recv(10) == b""
            assert time.monotonic() - started < 2.5
    finally:
        svc.stop()


def test_downlink_delivered_and_acknowledged_in_session(pg_store: Any, tcp_service: IngestService, tmp_path: Path) -> None:
    fleet = small_fleet(pg_store, tmp_path / "sim", meters=10, days=1, units=3)
    unit = next(u for u in fleet.units if u.kind == "household_unit")
    cmd = queue_command(pg_store, unit.device_id, "valve", {"action": "close"})
    assert tcp_service.tcp is not None
    sender = FleetSender(fleet, ProfileRegistry(), transport="tcp", host="127.0.0.1", port=tcp_service.tcp.port, faults=FaultRates.none(), timeout_s=3)
    report = sender.run()
    assert (unit.device_id, cmd.command_id, {"kind": "valve", "payload": {"action": "close"}}) in report.commands
    deadline = time.monotonic() + 5
    status = ""
    while time.monotonic() < deadline:
        status = next(c.status for c in list_commands(pg_store, device_id=unit.device_id))
        if status == "acknowledged":
            break
        time.sleep(0.1)
    assert status == "acknowledged"
    check_ground_truth(pg_store, report)
