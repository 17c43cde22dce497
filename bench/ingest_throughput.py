"""Ingest benchmark: readings/s from simulated units into PostgreSQL through TCP and MQTT,
next to the raw COPY ceiling measured in the same run.

Steps (each on its own fresh, migrated database of one throwaway PostgreSQL cluster, set
up for a write load (``PG_SETTINGS``, ``--pg-setting``), after a ``CHECKPOINT``; the broker
is a throwaway Mosquitto; both come from ``tests/_servers.py``).  Steps 2–7 run
``--repeat`` times, interleaved, because this machine's speed drifts within minutes; every
figure printed is a median, and the goal ratio is the median of each round's own ratio.
A round runs step 3, then 2 and 4 back to back, the ceiling's COPY once more right after
step 4, then step 5: the TCP step is held against the mean of the single-connection
COPYs just before and just after it (an A-B-A design: a ceiling taken minutes earlier
measured another machine speed; single rounds swung from 0.30× to 0.63× that way).
The goal line also prints the ratio to the COPY before the step alone.  This is a
virtual machine: before each round the bench waits (``--quiet-wait``, 10 min at most)
until the hypervisor steals at most ``--max-steal`` % of the cores, and it prints the
share stolen during each step (``/proc/stat``), since steal of 15–40 % was seen for
minutes at a time.

1. **simulate** ``--meters`` metering points × ``--days`` days, register the units (low
   scrypt cost), and pre-encode every unit's archive backlog with its device profile
   (``household-nb`` / ``corrector-ek``): as few frames as fit in 4,096 bytes, so one
   frame carries hundreds of hourly records.  Encoding is not timed.
2. **COPY ceiling**: the readings those frames carry, COPYed straight into the
   ``readings`` table of a fresh database (its monthly partitions made first, as landing
   makes them) — the same rows into the same table — on ONE connection, once as CSV and
   once in PostgreSQL's binary format (``warehouse._landing.binary_copy``, what landing
   sends); the faster of the two is the ceiling of the goal line.  For information, the
   same rows are also COPYed over 2 parallel connections (half each), with its ratio:
   that is what a 2-core server can absorb with no checks at all, so nobody mistakes
   the single-statement ceiling for the machine's limit.
3. **Landing alone**: ``Landing.submit`` in this process on a fresh database, the same
   frames in batches of ``--landing-batch`` frames (a transport round), no network:
   what one database thread of the service can do at best.  Then **Landing.submit, N
   writers**: ``--writers`` threads, each with its own ``Landing``
   (``Landing.writers``) landing the units that hash to it (the service's one unit,
   one writer rule), on another fresh database.
4. **TCP**: ``askug ingest serve --writers N`` runs as its own process; ``--connections``
   concurrent unit sessions (ident, then all frames, then wait for every ack); the
   service runs with downlink on, so each session also looks up its unit's pending
   commands, as in production (there are none to deliver).  Time
   from the first byte to the last ack; readings/s = readings rows stored / that time.
5. **MQTT**: the same frames published with QoS 1 to ``askug/up/<id>`` by
   ``--publishers`` clients, each publishing whole units, a unit's frames in order (as
   the unit itself would); time until landing has stored them all.
6. **peak memory** (VmHWM) of the ingest service after each run: its process plus its
   landing writer processes (the sum of their peaks).
7. **daily sessions**: ``--sessions`` units each call in once over TCP with one day (24
   hourly records, one frame) — a full session each (connect, ident, frame, ack); the
   time for 100,000 units is *projected* from this sample's sessions/s.

Goals (issue 3): TCP ≥ ½ of the COPY ceiling; MQTT ≥ 100,000 readings/s.

Usage::

    .venv/bin/python bench/ingest_throughput.py            # 2,000 meters × 30 days (~1.5 M readings)
    .venv/bin/python bench/ingest_throughput.py --quick    # 100 meters × 7 days: a smoke run
    .venv/bin/python bench/ingest_throughput.py --writers 1 --rounds   # one landing writer, round sizes
    .venv/bin/python bench/ingest_throughput.py --repeat 5             # 5 interleaved rounds
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import io
import os
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_LEN = struct.Struct(">I")
ASKUG = str(Path(sys.executable).with_name("askug"))


def _vm_hwm_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a running process, MB."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# --- CPU accounting -------------------------------------------------------------------------
_TCK: float = float(os.sysconf("SC_CLK_TCK"))


def _descendants(pid: int) -> list[int]:
    """Live processes below ``pid`` (the service's landing writer processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants (a service and its writer processes)."""
    return _proc_cpu(pid) + sum(_proc_cpu(c) for c in _descendants(pid))


def _tree_hwm_mb(pid: int) -> float:
    """Sum of the peak resident memory of ``pid`` and its live descendants, MB (an upper
    bound of the peak of their sum: the processes need not peak at the same moment)."""
    return _vm_hwm_mb(pid) + sum(_vm_hwm_mb(c) for c in _descendants(pid))


def _proc_cpu(pid: int, *, reaped: bool = False) -> float:
    """CPU seconds (user + system, all threads) of a live process; ``reaped`` adds its
    waited-for children's (PostgreSQL's postmaster reaps every backend that exits)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if reaped else 0)
    return ticks / _TCK


def _steal() -> float:
    """CPU seconds the hypervisor gave to other guests (``steal`` of ``/proc/stat``, all CPUs)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / _TCK
    except (OSError, IndexError, ValueError):
        return 0.0


class CpuMeter:
    """CPU seconds spent by PostgreSQL (postmaster + every backend), the broker, this bench
    process (clients, or landing itself in the in-process steps) and the ingest service,
    between :meth:`start` and :meth:`stop` — to show where a path's CPU goes and how many
    of the machine's cores it kept busy."""

    def __init__(self, pg: Any, broker: Any) -> None:
        self.postmaster = int((Path(pg.datadir) / "postmaster.pid").read_text().split()[0])
        self.broker_pid = broker.proc.pid if broker.proc is not None else None
        self.results: dict[str, dict[str, float]] = {}

    def _pg(self) -> float:
        total = _proc_cpu(self.postmaster, reaped=True)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == self.postmaster:
                    total += _proc_cpu(int(entry.name))
        return total

    def snapshot(self, service_pid: int | None = None) -> dict[str, float]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "postgres": self._pg(),
            "broker": _proc_cpu(self.broker_pid) if self.broker_pid else 0.0,
            "bench": own.ru_utime + own.ru_stime,
            "service": _tree_cpu(service_pid) if service_pid else 0.0,
            "steal": _steal(),
            "wall": time.perf_counter(),
        }

    def record(self, name: str, before: dict[str, float], after: dict[str, float]) -> None:
        self.results[name] = {k: after[k] - before[k] for k in before}


