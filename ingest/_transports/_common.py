"""What the three transports share: the landing worker, server frames, rate limits, logs.

The **landing worker** owns the threads that talk to the database: ``writers`` threads
(default 1 here; the service uses 2 on PostgreSQL), each with its own ``Landing`` and so
its own connection and its own queue.  Every transport hands it packets (``submit``)
and gets back a future of their outcomes; each packet goes to the writer its unit
hashes to (a batch of many units is split per writer), and a writer drains its queue
into one ``Landing.submit`` call per round, so many MQTT messages, TCP connections and
UDP datagrams share one large, sorted COPY batch and one commit.  While one writer
commits round *k* its next round piles up (natural batching: large batches under load,
low latency when quiet) and the other writer lands its own: one writer's Python work
(decoding, checks, building the COPY payloads) overlaps the other's time in
PostgreSQL, and as no unit is on both writers they never wait for each other's unit
row locks.  Other database calls the transports need (pending downlink commands; TCP
ident checks on DuckDB) run on a writer thread through ``call`` / ``call_landing``,
between that writer's rounds.

**Server frames** (server → unit) are built by ``ingest._decode.encode_server`` (the
binary envelope with profile code 0 and a CRC-32; a unit decodes them with
``ingest._decode.decode_server``): type 0x80 acknowledges one committed uplink frame
(body = its counter, u32 BE) and type 0x81 carries a downlink command (body = command id
u32 BE + command JSON, UTF-8).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
import json
import logging
import queue
import struct
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Final, Literal, Protocol, TypeVar

from ingest._wire import (
    ACK_FRAME_TYPE,
    DOWNLINK_FRAME_TYPE,
    Packet,
)

__all__ = [
    "LandingLike",
    "LandingWorker",
    "RateLimiter",
    "TransportStats",
    "ack_frame",
    "command_frame",
    "configure_logging",
    "log_event",
    "pending_for",
    "serial_of",
]

T = TypeVar("T")
_U32: Final = struct.Struct(">I")

log = logging.getLogger("askug.ingest.transports")


# --- the landing interface the transports need ------------------------------------------
class OutcomeLike(Protocol):
    """What a transport reads from ``Landing.submit``'s outcomes."""

    @property
    def status(self) -> str: ...
    @property
    def device_id(self) -> str | None: ...
    @property
    def counter(self) -> int | None: ...
    @property
    def readings(self) -> int: ...


class LandingLike(Protocol):
    """The part of :class:`ingest.Landing` the transports call (from its writer's thread)."""

    def submit(self, packets: Sequence[Packet]) -> Sequence[Any]: ...
    def pending_commands(self, device_id: str) -> Sequence[Any]: ...
    def mark_delivered(self, command_id: int, at: dt.datetime) -> None: ...


def pending_for(landing: LandingLike, devices: Sequence[str] | set[str] | dict[str, Any]) -> dict[str, list[Any]]:
    """Pending downlink commands of several units with one store read (when landing has a store).

    Runs on the landing worker.  Falls back to ``pending_commands`` per unit.
    """
    wanted = set(devices)
    store = getattr(landing, "store", None)
    if store is not None:
        from ingest._downlink import pending_commands

        out: dict[str, list[Any]] = {}
        for cmd in pending_commands(store, sorted(wanted)):
            out.setdefault(cmd.device_id, []).append(cmd)
        return out
    return {d: list(cmds) for d in sorted(wanted) if (cmds := landing.pending_commands(d))}


# --- structured logs --------------------------------------------------------------------
def log_event(logger: logging.Logger, event: str, *, level: int = logging.INFO, **fields: object) -> None:
    """Log one structured event: ``event`` plus ``key=value`` fields.

    The formatter installed by :func:`configure_logging` prints them as one JSON object
    or as ``key=value`` pairs per line; any other formatter sees a readable message.
    """
    if not logger.isEnabledFor(level):
        return
    text = " ".join(f"{k}={_kv(v)}" for k, v in fields.items())
    logger.log(level, "%s %s", event, text, extra={"askug_event": event, "askug_fields": fields})


def _kv(value: object) -> str:
    s = str(value)
    return json.dumps(s) if (not s or any(c in s for c in ' "=\n')) else s


