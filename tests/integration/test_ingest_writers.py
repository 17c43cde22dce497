"""Parallel landing writers against a real PostgreSQL: the TCP service with 2 writers,
concurrent sessions of the same unit, duplicates and replays, the shared rate limit,
two writers reaching new months at once; exactly-once storage and the stats equation."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ingest._decode import decode_server
from ingest._device_profiles import ProfileRegistry
from ingest._landing import EdgePolicy, Landing
from ingest._stats import read_stats
from ingest._transports import IngestService, ServiceConfig, TcpConfig
from ingest._transports.service import landing_authenticator, open_service
from ingest._wire import Frame, Packet, Reason
from ingest.errors import IngestError
from tests.integration._wire_fleet import small_fleet

pytestmark = pytest.mark.integration

_LEN = struct.Struct(">I")


class _Recorder:
    """Wraps a landing's ``submit`` to record which units each writer landed."""

    def __init__(self, landing: Landing) -> None:
        self.devices: set[str] = set()
        self.rounds = 0
        inner = landing.submit

        def submit(packets: Sequence[Packet]) -> list[Any]:
            out = inner(packets)
            self.rounds += 1
            self.devices.update(o.device_id for o in out if o.device_id and o.status == "stored")
            return out

        landing.submit = submit  # type: ignore[method-assign]


@pytest.fixture
def service(pg_store: Any, request: pytest.FixtureRequest) -> Iterator[tuple[IngestService, list[_Recorder]]]:
    policy: EdgePolicy = getattr(request, "param", EdgePolicy())
    registry = ProfileRegistry()
    landings = Landing(pg_store, registry, policy).writers(2)
    recorders = [_Recorder(x) for x in landings]
    config = ServiceConfig(tcp=TcpConfig(host="127.0.0.1", port=0, idle_timeout_s=5.0, frames_per_minute=100_000), writers=2)
    svc = IngestService(landings, landing_authenticator(landings[0], registry), config).start_thread()
    try:
        yield svc, recorders
    finally:
        svc.stop()