#: set by main(): the meter every measurement reports to
_CPU: list[CpuMeter] = []


def _snap(service_pid: int | None = None) -> dict[str, float]:
    return _CPU[0].snapshot(service_pid) if _CPU else {}


def _rec(name: str, before: dict[str, float], service_pid: int | None = None) -> None:
    if _CPU:
        _CPU[0].record(name, before, _CPU[0].snapshot(service_pid))


# --- preparing the fleet -------------------------------------------------------------------
class Prepared:
    """Units, secrets and pre-encoded frames (per unit, in time order) of one simulation."""

    def __init__(self, sim: Path, *, units: int | None) -> None:
        from ingest._device_profiles import ProfileRegistry
        from ingest._send import Fleet, _session_frames

        self.sim = sim
        self.registry = ProfileRegistry()
        self.fleet = Fleet.from_simulation(sim, max_units=units, registry=self.registry)
        self.fleet.units = [u for u in self.fleet.units if u.kind in ("household_unit", "corrector")]
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self.frames: dict[str, list[bytes]] = {}
        self.day_frames: dict[str, bytes] = {}
        self.rows: list[tuple[str, str, dt.datetime, float]] = []
        self.archive_rows = 0
        for u in self.fleet.units:
            prof = self.registry.profile(u.profile)
            wide = self.fleet.readings[u.device_id]
            frames = _session_frames(u, prof, wide, {}, device_time=now, max_frame_bytes=4096)
            out = []
            for i, fr in enumerate(frames):
                raw = self.registry.encode(dataclasses.replace(fr, counter=1000 + i))
                dec = self.registry.decode(raw)
                self.rows.extend((u.device_id, ch, ts, v) for ch, ts, v in dec.readings if v is not None)
                self.archive_rows += len(dec.archives)
                out.append(raw)
            self.frames[u.device_id] = out
            last_day = wide.tail(24)
            day = _session_frames(u, prof, last_day, {}, device_time=now, max_frame_bytes=4096)
            if day:
                self.day_frames[u.device_id] = self.registry.encode(dataclasses.replace(day[0], counter=900_000))

    def register(self, store: Any) -> None:
        from ingest._send import load_fleet_reference, register_fleet

        load_fleet_reference(store, self.sim)
        register_fleet(store, self.fleet)


def _ident(prep: Prepared, unit: Any, counter: int) -> bytes:
    from ingest._wire import Frame

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return prep.registry.encode(Frame(unit.profile, unit.device_id, counter, now, "ident", secret=unit.secret.encode()))


