"""Landing: decode, check and store a batch of packets in one transaction.

:meth:`Landing.submit` is what every transport calls.  For each packet, in order, the
first rule that applies decides its outcome (see ``ingest/README.md`` § Landing):

1. **duplicate** — the same bytes (SHA-256) already landed, now or earlier in the batch,
   whether they were stored or quarantined: nothing is written again.
2. **oversized** — longer than ``EdgePolicy.max_frame_bytes``.
3. the decoder's :class:`FrameError` reason (bad_crc, truncated, unknown_profile, schema…).
4. **unknown_device** — not in ``device_credentials``, or the transport's identity (MQTT
   topic, TCP ident) differs from the frame's device id; **unknown_profile** — the frame's
   profile is not the one the unit is registered with.
5. **replayed** — another frame with this unit and counter is stored, or the counter is
   older than the replay window (``counter_window`` below the highest stored counter).
   Frames arriving out of order inside the window are accepted.
6. **clock_skew** — |device time − receive time| > ``clock_flag_s`` (4 h), a record
   later than both clocks (+``clock_ok_s``), or older than the late-data window.
   Between ``clock_ok_s`` (60 s) and ``clock_flag_s`` the frame is stored with quality
   ``suspect`` on all its values.
7. **schema / out_of_range** — unknown channel, archive column or severity; a value that
   is not finite or outside ``EdgePolicy.ranges`` (registers also below the unit's
   counter modulus).
8. **oversized** (rate) — more than ``max_frames_per_minute`` frames of one unit in a
   minute of receive time (the closed set of reasons has no separate one).
9. otherwise **stored**: readings (device time ``ts`` + ``received_at``), hourly
   consumption derived from the registers (rollover, replacement, gaps healed by late
   data), the corrector's own hourly/daily archives, events, command acknowledgements.

All of it — raw packets, quarantine rows, data, counter state and the packet counters —
is written in ONE transaction; when :meth:`Landing.submit` returns, every outcome it
reports is committed, and when it raises nothing is.

Speed: a batch is handled column-wise.  Frames of the shipped binary profiles are
decoded straight into numpy columns (:func:`ingest._decode.decode_many`, CRC-16 checked
for the whole batch at once), the value checks of rule 7 run vectorised over the whole
batch (a frame they flag gets the exact per-value check for its message), and the rows
to store are built from the columns, never from per-reading Python tuples.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import math
import os
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

import numpy as np
import polars as pl

from ingest import _decode
from ingest._counters import readings_to_hourly
from ingest._device_profiles import ProfileRegistry
from ingest._downlink import Command, pending_commands
from ingest._downlink import mark_delivered as _mark_delivered
from ingest._security import Security
from ingest._stats import IngestStats, read_stats
from ingest._wire import Frame, FrameError, Packet, Reason
from ingest.errors import IngestError
from warehouse import Store
from warehouse import _landing as wl
from warehouse._schemas import CHANNELS, REGISTER_CHANNELS, SEVERITIES

Status = Literal["stored", "duplicate", "quarantined"]

#: Plausible value ranges per channel / archive column (inclusive, in the unit of the name).
DEFAULT_RANGES: Final[Mapping[str, tuple[float, float]]] = {
    "volume_register_m3": (0.0, 1e12),
    "volume_work_register_m3": (0.0, 1e12),
    "pressure_kpa": (0.0, 20_000.0),
    "temperature_c": (-60.0, 100.0),
    "battery_voltage_v": (0.0, 30.0),
    "flow_m3h": (0.0, 1e6),
    "tamper_magnet": (0.0, 1.0),
    "valve_open": (0.0, 1.0),
    "inlet_pressure_kpa": (0.0, 20_000.0),
    "outlet_pressure_kpa": (0.0, 20_000.0),
    "gas_temperature_c": (-60.0, 100.0),
    "room_temperature_c": (-60.0, 100.0),
    "ch4_pct_lel": (0.0, 100.0),
    "door_open": (0.0, 1.0),
    "mains_voltage_v": (0.0, 400.0),
    # interval archive columns
    "volume_m3": (0.0, 1e7),
    "volume_work_m3": (0.0, 1e7),
}
ARCHIVE_COLUMNS: Final = ("volume_m3", "volume_work_m3", "pressure_kpa", "temperature_c")
#: Channels readings_to_hourly turns into hourly values (registers + corrector means).
HOURLY_CHANNELS: Final = (*REGISTER_CHANNELS, "pressure_kpa", "temperature_c")


class Decoder(Protocol):
    """What landing needs of :class:`ingest.ProfileRegistry`."""

    def decode(self, raw: bytes, *, profile: str | None = None) -> Frame: ...


@dataclass(frozen=True)
class EdgePolicy:
    """Limits landing applies to every packet (see the module docstring for the order).

    Attributes
    ----------
    max_frame_bytes
        Longer packets are quarantined ``oversized``.
    clock_ok_s
        |device time − receive time| up to this is on time (seconds).
    clock_flag_s
        Up to this the frame is stored with quality ``suspect``; beyond, ``clock_skew``.
    late_window
        Records older than this before their receive time are ``clock_skew``.
    max_frames_per_minute
        Frames of one unit per minute of receive time; more are quarantined ``oversized``.
    counter_window
        Replay window: a new frame may carry a counter at most this far below the
        highest stored one (out-of-order delivery); older ones are ``replayed``.
    ranges
        Inclusive plausible range per channel / archive column.
    register_lookback
        How far back (and ahead) landing looks for the stored register reading that
        closes the hours at the edges of a batch.
    """

    max_frame_bytes: int = 4096
    clock_ok_s: float = 60.0
    clock_flag_s: float = 4 * 3600.0
    late_window: dt.timedelta = dt.timedelta(days=45)
    max_frames_per_minute: int = 600
    counter_window: int = 1024
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_RANGES))
    register_lookback: dt.timedelta = dt.timedelta(days=7)


@dataclass(frozen=True)
class Outcome:
    """What became of one packet.

    ``readings`` counts the values a stored frame delivered (readings + archive
    records); rows whose key was already stored are skipped by the database, so a
    re-sent hour in a *new* frame is stored once.
    """

    status: Status
    device_id: str | None
    counter: int | None
    reason: Reason | None
    readings: int
    detail: str = ""


@dataclass
class _Work:
    """Per-packet state while a batch is classified."""

    packet: Packet
    sha: str
    frame: Frame | None = None
    error: FrameError | None = None
    status: Status | None = None
    reason: Reason | None = None
    detail: str = ""
    suspect: bool = False
    prior_reason: str | None = None  # reprocess: the reason it was quarantined with
    prior_received: dt.datetime | None = None
    cols: _Cols | None = None  # the frame's readings/archives as columns
    columns: _decode.RecordColumns | None = None  # as decoded (frame has no readings then)

    @property
    def values(self) -> int:
        """Readings + archive records the frame delivers."""
        if self.cols is not None:
            return len(self.cols.r_ts) + len(self.cols.a_ts)
        return _values(self.frame) if self.frame is not None else 0

    def full_frame(self) -> Frame:
        """The frame with its readings and archives as tuples (for the exact checks)."""
        f = self.frame
        assert f is not None
        if self.columns is None:
            return f
        return Frame(
            f.profile, f.device_id, f.counter, f.device_time, f.kind,
            readings=self.columns.reading_tuples(), archives=self.columns.archive_tuples(),
            events=f.events, command_acks=f.command_acks, secret=f.secret,
        )  # fmt: skip


@dataclass
class _Cols:
    """One frame's readings and archive records as numpy columns.

    Readings: channel code (see :attr:`Landing._codes`), time (µs since 1970 UTC),
    value and whether it has one (a reading may be null).  Archive records: kind
    (0 hourly, 1 daily, 2 unknown), time, the :data:`ARCHIVE_COLUMNS` values and their
    presence, and whether the record names an unknown column.  ``lo``/``hi`` are the
    earliest/latest record time of the frame (readings, archives, events).
    """

    r_chan: np.ndarray[Any, Any]
    r_ts: np.ndarray[Any, Any]
    r_val: np.ndarray[Any, Any]
    r_ok: np.ndarray[Any, Any]
    a_kind: np.ndarray[Any, Any]
    a_ts: np.ndarray[Any, Any]
    a_val: np.ndarray[Any, Any]
    a_ok: np.ndarray[Any, Any]
    a_bad: np.ndarray[Any, Any]
    lo: int | None
    hi: int | None


@dataclass(frozen=True)
class ReprocessSummary:
    """What a reprocess did: packets looked at, now stored, still quarantined (by reason)."""

    examined: int
    stored: int
    still_quarantined: dict[str, int]


class RateBook:
    """Receive times of each unit's accepted frames in the last minute (the rate limit).

    One book is shared by every writer of a service (:meth:`Landing.writers`), so a
    unit gets ``max_frames_per_minute`` once, whichever writer lands its frames.  A
    batch *reserves* its stored frames' times inside its transaction while it holds the
    units' row locks; a concurrent batch of the same unit waits for those locks, so by
    the time it counts, the reservation is there.  A batch that does not commit
    *releases* them.  Thread-safe.
    """

    def __init__(self) -> None:
        self._times: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def count(self, device_id: str, at: float, extra: Sequence[float] = ()) -> int:
        """The most frames of ``device_id`` (with ``extra`` times) in any minute that
        contains ``at`` (receive times, epoch s).

        Not just the minute up to ``at``: a frame can land after frames received later
        than it (a retried round, another transport), and those count too.
        """
        with self._lock:
            kept = self._times.get(device_id) or []
            near = kept[bisect.bisect_right(kept, at - 60.0) : bisect.bisect_left(kept, at + 60.0)]
        times = sorted([*near, *(t for t in extra if at - 60.0 < t < at + 60.0)])
        if not times:
            return 0
        # a minute (e - 60, e] contains ``at`` for e in [at, at + 60); its count only
        # changes at a frame's time, so try e = at and e = each time after ``at``
        ends = [at, *times[bisect.bisect_right(times, at) :]]
        return max(bisect.bisect_right(times, e) - bisect.bisect_right(times, e - 60.0) for e in ends)

    def reserve(self, times: Mapping[str, Sequence[float]]) -> None:
        """Count these receive times per unit; forget each unit's times a minute older
        than its newest one."""
        with self._lock:
            for device_id, new in times.items():
                if not new:
                    continue
                kept = self._times.setdefault(device_id, [])
                for t in new:
                    bisect.insort(kept, t)
                del kept[: bisect.bisect_right(kept, kept[-1] - 60.0)]

    def release(self, times: Mapping[str, Sequence[float]]) -> None:
        """Undo :meth:`reserve` of a batch that did not commit (times already pruned
        are gone anyway)."""
        with self._lock:
            for device_id, gone in times.items():
                kept = self._times.get(device_id)
                if not kept:
                    continue
                for t in gone:
                    i = bisect.bisect_left(kept, t)
                    if i < len(kept) and kept[i] == t:
                        del kept[i]
                if not kept:
                    del self._times[device_id]


class Landing:
    """Stores packets from every transport exactly once and accounts for each of them.

    Parameters
    ----------
    store
        A migrated store (PostgreSQL in production; DuckDB works too, single writer).
    registry
        The profile registry (anything with ``decode(raw, profile=...)``).
    policy
        Edge limits.
    shard
        Row of ``ingest_counters`` this instance adds to (default: from the process id),
        so concurrent services do not contend on one counter row.  Concurrent writers
        of one process give each instance its own (see :meth:`writers`).
    rate
        The per-unit frame rate state (:class:`RateBook`).  Writers landing
        concurrently for one service share one, so a unit gets the limit once, not
        once per writer; default: a book of its own.

    Examples
    --------
    >>> landing = Landing(store, ProfileRegistry())            # doctest: +SKIP
    >>> landing.submit([Packet(raw, "udp", now)])[0].status    # doctest: +SKIP
    'stored'
    """

    def __init__(
        self,
        store: Store,
        registry: Decoder,
        policy: EdgePolicy = EdgePolicy(),
        *,
        shard: int | None = None,
        rate: RateBook | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.policy = policy
        self.security = Security(store)
        self.shard = (os.getpid() % 64) if shard is None else shard
        self.rate = RateBook() if rate is None else rate
        # Channel codes sort like the names (the readings key sorts the same either way);
        # unknown channel names get codes after the known ones as frames bring them.
        self._channels: list[str] = sorted(CHANNELS)
        self._codes: dict[str, int] = {c: i for i, c in enumerate(self._channels)}
        known = len(self._channels)
        ranges = policy.ranges
        self._lo = np.array([ranges.get(c, (-np.inf, np.inf))[0] for c in self._channels], dtype=np.float64)
        self._hi = np.array([ranges.get(c, (-np.inf, np.inf))[1] for c in self._channels], dtype=np.float64)
        self._is_reg = np.array([c in REGISTER_CHANNELS for c in self._channels], dtype=bool)
        self._known = known
        self._a_lo = np.array([ranges.get(c, (-np.inf, np.inf))[0] for c in ARCHIVE_COLUMNS], dtype=np.float64)
        self._a_hi = np.array([ranges.get(c, (-np.inf, np.inf))[1] for c in ARCHIVE_COLUMNS], dtype=np.float64)

    def writers(self, n: int) -> list[Landing]:
        """``n`` landings for concurrent writer threads: this one and ``n - 1`` siblings.

        The siblings share this landing's store (each writer thread's transaction takes
        its own connection from the store's pool), registry, policy, credential cache
        and :class:`RateBook`; each has its own ``ingest_counters`` shard
        (``shard + 64·i``), so the writers never wait on one counter row.

        Raises
        ------
        IngestError
            ``n > 1`` on a store that has a single writer (DuckDB).
        """
        if n < 1:
            raise IngestError(f"writers must be at least 1, got {n}")
        if n > 1 and self.store.backend != "postgres":
            raise IngestError(
                f"{n} landing writers asked for, but a {self.store.backend} store has a single "
                "writer; use writers=1 (--writers 1) or a PostgreSQL store (--dsn)"
            )
        out = [self]
        for i in range(1, n):
            sibling = Landing(self.store, self.registry, self.policy, shard=self.shard + 64 * i, rate=self.rate)
            sibling.security = self.security
            out.append(sibling)
        return out

    # --- public API ------------------------------------------------------------------
    def submit(self, packets: Sequence[Packet]) -> list[Outcome]:
        """Decode, check and store ``packets`` in one transaction; one outcome each, in order.

        Raises
        ------
        warehouse.WarehouseError, psycopg.Error, duckdb.Error
            The database failed; nothing of the batch was committed (do not acknowledge).
        """
        if not packets:
            return []
        work = self._prepare_many(packets)
        return self._land(work, reprocess=False)

    def verify(self, device_id: str, secret: str | bytes) -> bool:
        """Check a unit's credential (TCP ident): see :meth:`Security.verify`."""
        return self.security.verify(device_id, secret)

    def pending_commands(self, device_id: str) -> list[Command]:
        """Downlink commands to deliver at this unit's session (queued or not yet acked)."""
        return pending_commands(self.store, [device_id])

    def mark_delivered(self, command_id: int, at: dt.datetime) -> None:
        """Record that command ``command_id`` was sent to its unit at ``at``."""
        _mark_delivered(self.store, command_id, at)

    def stats(self) -> IngestStats:
        """Packet counters from the database (received = stored + duplicates + quarantined)."""
        return read_stats(self.store)

    def reprocess(
        self,
        *,
        shas: Sequence[str] | None = None,
        reason: str | None = None,
        limit: int | None = None,
    ) -> ReprocessSummary:
        """Run quarantined packets again through the current registry and policy.

        A packet that is now stored leaves quarantine (``reprocessed_at`` set, raw packet
        ``stored``); its counters move from *quarantined* to *stored* on the day and
        transport it was received (received is unchanged, so the equation stays exact),
        and ``reprocessed`` counts the move.  A packet that fails again stays, with its
        reason updated if it changed (the counters move between reasons).

        Parameters
        ----------
        shas
            Only these packets (hex SHA-256); default all not yet reprocessed.
        reason
            Only packets quarantined for this reason.
        limit
            At most this many, oldest first.
        """
        q = self.store.read("quarantine", where={"sha256": list(shas)} if shas else None)
        q = q.filter(pl.col("reprocessed_at").is_null())
        if reason:
            q = q.filter(pl.col("reason") == str(Reason(reason)))
        q = q.sort("received_at", "sha256")
        if limit is not None:
            q = q.head(limit)
        rows = list(q.iter_rows(named=True))
        packets = [
            Packet(
                raw=bytes.fromhex(row["raw_hex"]),
                transport=row["transport"],
                received_at=row["received_at"],
                device_id=row["device_id"],
                profile=row["profile"],
            )
            for row in rows
        ]
        work = self._prepare_many(packets)
        for w, row in zip(work, rows, strict=True):
            w.prior_reason = row["reason"]
            w.prior_received = row["received_at"]
        if not work:
            return ReprocessSummary(0, 0, {})
        outcomes = self._land(work, reprocess=True)
        still: dict[str, int] = defaultdict(int)
        for o in outcomes:
            if o.status == "quarantined" and o.reason is not None:
                still[str(o.reason)] += 1
        stored = sum(1 for o in outcomes if o.status == "stored")
        return ReprocessSummary(len(work), stored, dict(still))

    # --- classification ----------------------------------------------------------------
    def _prepare_many(self, packets: Sequence[Packet]) -> list[_Work]:
        """Hash and decode a batch outside the transaction (CPU only)."""
        work = [_Work(p, hashlib.sha256(p.raw).hexdigest()) for p in packets]
        limit = self.policy.max_frame_bytes
        todo: list[_Work] = []
        for w in work:
            size = len(w.packet.raw)
            if size > limit:
                w.error = FrameError(Reason.OVERSIZED, f"{size} bytes, more than the limit of {limit}")
            else:
                todo.append(w)
        if isinstance(self.registry, ProfileRegistry):
            results = _decode.decode_many(
                self.registry, [bytes(w.packet.raw) for w in todo], [w.packet.profile for w in todo]
            )
            for w, r in zip(todo, results, strict=True):
                if isinstance(r, FrameError):
                    w.error = r
                else:
                    w.frame, w.columns = r
        else:
            for w in todo:
                try:
                    w.frame = self.registry.decode(bytes(w.packet.raw), profile=w.packet.profile)
                except FrameError as e:
                    w.error = e
                except Exception as e:  # noqa: BLE001 - a decoder bug must not crash a service
                    w.error = FrameError(Reason.SCHEMA, f"decoder failed: {type(e).__name__}: {e}")
        for w in todo:
            if w.frame is not None:
                w.cols = self._columns(w)
        return work

    def _code(self, channel: str) -> int:
        code = self._codes.get(channel)
        if code is None:
            code = self._codes[channel] = len(self._channels)
            self._channels.append(channel)
        return code

    def _columns(self, w: _Work) -> _Cols:
        """The frame's readings and archive records as numpy columns."""
        f = w.frame
        assert f is not None
        c = w.columns
        stamps: list[int] = [_us(e[0]) for e in f.events]
        a_bad = None
        if c is not None:
            times = c.times * 1_000_000
            chan, ts, val = [], [], []
            for channel, values, present in c.readings:
                code = self._code(channel)
                if present is None:
                    ts.append(times)
                    val.append(values)
                else:
                    ts.append(times[present])
                    val.append(values[present])
                chan.append(np.full(len(ts[-1]), code, dtype=np.int32))
            r_chan = np.concatenate(chan) if chan else _EMPTY_I32
            r_ts = np.concatenate(ts) if ts else _EMPTY_I64
            r_val = np.concatenate(val) if val else _EMPTY_F64
            r_ok = np.ones(len(r_ts), dtype=bool)
            n = len(times) if c.archive is not None else 0
            a_val = np.zeros((n, len(ARCHIVE_COLUMNS)), dtype=np.float64)
            a_ok = np.zeros((n, len(ARCHIVE_COLUMNS)), dtype=bool)
            a_bad = np.zeros(n, dtype=bool)
            if n:
                for column, values, present in c.archive_columns:
                    if column not in _ARCHIVE_INDEX:
                        a_bad[:] = True
                        continue
                    j = _ARCHIVE_INDEX[column]
                    a_val[:, j] = values
                    a_ok[:, j] = True if present is None else present
            a_kind = np.full(n, _KIND_CODE.get(c.archive or "", 2), dtype=np.int8)
            a_ts = times if n else _EMPTY_I64
        else:
            r_chan = np.fromiter((self._code(ch) for ch, _, _ in f.readings), dtype=np.int32, count=len(f.readings))
            r_ts = np.fromiter((_us(ts) for _, ts, _ in f.readings), dtype=np.int64, count=len(f.readings))
            r_val = np.array([np.nan if v is None else v for _, _, v in f.readings], dtype=np.float64)
            r_ok = np.array([v is not None for _, _, v in f.readings], dtype=bool)
            n = len(f.archives)
            a_val = np.zeros((n, len(ARCHIVE_COLUMNS)), dtype=np.float64)
            a_ok = np.zeros((n, len(ARCHIVE_COLUMNS)), dtype=bool)
            a_bad = np.zeros(n, dtype=bool)
            for i, (_, _, record) in enumerate(f.archives):
                for column, v in record.items():
                    k = _ARCHIVE_INDEX.get(column)
                    if k is None:
                        a_bad[i] = True
                    elif v is not None:
                        a_val[i, k] = v
                        a_ok[i, k] = True
            a_kind = np.array([_KIND_CODE.get(k, 2) for k, _, _ in f.archives], dtype=np.int8)
            a_ts = np.fromiter((_us(ts) for _, ts, _ in f.archives), dtype=np.int64, count=n)
        lo = hi = None
        for arr in (r_ts, a_ts):
            if len(arr):
                stamps.extend((int(arr.min()), int(arr.max())))
        if stamps:
            lo, hi = min(stamps), max(stamps)
        return _Cols(r_chan, r_ts, r_val, r_ok, a_kind, a_ts, a_val, a_ok, a_bad, lo, hi)

    def _precheck(
        self, work: Sequence[_Work], devices: Mapping[str, Mapping[str, Any]]
    ) -> dict[int, tuple[Reason, str] | None]:
        """Rules 6 and 7 for every decoded frame of a registered unit, vectorised.

        Returns ``{id(work item): problem or None}`` and sets ``suspect``.  The numpy
        pass only finds the frames with a problem; those get :meth:`_frame_checks` on
        their tuples, which words the message (and is the reference semantics).
        """
        pol = self.policy
        cands = [w for w in work if w.cols is not None and w.frame is not None and w.frame.device_id in devices]
        out: dict[int, tuple[Reason, str] | None] = {}
        if not cands:
            return out
        flagged = np.zeros(len(cands), dtype=bool)
        for i, w in enumerate(cands):
            f, c = w.frame, w.cols
            assert f is not None and c is not None
            received = w.packet.received_at
            drift = (f.device_time - received).total_seconds()
            w.suspect = abs(drift) > pol.clock_ok_s
            if abs(drift) > pol.clock_flag_s:
                flagged[i] = True
            elif c.lo is not None and c.hi is not None:
                future = _us(max(f.device_time, received)) + int(pol.clock_ok_s * 1e6)
                oldest = _us(received - pol.late_window)
                flagged[i] = c.hi > future or c.lo < oldest
            if f.events and any(sev not in SEVERITIES or not code for _, code, sev, _ in f.events):
                flagged[i] = True
        counts = np.array([len(w.cols.r_ts) for w in cands if w.cols is not None], dtype=np.int64)
        if counts.sum():
            which = np.repeat(np.arange(len(cands)), counts)
            chan = np.concatenate([w.cols.r_chan for w in cands if w.cols is not None])
            val = np.concatenate([w.cols.r_val for w in cands if w.cols is not None])
            ok = np.concatenate([w.cols.r_ok for w in cands if w.cols is not None])
            modulus = np.array(
                [_modulus(devices[w.frame.device_id]) for w in cands if w.frame is not None], dtype=np.float64
            )
            unknown = chan >= self._known
            code = np.where(unknown, 0, chan)
            with np.errstate(invalid="ignore"):
                bad_value = (
                    ~np.isfinite(val)
                    | (val < self._lo[code])
                    | (val > self._hi[code])
                    | (self._is_reg[code] & (val >= modulus[which]))
                )
            bad = unknown | (ok & bad_value)
            flagged[np.unique(which[bad])] = True
        counts = np.array([len(w.cols.a_ts) for w in cands if w.cols is not None], dtype=np.int64)
        if counts.sum():
            which = np.repeat(np.arange(len(cands)), counts)
            kind = np.concatenate([w.cols.a_kind for w in cands if w.cols is not None])
            a_val = np.concatenate([w.cols.a_val for w in cands if w.cols is not None])
            a_ok = np.concatenate([w.cols.a_ok for w in cands if w.cols is not None])
            a_bad = np.concatenate([w.cols.a_bad for w in cands if w.cols is not None])
            with np.errstate(invalid="ignore"):
                bad_value = ~np.isfinite(a_val) | (a_val < self._a_lo) | (a_val > self._a_hi)
            bad = (kind == 2) | a_bad | (a_ok & bad_value).any(axis=1)
            flagged[np.unique(which[bad])] = True
        for i, w in enumerate(cands):
            assert w.frame is not None
            out[id(w)] = (
                self._frame_checks(w, devices[w.frame.device_id], w.full_frame()) if flagged[i] else None
            )
        return out

    def _frame_checks(self, w: _Work, dev: Mapping[str, Any], f: Frame) -> tuple[Reason, str] | None:
        """Clock, late-window and value checks of one decoded frame (no database)."""
        pol = self.policy
        received = w.packet.received_at
        drift = (f.device_time - received).total_seconds()
        if abs(drift) > pol.clock_flag_s:
            return Reason.CLOCK_SKEW, (
                f"device clock is {drift:+.0f} s off the server's (limit ±{pol.clock_flag_s:.0f} s)"
            )
        w.suspect = abs(drift) > pol.clock_ok_s
        future = max(f.device_time, received) + dt.timedelta(seconds=pol.clock_ok_s)
        oldest = received - pol.late_window
        stamps = [ts for _, ts, _ in f.readings]
        stamps += [ts for _, ts, _ in f.archives]
        stamps += [e[0] for e in f.events]
        if stamps:
            hi, lo = max(stamps), min(stamps)
            if hi > future:
                return Reason.CLOCK_SKEW, f"a record at {hi.isoformat()} lies in the future"
            if lo < oldest:
                return Reason.CLOCK_SKEW, (
                    f"a record at {lo.isoformat()} is older than the late-data window "
                    f"({pol.late_window.days} days)"
                )
        ranges = pol.ranges
        modulus = dev.get("counter_modulus_m3")
        for channel, ts, value in f.readings:
            if channel not in _CHANNELS:
                return Reason.SCHEMA, f"unknown channel {channel!r}"
            if value is None:
                continue
            bad = _range_problem(channel, value, ranges)
            if bad is None and modulus is not None and channel in REGISTER_CHANNELS and value >= modulus:
                bad = f"{channel} = {value:g} is not below the counter modulus {modulus:g}"
            if bad is not None:
                return Reason.OUT_OF_RANGE, f"{bad} at {ts.isoformat()}"
        for kind, ts, values in f.archives:
            if kind not in ("hourly", "daily"):
                return Reason.SCHEMA, f"unknown archive kind {kind!r} (hourly or daily)"
            for column, value in values.items():
                if column not in ARCHIVE_COLUMNS:
                    return Reason.SCHEMA, f"unknown archive column {column!r}"
                if value is not None:
                    bad = _range_problem(column, value, ranges)
                    if bad is not None:
                        return Reason.OUT_OF_RANGE, f"{kind} archive {bad} at {ts.isoformat()}"
        for _, code, severity, _ in f.events:
            if severity not in SEVERITIES or not code:
                return Reason.SCHEMA, f"event {code!r} has severity {severity!r}, not one of {SEVERITIES}"
        return None

    def _rate_ok(self, device_id: str, at: float, pending: Mapping[str, list[float]]) -> bool:
        return self.rate.count(device_id, at, pending.get(device_id, ())) < self.policy.max_frames_per_minute

    def _classify(
        self,
        work: list[_Work],
        devices: Mapping[str, Mapping[str, Any]],
        known: Mapping[str, str],
        stored_pairs: Mapping[tuple[str, int], str],
        problems: Mapping[int, tuple[Reason, str] | None],
        *,
        reprocess: bool,
    ) -> None:
        """Decide every packet's outcome, in order."""
        seen: set[str] = set()
        last: dict[str, int | None] = {d: v.get("last_counter") for d, v in devices.items()}
        taken: dict[tuple[str, int], str] = dict(stored_pairs)
        pending: dict[str, list[float]] = defaultdict(list)
        for w in work:
            if w.sha in seen or (not reprocess and w.sha in known):
                w.status = "duplicate"
                continue
            seen.add(w.sha)
            if w.error is not None:
                self._quarantine(w, w.error.reason, w.error.detail)
                continue
            f = w.frame
            assert f is not None
            dev = devices.get(f.device_id)
            if dev is None:
                self._quarantine(w, Reason.UNKNOWN_DEVICE, f"device {f.device_id} is not registered; "
                                 "register it with `askug devices add`, then reprocess")  # fmt: skip
                continue
            claimed = w.packet.device_id
            if claimed is not None and claimed != f.device_id:
                self._quarantine(
                    w, Reason.UNKNOWN_DEVICE,
                    f"the transport identified {claimed} but the frame says {f.device_id}",
                )  # fmt: skip
                continue
            if dev.get("profile") != f.profile:
                self._quarantine(
                    w, Reason.UNKNOWN_PROFILE,
                    f"{f.device_id} is registered with profile {dev.get('profile')!r}, "
                    f"the frame has {f.profile!r}",
                )  # fmt: skip
                continue
            key = (f.device_id, f.counter)
            other = taken.get(key)
            if other is not None and other != w.sha:
                self._quarantine(
                    w, Reason.REPLAYED,
                    f"counter {f.counter} of {f.device_id} was already stored with other content",
                )  # fmt: skip
                continue
            high = last.get(f.device_id)
            if not reprocess and high is not None and f.counter <= high - self.policy.counter_window:
                self._quarantine(
                    w, Reason.REPLAYED,
                    f"counter {f.counter} is older than the replay window "
                    f"({self.policy.counter_window} below {high})",
                )  # fmt: skip
                continue
            problem = problems.get(id(w))
            if problem is not None:
                self._quarantine(w, *problem)
                continue
            at = w.packet.received_at.timestamp()
            if not self._rate_ok(f.device_id, at, pending):
                self._quarantine(
                    w, Reason.OVERSIZED,
                    f"rate limit: more than {self.policy.max_frames_per_minute} frames a minute "
                    f"from {f.device_id}",
                )  # fmt: skip
                continue
            w.status = "stored"
            taken[key] = w.sha
            last[f.device_id] = f.counter if high is None else max(high, f.counter)
            pending[f.device_id].append(at)

    @staticmethod
    def _quarantine(w: _Work, reason: Reason, detail: str) -> None:
        w.status = "quarantined"
        w.reason = Reason(reason)
        w.detail = detail

    # --- the transaction -----------------------------------------------------------------
    def _land(self, work: list[_Work], *, reprocess: bool) -> list[Outcome]:
        store = self.store
        decoded_ids = sorted({w.frame.device_id for w in work if w.frame is not None})
        pairs = [(w.frame.device_id, w.frame.counter) for w in work if w.frame is not None]
        reserved: dict[str, list[float]] = {}
        spans = [(c.lo, c.hi) for w in work if (c := w.cols) is not None and c.lo is not None and c.hi is not None]
        if spans:
            # Only times the clock policy can accept (a skewed frame must not make decades
            # of partitions); an hour derived from a register ends at its reading, so the
            # hour before the first counts too.
            received = [_us(w.packet.received_at) for w in work]
            floor = min(received) - self.policy.late_window // dt.timedelta(microseconds=1) - 3_600_000_000
            ceiling = max(received) + int(self.policy.clock_flag_s * 1_000_000)
            lo = max(floor, min(a for a, _ in spans) - 3_600_000_000)
            hi = min(ceiling, max(b for _, b in spans))
            if lo <= hi:
                wl.prepare_partitions(store, _from_us(lo), _from_us(hi))
        try:
            with store.transaction():
                self._land_locked(work, decoded_ids, pairs, reserved, reprocess=reprocess)
        except BaseException:
            # Rolled back: this batch's frames do not count against the rate limit.
            self.rate.release(reserved)
            raise
        return [_outcome(w) for w in work]

    def _land_locked(
        self,
        work: list[_Work],
        decoded_ids: list[str],
        pairs: list[tuple[str, int]],
        reserved: dict[str, list[float]],
        *,
        reprocess: bool,
    ) -> None:
        """The body of :meth:`_land`'s transaction.

        The stored frames' receive times are reserved in the shared :class:`RateBook`
        while their units' rows are still locked, so a concurrent writer that lands the
        same unit next (it waits for that lock) already counts them; ``reserved`` tells
        :meth:`_land` what to release if the transaction does not commit.
        """
        store = self.store
        dev_rows = wl.lock_devices(store, decoded_ids)
        devices = {r["device_id"]: r for r in dev_rows.iter_rows(named=True)}
        known = {} if reprocess else wl.known_packets(store, [w.sha for w in work])
        stored_pairs = wl.stored_counters(store, [p for p in pairs if p[0] in devices])
        problems = self._precheck(work, devices)
        self._classify(work, devices, known, stored_pairs, problems, reprocess=reprocess)
        if not reprocess:
            fresh = [w for w in work if w.status != "duplicate"]
            inserted = wl.insert_raw_packets(store, _raw_frame(fresh))
            for w in fresh:
                if w.sha not in inserted:  # another writer landed the same bytes first
                    w.status, w.reason, w.detail = "duplicate", None, ""
        for w in work:
            if w.status == "stored" and w.frame is not None:
                reserved.setdefault(w.frame.device_id, []).append(w.packet.received_at.timestamp())
        self.rate.reserve(reserved)
        rows = self._rows(work, devices, reprocess=reprocess)
        wl.write_batch(store, rows)
        if reprocess:
            now = dt.datetime.now(dt.UTC)
            done = [w for w in work if w.status == "stored" and w.frame is not None]
            wl.mark_packets_stored(
                store,
                pl.DataFrame(
                    {
                        "sha256": [w.sha for w in done],
                        "device_id": [w.frame.device_id for w in done if w.frame],
                        "profile": [w.frame.profile for w in done if w.frame],
                        "counter": [w.frame.counter for w in done if w.frame],
                    },
                    schema={"sha256": pl.String, "device_id": pl.String, "profile": pl.String, "counter": pl.Int64},
                ),
            )
            wl.mark_reprocessed(store, [w.sha for w in done], now)
            moved = pl.DataFrame(
                {
                    "sha256": [w.sha for w in work if w.status == "quarantined"],
                    "reason": [str(w.reason) for w in work if w.status == "quarantined"],
                    "detail": [w.detail for w in work if w.status == "quarantined"],
                },
                schema={"sha256": pl.String, "reason": pl.String, "detail": pl.String},
            )
            wl.update_quarantine_reasons(store, moved)

    def _rows(
        self, work: list[_Work], devices: Mapping[str, Mapping[str, Any]], *, reprocess: bool
    ) -> wl.LandingRows:
        """The frames one batch writes, built from the frames' columns."""
        stored = [w for w in work if w.status == "stored" and w.frame is not None and w.cols is not None]
        e_rows: list[tuple[str, dt.datetime, str, str, str]] = []
        acks: list[tuple[int, str, dt.datetime]] = []
        counters: dict[str, dict[str, Any]] = {}
        for w in stored:
            f = w.frame
            assert f is not None
            recv = w.packet.received_at
            for ts, code, severity, detail in f.events:
                e_rows.append((f.device_id, ts, code, severity, detail))
            acks.extend((cid, f.device_id, recv) for cid in f.command_acks)
            c = counters.get(f.device_id)
            if c is None:
                counters[f.device_id] = {
                    "device_id": f.device_id,
                    "last_counter": f.counter,
                    "last_device_time": f.device_time,
                    "last_received_at": recv,
                    "frames": 1,
                }
            else:
                c["last_counter"] = max(c["last_counter"], f.counter)
                c["last_device_time"] = max(c["last_device_time"], f.device_time)
                c["last_received_at"] = max(c["last_received_at"], recv)
                c["frames"] += 1
        # per-frame attributes, repeated over each frame's rows
        dev_names = sorted({w.frame.device_id for w in stored if w.frame is not None})
        dev_index = {d: i for i, d in enumerate(dev_names)}
        f_dev = np.array([dev_index[w.frame.device_id] for w in stored if w.frame is not None], dtype=np.int64)
        f_suspect = np.array([w.suspect for w in stored], dtype=bool)
        f_recv = np.array([_us(w.packet.received_at) for w in stored], dtype=np.int64)
        cols = [w.cols for w in stored if w.cols is not None]
        n_r = np.array([len(c.r_ts) for c in cols], dtype=np.int64)
        rep = np.repeat(np.arange(len(cols)), n_r)
        devs = pl.Series("device_id", dev_names, dtype=pl.String)
        # The readings in key order (device, channel, ts; frame order among equals): the
        # store then need not sort them (see warehouse._landing._first_per_key_sorted).
        # Device codes follow the sorted names; channel codes are ranked by name.
        r_dev = f_dev[rep]
        r_chan = _cat([c.r_chan for c in cols], _EMPTY_I32)
        r_ts = _cat([c.r_ts for c in cols], _EMPTY_I64)
        rank = np.empty(len(self._channels), dtype=np.int64)
        rank[np.argsort(np.array(self._channels, dtype=object), kind="stable")] = np.arange(len(self._channels))
        order = np.lexsort((r_ts, rank[r_chan], r_dev))
        readings = pl.DataFrame(
            {
                "device_id": devs.gather(r_dev[order]),
                "channel": pl.Series(self._channels, dtype=pl.String).gather(r_chan[order]),
                "ts": _ts_series(r_ts[order]),
                "value": _nullable(
                    _cat([c.r_val for c in cols], _EMPTY_F64)[order], _cat([c.r_ok for c in cols], _EMPTY_B)[order]
                ),
                "quality": _quality(f_suspect[rep][order]),
                "received_at": _ts_series(f_recv[rep][order]),
            }
        )
        n_a = np.array([len(c.a_ts) for c in cols], dtype=np.int64)
        hourly_archive = daily = None
        if n_a.sum():
            rep = np.repeat(np.arange(len(cols)), n_a)
            kind = _cat([c.a_kind for c in cols], np.zeros(0, np.int8))
            a_val = np.concatenate([c.a_val for c in cols])
            a_ok = np.concatenate([c.a_ok for c in cols])
            meters = [devices[d].get("meter_id") for d in dev_names]
            f_meter = np.array(
                [-1 if meters[i] is None else i for i in f_dev.tolist()], dtype=np.int64
            )
            values = {
                col: _nullable(a_val[:, j], a_ok[:, j]) for j, col in enumerate(ARCHIVE_COLUMNS)
            }
            base = pl.DataFrame(
                {
                    "frame": rep,
                    "kind": kind,
                    "ts": _ts_series(_cat([c.a_ts for c in cols], _EMPTY_I64)),
                    **values,
                    "quality": _quality(f_suspect[rep]),
                }
            )
            hourly_rows = base.filter((pl.col("kind") == 0) & pl.Series(f_meter[rep] >= 0))
            if hourly_rows.height:
                meter_names = pl.Series([m or "" for m in meters], dtype=pl.String)
                hourly_archive = hourly_rows.select(
                    meter_names.gather(f_dev[hourly_rows["frame"].to_numpy()]).alias("meter_id"),
                    "ts", *ARCHIVE_COLUMNS, "quality", pl.lit("archive").alias("source"),
                )  # fmt: skip
            daily_rows = base.filter(pl.col("kind") == 1)
            if daily_rows.height:
                idx = daily_rows["frame"].to_numpy()
                daily = daily_rows.select(
                    devs.gather(f_dev[idx]).alias("device_id"), "ts", *ARCHIVE_COLUMNS, "quality",
                    _ts_series(f_recv[idx]).alias("received_at"),
                )  # fmt: skip
        quarantined = [w for w in work if w.status == "quarantined"]
        return wl.LandingRows(
            quarantine=None if reprocess else _quarantine_frame(quarantined),
            readings=readings,
            hourly_register=self._hourly_from_registers(readings, devices),
            hourly_archive=hourly_archive,
            events=pl.DataFrame(e_rows, schema=_EVENT_SCHEMA, orient="row") if e_rows else None,
            device_daily_archive=daily,
            device_counters=pl.DataFrame(list(counters.values()), schema=_COUNTER_SCHEMA)
            if counters
            else None,
            ingest_counters=self._stats_rows(work, reprocess=reprocess),
            acks=pl.DataFrame(
                acks, schema={"command_id": pl.Int64, "device_id": pl.String, "at": _TS}, orient="row"
            )
            if acks
            else None,
        )

    def _hourly_from_registers(
        self, readings: pl.DataFrame, devices: Mapping[str, Mapping[str, Any]]
    ) -> pl.DataFrame | None:
        """Hourly consumption of the metering points whose registers this batch extends.

        The batch's register readings are merged with the stored ones around them (the
        last before, any inside, the first after), so late data closes gaps and hours at
        the batch's edges get their other end; the stored value wins where both exist.
        """
        meters = {d: v for d, v in devices.items() if v.get("meter_id") is not None}
        reg = readings.filter(
            pl.col("channel").is_in(HOURLY_CHANNELS)
            & pl.col("device_id").is_in(list(meters))
            & pl.col("value").is_not_null()
        )
        if reg.filter(pl.col("channel").is_in(REGISTER_CHANNELS)).height == 0:
            return None
        spans = (
            reg.filter(pl.col("channel").is_in(REGISTER_CHANNELS))
            .group_by("device_id", "channel")
            .agg(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"))
            .sort("device_id", "channel")
        )
        context = wl.register_context(self.store, spans, lookback=self.policy.register_lookback)
        previous = context.filter(pl.col("is_prev")).select("device_id", "channel", "ts", "value")
        stored = context.filter(~pl.col("is_prev")).select("device_id", "channel", "ts", "value", "quality")
        new = reg.select("device_id", "channel", "ts", "value", "quality")
        # Only a stored reading inside its series' span can repeat one of the batch's
        # (usually none does: the anti-join of the whole batch is then spared).
        inside = (
            stored.join(spans, on=["device_id", "channel"], how="inner")
            .filter(pl.col("ts").is_between(pl.col("lo"), pl.col("hi")))
            .select("device_id", "channel", "ts")
        )
        if inside.height:
            new = new.join(inside, on=["device_id", "channel", "ts"], how="anti")
        combined = pl.concat([stored, new]) if stored.height else new
        dev_frame = pl.DataFrame(
            {
                "device_id": list(meters),
                "meter_id": [v["meter_id"] for v in meters.values()],
                "counter_modulus_m3": [v.get("counter_modulus_m3") for v in meters.values()],
            },
            schema={"device_id": pl.String, "meter_id": pl.String, "counter_modulus_m3": pl.Float64},
        )
        hourly = readings_to_hourly(combined, dev_frame, previous=previous)
        return hourly if hourly.height else None

    def _stats_rows(self, work: list[_Work], *, reprocess: bool) -> pl.DataFrame:
        """Counter increments of this batch (reprocess: moves between outcomes)."""
        acc: dict[tuple[dt.date, str, str, str], list[int]] = defaultdict(lambda: [0, 0])

        def add(w: _Work, outcome: str, reason: str, n: int, values: int) -> None:
            day = (w.prior_received or w.packet.received_at).astimezone(dt.UTC).date()
            cell = acc[(day, w.packet.transport, outcome, reason)]
            cell[0] += n
            cell[1] += values

        for w in work:
            values = w.values if w.status == "stored" and w.frame is not None else 0
            if reprocess:
                prior = w.prior_reason or ""
                if w.status == "stored":
                    add(w, "quarantined", prior, -1, 0)
                    add(w, "stored", "", 1, values)
                    add(w, "reprocessed", prior, 1, values)
                elif w.status == "quarantined" and str(w.reason) != prior:
                    add(w, "quarantined", prior, -1, 0)
                    add(w, "quarantined", str(w.reason), 1, 0)
                continue
            add(w, "received", "", 1, 0)
            if w.status == "stored":
                add(w, "stored", "", 1, values)
            elif w.status == "duplicate":
                add(w, "duplicate", "", 1, 0)
            else:
                add(w, "quarantined", str(w.reason), 1, 0)
        keys = list(acc)
        return pl.DataFrame(
            {
                "day": [k[0] for k in keys],
                "transport": [k[1] for k in keys],
                "outcome": [k[2] for k in keys],
                "reason": [k[3] for k in keys],
                "shard": [self.shard] * len(keys),
                "packets": [acc[k][0] for k in keys],
                "readings": [acc[k][1] for k in keys],
            },
            schema={
                "day": pl.Date,
                "transport": pl.String,
                "outcome": pl.String,
                "reason": pl.String,
                "shard": pl.Int16,
                "packets": pl.Int64,
                "readings": pl.Int64,
            },
        )


# --- helpers ------------------------------------------------------------------------------
_CHANNELS: Final = frozenset(CHANNELS)
_TS: Final = pl.Datetime("us", "UTC")
_HOURLY_SCHEMA: Final[dict[str, Any]] = {
    "meter_id": pl.String,
    "ts": _TS,
    "volume_m3": pl.Float64,
    "volume_work_m3": pl.Float64,
    "pressure_kpa": pl.Float64,
    "temperature_c": pl.Float64,
    "quality": pl.String,
    "source": pl.String,
}
_DAILY_SCHEMA: Final[dict[str, Any]] = {
    "device_id": pl.String,
    "ts": _TS,
    "volume_m3": pl.Float64,
    "volume_work_m3": pl.Float64,
    "pressure_kpa": pl.Float64,
    "temperature_c": pl.Float64,
    "quality": pl.String,
    "received_at": _TS,
}
_EVENT_SCHEMA: Final[dict[str, Any]] = {
    "device_id": pl.String,
    "ts": _TS,
    "code": pl.String,
    "severity": pl.String,
    "detail": pl.String,
}
_COUNTER_SCHEMA: Final[dict[str, Any]] = {
    "device_id": pl.String,
    "last_counter": pl.Int64,
    "last_device_time": _TS,
    "last_received_at": _TS,
    "frames": pl.Int64,
}
_PACKET_SCHEMA: Final[dict[str, Any]] = {
    "sha256": pl.String,
    "raw_hex": pl.String,
    "size_bytes": pl.Int32,
    "transport": pl.String,
    "received_at": _TS,
    "device_id": pl.String,
    "profile": pl.String,
    "counter": pl.Int64,
    "status": pl.String,
}
#: An ident frame's body is the unit's secret: only its 18-byte envelope header is kept.
_IDENT_KEEP: Final = 18


_EMPTY_I32: Final = np.zeros(0, dtype=np.int32)
_EMPTY_I64: Final = np.zeros(0, dtype=np.int64)
_EMPTY_F64: Final = np.zeros(0, dtype=np.float64)
_EMPTY_B: Final = np.zeros(0, dtype=bool)
_ARCHIVE_INDEX: Final = {c: i for i, c in enumerate(ARCHIVE_COLUMNS)}
_KIND_CODE: Final = {"hourly": 0, "daily": 1}
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _from_us(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


def _us(ts: dt.datetime) -> int:
    """Microseconds since 1970 of an aware datetime."""
    d = ts - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def _cat(parts: Sequence[np.ndarray[Any, Any]], empty: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.concatenate(parts) if parts else empty


def _ts_series(us: np.ndarray[Any, Any]) -> pl.Series:
    return pl.Series(us, dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def _nullable(values: np.ndarray[Any, Any], present: np.ndarray[Any, Any]) -> pl.Series:
    s = pl.Series(values, dtype=pl.Float64, nan_to_null=False)
    missing = np.flatnonzero(~present)
    return s.scatter(missing, None) if len(missing) else s


def _quality(suspect: np.ndarray[Any, Any]) -> pl.Series:
    return pl.Series(np.where(suspect, "suspect", "valid").astype(object), dtype=pl.String) if suspect.any() \
        else pl.Series(["valid"], dtype=pl.String).gather(np.zeros(len(suspect), dtype=np.int64))


def _modulus(dev: Mapping[str, Any]) -> float:
    m = dev.get("counter_modulus_m3")
    return np.inf if m is None else float(m)


def _range_problem(name: str, value: float, ranges: Mapping[str, tuple[float, float]]) -> str | None:
    if not math.isfinite(value):
        return f"{name} = {value} is not a finite number"
    bounds = ranges.get(name)
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        return f"{name} = {value:g} is outside [{bounds[0]:g}, {bounds[1]:g}]"
    return None


def _values(frame: Frame) -> int:
    return len(frame.readings) + len(frame.archives)


def _kept_hex(w: _Work) -> str:
    raw = bytes(w.packet.raw)
    if w.frame is not None and w.frame.kind == "ident":
        raw = raw[:_IDENT_KEEP]
    return raw.hex()


def _raw_frame(work: Sequence[_Work]) -> pl.DataFrame:
    rows = [
        (
            w.sha,
            _kept_hex(w),
            len(w.packet.raw),
            w.packet.transport,
            w.packet.received_at,
            w.frame.device_id if w.frame is not None else w.packet.device_id,
            w.frame.profile if w.frame is not None else w.packet.profile,
            w.frame.counter if w.frame is not None else None,
            w.status,
        )
        for w in work
    ]
    return pl.DataFrame(rows, schema=_PACKET_SCHEMA, orient="row")


def _quarantine_frame(work: Sequence[_Work]) -> pl.DataFrame | None:
    if not work:
        return None
    rows = [
        (
            w.sha,
            bytes(w.packet.raw).hex(),
            w.packet.transport,
            w.packet.received_at,
            # The transport's identity when it had one (reprocess re-checks it), else the frame's.
            w.packet.device_id or (w.frame.device_id if w.frame is not None else None),
            w.packet.profile or (w.frame.profile if w.frame is not None else None),
            w.frame.counter if w.frame is not None else None,
            str(w.reason),
            w.detail,
            None,
        )
        for w in work
    ]
    return pl.DataFrame(
        rows,
        schema={
            "sha256": pl.String,
            "raw_hex": pl.String,
            "transport": pl.String,
            "received_at": _TS,
            "device_id": pl.String,
            "profile": pl.String,
            "counter": pl.Int64,
            "reason": pl.String,
            "detail": pl.String,
            "reprocessed_at": _TS,
        },
        orient="row",
    )


def _outcome(w: _Work) -> Outcome:
    f = w.frame
    status: Status = w.status or "quarantined"
    return Outcome(
        status=status,
        device_id=f.device_id if f is not None else w.packet.device_id,
        counter=f.counter if f is not None else None,
        reason=w.reason if status == "quarantined" else None,
        readings=w.values if status == "stored" and f is not None else 0,
        detail=w.detail,
    )