class _StructuredFormatter(logging.Formatter):
    def __init__(self, style: Literal["json", "kv"]) -> None:
        super().__init__()
        self.kind = style

    def format(self, record: logging.LogRecord) -> str:
        ts = dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")
        event = getattr(record, "askug_event", None)
        fields: Mapping[str, object] = getattr(record, "askug_fields", {}) or {}
        head: dict[str, object] = {"ts": ts, "level": record.levelname.lower(), "logger": record.name}
        if event is None:
            head["event"] = "log"
            head["msg"] = record.getMessage()
        else:
            head["event"] = event
        body = {**head, **fields}
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info).splitlines()[-1]
        if self.kind == "json":
            return json.dumps(body, default=str, ensure_ascii=False)
        return " ".join(f"{k}={_kv(v)}" for k, v in body.items())


def configure_logging(*, style: Literal["json", "kv"] = "kv", level: int = logging.INFO) -> None:
    """Send ``askug`` logs to stderr as JSON lines or ``key=value`` lines (entry points only)."""
    handler = logging.StreamHandler()
    handler.setFormatter(_StructuredFormatter(style))
    root = logging.getLogger("askug")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


# --- counters ------------------------------------------------------------------------------
@dataclasses.dataclass
class TransportStats:
    """Counters of one service process (the durable counts are ``Landing.stats()``)."""

    packets: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    readings: int = 0
    acked: int = 0
    rate_limited: int = 0
    rejected: int = 0
    commands_sent: int = 0
    submit_failures: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)

    def add_outcomes(self, outcomes: Sequence[Any]) -> None:
        with self.lock:
            self.packets += len(outcomes)
            for o in outcomes:
                if o.status == "stored":
                    self.stored += 1
                    self.readings += int(o.readings)
                elif o.status == "duplicate":
                    self.duplicates += 1
                else:
                    self.quarantined += 1

    def bump(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "lock"}


# --- the landing worker --------------------------------------------------------------------
@dataclasses.dataclass
class _SubmitJob:
    packets: Sequence[Packet]
    future: Future[list[Any]]


@dataclasses.dataclass
class _CallJob:
    fn: Callable[[Any], Any]  # called with the running writer's landing
    future: Future[Any]


class WorkerStopped(RuntimeError):
    """The landing worker was stopped before it could run a job."""