# --- servers and services ---------------------------------------------------------------------
class Service:
    """``askug ingest serve`` as a child process."""

    def __init__(self, dsn: str, *, mqtt_url: str | None, tcp_port: int, log: Path, writers: int) -> None:
        cmd = [ASKUG, *(["-v"] if _ROUNDS else []), "--dsn", dsn, "ingest", "serve", "--tcp-port", str(tcp_port), "--udp-port", "0",
               "--rate", "1000000", "--stats-every", "3600", "--host", "127.0.0.1",
               "--writers", str(writers)]  # fmt: skip
        if mqtt_url:
            cmd += ["--mqtt", mqtt_url, "--client-id", f"bench-{os.getpid()}-{time.monotonic_ns()}"]
        self.log = log
        out = log.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=out)
        out.close()

    def wait_ready(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"ingest service exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"ingest service not ready ({text!r} not in its log)")

    def stop(self) -> float:
        peak = _tree_hwm_mb(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return peak


#: ``--rounds``: run the service with debug logs and report its landing rounds.
_ROUNDS: list[bool] = []


def _round_sizes(log: Path) -> str:
    """Landing rounds of a service run from its debug log: count, packets per round, seconds
    inside ``submit`` (summed over the writers, so with 2 writers it can exceed the wall time)."""
    import re

    found = re.findall(r"event=committed packets=(\d+) jobs=\d+ seconds=([\d.]+)(?: writer=(\S+))?", log.read_text())
    rounds = [(int(m[0]), float(m[1]), m[2] or "askug-landing") for m in found]
    if not rounds:
        return "no rounds logged"
    sizes = sorted(n for n, _, _ in rounds)
    busy = sum(s for _, s, _ in rounds)
    per_writer: dict[str, int] = {}
    for _, _, w in rounds:
        per_writer[w] = per_writer.get(w, 0) + 1
    writers = ", ".join(f"{w.removeprefix('askug-landing-')}: {n}" for w, n in sorted(per_writer.items()))
    return (f"{len(rounds)} rounds, packets per round median {sizes[len(sizes) // 2]} (min {sizes[0]}, max {sizes[-1]}),"
            f" {busy:.2f} s inside submit; rounds per writer {writers}")  # fmt: skip


def _fresh_store(admin: Any) -> tuple[Any, str, str]:
    from warehouse._postgres import PostgresStore

    name = admin.create(template=admin.migrated_template())
    dsn = admin.dsn(name)
    return PostgresStore(dsn), dsn, name


# --- measurements -------------------------------------------------------------------------------
def _copy_frame(prep: Prepared) -> Any:
    """The readings of the prepared frames in the ``readings`` contract (as landing stores them)."""
    import polars as pl

    received = dt.datetime.now(dt.UTC)
    frame = pl.DataFrame(prep.rows, schema={"device_id": pl.String, "channel": pl.String, "ts": pl.Datetime("us", "UTC"), "value": pl.Float64}, orient="row")
    return frame.with_columns(quality=pl.lit("valid"), received_at=pl.lit(received))


def _copy_payloads(frame: Any, fmt: str) -> list[bytes]:
    """``frame`` as one COPY payload in ``fmt`` (csv or binary); not timed."""
    from warehouse._landing import binary_copy

    if fmt == "binary":
        return [binary_copy(frame)]
    buf = io.BytesIO()
    frame.write_csv(buf, include_header=False)
    return [buf.getvalue()]


def _make_partitions(dsn: str, months: list[dt.datetime]) -> None:
    """The monthly ``readings`` partitions the rows need, as landing makes them (untimed)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("SELECT askug_ensure_partitions('readings', %s::timestamptz[])", [months])


def _copy_on(dsn: str, payload: bytes, fmt: str, barrier: Any = None, record: str | None = None) -> float:
    """COPY one payload into ``readings`` on a new connection and commit; seconds (timed part only)."""
    import psycopg

    with psycopg.connect(dsn) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.commit()
        if barrier is not None:
            barrier.wait()
        before = _snap() if record else {}
        t = time.perf_counter()
        statement = f"COPY readings (device_id, channel, ts, value, quality, received_at) FROM STDIN (FORMAT {fmt})"
        with con.cursor().copy(statement) as copy:
            view = memoryview(payload)
            for i in range(0, len(view), 1 << 20):
                copy.write(view[i : i + (1 << 20)])
        con.commit()
        seconds = time.perf_counter() - t
        if record:
            _rec(record, before)  # while the backend is alive (its CPU is not yet in the postmaster's)
        return seconds


def measure_copy(prep: Prepared, admin: Any, stores: list[Any], before: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """The raw COPY ceiling: CSV and binary on one connection, and 2 connections in parallel.

    Each on a fresh database (the same empty ``readings`` table, partitions made).
    Returns ``{"rows", "csv", "binary", "best", "best_format", "parallel"}`` (seconds),
    and ``"frame"``: the rows, for the COPY again after the TCP step.
    """
    import threading

    frame = _copy_frame(prep)
    months = frame.get_column("ts").dt.truncate("1mo").unique().to_list()
    out: dict[str, Any] = {"rows": frame.height, "frame": frame}
    for fmt in ("csv", "binary"):
        out[fmt] = _copy_fresh(prep, admin, stores, frame, fmt, before, record=f"copy_{fmt}")
    best = "binary" if out["binary"] <= out["csv"] else "csv"
    out["best"], out["best_format"] = out[best], best
    # 2 connections, half the rows each (split between units, as two writers would be)
    store, dsn, _ = _fresh_store(admin)
    stores.append(store)
    prep.register(store)
    _make_partitions(dsn, months)
    half = frame.height // 2
    cut = half
    devices = frame.get_column("device_id")
    while 0 < cut < frame.height and devices[cut] == devices[cut - 1]:
        cut += 1
    payloads = [_copy_payloads(part, best)[0] for part in (frame.head(cut), frame.slice(cut))]
    before()
    barrier = threading.Barrier(len(payloads) + 1, timeout=120)  # a failed thread breaks it, never hangs
    errors: list[BaseException] = []

    def copy_part(payload: bytes) -> None:
        try:
            _copy_on(dsn, payload, best, barrier)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=copy_part, args=(p,)) for p in payloads]
    for th in threads:
        th.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    t = time.perf_counter()
    for th in threads:
        th.join()
    out["parallel"] = time.perf_counter() - t
    if errors:
        raise errors[0]
    return out


def _copy_fresh(
    prep: Prepared, admin: Any, stores: list[Any], frame: Any, fmt: str, before: Callable[[], None], record: str | None = None
) -> float:
    """One single-connection COPY of ``frame`` in ``fmt`` on a fresh database with its
    ``readings`` partitions made (seconds, timed part only)."""
    store, dsn, _ = _fresh_store(admin)
    stores.append(store)
    prep.register(store)
    _make_partitions(dsn, frame.get_column("ts").dt.truncate("1mo").unique().to_list())
    before()
    return _copy_on(dsn, _copy_payloads(frame, fmt)[0], fmt, record=record)


def _bracket(r: dict[str, Any]) -> float:
    """The ceiling the TCP step of round ``r`` is held against: the mean rate of the
    single-connection COPYs right before it (the faster format) and right after it."""
    c = r["copy"]
    return (c["rows"] / c["best"] + c["rows"] / c["after"]) / 2


def wait_for_quiet(max_steal: float, patience_s: float, *, sample_s: float = 5.0) -> tuple[float, float]:
    """Wait (at most ``patience_s``) until the hypervisor steals at most ``max_steal`` of
    the cores' time over ``sample_s``; returns (the last sample's share, seconds waited).

    On a shared virtual machine another guest can take a third of the cores for minutes;
    a round measured then compares a 1-core COPY with a 2-core service on a machine that
    has neither.  Waiting is bounded: a round that finds no quiet spell runs anyway and
    its steal is printed next to it.
    """
    cores = os.cpu_count() or 1
    start = time.monotonic()
    while True:
        s0, t0 = _steal(), time.monotonic()
        time.sleep(sample_s)
        share = (_steal() - s0) / ((time.monotonic() - t0) * cores)
        if share <= max_steal or time.monotonic() - start >= patience_s:
            return share, time.monotonic() - start


def _stolen(r: dict[str, Any], step: str) -> float:
    """The share of the cores' time stolen by the hypervisor while ``step`` of round ``r`` ran."""
    g = r.get("cpu", {}).get(step)
    return _steal_share(g) if g else 0.0


def _steal_share(g: dict[str, float]) -> float:
    """Stolen CPU seconds of a CPU record over the cores' time of its wall clock."""
    return g.get("steal", 0.0) / (g["wall"] * (os.cpu_count() or 1))


def _packets(prep: Prepared) -> list[Any]:
    from ingest._wire import Packet

    received = dt.datetime.now(dt.UTC)
    return [Packet(raw, "tcp", received, device_id=d) for d, frames in prep.frames.items() for raw in frames]


def _check_stored(out: Any) -> None:
    if any(o.status != "stored" for o in out):
        raise RuntimeError(f"landing did not store every frame: {[o for o in out if o.status != 'stored'][:3]}")


def measure_landing(prep: Prepared, store: Any, *, batch: int) -> float:
    """Seconds ``Landing.submit`` takes for every frame, ``batch`` frames per call."""
    from ingest._landing import Landing

    packets = _packets(prep)
    landing = Landing(store, prep.registry)
    before = _snap()
    t = time.perf_counter()
    for i in range(0, len(packets), batch):
        _check_stored(landing.submit(packets[i : i + batch]))
    seconds = time.perf_counter() - t
    _rec("landing", before)
    return seconds


def measure_landing_writers(prep: Prepared, store: Any, *, batch: int, writers: int) -> float:
    """Seconds ``writers`` threads with a ``Landing`` each take for every frame, each
    landing the units that hash to it (``crc32(device_id) % writers``, the service's
    one unit, one writer rule) in ``batch``-frame calls."""
    import threading
    import zlib

    from ingest._landing import Landing

    own: list[list[Any]] = [[] for _ in range(writers)]
    for p in _packets(prep):
        own[zlib.crc32(p.device_id.encode()) % writers].append(p)
    errors: list[BaseException] = []

    def work(landing: Landing, packets: list[Any]) -> None:
        try:
            for i in range(0, len(packets), batch):
                _check_stored(landing.submit(packets[i : i + batch]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    landings = Landing(store, prep.registry).writers(writers)
    threads = [threading.Thread(target=work, args=(x, part)) for x, part in zip(landings, own, strict=True)]
    before = _snap()
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    seconds = time.perf_counter() - t
    _rec("landing_writers", before)
    if errors:
        raise errors[0]
    return seconds


async def _tcp_session(host: str, port: int, frames: list[bytes]) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"".join(_LEN.pack(len(f)) + f for f in frames))
    await writer.drain()
    acks = 0
    while acks < len(frames):
        head = await reader.readexactly(4)
        await reader.readexactly(_LEN.unpack(head)[0])
        acks += 1
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return acks


async def _tcp_all(host: str, port: int, sessions: list[list[bytes]], connections: int) -> int:
    sem = asyncio.Semaphore(connections)

    async def one(frames: list[bytes]) -> int:
        async with sem:
            return await _tcp_session(host, port, frames)

    return sum(await asyncio.gather(*(one(s) for s in sessions)))


def measure_tcp(prep: Prepared, dsn: str, tmp: Path, *, connections: int, daily: int, writers: int) -> dict[str, float]:
    from tests._servers import free_port

    port = free_port()
    svc = Service(dsn, mqtt_url=None, tcp_port=port, log=tmp / "tcp.log", writers=writers)
    svc.wait_ready("service_ready")
    sessions = [[_ident(prep, u, 10), *prep.frames[u.device_id]] for u in prep.fleet.units]
    before = _snap(svc.proc.pid)
    t = time.perf_counter()
    asyncio.run(_tcp_all("127.0.0.1", port, sessions, connections))
    seconds = time.perf_counter() - t
    _rec("tcp", before, svc.proc.pid)
    # daily sessions: one ident + one day frame per unit, each its own connection
    sample = [u for u in prep.fleet.units if u.device_id in prep.day_frames][:daily]
    day_sessions = [[_ident(prep, u, 800_000), prep.day_frames[u.device_id]] for u in sample]
    t = time.perf_counter()
    asyncio.run(_tcp_all("127.0.0.1", port, day_sessions, connections))
    day_seconds = time.perf_counter() - t
    peak = svc.stop()
    return {"seconds": seconds, "peak_mb": peak, "daily_sessions": len(day_sessions), "daily_seconds": day_seconds}


def measure_mqtt(
    prep: Prepared, dsn: str, store: Any, broker_url: str, port: int, tmp: Path, *, publishers: int, writers: int
) -> dict[str, float]:
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from ingest._stats import read_stats

    svc = Service(dsn, mqtt_url=broker_url, tcp_port=0, log=tmp / "mqtt.log", writers=writers)
    svc.wait_ready("mqtt_subscribed")
    # Each publisher sends whole units, each unit's frames in order, as a unit on its own
    # connection does (MQTT keeps one client's QoS 1 messages in order).  Dealing every
    # other frame of a unit to another publisher made a unit's frames arrive out of
    # order: its earlier hours then landed as late data through the staged upsert.
    chunks = [[(u.device_id, raw) for u in prep.fleet.units[i::publishers] for raw in prep.frames[u.device_id]] for i in range(publishers)]
    messages = [m for chunk in chunks for m in chunk]

    def publish(chunk: list[tuple[str, bytes]], k: int) -> None:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{k}")
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        c.connect("127.0.0.1", port)
        c.loop_start()
        infos = [c.publish(f"askug/up/{d}", raw, qos=1) for d, raw in chunk]
        for i in infos:
            i.wait_for_publish(120)
        c.disconnect()
        c.loop_stop()

    before = _snap(svc.proc.pid)
    t = time.perf_counter()
    threads = [threading.Thread(target=publish, args=(ch, k)) for k, ch in enumerate(chunks)]
    for th in threads:
        th.start()
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline and read_stats(store).received < len(messages):
        time.sleep(0.1)
    seconds = time.perf_counter() - t
    _rec("mqtt", before, svc.proc.pid)
    for th in threads:
        th.join()
    peak = svc.stop()
    return {"seconds": seconds, "peak_mb": peak, "messages": len(messages)}


#: The benchmark's PostgreSQL runs as a server on this machine would be set up for a write
#: load (the test clusters' 128 MB of shared buffers and 1 GB of WAL between checkpoints
#: are sized for a unit-test run): 2 GB of buffers (1/12 of RAM; the usual advice is up to
#: 1/4) and checkpoints spaced by 8 GB of WAL or 30 min.  Every step, the ceiling included,
#: runs on the same server, and ``--pg-setting`` overrides any of these.
PG_SETTINGS: dict[str, str] = {"shared_buffers": "2GB", "max_wal_size": "8GB", "checkpoint_timeout": "30min"}


def _checkpoint(pg: Any) -> None:
    """Flush the cluster before a timed step, so none inherits the previous one's dirty pages."""
    import psycopg

    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as con:
        con.execute("CHECKPOINT")


def one_round(prep: Prepared, pg: Any, admin: Any, broker: Any, tmp: Path, args: Any, stores: list[Any]) -> dict[str, Any]:
    """Every step once, each on a fresh database after a CHECKPOINT; seconds, peaks, rows, CPU."""
    tmp.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}

    def fresh() -> tuple[Any, str]:
        store, dsn, _ = _fresh_store(admin)
        stores.append(store)
        prep.register(store)
        _checkpoint(pg)
        return store, dsn

    store, _ = fresh()
    out["landing"] = measure_landing(prep, store, batch=args.landing_batch)
    out["landing_rows"] = store.count("readings")
    store, _ = fresh()
    out["landing_writers"] = measure_landing_writers(prep, store, batch=args.landing_batch, writers=args.writers)
    out["landing_writers_rows"] = store.count("readings")
    # the ceiling right before the TCP step and again right after it (the machine's speed
    # drifts within minutes; the step is held against the mean of the two)
    out["copy"] = measure_copy(prep, admin, stores, before=lambda: _checkpoint(pg))
    store, dsn = fresh()
    out["tcp"] = measure_tcp(prep, dsn, tmp, connections=args.connections, daily=args.sessions, writers=args.writers)
    out["tcp_rows"] = store.count("readings")
    c = out["copy"]
    c["after"] = _copy_fresh(prep, admin, stores, c.pop("frame"), c["best_format"], lambda: _checkpoint(pg))
    store, dsn = fresh()
    out["mqtt"] = measure_mqtt(prep, dsn, store, broker.url, broker.port, tmp, publishers=args.publishers, writers=args.writers)
    out["mqtt_rows"] = store.count("readings")
    out["cpu"] = dict(_CPU[0].results)
    for s in stores:
        with contextlib.suppress(Exception):
            s.close()
    stores.clear()
    return out


def main() -> None:
    import statistics

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=2000, help="metering points to simulate (default 2000)")
    parser.add_argument("--days", type=int, default=30, help="days of hourly archive per unit (default 30; ≥ 7)")
    parser.add_argument("--connections", type=int, default=256, help="concurrent TCP sessions (default 256)")
    parser.add_argument("--publishers", type=int, default=2, help="MQTT publisher clients (default 2)")
    parser.add_argument("--sessions", type=int, default=1000, help="daily sessions in the drain sample (default 1000)")
    parser.add_argument("--landing-batch", type=int, default=250, help="frames per Landing.submit call in the landing-alone step (default 250)")
    parser.add_argument("--writers", type=int, default=2, help="landing writer threads of the services and the N-writer landing step (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every step, interleaved; the figures are medians (default 3)")
    parser.add_argument("--pg-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a PostgreSQL server setting over the bench's defaults (repeatable), e.g. shared_buffers=128MB")  # fmt: skip
    parser.add_argument("--max-steal", type=float, default=5.0, metavar="PCT",
                        help="before each round wait until the hypervisor steals at most PCT %% of the cores (default 5)")  # fmt: skip
    parser.add_argument("--quiet-wait", type=float, default=600.0, metavar="S",
                        help="wait at most S seconds for that before a round, then run it anyway (default 600)")  # fmt: skip
    parser.add_argument("--rounds", action="store_true", help="run the services with debug logs and print their landing rounds (batch sizes)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 meters × 7 days, 100 daily sessions, 1 round")
    args = parser.parse_args()
    if args.rounds:
        _ROUNDS.append(True)
    if args.quick:
        args.meters, args.days, args.sessions, args.connections, args.repeat = 100, 7, 100, 16, 1
        args.quiet_wait = 0.0
    settings = dict(PG_SETTINGS)
    for item in args.pg_setting:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            parser.error(f"--pg-setting wants NAME=VALUE, got {item!r}")
        settings[name.strip()] = value.strip()

    from ingest import SimulationConfig, simulate
    from tests._servers import MosquittoServer, PostgresServer
    from tests.conftest import PgDatabases

    tmp = Path(tempfile.mkdtemp(prefix="askug-bench-ingest-"))
    pg = PostgresServer(settings=settings).start()
    broker = MosquittoServer().start()
    stores: list[Any] = []
    _CPU.append(CpuMeter(pg, broker))
    try:
        admin = PgDatabases(pg.dsn("postgres"))
        t = time.perf_counter()
        simulate(SimulationConfig(seed=5, meters=args.meters, days=max(7, args.days), faults=False), tmp / "sim")
        prep = Prepared(tmp / "sim", units=None)
        n_frames = sum(len(f) for f in prep.frames.values())
        readings = len(prep.rows)
        print(f"prepared {len(prep.fleet.units):,} units, {n_frames:,} frames, {readings:,} readings "
              f"(+{prep.archive_rows:,} corrector archive records) in {time.perf_counter() - t:.1f} s")  # fmt: skip
        print(f"PostgreSQL: {', '.join(f'{k}={v}' for k, v in settings.items())} (plus the test cluster's: fsync, "
              f"synchronous_commit and full_page_writes off); {args.writers} landing writers (processes of their own in the services), {args.connections} TCP sessions,"
              f" {args.repeat} interleaved round{'s' if args.repeat > 1 else ''}, medians below")  # fmt: skip

        rounds: list[dict[str, Any]] = []
        w = args.writers
        for k in range(args.repeat):
            quiet, waited = wait_for_quiet(args.max_steal / 100, args.quiet_wait)
            if waited > 10:
                print(f"  (waited {waited:.0f} s for a quieter machine before round {k + 1}: {quiet:.0%} stolen)", flush=True)
            r = one_round(prep, pg, admin, broker, tmp / f"round{k + 1}", args, stores)
            rounds.append(r)
            c = r["copy"]
            print(f"  round {k + 1}: ceiling {c['rows'] / c['best']:,.0f}/s before TCP ({c['best_format']}), {c['rows'] / c['after']:,.0f}/s"
                  f" after · TCP {readings / r['tcp']['seconds']:,.0f}/s = {readings / r['tcp']['seconds'] / _bracket(r):.2f}× their mean"
                  f" · MQTT {readings / r['mqtt']['seconds']:,.0f}/s · stolen: COPY {_stolen(r, 'copy_binary'):.0%},"
                  f" TCP {_stolen(r, 'tcp'):.0%}, MQTT {_stolen(r, 'mqtt'):.0%}", flush=True)  # fmt: skip
        rows = rounds[0]["copy"]["rows"]

        def med(fn: Callable[[dict[str, Any]], float]) -> float:
            return statistics.median(fn(r) for r in rounds)

        copy_rate = med(lambda r: rows / r["copy"]["best"])
        tcp_rate = med(lambda r: readings / r["tcp"]["seconds"])
        mqtt_rate = med(lambda r: readings / r["mqtt"]["seconds"])
        tcp_ratio = med(lambda r: (readings / r["tcp"]["seconds"]) / _bracket(r))
        par_rate = med(lambda r: rows / r["copy"]["parallel"])
        formats = [r["copy"]["best_format"] for r in rounds]
        print()
        print(f"{'path (medians of ' + str(len(rounds)) + ')':<42}{'readings':>12}{'seconds':>10}{'readings/s':>14}{'vs COPY':>10}{'peak RSS MB':>13}")

        def line(name: str, n: int, sec: float, mb: float | None = None) -> None:
            rate = n / sec
            peak = f"{mb:>13.0f}" if mb is not None else f"{'':>13}"
            print(f"{name:<42}{n:>12,}{sec:>10.2f}{rate:>14,.0f}{rate / copy_rate:>10.2f}{peak}")

        for fmt in ("csv", "binary"):
            line(f"raw COPY, {fmt}, 1 connection", rows, statistics.median(r["copy"][fmt] for r in rounds))
        line("raw COPY ceiling (faster of the two)", rows, med(lambda r: r["copy"]["best"]))
        line("  the same, again right after TCP", rows, med(lambda r: r["copy"]["after"]))
        line("Landing.submit alone", readings, med(lambda r: r["landing"]))
        line(f"Landing.submit, {w} writer{'s' if w > 1 else ''}", readings, med(lambda r: r["landing_writers"]))
        line(f"TCP ingest service, {w} writer{'s' if w > 1 else ''}", readings, med(lambda r: r["tcp"]["seconds"]), med(lambda r: r["tcp"]["peak_mb"]))
        line(f"MQTT ingest service, {w} writer{'s' if w > 1 else ''}", readings, med(lambda r: r["mqtt"]["seconds"]), med(lambda r: r["mqtt"]["peak_mb"]))
        line(f"(info) raw COPY, {formats[-1]}, 2 connections", rows, med(lambda r: r["copy"]["parallel"]))
        stored = {k: sorted({r[k] for r in rounds}) for k in ("landing_rows", "landing_writers_rows", "tcp_rows", "mqtt_rows")}
        print(f"  stored readings: landing {stored['landing_rows']}, {w}-writer landing {stored['landing_writers_rows']},"
              f" TCP {stored['tcp_rows']}, MQTT {stored['mqtt_rows']}")  # fmt: skip
        print(f"  ceiling = the faster single-connection COPY of each round ({', '.join(formats)}); COPY over 2 parallel"
              f" connections reached {par_rate:,.0f}/s = {par_rate / copy_rate:.2f}× that ceiling"
              f" (TCP is {tcp_rate / par_rate:.2f}× and MQTT {mqtt_rate / par_rate:.2f}× of it)")  # fmt: skip
        print()
        print("CPU seconds per million readings while each step ran, medians (cores busy = all CPU / wall; the machine has"
              f" {os.cpu_count()}; stolen = the share of the cores' time the hypervisor gave to other guests):")  # fmt: skip
        print(f"  {'step':<34}{'PostgreSQL':>11}{'service':>9}{'broker':>8}{'bench':>8}{'all':>8}{'cores busy':>12}{'stolen':>8}")
        labels = {"copy_csv": "raw COPY, csv", "copy_binary": "raw COPY, binary", "landing": "Landing.submit alone",
                  "landing_writers": f"Landing.submit, {w} writers", "tcp": "TCP service (+ clients)",
                  "mqtt": "MQTT service (+ broker, publishers)"}  # fmt: skip
        parts_of = ("postgres", "service", "broker", "bench")
        for key, label in labels.items():
            got = [r["cpu"][key] for r in rounds if key in r["cpu"]]
            if not got:
                continue
            n = rows if key.startswith("copy") else readings
            per = [statistics.median(1e6 * g[p] / n for g in got) for p in parts_of]
            busy = statistics.median(sum(g[p] for p in parts_of) / g["wall"] for g in got)
            stolen = statistics.median(_steal_share(g) for g in got)
            print(f"  {label:<34}" + "".join(f"{v:>{wd}.2f}" for v, wd in zip(per, (11, 9, 8, 8), strict=True))
                  + f"{sum(per):>8.2f}{busy:>12.2f}{stolen:>8.0%}")  # fmt: skip
        print()
        sessions_per_s = med(lambda r: r["tcp"]["daily_sessions"] / r["tcp"]["daily_seconds"])
        print(f"daily sessions over TCP: {rounds[0]['tcp']['daily_sessions']:,} per round, {sessions_per_s:,.0f} sessions/s;"
              f" 100,000 units' daily sessions drain in ≈ {100_000 / sessions_per_s / 60:.1f} min (projected from this sample)")  # fmt: skip
        if args.rounds:
            for k in range(len(rounds)):
                print(f"round {k + 1} TCP landing rounds: {_round_sizes(tmp / f'round{k + 1}' / 'tcp.log')}")
                print(f"round {k + 1} MQTT landing rounds: {_round_sizes(tmp / f'round{k + 1}' / 'mqtt.log')}")
        ratios = ", ".join(f"{(readings / r['tcp']['seconds']) / _bracket(r):.2f}" for r in rounds)
        before_only = statistics.median((readings / r["tcp"]["seconds"]) / (rows / r["copy"]["best"]) for r in rounds)
        print(f"goals: TCP ≥ 0.5 × COPY: {'met' if tcp_ratio >= 0.5 else 'NOT met'} (median of the rounds' ratios to the mean"
              f" of the COPYs before and after the step {tcp_ratio:.2f}: {ratios}; to the COPY before it alone {before_only:.2f});"
              f" MQTT ≥ 100,000 readings/s: {'met' if mqtt_rate >= 100_000 else 'NOT met'} (median {mqtt_rate:,.0f})")  # fmt: skip
        print(f"bench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; logs in {tmp}")
        short = {k: v for k, v in stored.items() if v != [readings]}
        if short:
            print(f"WARNING: stored readings differ from the {readings:,} sent: {short}")
    finally:
        for s in stores:
            with contextlib.suppress(Exception):
                s.close()
        broker.stop()
        pg.stop()


if __name__ == "__main__":
    main()
