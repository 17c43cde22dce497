"""Decode and encode frames by their device profile: the binary envelope and JSON documents.

Every failure is a :class:`~ingest._wire.FrameError` with a reason from the closed set;
the checks run in an order that makes the fuzz-tested guarantees hold:

* every proper prefix of a valid frame is ``truncated`` (the length checks come before
  anything that needs the whole frame, and a JSON document that is a proper prefix of
  valid JSON is told apart from broken JSON);
* every single-bit error is caught: the checksum covers everything but itself; a flip
  in the envelope's length or profile code gives ``truncated``/``schema``/
  ``unknown_profile``; the JSON checksum is lower-case hex, so no flip yields an equal value.

Records that repeat (archives) are decoded column-wise with one ``np.frombuffer`` over a
structured dtype per frame type.  Bulk landing (:mod:`ingest._landing`) asks for the
records as numpy columns instead of per-reading tuples (:func:`decode_columns`,
:class:`RecordColumns`), and checks the CRC-16/MODBUS of a whole batch at once
(:func:`modbus_many`); both give exactly what :func:`decode` gives.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import math
import re
import struct
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from ingest._crc import _MODBUS_TABLE, CRC_SIZE, crc
from ingest._wire import (
    ACK_FRAME_TYPE,
    DOWNLINK_FRAME_TYPE,
    HEADER_SIZE,
    SERVER_PROFILE_CODE,
    Frame,
    FrameError,
    Reason,
    ServerFrame,
)

if TYPE_CHECKING:
    from ingest._device_profiles import DeviceProfile, FieldSpec, FrameSpec, ProfileRegistry

__all__ = [
    "RecordColumns",
    "decode",
    "decode_columns",
    "decode_server",
    "encode",
    "encode_server",
    "max_records",
    "modbus_many",
]

VERSION: Final = 1
_HEADER: Final = struct.Struct(">BHIIIBH")
_SERVER_CRC: Final = "crc32"
_UTC: Final = dt.UTC
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=_UTC)
_ts_cache: dict[int, dt.datetime] = {}
_MISSING: Final = object()


def _utc(seconds: int) -> dt.datetime:
    """UTC datetime of unix ``seconds``, cached (archive hours repeat across units)."""
    ts = _ts_cache.get(seconds)
    if ts is None:
        try:
            ts = _EPOCH + dt.timedelta(seconds=seconds)
        except (OverflowError, ValueError):
            raise FrameError(Reason.OUT_OF_RANGE, f"time {seconds} s since 1970 is not a date") from None
        if len(_ts_cache) > 200_000:
            _ts_cache.clear()
        _ts_cache[seconds] = ts
    return ts


_secs_cache: dict[dt.datetime, int] = {}


def _secs(ts: dt.datetime, what: str) -> int:
    """Unix seconds of an aware, whole-second datetime (cached: hours repeat)."""
    s = _secs_cache.get(ts)
    if s is not None:
        return s
    if ts.tzinfo is None:
        raise FrameError(Reason.SCHEMA, f"{what} {ts} has no time zone; frames carry UTC times")
    delta = ts - _EPOCH
    if delta.microseconds:
        raise FrameError(Reason.SCHEMA, f"{what} {ts} is not a whole second")
    s = delta.days * 86400 + delta.seconds
    if len(_secs_cache) > 200_000:
        _secs_cache.clear()
    _secs_cache[ts] = s
    return s


# --- decoding -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class RecordColumns:
    """The repeated records of one binary frame as numpy columns (for bulk landing).

    Attributes
    ----------
    times
        Record times, unix seconds (int64), one per record.
    readings
        ``(channel, values, present)`` per channel field, in field order; ``values`` is
        float64 per record, ``present`` marks the records that carry a value (a missing
        value is no reading, as in :attr:`Frame.readings`); None = all present.
    archive
        ``"hourly"``/``"daily"`` when the frame type feeds archive columns.
    archive_columns
        ``(column, values, present)`` per archive field, like ``readings`` (a missing
        value is a null in the archive record).
    """

    times: np.ndarray[Any, np.dtype[np.int64]]
    readings: tuple[tuple[str, np.ndarray[Any, Any], np.ndarray[Any, Any] | None], ...]
    archive: str | None
    archive_columns: tuple[tuple[str, np.ndarray[Any, Any], np.ndarray[Any, Any] | None], ...]

    def reading_tuples(self) -> tuple[tuple[str, dt.datetime, float | None], ...]:
        """The readings as :attr:`Frame.readings` has them (channel-major, present only)."""
        times = [_utc(int(t)) for t in self.times.tolist()]
        out: list[tuple[str, dt.datetime, float | None]] = []
        for channel, values, present in self.readings:
            vals = values.tolist()
            keep = present.tolist() if present is not None else [True] * len(vals)
            out.extend((channel, ts, v) for ts, v, k in zip(times, vals, keep, strict=True) if k)
        return tuple(out)

    def archive_tuples(self) -> tuple[tuple[str, dt.datetime, dict[str, float | None]], ...]:
        """The archive records as :attr:`Frame.archives` has them."""
        if self.archive is None or not self.archive_columns:
            return ()
        cols = [
            (c, v.tolist(), p.tolist() if p is not None else [True] * len(v))
            for c, v, p in self.archive_columns
        ]
        return tuple(
            (self.archive, _utc(int(t)), {c: (v[i] if ok[i] else None) for c, v, ok in cols})
            for i, t in enumerate(self.times.tolist())
        )


def decode_columns(
    reg: ProfileRegistry, raw: bytes, hint: str | None, *, known_crc: tuple[str, int, bytes] | None = None
) -> tuple[Frame, RecordColumns | None]:
    """Decode like :func:`decode`, with a binary frame's records as numpy columns.

    Returns ``(frame, columns)``: when ``columns`` is not None, ``frame`` has no
    ``readings`` or ``archives`` (they are in ``columns``); events, command acks and
    the envelope fields are in ``frame`` as usual.  JSON documents come back whole
    (``columns`` None).  ``known_crc`` = ``(algorithm, end, checksum)`` computed in bulk
    for ``raw[:end]`` (see :func:`modbus_many`) saves computing it here.  Raises what
    :func:`decode` raises, for the same bytes.
    """
    return _decode(reg, raw, hint, columnar=True, known_crc=known_crc)


def decode(reg: ProfileRegistry, raw: bytes, hint: str | None) -> Frame:
    """Decode one uplink packet (see :meth:`ProfileRegistry.decode`)."""
    return _decode(reg, raw, hint, columnar=False, known_crc=None)[0]


def _decode(
    reg: ProfileRegistry, raw: bytes, hint: str | None, *, columnar: bool,
    known_crc: tuple[str, int, bytes] | None,
) -> tuple[Frame, RecordColumns | None]:  # fmt: skip
    if len(raw) > reg.max_frame_bytes:
        raise FrameError(Reason.OVERSIZED, f"{len(raw)} bytes, the limit is {reg.max_frame_bytes}")
    if not raw:
        raise FrameError(Reason.TRUNCATED, "empty packet")
    prof = reg.profile(hint) if hint is not None else None
    if prof is not None and prof.format == "json":
        return _decode_json(prof, raw), None
    if prof is None and raw[0] != VERSION:
        if raw.lstrip()[:1] == b"{" or not raw.strip():
            return _decode_json(_json_profile(reg, raw), raw), None
        raise FrameError(
            Reason.SCHEMA,
            f"first byte {raw[0]:#04x} is neither binary frame version {VERSION} nor a JSON '{{'",
        )
    return _decode_binary(reg, prof, raw, columnar=columnar, known_crc=known_crc)


def _json_profile(reg: ProfileRegistry, raw: bytes) -> DeviceProfile:
    profiles = reg.json_profiles()
    if len(profiles) == 1:
        return profiles[0]
    # several JSON profiles: the document must name its profile in a top-level "profile"
    m = re.search(rb'"profile"\s*:\s*"([a-z0-9_.-]{1,64})"', raw)
    if m is not None:
        prof = reg.profile(m.group(1).decode())
        if prof.format == "json":
            return prof
    raise FrameError(
        Reason.UNKNOWN_PROFILE,
        f"a JSON packet without a profile; {len(profiles)} JSON profiles are loaded: "
        "publish on a topic that names the profile or add a top-level \"profile\" key",
    )


def _decode_binary(
    reg: ProfileRegistry, prof: DeviceProfile | None, raw: bytes, *, columnar: bool = False,
    known_crc: tuple[str, int, bytes] | None = None,
) -> tuple[Frame, RecordColumns | None]:  # fmt: skip
    n = len(raw)
    if raw[0] != VERSION:
        raise FrameError(Reason.SCHEMA, f"frame version {raw[0]}, expected {VERSION}")
    if n < 3:
        raise FrameError(Reason.TRUNCATED, f"{n} bytes, the envelope header has {HEADER_SIZE}")
    code = int.from_bytes(raw[1:3], "big")
    if code == SERVER_PROFILE_CODE:
        raise FrameError(Reason.SCHEMA, "profile code 0 marks a server frame; units never send it")
    if prof is None:
        prof = reg.by_code(code)
    elif prof.code != code:
        raise FrameError(
            Reason.UNKNOWN_PROFILE,
            f"frame has profile code {code:#06x}, the transport named {prof.name!r} ({prof.code:#06x})",
        )
    if n < HEADER_SIZE:
        raise FrameError(Reason.TRUNCATED, f"{n} bytes, the envelope header has {HEADER_SIZE}")
    _v, _c, serial, counter, t, ftype, blen = _HEADER.unpack_from(raw)
    end = HEADER_SIZE + blen
    total = end + prof.crc_size
    if total > reg.max_frame_bytes:
        raise FrameError(Reason.OVERSIZED, f"header announces {total} bytes, the limit is {reg.max_frame_bytes}")
    if n < total:
        raise FrameError(Reason.TRUNCATED, f"need {total} bytes, got {n}")
    if n > total:
        raise FrameError(Reason.SCHEMA, f"{n - total} bytes after the {prof.crc} checksum")
    if known_crc is not None and known_crc[0] == prof.crc and known_crc[1] == end:
        check = known_crc[2]
    else:
        check = crc(prof.crc, raw[:end])
    if check != raw[end:]:
        raise FrameError(Reason.BAD_CRC, f"{prof.crc} mismatch on a {n}-byte {prof.name} frame")
    spec = prof.frame_type(ftype)
    if spec is None:
        known = ", ".join(f"{f.type:#04x}" for f in prof.frames if isinstance(f.type, int))
        raise FrameError(Reason.SCHEMA, f"profile {prof.name!r} has no frame type {ftype:#04x} (has {known})")
    device_time = _utc(t)
    device_id = prof.device_id(serial)
    body = raw[HEADER_SIZE:end]
    if spec.body == "secret":
        return Frame(prof.name, device_id, counter, device_time, spec.kind, secret=body), None
    if columnar:
        got = _decode_record_columns(prof, spec, body, device_id, counter, device_time)
        if got is not None:
            return got
    return _decode_records(prof, spec, body, device_id, counter, device_time), None


def _decode_records(
    prof: DeviceProfile, spec: FrameSpec, body: bytes, device_id: str, counter: int,
    device_time: dt.datetime,
) -> Frame:  # fmt: skip
    psize, rsize = spec.prefix_size, spec.record_size
    nrec, rest = divmod(len(body) - psize, rsize)
    if len(body) < psize or rest:
        raise FrameError(
            Reason.SCHEMA,
            f"{prof.name} frame type {spec.type:#04x}: body of {len(body)} bytes is not a "
            f"{psize}-byte prefix plus whole {rsize}-byte records",
        )
    columns: dict[str, list[Any]] = {}
    st = spec.record_struct
    if st is not None and nrec <= _SMALL:
        # few records: struct + list comprehensions beat numpy's per-call overhead
        raw_cols = dict(zip(spec.struct_slots, zip(*st.iter_unpack(body[psize:]), strict=True), strict=False))
        for f in spec.fields:
            pcol = raw_cols.get(f.slot, ())
            if f.role in ("ts", "event_code", "command_id"):
                columns[f.name] = list(pcol)
            elif f.role == "event_arg" or f.channel or f.column:
                columns[f.name] = _values_py(f, pcol)
    else:
        assert spec.dtype is not None
        arr = np.frombuffer(body, dtype=spec.dtype, count=nrec, offset=psize)
        slot_index = {s: f"s{i}" for i, s in enumerate(spec.slots)}
        for f in spec.fields:
            col = arr[slot_index[f.slot]]
            if f.role in ("ts", "event_code", "command_id"):
                columns[f.name] = col.tolist()
            elif f.role == "event_arg" or f.channel or f.column:
                columns[f.name] = _values(f, col)
    if spec.time == "record":
        ts_field = next(f for f in spec.fields if f.role == "ts")
        times = [_utc(s) for s in columns[ts_field.name]]
    elif spec.time == "prefix":
        pf = next(f for f in spec.prefix if f.role == "ts")
        start = int.from_bytes(body[pf.offset : pf.offset + pf.size], pf.endian, signed=pf.type[0] == "i")
        step = spec.interval_s
        times = [_utc(start + i * step) for i in range(nrec)]
    else:
        times = [device_time] * nrec
    return _assemble(prof, spec, columns, times, device_id, counter, device_time)


def decode_many(
    reg: ProfileRegistry, raws: Sequence[bytes], hints: Sequence[str | None]
) -> list[tuple[Frame, RecordColumns | None] | FrameError]:
    """:func:`decode_columns` of a batch, with the CRC-16/MODBUS checked in bulk.

    One result per packet: ``(frame, columns)`` or the :class:`FrameError` that
    :meth:`ProfileRegistry.decode` raises for those bytes (an unexpected exception is
    reported as ``schema``, as there).
    """
    reg._maybe_refresh()  # what ProfileRegistry.decode does per packet, once per batch
    known: list[tuple[str, int, bytes] | None] = [None] * len(raws)
    todo: list[int] = []
    ends: list[int] = []
    for i, (raw, hint) in enumerate(zip(raws, hints, strict=True)):
        if len(raw) < HEADER_SIZE or raw[0] != VERSION or len(raw) > reg.max_frame_bytes:
            continue
        end = HEADER_SIZE + int.from_bytes(raw[16:18], "big")
        try:
            prof = reg.profile(hint) if hint is not None else reg.by_code(int.from_bytes(raw[1:3], "big"))
        except FrameError:
            continue
        if prof.format == "binary" and prof.crc == "crc16-modbus" and len(raw) == end + 2:
            todo.append(i)
            ends.append(end)
    if len(todo) >= _BULK_MIN:
        sums = modbus_many([raws[i][:e] for i, e in zip(todo, ends, strict=True)])
        for i, e, c in zip(todo, ends, sums, strict=True):
            known[i] = ("crc16-modbus", e, c.to_bytes(2, "little"))
    out: list[tuple[Frame, RecordColumns | None] | FrameError] = []
    for raw, hint, k in zip(raws, hints, known, strict=True):
        try:
            out.append(_decode(reg, bytes(raw), hint, columnar=True, known_crc=k))
        except FrameError as e:
            out.append(e)
        except Exception as e:  # noqa: BLE001 - as ProfileRegistry.decode: never another exception
            out.append(FrameError(Reason.SCHEMA, f"internal decoder error ({type(e).__name__}: {e})"))
    return out


#: Fewer frames than this are checked one by one (numpy's per-step cost would dominate).
_BULK_MIN: Final = 8
_modbus_pairs: np.ndarray[Any, np.dtype[np.uint16]] | None = None


def _modbus_pair_table() -> np.ndarray[Any, np.dtype[np.uint16]]:
    """CRC-16/MODBUS state after two bytes, indexed by ``state ^ little-endian word``."""
    global _modbus_pairs
    if _modbus_pairs is None:
        t = np.array(_MODBUS_TABLE, dtype=np.uint32)
        x = np.arange(65536, dtype=np.uint32)
        for _ in range(2):
            x = (x >> 8) ^ t[x & 0xFF]
        _modbus_pairs = x.astype(np.uint16)
    return _modbus_pairs


def modbus_many(datas: Sequence[bytes]) -> list[int]:
    """CRC-16/MODBUS of each of ``datas``, computed for all of them at once.

    The messages advance together, two bytes per numpy step (a 65,536-entry table),
    longest first so that each step works on a prefix of the batch; equal to
    :func:`ingest._crc.crc16_modbus` message by message.
    """
    m = len(datas)
    if m == 0:
        return []
    lens = np.fromiter((len(d) for d in datas), dtype=np.int64, count=m)
    order = np.argsort(-lens, kind="stable")
    longest = int(lens[order[0]])
    width = longest + (longest & 1)
    buf = np.zeros((m, width), dtype=np.uint8)
    for row, i in enumerate(order.tolist()):
        d = datas[i]
        buf[row, : len(d)] = np.frombuffer(d, dtype=np.uint8)
    words = np.ascontiguousarray(buf.view("<u2").T)  # (width // 2, m), sorted rows
    sorted_lens = lens[order]
    pairs = _modbus_pair_table()
    c = np.full(m, 0xFFFF, dtype=np.uint16)
    # active[j] = how many messages still have a whole word j
    nwords = sorted_lens // 2
    active = np.searchsorted(-nwords, -np.arange(int(nwords[0]) if m else 0), side="left")
    for j, k in enumerate(active.tolist()):
        c[:k] = pairs[c[:k] ^ words[j, :k]]
    odd = np.flatnonzero(sorted_lens & 1)
    if odd.size:
        b = buf[odd, sorted_lens[odd] - 1].astype(np.uint16)
        t = np.array(_MODBUS_TABLE, dtype=np.uint16)
        c[odd] = (c[odd] >> 8) ^ t[(c[odd] ^ b) & 0xFF]
    out = np.empty(m, dtype=np.uint16)
    out[order] = c
    return [int(x) for x in out.tolist()]


#: Record times a datetime can hold (years 1..9999), unix seconds.
_MIN_S: Final = -62135596800
_MAX_S: Final = 253402300799


def _decode_record_columns(
    prof: DeviceProfile, spec: FrameSpec, body: bytes, device_id: str, counter: int,
    device_time: dt.datetime,
) -> tuple[Frame, RecordColumns] | None:  # fmt: skip
    """:func:`_decode_records` with channel and archive fields left as numpy columns.

    None when the frame needs the general path (no numpy layout, or a record time that
    is not a date, which the general path reports).
    """
    psize, rsize = spec.prefix_size, spec.record_size
    nrec, rest = divmod(len(body) - psize, rsize)
    if len(body) < psize or rest or spec.dtype is None:
        return None  # the general path raises the schema error
    arr = np.frombuffer(body, dtype=spec.dtype, count=nrec, offset=psize)
    slot_index = {s: f"s{i}" for i, s in enumerate(spec.slots)}
    if spec.time == "record":
        ts_field = next(f for f in spec.fields if f.role == "ts")
        times = arr[slot_index[ts_field.slot]].astype(np.int64)
    elif spec.time == "prefix":
        pf = next(f for f in spec.prefix if f.role == "ts")
        start = int.from_bytes(body[pf.offset : pf.offset + pf.size], pf.endian, signed=pf.type[0] == "i")
        times = start + np.arange(nrec, dtype=np.int64) * spec.interval_s
    else:
        times = np.full(nrec, _secs(device_time, "device time"), dtype=np.int64)
    if nrec and (int(times.min()) < _MIN_S or int(times.max()) > _MAX_S):
        return None
    readings: list[tuple[str, np.ndarray[Any, Any], np.ndarray[Any, Any] | None]] = []
    archive: list[tuple[str, np.ndarray[Any, Any], np.ndarray[Any, Any] | None]] = []
    other = [f for f in spec.fields if f.role in ("event_code", "event_arg", "command_id")]
    with np.errstate(all="ignore"):
        for f in spec.fields:
            if f.channel or f.column:
                v, bad = _values_arr(f, arr[slot_index[f.slot]])
                present = ~bad if bad is not None and bool(bad.any()) else None
                (readings if f.channel else archive).append((f.channel or f.column or "", v, present))
    frame = Frame(prof.name, device_id, counter, device_time, spec.kind)
    if other:  # events and command acks: few, through the general assembly
        columns: dict[str, list[Any]] = {}
        for f in other:
            col = arr[slot_index[f.slot]]
            if f.role in ("event_code", "command_id"):
                columns[f.name] = col.tolist()
            elif f.role == "event_arg":
                columns[f.name] = _values(f, col)
        stamps = [_utc(t) for t in times.tolist()]
        bare = dataclasses.replace(spec, fields=tuple(other))
        frame = _assemble(prof, bare, columns, stamps, device_id, counter, device_time)
    cols = RecordColumns(times, tuple(readings), spec.archive if archive else None, tuple(archive))
    return frame, cols


#: Up to this many records a frame is decoded with :mod:`struct`, above with numpy.
_SMALL: Final = 48


@functools.lru_cache(maxsize=1024)
def _exact(scale: float, add: float) -> tuple[float, float] | None:
    """``(inv, add * inv)`` when ``raw * scale + add == (raw + add * inv) / inv`` with
    integral ``inv`` and ``add * inv``: dividing by an integer gives the correctly
    rounded decimal (0.001 → /1000), no rounding step and no 0.30000000000000004."""
    inv = 1.0 / scale
    r_inv = round(inv)
    if r_inv == 0 or abs(inv - r_inv) > 1e-9 * abs(inv) or abs(1.0 / r_inv - scale) > 1e-15 * abs(scale):
        return None
    a = add * r_inv
    if abs(a - round(a)) > 1e-9:
        return None
    return float(r_inv), float(round(a))


def _values(f: FieldSpec, col: np.ndarray[Any, Any]) -> list[float | None]:
    """Scaled values of one field over all records (numpy); missing, non-finite are None."""
    with np.errstate(all="ignore"):  # NaN/inf from a device are data (→ None), not warnings
        return _values_np(f, col)


def _values_np(f: FieldSpec, col: np.ndarray[Any, Any]) -> list[float | None]:
    v, bad = _values_arr(f, col)
    out: list[float | None] = v.tolist()
    if bad is not None and bad.any():
        for i in np.flatnonzero(bad).tolist():
            out[i] = None
    return out


def _values_arr(
    f: FieldSpec, col: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]:
    """Scaled float64 values of one field and the mask of missing/non-finite ones."""
    if f.bit is not None:
        v = ((col >> f.bit) & 1).astype(np.float64)
    else:
        v = col.astype(np.float64)
        exact = None if f.is_float else _exact(f.scale, f.add)
        if exact is not None:
            inv, addi = exact
            if addi:
                v += addi
            if inv != 1.0:
                v /= inv
        else:
            if f.scale != 1.0:
                v *= f.scale
            if f.add:
                v += f.add
            if f.decimals is not None:
                v = np.round(v, f.decimals)
    bad = None
    if f.missing is not None:
        bad = col == f.missing
    if f.is_float:
        nonfinite = ~np.isfinite(v)
        bad = nonfinite if bad is None else bad | nonfinite
    return v, bad


def _values_py(f: FieldSpec, col: Sequence[Any]) -> list[float | None]:
    """The same as :func:`_values` on a few records, value for value, in plain Python.

    ``y - y == 0.0`` is a fast finiteness test (false for NaN and ±inf).
    """
    miss = f.missing
    if f.bit is not None:
        b = f.bit
        return [None if x == miss else float((x >> b) & 1) for x in col]
    exact = None if f.is_float else _exact(f.scale, f.add)
    if exact is not None:
        inv, addi = exact
        if addi:
            return [None if x == miss else (x + addi) / inv for x in col]
        return [None if x == miss else x / inv for x in col]
    s, a = f.scale, f.add
    if f.decimals is None:
        if s == 1.0 and not a:
            return [x if x - x == 0.0 and x != miss else None for x in col]
        return [y if (y := x * s + a) - y == 0.0 and x != miss else None for x in col]
    p = 10.0**f.decimals
    if s == 1.0 and not a:
        return [round(z) / p if (z := x * p) - z == 0.0 and x != miss else None for x in col]
    return [round(z) / p if (z := (x * s + a) * p) - z == 0.0 and x != miss else None for x in col]


def _event_detail(text: str, arg: float | None, f: FieldSpec | None) -> str:
    if arg is None or f is None:
        return text
    s = f"{arg:.{f.decimals}f}" if f.decimals is not None else repr(arg)
    return f"{text}: {s} {f.unit}" if f.unit else f"{text}: {s}"


def _assemble(
    prof: DeviceProfile, spec: FrameSpec, columns: Mapping[str, list[Any]], times: list[dt.datetime],
    device_id: str, counter: int, device_time: dt.datetime,
) -> Frame:  # fmt: skip
    readings: list[tuple[str, dt.datetime, float | None]] = []
    archive_fields: list[FieldSpec] = []
    events: list[tuple[dt.datetime, str, str, str]] = []
    acks: tuple[int, ...] = ()
    code_field = arg_field = None
    for f in spec.fields:
        if f.channel:
            # a missing value is no reading at all (a sensor not sampled, an hour lost),
            # not a row with a null value
            vals = columns[f.name]
            if None in vals:
                readings.extend((f.channel, ts, v) for ts, v in zip(times, vals, strict=True) if v is not None)
            else:
                readings.extend(zip(repeat(f.channel, len(times)), times, vals, strict=True))
        elif f.column:
            archive_fields.append(f)
        elif f.role == "event_code":
            code_field = f
        elif f.role == "event_arg":
            arg_field = f
        elif f.role == "command_id":
            acks = tuple(int(x) for x in columns[f.name])
    archives: tuple[tuple[str, dt.datetime, dict[str, float | None]], ...] = ()
    if archive_fields:
        assert spec.archive is not None
        names = [f.column for f in archive_fields]
        rows = zip(*(columns[f.name] for f in archive_fields), strict=True)
        archives = tuple(
            (spec.archive, ts, dict(zip(names, row, strict=True)))  # type: ignore[arg-type]
            for ts, row in zip(times, rows, strict=True)
        )
    if code_field is not None:
        codes = columns[code_field.name]
        args = columns[arg_field.name] if arg_field is not None else [None] * len(codes)
        for ts, code, arg in zip(times, codes, args, strict=True):
            ev = prof.events.get(code if prof.format == "binary" else str(code))
            if ev is None:
                name, severity, text = f"code_{code}", "warning", f"unknown event code {code}"
            else:
                name, severity, text = ev.code, ev.severity, ev.text
            events.append((ts, name, severity, _event_detail(text, arg, arg_field)))
    return Frame(
        profile=prof.name, device_id=device_id, counter=counter, device_time=device_time,
        kind=spec.kind, readings=tuple(readings), archives=archives, events=tuple(events),
        command_acks=acks,
    )  # fmt: skip


# --- JSON -----------------------------------------------------------------------------


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _crc_tail(prof: DeviceProfile) -> re.Pattern[bytes]:
    digits = 2 * CRC_SIZE[prof.crc]
    return re.compile(rb',"crc":"([0-9a-f]{%d})"\}\Z' % digits)


def _decode_json(prof: DeviceProfile, raw: bytes) -> Frame:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.reason == "unexpected end of data" and e.end == len(raw):
            raise FrameError(Reason.TRUNCATED, "JSON text ends inside a UTF-8 character") from None
        raise FrameError(Reason.SCHEMA, f"not UTF-8 at byte {e.start}") from None
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        if _is_json_prefix(text):
            raise FrameError(Reason.TRUNCATED, f"JSON text ends early ({len(raw)} bytes)") from None
        raise FrameError(Reason.SCHEMA, f"not JSON: {e.msg} at character {e.pos}") from None
    except (ValueError, RecursionError) as e:
        raise FrameError(Reason.SCHEMA, f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise FrameError(Reason.SCHEMA, f"JSON {type(doc).__name__} where an object was expected")
    if prof.crc != "none":
        m = _crc_tail(prof).search(raw)
        if m is None:
            raise FrameError(
                Reason.SCHEMA,
                f'profile {prof.name!r} needs a last member "crc":"<{prof.crc} in lower-case hex>"',
            )
        if crc(prof.crc, raw[: m.start()] + b"}").hex() != m.group(1).decode():
            raise FrameError(Reason.BAD_CRC, f"{prof.crc} mismatch on a {len(raw)}-byte {prof.name} document")
    paths = prof.json_paths
    dev = _at(doc, paths["device_id"])
    if isinstance(dev, int) and not isinstance(dev, bool) and 0 <= dev <= 0xFFFFFFFF:
        dev = prof.device_id(dev)
    if not isinstance(dev, str) or not dev:
        raise FrameError(Reason.SCHEMA, f"device id at {_show(paths['device_id'])} is missing or not a string")
    counter = _at(doc, paths["counter"])
    if isinstance(counter, bool) or not isinstance(counter, int) or not 0 <= counter <= 0xFFFFFFFF:
        raise FrameError(Reason.SCHEMA, f"frame counter at {_show(paths['counter'])} must be an integer 0..2^32-1")
    device_time = _json_time(_at(doc, paths["device_time"]), "device time")
    if "frame_type" in paths:
        ftype = _at(doc, paths["frame_type"])
        spec = prof.frame_type(ftype) if isinstance(ftype, str | int) else None
        if spec is None:
            known = ", ".join(repr(f.type) for f in prof.frames)
            raise FrameError(Reason.SCHEMA, f"frame type {ftype!r} is not one of {known}")
    else:
        spec = prof.frames[0]
    recs = _at(doc, spec.records_path)
    if isinstance(recs, dict) or (not spec.records_path and recs is not _MISSING):
        recs = [recs]
    if not isinstance(recs, list):
        raise FrameError(Reason.SCHEMA, f"records at {_show(spec.records_path)} must be a list")
    columns: dict[str, list[Any]] = {}
    for f in spec.fields:
        vals = [_at(r, f.path) for r in recs]
        if f.role == "ts":
            continue
        if f.role == "event_code":
            for v in vals:
                if not isinstance(v, str | int) or isinstance(v, bool):
                    raise FrameError(Reason.SCHEMA, f"event code {v!r} must be a string or integer")
            columns[f.name] = vals
        elif f.role == "command_id":
            for v in vals:
                if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0xFFFFFFFF:
                    raise FrameError(Reason.SCHEMA, f"command id {v!r} must be an integer 0..2^32-1")
            columns[f.name] = vals
        elif f.role == "event_arg" or f.channel or f.column:
            columns[f.name] = [_json_number(v, f) for v in vals]
    if spec.time == "record":
        ts_field = next(f for f in spec.fields if f.role == "ts")
        times = [_json_time(_at(r, ts_field.path), ts_field.name) for r in recs]
    elif spec.time == "prefix":
        pf = next(f for f in spec.prefix if f.role == "ts")
        start = _json_time(_at(doc, pf.path), pf.name)
        times = [start + dt.timedelta(seconds=i * spec.interval_s) for i in range(len(recs))]
    else:
        times = [device_time] * len(recs)
    return _assemble(prof, spec, columns, times, dev, counter, device_time)


def _show(path: tuple[str | int, ...]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _at(obj: Any, path: tuple[str | int, ...]) -> Any:
    for p in path:
        if isinstance(p, int):
            if not isinstance(obj, list) or p >= len(obj):
                return _MISSING
            obj = obj[p]
        else:
            if not isinstance(obj, dict) or p not in obj:
                return _MISSING
            obj = obj[p]
    return obj


def _json_time(v: Any, what: str) -> dt.datetime:
    if isinstance(v, int | float) and not isinstance(v, bool):
        if not math.isfinite(v) or v != int(v):
            raise FrameError(Reason.SCHEMA, f"{what} {v!r} must be whole unix seconds")
        if not -62135596800 <= v <= 253402300799:
            raise FrameError(Reason.OUT_OF_RANGE, f"{what} {v!r} s since 1970 is not a date")
        return _utc(int(v))
    if isinstance(v, str):
        try:
            ts = dt.datetime.fromisoformat(v)
        except ValueError:
            raise FrameError(Reason.SCHEMA, f"{what} {v!r} is not ISO 8601") from None
        if ts.tzinfo is None:
            raise FrameError(Reason.SCHEMA, f"{what} {v!r} has no UTC offset")
        return ts.astimezone(_UTC)
    raise FrameError(Reason.SCHEMA, f"{what} is missing or not a number of unix seconds")


def _json_number(v: Any, f: FieldSpec) -> float | None:
    if v is None or v is _MISSING:
        return None
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if not isinstance(v, int | float):
        raise FrameError(Reason.SCHEMA, f"field {f.name!r}: {v!r} is not a number")
    try:
        x = float(v)
    except OverflowError:
        raise FrameError(Reason.OUT_OF_RANGE, f"field {f.name!r}: {v} is too large") from None
    if f.missing is not None and x == f.missing:
        return None
    if f.bit is not None:
        return float((int(x) >> f.bit) & 1) if x.is_integer() else None
    x = x * f.scale + f.add
    if not math.isfinite(x):
        raise FrameError(Reason.OUT_OF_RANGE, f"field {f.name!r}: {v} is too large")
    return round(x, f.decimals) if f.decimals is not None else x


_NUM_FULL: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_NUM_PREFIX: Final = re.compile(
    r"-|-?(?:0|[1-9][0-9]*)(?:\.|\.[0-9]+(?:[eE][+-]?[0-9]*)?|[eE][+-]?[0-9]*)?"
)
_STR_ESC: Final = frozenset('"\\/bfnrtu')
_HEX: Final = frozenset("0123456789abcdefABCDEF")


def _is_json_prefix(s: str) -> bool:
    """Whether ``s`` is a proper prefix of some JSON text (the document was cut short).

    An iterative scanner (no recursion, so deep nesting cannot crash it).
    """
    stack: list[str] = []
    state = "value"  # value | value_or_close | key | key_or_close | colon | after
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in " \t\r\n":
            i += 1
            continue
        if state in ("value", "value_or_close"):
            if c == "]" and state == "value_or_close":
                stack.pop()
                state, i = "after", i + 1
            elif c in "{[":
                stack.append(c)
                state, i = ("key_or_close" if c == "{" else "value_or_close"), i + 1
            elif c == '"':
                i = _scan_string(s, i)
                if i < 0:
                    return i == -1
                state = "after"
            elif c in "-0123456789":
                j = i
                while j < n and s[j] in "+-0123456789.eE":
                    j += 1
                tok = s[i:j]
                if j == n:
                    return _NUM_PREFIX.fullmatch(tok) is not None
                if _NUM_FULL.fullmatch(tok) is None:
                    return False
                state, i = "after", j
            else:
                for word in ("true", "false", "null"):
                    part = s[i : i + len(word)]
                    if word.startswith(part) and c == word[0]:
                        if len(part) < len(word):
                            return i + len(part) == n
                        state, i = "after", i + len(word)
                        break
                else:
                    return False
        elif state in ("key", "key_or_close"):
            if c == "}" and state == "key_or_close":
                stack.pop()
                state, i = "after", i + 1
            elif c == '"':
                i = _scan_string(s, i)
                if i < 0:
                    return i == -1
                state = "colon"
            else:
                return False
        elif state == "colon":
            if c != ":":
                return False
            state, i = "value", i + 1
        else:  # after a value
            if not stack:
                return False  # text after a complete document
            if c == ",":
                state = "key" if stack[-1] == "{" else "value"
                i += 1
            elif (c == "}" and stack[-1] == "{") or (c == "]" and stack[-1] == "["):
                stack.pop()
                i += 1
            else:
                return False
    return not (state == "after" and not stack)


def _scan_string(s: str, i: int) -> int:
    """Index after the string starting at ``s[i] == '"'``; -1 = cut short, -2 = invalid."""
    n = len(s)
    j = i + 1
    while j < n:
        c = s[j]
        if c == '"':
            return j + 1
        if c == "\\":
            if j + 1 >= n:
                return -1
            e = s[j + 1]
            if e not in _STR_ESC:
                return -2
            if e == "u":
                hexpart = s[j + 2 : j + 6]
                if not all(h in _HEX for h in hexpart):
                    return -2
                if len(hexpart) < 4:
                    return -1
                j += 6
            else:
                j += 2
            continue
        if ord(c) < 0x20:
            return -2
        j += 1
    return -1


# --- encoding -------------------------------------------------------------------------


def _spec_for(prof: DeviceProfile, frame: Frame) -> FrameSpec:
    cands = [s for s in prof.frames if s.kind == frame.kind]
    if len(cands) > 1 and frame.archives:
        kinds = {a[0] for a in frame.archives}
        cands = [s for s in cands if s.archive in kinds] or cands
    if not cands:
        kinds_known = ", ".join(sorted({s.kind for s in prof.frames}))
        raise FrameError(Reason.SCHEMA, f"profile {prof.name!r} has no frame of kind {frame.kind!r} ({kinds_known})")
    return cands[0]


def max_records(prof: DeviceProfile, spec: FrameSpec, max_frame_bytes: int) -> int:
    """How many records of ``spec`` fit in one frame of at most ``max_frame_bytes``."""
    room = max_frame_bytes - HEADER_SIZE - prof.crc_size - spec.prefix_size
    return max(0, min(room, 0xFFFF - spec.prefix_size) // spec.record_size) if spec.record_size else 0


def encode(prof: DeviceProfile, frame: Frame) -> bytes:
    """Wire bytes of ``frame`` under ``prof`` (see :meth:`ProfileRegistry.encode`)."""
    spec = _spec_for(prof, frame)
    if not 0 <= frame.counter <= 0xFFFFFFFF:
        raise FrameError(Reason.OUT_OF_RANGE, f"frame counter {frame.counter} is not a u32")
    t = _secs(frame.device_time, "device time")
    if prof.format == "json":
        return _encode_json(prof, spec, frame, t)
    if not 0 <= t <= 0xFFFFFFFF:
        raise FrameError(Reason.OUT_OF_RANGE, f"device time {frame.device_time} is outside the u32 range")
    serial = prof.serial(frame.device_id)
    if spec.body == "secret":
        body = frame.secret
    else:
        body = _encode_records(prof, spec, frame, t)
    if len(body) > 0xFFFF:
        raise FrameError(Reason.OVERSIZED, f"body of {len(body)} bytes; split the frame")
    assert isinstance(spec.type, int)
    out = _HEADER.pack(VERSION, prof.code, serial, frame.counter, t, spec.type, len(body)) + body
    return out + crc(prof.crc, out)


def _rows(prof: DeviceProfile, spec: FrameSpec, frame: Frame) -> tuple[list[int], list[dict[str, Any]]]:
    """Records of ``frame`` as (record times in unix seconds, {field name: value})."""
    fields = spec.fields
    if any(f.role == "event_code" for f in fields):
        code_f = next(f for f in fields if f.role == "event_code")
        arg_f = next((f for f in fields if f.role == "event_arg"), None)
        back = {ev.code: key for key, ev in prof.events.items()}
        times, rows = [], []
        for ts, code, _sev, detail in frame.events:
            key: Any = back.get(code)
            if key is None:
                m = re.fullmatch(r"code_(-?\d+)", code)
                if m is None:
                    raise FrameError(Reason.SCHEMA, f"event {code!r} has no code in profile {prof.name!r}")
                key = int(m.group(1)) if prof.format == "binary" else m.group(1)
            row: dict[str, Any] = {code_f.name: key}
            if arg_f is not None:
                row[arg_f.name] = _detail_arg(detail, arg_f)
            times.append(_secs(ts, "event time"))
            rows.append(row)
        return times, rows
    if any(f.role == "command_id" for f in fields):
        f = fields[0]
        return [0] * len(frame.command_acks), [{f.name: c} for c in frame.command_acks]
    by_channel = {f.channel: f.name for f in fields if f.channel}
    by_column = {f.column: f.name for f in fields if f.column}
    table: dict[int, dict[str, Any]] = {}
    for ch, ts, v in frame.readings:
        name = by_channel.get(ch)
        if name is None:
            raise FrameError(Reason.SCHEMA, f"frame type {spec.type!r} of {prof.name!r} has no channel {ch!r}")
        table.setdefault(_secs(ts, "reading time"), {})[name] = v
    for kind, ts, vals in frame.archives:
        if kind != spec.archive:
            raise FrameError(Reason.SCHEMA, f"frame type {spec.type!r} of {prof.name!r} carries no {kind!r} archive")
        row = table.setdefault(_secs(ts, "archive time"), {})
        for col, v in vals.items():
            name = by_column.get(col)
            if name is None:
                raise FrameError(Reason.SCHEMA, f"frame type {spec.type!r} of {prof.name!r} has no column {col!r}")
            row[name] = v
    times = sorted(table)
    if spec.time == "prefix" and times:
        start, step = times[0], spec.interval_s
        if any((t - start) % step for t in times):
            raise FrameError(Reason.SCHEMA, f"record times are not on a {step}-second grid from {_utc(start)}")
        times = list(range(start, times[-1] + 1, step))
    elif spec.time == "device":
        t0 = _secs(frame.device_time, "device time")
        if any(t != t0 for t in times):
            raise FrameError(Reason.SCHEMA, f"frame type {spec.type!r} carries values at its device time only")
    return times, [table.get(t, {}) for t in times]


def _detail_arg(detail: str, f: FieldSpec) -> float | None:
    tail = detail.rpartition(": ")[2]
    if f.unit and tail.endswith(" " + f.unit):
        tail = tail[: -len(f.unit) - 1]
    try:
        return float(tail)
    except ValueError:
        return None


def _encode_records(prof: DeviceProfile, spec: FrameSpec, frame: Frame, t: int) -> bytes:
    with np.errstate(all="ignore"):  # out-of-range values are reported, not warned about
        return _encode_records_np(prof, spec, frame, t)


def _encode_records_np(prof: DeviceProfile, spec: FrameSpec, frame: Frame, t: int) -> bytes:
    times, rows = _rows(prof, spec, frame)
    n = len(rows)
    assert spec.dtype is not None
    arr = np.zeros(n, dtype=spec.dtype)
    slot_index = {s: f"s{i}" for i, s in enumerate(spec.slots)}
    bits_none: dict[str, np.ndarray[Any, Any]] = {}
    for f in spec.fields:
        slot = slot_index[f.slot]
        if f.role == "ts":
            arr[slot] = _int_column(f, [float(x) for x in times], frame)
            continue
        if f.role in ("event_code", "command_id"):
            arr[slot] = _int_column(f, [float(r[f.name]) for r in rows], frame)
            continue
        if not (f.channel or f.column or f.role == "event_arg"):
            continue
        vals = [r.get(f.name) for r in rows]
        none = np.array([v is None for v in vals], dtype=bool)
        x = np.array([np.nan if v is None else float(v) for v in vals], dtype=np.float64)
        if f.bit is not None:
            one = np.where(none, 0, (x != 0).astype(np.int64)) << f.bit
            arr[slot] = arr[slot] | one.astype(arr[slot].dtype)
            bits_none[slot] = bits_none[slot] | none if slot in bits_none else none
            continue
        raw = (x - f.add) / f.scale
        if f.is_float:
            col = raw
            if none.any():
                col = np.where(none, np.nan if f.missing is None else f.missing, col)
        else:
            col = _int_column(f, raw.tolist(), frame, none)
        arr[slot] = col
    for f in spec.fields:
        slot = slot_index[f.slot]
        if f.bit is not None and slot in bits_none and bits_none[slot].any():
            if f.missing is None:
                raise FrameError(Reason.SCHEMA, f"field {f.name!r} has no missing value for a null flag")
            arr[slot] = np.where(bits_none[slot], int(f.missing), arr[slot])
    prefix = bytearray(spec.prefix_size)
    for pf in spec.prefix:
        if pf.role == "ts":
            start = times[0] if times else t
            lo, hi = _range(pf)
            if not lo <= start <= hi:
                raise FrameError(Reason.OUT_OF_RANGE, f"start time {start} does not fit {pf.type}")
            prefix[pf.offset : pf.offset + pf.size] = start.to_bytes(pf.size, pf.endian, signed=pf.type[0] == "i")
    return bytes(prefix) + arr.tobytes()


def _range(f: FieldSpec) -> tuple[int, int]:
    info = np.iinfo(np.dtype(f"u{f.size}" if f.type[0] == "u" else f"i{f.size}"))
    return int(info.min), int(info.max)


def _int_column(
    f: FieldSpec, raw: list[float], frame: Frame, none: np.ndarray[Any, Any] | None = None
) -> np.ndarray[Any, Any]:
    lo, hi = _range(f)
    x = np.rint(np.array(raw, dtype=np.float64))
    if none is not None and none.any():
        if f.missing is None:
            raise FrameError(Reason.SCHEMA, f"field {f.name!r} has no missing value; a null cannot be sent")
        x = np.where(none, f.missing, x)
    else:
        none = None
    bad = ~np.isfinite(x) | (x < lo) | (x > hi)
    if f.missing is not None:
        hits = x == f.missing
        if none is not None:
            hits &= ~none
        bad |= hits
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise FrameError(
            Reason.OUT_OF_RANGE,
            f"{frame.device_id}: field {f.name!r} value {raw[i]!r} (raw) does not fit {f.type}"
            + (f" without hitting its missing value {f.missing:g}" if f.missing is not None else ""),
        )
    return x.astype(np.dtype(f"u{f.size}" if f.type[0] == "u" else f"i{f.size}"))


def _put(obj: dict[str, Any], path: tuple[str | int, ...], value: Any) -> None:
    if not path:
        raise FrameError(Reason.SCHEMA, "cannot write a value at the JSON path $")
    for p in path[:-1]:
        if not isinstance(p, str):
            raise FrameError(Reason.SCHEMA, "cannot encode a JSON path with an index")
        obj = obj.setdefault(p, {})
    last = path[-1]
    if not isinstance(last, str):
        raise FrameError(Reason.SCHEMA, "cannot encode a JSON path with an index")
    obj[last] = value


def _encode_json(prof: DeviceProfile, spec: FrameSpec, frame: Frame, t: int) -> bytes:
    paths = prof.json_paths
    doc: dict[str, Any] = {}
    _put(doc, paths["device_id"], frame.device_id)
    _put(doc, paths["counter"], frame.counter)
    _put(doc, paths["device_time"], t)
    if "frame_type" in paths:
        _put(doc, paths["frame_type"], spec.type)
    times, rows = _rows(prof, spec, frame)
    records: list[Any] = []
    for ts, row in zip(times, rows, strict=True):
        if spec.fields and not spec.fields[0].path and len(spec.fields) == 1:
            records.append(row.get(spec.fields[0].name))
            continue
        rec: dict[str, Any] = {}
        for f in spec.fields:
            if f.role == "ts":
                _put(rec, f.path, ts)
            elif f.role in ("event_code", "command_id"):
                _put(rec, f.path, row[f.name])
            elif f.channel or f.column or f.role == "event_arg":
                v = row.get(f.name)
                if v is None:
                    continue  # absent = missing; keeps the document short
                else:
                    v = (float(v) - f.add) / f.scale
                    v = round(v, f.decimals) if f.decimals is not None else v
                    if not math.isfinite(v):
                        raise FrameError(Reason.OUT_OF_RANGE, f"field {f.name!r}: {v} is not finite")
                _put(rec, f.path, v)
        records.append(rec)
    if spec.time == "prefix":
        pf = next(f for f in spec.prefix if f.role == "ts")
        _put(doc, pf.path, times[0] if times else t)
    if spec.records_path:
        _put(doc, spec.records_path, records)
    elif len(records) == 1 and isinstance(records[0], dict):
        doc.update(records[0])
    elif records:
        raise FrameError(Reason.SCHEMA, "a frame whose records live at $ carries exactly one record")
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    if prof.crc == "none":
        return text
    return text[:-1] + b',"crc":"' + crc(prof.crc, text).hex().encode() + b'"}'


# --- server frames (server → unit) ----------------------------------------------------


def encode_server(
    frame_type: int, serial: int, counter: int, body: bytes, at: dt.datetime | None
) -> bytes:
    """A server → unit frame: envelope with profile code 0, CRC-32 (see the design)."""
    sent = _secs((at or dt.datetime.now(_UTC)).replace(microsecond=0), "send time")
    head = _HEADER.pack(VERSION, SERVER_PROFILE_CODE, serial, counter & 0xFFFFFFFF, sent, frame_type, len(body))
    out = head + body
    return out + crc(_SERVER_CRC, out)


def decode_server(raw: bytes, *, max_frame_bytes: int = 4096) -> ServerFrame:
    """Decode a server → unit frame (acknowledgement 0x80 or downlink command 0x81).

    Raises
    ------
    FrameError
        With the same reasons and guarantees as uplink decoding.
    """
    n = len(raw)
    if n > max_frame_bytes:
        raise FrameError(Reason.OVERSIZED, f"{n} bytes, the limit is {max_frame_bytes}")
    if n == 0:
        raise FrameError(Reason.TRUNCATED, "empty packet")
    if raw[0] != VERSION:
        raise FrameError(Reason.SCHEMA, f"frame version {raw[0]}, expected {VERSION}")
    if n < HEADER_SIZE:
        raise FrameError(Reason.TRUNCATED, f"{n} bytes, the envelope header has {HEADER_SIZE}")
    _v, code, serial, _counter, t, ftype, blen = _HEADER.unpack_from(raw)
    if code != SERVER_PROFILE_CODE:
        raise FrameError(Reason.UNKNOWN_PROFILE, f"profile code {code:#06x} in a server frame (must be 0)")
    end = HEADER_SIZE + blen
    total = end + CRC_SIZE[_SERVER_CRC]
    if n < total:
        raise FrameError(Reason.TRUNCATED, f"need {total} bytes, got {n}")
    if n > total:
        raise FrameError(Reason.SCHEMA, f"{n - total} bytes after the checksum")
    if crc(_SERVER_CRC, raw[:end]) != raw[end:]:
        raise FrameError(Reason.BAD_CRC, f"crc32 mismatch on a {n}-byte server frame")
    body = raw[HEADER_SIZE:end]
    sent = _utc(t)
    if ftype == ACK_FRAME_TYPE:
        if blen != 4:
            raise FrameError(Reason.SCHEMA, f"ack body of {blen} bytes, expected 4")
        return ServerFrame("ack", serial, sent, acked_counter=int.from_bytes(body, "big"))
    if ftype == DOWNLINK_FRAME_TYPE:
        if blen < 4:
            raise FrameError(Reason.SCHEMA, f"command body of {blen} bytes, expected at least 4")
        try:
            command = json.loads(body[4:].decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, RecursionError) as e:
            raise FrameError(Reason.SCHEMA, f"command is not a JSON object ({e})") from None
        if not isinstance(command, dict):
            raise FrameError(Reason.SCHEMA, "command is not a JSON object")
        return ServerFrame("command", serial, sent, command_id=int.from_bytes(body[:4], "big"), command=command)
    raise FrameError(Reason.SCHEMA, f"server frame type {ftype:#04x} is not 0x80 (ack) or 0x81 (command)")