def _session(port: int, frames: list[bytes], chunks: int, acks: list[int], lock: threading.Lock) -> None:
    """One unit session: frames in ``chunks`` writes (so several landing jobs), then EOF;
    the acknowledged counters are added to ``acks``."""
    got: list[int] = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        step = max(1, -(-len(frames) // chunks))
        for i in range(0, len(frames), step):
            s.sendall(b"".join(_LEN.pack(len(f)) + f for f in frames[i : i + step]))
            time.sleep(0.01)
        s.shutdown(socket.SHUT_WR)  # the server commits and acks what it has, then closes
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 4 and len(buf) >= 4 + _LEN.unpack_from(buf)[0]:
                n = _LEN.unpack_from(buf)[0]
                msg = decode_server(buf[4 : 4 + n])
                if msg.kind == "ack" and msg.acked_counter is not None:
                    got.append(int(msg.acked_counter))
                buf = buf[4 + n :]
    with lock:
        acks.extend(got)


def _run_sessions(port: int, sessions: list[list[bytes]], chunks: int = 3) -> list[int]:
    acks: list[int] = []
    lock = threading.Lock()
    threads = [threading.Thread(target=_session, args=(port, s, chunks, acks, lock)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a session did not finish"
    return acks


def _archive(reg: ProfileRegistry, unit: Any, counter: int, base: dt.datetime, hours: range, now: dt.datetime) -> Frame:
    readings = tuple(("volume_register_m3", base + dt.timedelta(hours=h), 100.0 + 0.5 * h) for h in hours)
    return Frame(profile=unit.profile, device_id=unit.device_id, counter=counter, device_time=now, kind="archive", readings=readings)


def test_same_unit_sessions_over_two_writers_store_exactly_once(
    pg_store: Any, service: tuple[IngestService, list[_Recorder]], tmp_path: Path
) -> None:
    svc, recorders = service
    assert svc.tcp is not None and svc.worker.writers == 2
    fleet = small_fleet(pg_store, tmp_path / "sim", meters=12, days=1)
    units = [u for u in fleet.units if u.profile == "household-nb"][:4]
    assert len(units) == 4
    reg = ProfileRegistry()
    rng = random.Random(11)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    base = now.replace(minute=0, second=0) - dt.timedelta(hours=40)
    frames_per_unit, per_unit_sessions = 12, 4
    sessions: list[list[bytes]] = []
    duplicates = replays = 0
    counters: dict[str, set[int]] = {}
    for u in units:
        good = [reg.encode(_archive(reg, u, 100 + i, base, range(3 * i, 3 * i + 3), now)) for i in range(frames_per_unit)]
        counters[u.device_id] = set(range(100, 100 + frames_per_unit))
        order = list(range(frames_per_unit))
        rng.shuffle(order)  # out of order, and spread over concurrent sessions of this unit
        mine: list[list[bytes]] = [[] for _ in range(per_unit_sessions)]
        for k, i in enumerate(order):
            mine[k % per_unit_sessions].append(good[i])
        for i in range(frames_per_unit):
            if i % 4 == 1:  # the same bytes again in another session: a duplicate
                mine[(order.index(i) + 1) % per_unit_sessions].append(good[i])
                duplicates += 1
            if i % 5 == 2:  # same counter, other content (device time): a replay, one of the two is stored
                other = _archive(reg, u, 100 + i, base, range(3 * i, 3 * i + 3), now + dt.timedelta(seconds=1))
                mine[(order.index(i) + 2) % per_unit_sessions].append(reg.encode(other))
                replays += 1
        for s, session in enumerate(mine):
            rng.shuffle(session)
            ident = Frame(u.profile, u.device_id, 1_000 + s, now, "ident", secret=u.secret.encode())
            sessions.append([reg.encode(ident), *session])
            counters[u.device_id].add(1_000 + s)
    rng.shuffle(sessions)
    acks = _run_sessions(svc.tcp.port, sessions)

    n_units = len(units)
    idents = n_units * per_unit_sessions
    frames = n_units * frames_per_unit
    stats = read_stats(pg_store)
    assert stats.balanced
    assert (stats.received, stats.stored, stats.duplicates, stats.quarantined) == (
        idents + frames + duplicates + replays, idents + frames, duplicates, replays,
    )  # fmt: skip
    assert stats.by_reason == {Reason.REPLAYED.value: replays}
    assert len(acks) == idents + frames + duplicates  # stored and duplicate frames are acknowledged
    # each (unit, counter) stored once; every reading once, with its value
    raw = pg_store.read("raw_packets", where={"status": ["stored"]})
    for u in units:
        landed = raw.filter(pl.col("device_id") == u.device_id)
        assert sorted(landed["counter"].to_list()) == sorted(counters[u.device_id])
    readings = pg_store.read("readings", where={"device_id": [u.device_id for u in units]})
    assert readings.height == readings.unique(["device_id", "channel", "ts"]).height == frames * 3
    expected = 100.0 + 0.5 * ((readings["ts"] - base).dt.total_hours())
    assert (readings["value"] - expected).abs().max() == pytest.approx(0.0)
    # hourly consumption derived from the registers: every hour once, 0.5 m³, none missing
    meters = pg_store.read("devices", where={"device_id": [u.device_id for u in units]})["meter_id"].to_list()
    hourly = pg_store.read("hourly_archive", where={"meter_id": meters})
    per_meter = hourly.group_by("meter_id").agg(pl.len().alias("hours"), pl.col("volume_m3").sum().alias("m3"))
    assert per_meter.height == n_units
    assert per_meter["hours"].to_list() == [3 * frames_per_unit - 1] * n_units
    assert per_meter["m3"].to_list() == pytest.approx([0.5 * (3 * frames_per_unit - 1)] * n_units)
    assert hourly.filter(pl.col("quality") != "valid").height == 0
    # both writers landed; each unit's frames all on one of them (one unit, one writer:
    # its concurrent sessions never make the two writers wait for each other's lock)
    assert all(r.rounds for r in recorders)
    assert recorders[0].devices | recorders[1].devices >= {u.device_id for u in units}
    shards = pg_store.read("ingest_counters")["shard"].unique().to_list()
    assert len(shards) == 2


@pytest.mark.parametrize("service", [EdgePolicy(max_frames_per_minute=12)], indirect=True)
def test_the_rate_limit_is_shared_by_the_writers(
    pg_store: Any, service: tuple[IngestService, list[_Recorder]], tmp_path: Path
) -> None:
    svc, _recorders = service
    assert svc.tcp is not None
    fleet = small_fleet(pg_store, tmp_path / "sim", meters=10, days=1)
    unit = next(u for u in fleet.units if u.profile == "household-nb")
    reg = ProfileRegistry()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    base = now.replace(minute=0, second=0) - dt.timedelta(hours=40)
    sessions = []
    for s in range(4):
        ident = Frame(unit.profile, unit.device_id, 1_000 + s, now, "ident", secret=unit.secret.encode())
        frames = [reg.encode(_archive(reg, unit, 100 + 10 * s + i, base, range(10 * s + i, 10 * s + i + 1), now)) for i in range(10)]
        sessions.append([reg.encode(ident), *frames])
    acks = _run_sessions(svc.tcp.port, sessions, chunks=5)
    stats = read_stats(pg_store)
    assert stats.balanced and stats.received == 44
    # 12 frames a minute for the unit in total, not 12 per writer
    assert stats.stored == 12 == len(acks)
    assert stats.by_reason == {Reason.OVERSIZED.value: 32}


def test_open_service_defaults_to_two_writers_on_postgres(pg_store: Any) -> None:
    from ingest._transports._writers import ProcessLanding

    config = ServiceConfig(tcp=TcpConfig(host="127.0.0.1", port=0))
    svc = open_service(pg_store, config)
    try:
        assert svc.worker.writers == 2 and svc.config.writers == 2 and svc.config.writer_processes is True
        a, b = svc.worker.landings
        assert isinstance(a, ProcessLanding) and isinstance(b, ProcessLanding)
        assert a.shard != b.shard and a.pid and b.pid and len({a.pid, b.pid, os.getpid()}) == 3
    finally:
        for x in svc.worker.landings:
            x.close()  # type: ignore[attr-defined]
    threads = open_service(pg_store, dataclasses.replace(config, writer_processes=False))
    a, b = threads.worker.landings
    assert a.rate is b.rate and a.shard != b.shard  # type: ignore[attr-defined]
    one = open_service(pg_store, dataclasses.replace(config, writers=1, writer_processes=False))
    assert one.worker.writers == 1
    with pytest.raises(IngestError, match="1 to"):
        open_service(pg_store, dataclasses.replace(config, writers=0))


def test_two_writers_racing_for_a_new_month_partition(pg_store: Any) -> None:
    """The second writer of a new month waits for the first and then sees its partition
    (PostgreSQL's catalog cache would otherwise make it try again: DuplicateTable)."""
    from warehouse import _landing as wl

    assert pg_store.variant == "plain", "this race is in the plain variant's partitions (TimescaleDB makes its own chunks)"
    month = pl.DataFrame({"ts": [dt.datetime(2031, 5, 3, tzinfo=dt.UTC)]})
    first_in, second_started = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        with pg_store.transaction(), pg_store.connection() as conn:
            wl._pg_ensure_partitions(pg_store, conn, "readings", month)
            first_in.set()
            second_started.wait(10)
            time.sleep(0.3)  # the second is now waiting for our advisory lock

    def second() -> None:
        try:
            first_in.wait(10)
            with pg_store.transaction(), pg_store.connection() as conn:
                conn.execute("SELECT to_regclass('readings_p203105')")  # as the function's first check does
                second_started.set()
                wl._pg_ensure_partitions(pg_store, conn, "readings", month)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
            second_started.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    names = pg_store.sql_frame("SELECT relname FROM pg_class WHERE relname = 'readings_p203105'", [])
    assert names.height == 1


def test_two_writers_reaching_new_months_at_once_do_not_deadlock(pg_store: Any, tmp_path: Path) -> None:
    """Both writers' first batches need the same new monthly partitions.  Created inside
    the batch transactions (after each batch's COPYs took the parent table's row lock)
    the two deadlocked; landing now makes them in a transaction of its own first."""
    assert pg_store.variant == "plain", "the partitions of the plain variant (TimescaleDB makes its own chunks)"
    fleet = small_fleet(pg_store, tmp_path / "sim", meters=12, days=1)
    units = [u for u in fleet.units if u.profile == "household-nb"][:6]
    reg = ProfileRegistry()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    # 40 hours back: usually this month only, across a month boundary on the 1st
    base = now.replace(minute=0, second=0) - dt.timedelta(hours=40)
    packets = [
        [Packet(reg.encode(_archive(reg, u, 100 + i, base, range(4 * i, 4 * i + 4), now)), "tcp", now, device_id=u.device_id)
         for i in range(10)]
        for u in units
    ]  # fmt: skip
    landings = Landing(pg_store, reg).writers(2)
    start = threading.Barrier(2, timeout=30)
    outcomes: list[list[Any]] = [[], []]
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            start.wait()
            for unit_packets in packets[k::2]:
                outcomes[k].extend(landings[k].submit(unit_packets))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert [o.status for o in outcomes[0] + outcomes[1]] == ["stored"] * 60
    months = {(base + dt.timedelta(hours=h)).strftime("%Y%m") for h in range(40)}
    parts = set(pg_store.sql_frame("SELECT relname FROM pg_class WHERE relname LIKE 'readings_p%'", [])["relname"])
    assert {f"readings_p{m}" for m in months} <= parts
    assert pg_store.count("readings") == sum(len(f.readings) for u in packets for f in (reg.decode(p.raw) for p in u))


# --- landing writers in processes of their own ---------------------------------------------
def _process_landing(pg_store: Any, shard: int = 7) -> Any:
    from ingest._transports._writers import LandingSpec, ProcessLanding

    dsn, variant = pg_store.reopen_args()
    local = Landing(pg_store, ProfileRegistry(), EdgePolicy())
    return ProcessLanding(local, LandingSpec(dsn, variant, (), EdgePolicy(), shard))


def _backlog(pg_store: Any, tmp_path: Path, frames: int) -> tuple[list[Packet], int]:
    """``frames`` archive frames of 24 hours each over a small fleet, and their readings."""
    fleet = small_fleet(pg_store, tmp_path / "sim", meters=12, days=1)
    units = [u for u in fleet.units if u.profile == "household-nb"]
    reg = ProfileRegistry()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    days = -(-frames // len(units))  # one day of hours per frame, each unit's back to back
    assert days < EdgePolicy().late_window.days, "a smaller backlog, or more units"
    base = now.replace(minute=0, second=0) - dt.timedelta(days=days + 1)
    packets = []
    for i in range(frames):
        u = units[i % len(units)]
        k = i // len(units)
        raw = reg.encode(_archive(reg, u, 500 + k, base, range(24 * k, 24 * k + 24), now))
        packets.append(Packet(raw, "tcp", now, device_id=u.device_id))
    return packets, 24 * frames


def test_writer_process_killed_mid_batch_retries_on_a_new_one(pg_store: Any, tmp_path: Path) -> None:
    """SIGKILL of a writer process in the middle of a batch: the round fails, the worker
    retries it on a fresh process, and every reading is stored exactly once."""
    import signal

    import psycopg

    from ingest._transports._common import LandingWorker

    packets, readings = _backlog(pg_store, tmp_path, 150)
    proc_landing = _process_landing(pg_store)
    worker = LandingWorker([proc_landing], retries=3).start()
    dsn, _ = pg_store.reopen_args()
    try:
        first = proc_landing.pid
        assert first is not None and first != os.getpid()
        with psycopg.connect(dsn) as blocker:
            # hold one unit's registry row: the child's batch waits for it, mid-transaction
            blocker.execute("SELECT 1 FROM device_credentials WHERE device_id = %s FOR UPDATE", [packets[0].device_id])
            fut = worker.submit(packets)
            deadline = time.monotonic() + 60
            while not blocker.execute("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'").fetchall():
                assert time.monotonic() < deadline, "the writer process never reached the unit lock"
                time.sleep(0.05)
            os.kill(first, signal.SIGKILL)
            time.sleep(0.5)
            assert not fut.done()
            blocker.rollback()
        outcomes = fut.result(timeout=120)
        second = proc_landing.pid
        assert second not in (None, first) and proc_landing.restarts == 1
        # killed while idle, between batches: the next batch starts a new one, no failure
        os.kill(second, signal.SIGKILL)
        time.sleep(0.5)
        again = worker.submit(packets[:10]).result(timeout=120)
        assert [o.status for o in again] == ["duplicate"] * 10
        assert proc_landing.pid not in (None, first, second) and proc_landing.restarts == 2
    finally:
        worker.stop()
        proc_landing.close()
    assert [o.status for o in outcomes] == ["stored"] * len(packets), {o.reason for o in outcomes}  # the killed batch committed nothing
    assert worker.stats.submit_failures == 1
    stored = pg_store.read("readings", columns=["device_id", "channel", "ts"])
    assert stored.height == readings == stored.unique().height
    assert read_stats(pg_store).balanced


def test_writer_process_failures_are_clear(pg_store: Any) -> None:
    from ingest._transports._writers import LandingSpec, ProcessLanding, WriterProcessError
    from ingest._transports.service import resolve_writer_processes
    from warehouse import open_store

    dsn, variant = pg_store.reopen_args()
    bad = LandingSpec(dsn.replace("dbname=", "dbname=no_such_db_"), variant, (), EdgePolicy(), 3)
    with pytest.raises(WriterProcessError, match=r"could not start: StoreUnavailableError: cannot connect.*no_such_db_"):
        ProcessLanding(Landing(pg_store, ProfileRegistry()), bad)
    duck = open_store(path=":memory:")
    with pytest.raises(IngestError, match="writer processes need a PostgreSQL store.*--writer-mode thread"):
        resolve_writer_processes(duck, True)
    assert resolve_writer_processes(duck, None) is False and resolve_writer_processes(pg_store, None) is True


def test_service_with_writer_processes_lands_sessions_and_ends_them(pg_store: Any, tmp_path: Path) -> None:
    config = ServiceConfig(tcp=TcpConfig(host="127.0.0.1", port=0, idle_timeout_s=5.0, frames_per_minute=100_000))
    svc = open_service(pg_store, config).start_thread()
    pids = [x.pid for x in svc.worker.landings]  # type: ignore[attr-defined]
    try:
        assert svc.tcp is not None and len(set(pids)) == 2
        fleet = small_fleet(pg_store, tmp_path / "sim", meters=12, days=1)
        reg = ProfileRegistry()
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        base = now.replace(minute=0, second=0) - dt.timedelta(hours=30)
        units = [u for u in fleet.units if u.profile == "household-nb"]
        sessions = [
            [
                reg.encode(Frame(u.profile, u.device_id, 10, now, "ident", secret=u.secret.encode())),
                *(reg.encode(_archive(reg, u, 20 + i, base, range(6 * i, 6 * i + 6), now)) for i in range(4)),
            ]
            for u in units
        ]
        acks = _run_sessions(svc.tcp.port, sessions)
    finally:
        svc.stop()
    assert len(acks) == 5 * len(units)
    assert pg_store.read("readings", columns=["ts"]).height == 24 * len(units)
    assert read_stats(pg_store).balanced
    for pid in pids:  # a graceful stop ends the writer processes
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_ctrl_c_to_the_process_group_stops_the_service_gracefully(pg_store: Any, pg_databases: Any, tmp_path: Path) -> None:
    """Ctrl+C in a terminal signals the service *and* its writer processes: the writers
    ignore it and still land the last rounds, the service stops with exit 0 and ends them."""
    import json
    import signal
    import subprocess
    import sys

    from tests._servers import free_port

    fleet = small_fleet(pg_store, tmp_path / "sim", meters=12, days=1)
    units = [u for u in fleet.units if u.profile == "household-nb"]
    dsn, _ = pg_store.reopen_args()
    port = free_port()
    log = tmp_path / "tcp.log"
    askug = str(Path(sys.executable).with_name("askug"))
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [askug, "--dsn", dsn, "ingest", "tcp", "--host", "127.0.0.1", "--port", str(port), "--log-format", "json"],
            stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "service_ready" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-2000:]
            time.sleep(0.1)
        ready = next(json.loads(x) for x in log.read_text().splitlines() if '"service_ready"' in x)
        pids = ready["writer_processes"]
        assert len(pids) == 2 and all(os.getpgid(p) == proc.pid for p in pids)
        reg = ProfileRegistry()
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        base = now.replace(minute=0, second=0) - dt.timedelta(hours=30)
        sessions = [
            [
                reg.encode(Frame(u.profile, u.device_id, 10, now, "ident", secret=u.secret.encode())),
                *(reg.encode(_archive(reg, u, 20 + i, base, range(6 * i, 6 * i + 6), now)) for i in range(4)),
            ]
            for u in units
        ]
        acks = _run_sessions(port, sessions)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl+C does: the whole foreground group
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    text = log.read_text(errors="replace")
    assert "service_stopped" in text and "KeyboardInterrupt" not in text and "Traceback" not in text
    assert len(acks) == 5 * len(units) and read_stats(pg_store).balanced
    deadline = time.monotonic() + 10
    for pid in pids:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, f"writer process {pid} outlived the service"
            time.sleep(0.1)