class LandingWorker:
    """Writer threads that own the landings (and their connections) and batch submits.

    Parameters
    ----------
    landing
        The :class:`ingest.Landing` (or anything with its ``submit``), or one per writer
        thread (see :meth:`ingest.Landing.writers`): each writer calls only its own.
        Landings of concurrent writers must be safe to run side by side (PostgreSQL:
        landing locks each unit's registry row, so batches of one unit serialise) and
        share their rate-limit state.
    max_batch
        Most packets per ``submit`` call (a round takes whole jobs until it reaches this).
    max_batch_bytes
        Most packet bytes per ``submit`` call (same rule): 2 MB of binary archive frames
        is ~130,000 readings, where landing's per-batch costs are long amortised and the
        batch's columns stay small (peak memory, time to the acknowledgement).
    linger_s
        After the first job of a round, wait this long for more before committing; a
        few milliseconds turn a trickle of single packets into batches.
    max_linger_s
        With several writers: the longest a round gathers while another writer is
        committing (see Notes).  The default equals ``linger_s``: staggering is off.
    retries
        ``submit`` attempts per round before the round's futures fail (the database is
        unreachable); the transports then do not acknowledge and the units resend.

    Notes
    -----
    Each job's future gets one outcome per packet, in the job's order.  Jobs are not
    ordered *between* writers: two jobs queued one after the other may commit in the
    other order.  A transport that needs an order waits for the first job's future
    (a TCP session does, MQTT acknowledges its batches in FIFO order).

    **One unit, one writer.**  Each writer has its own queue, and a job goes to the
    writer its unit hashes to (``crc32(device_id) % writers``; jobs without a unit go
    round-robin).  Landing locks a unit's registry row for the whole batch, so two
    writers holding rounds of the same units (the next frames of the same TCP sessions,
    the same MQTT units) would wait for each other's commit and run one after the other;
    with every unit on one writer they never wait for each other, and one unit's jobs
    commit in the order they were queued.

    **Staggered rounds** (``max_linger_s`` above ``linger_s``).  When no other writer is
    committing, a writer commits after ``linger_s``, as a single writer does.  When
    others are committing it keeps gathering until ``1/writers`` of a typical round's
    time (a moving average) after the latest of them started, at most ``max_linger_s``,
    or until the round is full: the writers' rounds then follow each other at even
    intervals, instead of a free writer taking every job as it comes and paying a
    round's fixed cost for a few packets.  Off by default since landing remembers its
    partitions and staging tables (a round's fixed cost fell): under TCP load on 2 cores
    the gathering writer left a core idle, and the TCP service sustained 82–92k readings/s
    with it against 90–119k without it (3 paired runs of ``bench/ingest_throughput.py``'s
    TCP step).
    """

    def __init__(
        self,
        landing: LandingLike | Sequence[LandingLike],
        *,
        max_batch: int = 20_000,
        max_batch_bytes: int = 2_000_000,
        linger_s: float = 0.005,
        max_linger_s: float | None = None,
        retries: int = 4,
        stats: TransportStats | None = None,
    ) -> None:
        landings = list(landing) if isinstance(landing, Sequence) else [landing]
        if not landings:
            raise ValueError("LandingWorker needs at least one landing (one per writer thread)")
        self.landings: list[LandingLike] = landings
        self.landing = landings[0]
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.linger_s = linger_s
        self.max_linger_s = linger_s if max_linger_s is None else max(linger_s, max_linger_s)
        self.retries = retries
        self.stats = stats or TransportStats()
        self._queues: list[queue.SimpleQueue[_SubmitJob | _CallJob | None]] = [queue.SimpleQueue() for _ in landings]
        self._next_writer = itertools.count()  # round-robin for jobs without a unit, and calls
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._rounds_lock = threading.Lock()  # guards rounds, _busy, _round_s
        self._busy: dict[int, float] = {}  # writer -> monotonic start of its round in progress
        self._round_s = 0.05  # moving average of a round's seconds
        self.rounds = 0

    @property
    def writers(self) -> int:
        """Number of writer threads (= landings)."""
        return len(self.landings)

    # -- public ---------------------------------------------------------------------------
    def start(self) -> LandingWorker:
        if not self._threads:
            self._stopping.clear()
            for i, landing in enumerate(self.landings):
                name = "askug-landing" if len(self.landings) == 1 else f"askug-landing-{i}"
                t = threading.Thread(target=self._run, args=(i, landing), name=name, daemon=True)
                self._threads.append(t)
                t.start()
        return self

    def submit(self, packets: Sequence[Packet]) -> Future[list[Any]]:
        """Queue ``packets`` for landing; the future gives one outcome per packet, in order."""
        fut: Future[list[Any]] = Future()
        if not packets:
            fut.set_result([])
            return fut
        if self._stopping.is_set() and not self._threads:
            fut.set_exception(WorkerStopped("the landing worker is stopped"))
            return fut
        n = len(self._queues)
        if n == 1:
            self._queues[0].put(_SubmitJob(list(packets), fut))
            return fut
        spare = next(self._next_writer) % n  # for the packets without a unit
        owners = [self._writer_of(p, n, spare) for p in packets]
        if len(set(owners)) == 1:
            self._queues[owners[0]].put(_SubmitJob(list(packets), fut))
            return fut
        # A job of several units (an MQTT or UDP batch): one part per writer, and the
        # job's future once every part is committed, its outcomes in the job's order.
        positions: dict[int, list[int]] = {}
        for i, w in enumerate(owners):
            positions.setdefault(w, []).append(i)
        outcomes: list[Any] = [None] * len(packets)
        left = [len(positions)]
        lock = threading.Lock()

        def done(part: Future[list[Any]], where: list[int]) -> None:
            with lock:
                if fut.done():
                    return
                error = part.exception()
                if error is not None:
                    fut.set_exception(error)
                    return
                for i, outcome in zip(where, part.result(), strict=True):
                    outcomes[i] = outcome
                left[0] -= 1
                if left[0] == 0:
                    fut.set_result(outcomes)

        for w, where in positions.items():
            part: Future[list[Any]] = Future()
            part.add_done_callback(functools.partial(done, where=where))
            self._queues[w].put(_SubmitJob([packets[i] for i in where], part))
        return fut

    @staticmethod
    def _writer_of(packet: Packet, n: int, spare: int) -> int:
        """The writer of a packet: its unit's (see Notes), else ``spare``."""
        key = packet.device_id
        if key is None:
            serial = serial_of(bytes(packet.raw[:16]))
            key = None if serial is None else str(serial)
        return spare if key is None else zlib.crc32(key.encode()) % n

    def call(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on a writer thread (between that writer's rounds)."""
        return self.call_landing(lambda _landing: fn())

    def call_landing(self, fn: Callable[[LandingLike], T]) -> Future[T]:
        """Run ``fn(landing)`` on a writer thread with that writer's own landing.

        Use it for database calls through the landing (pending downlink commands,
        deliveries), so each thread only uses its own landing.
        """
        fut: Future[T] = Future()
        self._queues[next(self._next_writer) % len(self._queues)].put(_CallJob(fn, fut))
        return fut

    def stop(self, *, timeout: float = 30.0) -> None:
        """Run every queued job (flush) on the writers, then end their threads."""
        self._stopping.set()
        for q in self._queues[: len(self._threads)]:
            q.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        # Whatever is still queued (only when a join timed out) fails: not committed.
        left: list[_SubmitJob | _CallJob | None] = []
        for q in self._queues:
            while True:
                try:
                    left.append(q.get_nowait())
                except queue.Empty:
                    break
        for job in left:
            if job is not None and not job.future.done():
                job.future.set_exception(WorkerStopped("the landing worker stopped before this job"))

    # -- writer threads -------------------------------------------------------------------
    def _run(self, index: int, landing: LandingLike) -> None:
        own = self._queues[index]
        while True:
            try:
                job = own.get(timeout=0.2)
            except queue.Empty:
                job = None
            if job is None:
                # a stop marker or a quiet moment: end once stopping and nothing is left
                if self._stopping.is_set() and own.empty():
                    return
                continue
            if isinstance(job, _CallJob):
                self._run_call(job, landing)
                continue
            jobs = self._gather(job, index, landing)
            started = time.monotonic()
            with self._rounds_lock:
                self._busy[index] = started
            try:
                self._run_round(jobs, landing)
            finally:
                with self._rounds_lock:
                    del self._busy[index]
                    ended = time.monotonic()
                    self._round_s = 0.7 * self._round_s + 0.3 * (ended - started)

    def _gather_until(self, index: int, first: float) -> float:
        """When the round that began gathering at ``first`` should commit (see Notes)."""
        until = first + self.linger_s
        if self._stopping.is_set():
            return until
        with self._rounds_lock:
            others = [t for i, t in self._busy.items() if i != index]
            typical = self._round_s
        if not others:
            return until
        staggered = max(others) + typical / len(self.landings)
        return max(until, min(staggered, first + self.max_linger_s))

    def _gather(self, job: _SubmitJob, index: int, landing: LandingLike) -> list[_SubmitJob]:
        """The jobs of one round: ``job`` and what follows in this writer's queue until
        the round should commit (see Notes)."""
        own = self._queues[index]
        jobs = [job]
        size = len(job.packets)
        nbytes = sum(len(p.raw) for p in job.packets)
        first = time.monotonic()
        while size < self.max_batch and nbytes < self.max_batch_bytes:
            # re-evaluated every few ms: the writers committing may finish meanwhile
            remaining = self._gather_until(index, first) - time.monotonic()
            try:
                nxt = own.get_nowait() if remaining <= 0 else own.get(timeout=min(remaining, 0.01))
            except queue.Empty:
                if remaining <= 0:
                    break
                continue
            if nxt is None:
                continue  # a stop marker: keep gathering what is queued
            if isinstance(nxt, _CallJob):
                # short calls (credential checks, downlink look-ups) run at once so
                # the sessions waiting on them can join this round
                self._run_call(nxt, landing)
                continue
            jobs.append(nxt)
            size += len(nxt.packets)
            nbytes += sum(len(p.raw) for p in nxt.packets)
        return jobs

    @staticmethod
    def _run_call(job: _CallJob, landing: LandingLike) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            job.future.set_result(job.fn(landing))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            job.future.set_exception(exc)

    def _run_round(self, jobs: list[_SubmitJob], landing: LandingLike) -> None:
        packets = [p for j in jobs for p in j.packets]
        delay = 0.25
        outcomes: list[Any] | None = None
        error: BaseException | None = None
        started = time.perf_counter()
        for attempt in range(1, self.retries + 1):
            try:
                outcomes = list(landing.submit(packets))
                break
            except Exception as exc:  # noqa: BLE001 - the database is down: retry, then fail the round
                error = exc
                self.stats.bump("submit_failures")
                log_event(
                    log,
                    "submit_failed",
                    level=logging.WARNING,
                    attempt=attempt,
                    packets=len(packets),
                    error=" ".join(str(exc).split())[:300],
                )
                if attempt < self.retries:
                    time.sleep(delay)
                    delay = min(delay * 2, 4.0)
        if outcomes is None or len(outcomes) != len(packets):
            if outcomes is not None:
                error = RuntimeError(f"landing returned {len(outcomes)} outcomes for {len(packets)} packets")
            for j in jobs:
                j.future.set_exception(error or RuntimeError("submit failed"))
            return
        with self._rounds_lock:
            self.rounds += 1
        self.stats.add_outcomes(outcomes)
        log_event(
            log,
            "committed",
            level=logging.DEBUG,
            packets=len(packets),
            jobs=len(jobs),
            seconds=round(time.perf_counter() - started, 4),
            writer=threading.current_thread().name,
        )
        i = 0
        for j in jobs:
            n = len(j.packets)
            j.future.set_result(outcomes[i : i + n])
            i += n


# --- rate limit ------------------------------------------------------------------------------
class RateLimiter:
    """Token bucket per device: at most ``per_minute`` frames a minute, bursts up to that many.

    Not thread-safe: each service uses it from its own event loop / thread.
    """

    def __init__(self, per_minute: float, *, max_devices: int = 200_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(per_minute)
        self.max_devices = max_devices
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, n: int = 1, *, now: float | None = None) -> bool:
        """Take ``n`` tokens for ``key``; False (and nothing taken) when there are not enough."""
        if self.rate <= 0:
            return True
        t = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (self.burst, t))
        tokens = min(self.burst, tokens + (t - last) * self.rate)
        if tokens < n:
            self._buckets[key] = (tokens, t)
            return False
        if len(self._buckets) >= self.max_devices and key not in self._buckets:
            # forget full buckets (idle devices) so memory stays bounded
            self._buckets = {k: v for k, v in self._buckets.items() if v[0] < self.burst}
        self._buckets[key] = (tokens - n, t)
        return True


# --- server frames ---------------------------------------------------------------------------
def serial_of(raw: bytes) -> int | None:
    """The device serial (u32 at offset 3) of a binary frame, or None when there is none."""
    if len(raw) >= 7 and raw[0] == 1:
        return int(_U32.unpack_from(raw, 3)[0])
    return None


def ack_frame(serial: int, acked_counter: int, *, now: dt.datetime | None = None) -> bytes:
    """Server frame 0x80 acknowledging uplink frame ``acked_counter`` of unit ``serial``."""
    from ingest._decode import encode_server

    c = acked_counter & 0xFFFFFFFF
    return encode_server(ACK_FRAME_TYPE, serial & 0xFFFFFFFF, c, _U32.pack(c), now)


def command_frame(serial: int, command_id: int, command: Mapping[str, Any], *, now: dt.datetime | None = None) -> bytes:
    """Server frame 0x81 carrying downlink command ``command_id`` (body: id u32 + JSON)."""
    from ingest._decode import encode_server

    cid = command_id & 0xFFFFFFFF
    body = _U32.pack(cid) + json.dumps(dict(command), separators=(",", ":"), default=str).encode()
    return encode_server(DOWNLINK_FRAME_TYPE, serial & 0xFFFFFFFF, cid, body, now)
