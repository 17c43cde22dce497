"""Device profiles: declarative TOML files that say how a device type's frames look.

A profile names a device type, its envelope profile code, checksum and device-id format,
and lists its frame types.  Each binary frame type is a body layout (an optional prefix
plus a record repeated to the end of the body) whose fields have an offset, a type
(``u8 u16 u32 u64 i8 i16 i32 i64 f32 f64``), a byte order, scaling, a missing-value
sentinel and a target: a reading channel, a column of the hourly/daily archive, or a
role (record time, event code, event argument, command id).  JSON profiles locate the
same things with JSON paths.  The file format is documented field by field in
``ingest/README.md`` ("Device profiles and frames"); ``ingest/profiles/`` ships four.

:class:`ProfileRegistry` loads the shipped folder plus any extra folders and re-reads a
folder when a file appears, changes or disappears, so a running service decodes a new
device type without a code change.  A bad file is reported (:meth:`ProfileRegistry.problems`,
a warning in the log) with its path and the problem, and never stops the other profiles.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import itertools
import logging
import math
import re
import struct
import threading
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from ingest._crc import CRC_ALGORITHMS, CRC_SIZE
from ingest._wire import (
    ACK_FRAME_TYPE,
    COMMAND_ACK_FRAME_TYPE,
    DOWNLINK_FRAME_TYPE,
    IDENT_FRAME_TYPE,
    MAX_FRAME_BYTES,
    Frame,
    FrameError,
    Reason,
)
from ingest.errors import IngestFileError
from warehouse._schemas import CHANNELS, DEVICE_KINDS, SEVERITIES

__all__ = [
    "ARCHIVE_COLUMNS",
    "SHIPPED_PROFILES",
    "DeviceProfile",
    "EventSpec",
    "FieldSpec",
    "FrameSpec",
    "ProfileError",
    "ProfileRegistry",
    "load_profile",
]

_log = logging.getLogger(__name__)

#: Folder of the profiles shipped with askug.
SHIPPED_PROFILES: Final = Path(__file__).with_name("profiles")

#: Interval-archive columns a field may feed (columns of ``hourly_archive``).
ARCHIVE_COLUMNS: Final = ("volume_m3", "volume_work_m3", "pressure_kpa", "temperature_c")
ARCHIVE_KINDS: Final = ("hourly", "daily")
ROLES: Final = ("ts", "event_code", "event_arg", "command_id")

#: numpy kind+size of each field type (byte order is added per field).
FIELD_TYPES: Final[dict[str, str]] = {
    "u8": "u1", "u16": "u2", "u32": "u4", "u64": "u8",
    "i8": "i1", "i16": "i2", "i32": "i4", "i64": "i8",
    "f32": "f4", "f64": "f8",
}  # fmt: skip

_NAME_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_FORMAT_RE: Final = re.compile(r"^([^{}]*)\{serial(?::(0?)(\d*)([dxX]))?\}([^{}]*)$")
#: Unit suffixes a field's ``unit`` may name, checked against its target's name.
_UNITS: Final = ("m3", "m3h", "kpa", "c", "v", "pct_lel")


class ProfileError(IngestFileError):
    """A device profile file is malformed; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True, slots=True)
class EventSpec:
    """What an event code of a device means: stored code, severity and text."""

    code: str
    severity: str
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a frame body (binary layout or JSON path) and what it feeds.

    ``value = raw * scale + add``, rounded to ``decimals``; ``raw == missing`` (or NaN)
    is null.  With ``bit`` set the value is that bit of the raw integer (0 or 1).
    Exactly one of ``channel``, ``column`` and ``role`` is set, or none (the field is
    skipped, e.g. a reserved status word).
    """

    name: str
    type: str = "u32"
    offset: int = 0
    endian: Literal["big", "little"] = "big"
    scale: float = 1.0
    add: float = 0.0
    decimals: int | None = None
    missing: float | None = None
    bit: int | None = None
    channel: str | None = None
    column: str | None = None
    role: str | None = None
    unit: str | None = None
    path: tuple[str | int, ...] = ()

    @property
    def size(self) -> int:
        """Bytes the field's raw value takes."""
        return int(FIELD_TYPES[self.type][1])

    @property
    def is_float(self) -> bool:
        return self.type.startswith("f")

    @property
    def slot(self) -> tuple[int, str, str]:
        """(offset, type, endian): fields sharing a slot (bit flags) share the raw value."""
        return (self.offset, self.type, self.endian)


@dataclasses.dataclass(frozen=True, slots=True)
class FrameSpec:
    """One frame type of a profile.

    Attributes
    ----------
    type
        Envelope frame type (0..255) of a binary profile; the value at the profile's
        ``frame_type`` JSON path of a JSON profile.
    kind
        What the frame carries, copied to :attr:`Frame.kind`: ``archive``, ``events``,
        ``instant``, ``ident``, ``ack`` or any other word.
    archive
        ``hourly`` or ``daily`` when fields feed archive columns.
    body
        ``records`` (a prefix plus repeated records) or ``secret`` (ident frames: the
        body is the unit's credential secret).
    time
        Where each record's time comes from: ``record`` (a field with role ``ts``),
        ``prefix`` (a prefix field with role ``ts`` plus ``index * interval_s``) or
        ``device`` (the frame's device time).
    """

    type: int | str
    kind: str
    archive: str | None
    body: Literal["records", "secret"]
    time: Literal["record", "prefix", "device"]
    prefix: tuple[FieldSpec, ...]
    fields: tuple[FieldSpec, ...]
    prefix_size: int
    record_size: int
    interval_s: int
    records_path: tuple[str | int, ...] = ()
    dtype: np.dtype[Any] | None = dataclasses.field(default=None, compare=False)
    slots: tuple[tuple[int, str, str], ...] = ()
    #: the record as one :class:`struct.Struct` (slots in offset order) when all its
    #: fields share a byte order; small frames decode faster through it than numpy
    record_struct: struct.Struct | None = dataclasses.field(default=None, compare=False)
    struct_slots: tuple[tuple[int, str, str], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceProfile:
    """A device type as its profile file describes it (see the module docstring).

    Attributes
    ----------
    name
        Profile name, e.g. ``"household-nb"`` (copied to :attr:`Frame.profile`).
    code
        Envelope profile code (u16) of a binary profile; 0 when a JSON profile has none.
    format
        ``binary`` (the askug envelope) or ``json``.
    device_kind
        ``household_unit``, ``corrector`` or ``gdp_unit`` (the ``devices.kind`` column).
    crc
        ``crc16-modbus``, ``crc16-ccitt``, ``crc32`` (or ``none`` for a JSON profile).
    device_id_format
        Python format turning the envelope's serial into a device id, e.g. ``D{serial:07d}``.
    counter_modulus_m3
        Where the unit's volume registers roll over to 0 (m³), or ``None``.
    frames
        The frame types.
    events
        Event code (integer for binary, string for JSON) → meaning.
    json_paths
        JSON profiles: paths of ``device_id``, ``counter``, ``device_time``, ``frame_type``.
    source
        The file it was loaded from.
    """

    name: str
    code: int
    format: Literal["binary", "json"]
    device_kind: str
    crc: str
    device_id_format: str
    counter_modulus_m3: float | None
    frames: tuple[FrameSpec, ...]
    events: Mapping[int | str, EventSpec]
    description: str = ""
    json_paths: Mapping[str, tuple[str | int, ...]] = dataclasses.field(default_factory=dict)
    source: Path | None = None

    @property
    def crc_size(self) -> int:
        return CRC_SIZE.get(self.crc, 0)

    def frame_type(self, type_: int | str) -> FrameSpec | None:
        """The frame type with envelope type (or JSON type value) ``type_``, if any."""
        for f in self.frames:
            if f.type == type_:
                return f
        return None

    def device_id(self, serial: int) -> str:
        """Device id of the envelope serial ``serial``."""
        return self.device_id_format.format(serial=serial)

    def serial(self, device_id: str) -> int:
        """Envelope serial of ``device_id`` (the inverse of :meth:`device_id`).

        Raises
        ------
        FrameError
            (schema) when ``device_id`` does not have this profile's format.
        """
        m = _FORMAT_RE.match(self.device_id_format)
        assert m is not None  # validated on load
        head, _zero, _width, conv, tail = m.groups()
        body = device_id[len(head) : len(device_id) - len(tail)] if tail else device_id[len(head) :]
        ok = device_id.startswith(head) and device_id.endswith(tail) and body != ""
        try:
            serial = int(body, 16 if conv in ("x", "X") else 10) if ok else -1
        except ValueError:
            serial = -1
        if not 0 <= serial <= 0xFFFFFFFF or self.device_id(serial) != device_id:
            raise FrameError(
                Reason.SCHEMA,
                f"device id {device_id!r} does not have profile {self.name!r}'s format "
                f"{self.device_id_format!r}",
            )
        return serial


# --- loading and validation -----------------------------------------------------------


class _Bad(Exception):
    """A validation problem; ``where`` is the path inside the file."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)


def _keys(table: Mapping[str, Any], where: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise _Bad(where, f"unknown key {unknown[0]!r}; allowed keys are {', '.join(allowed)}")


def _get(
    table: Mapping[str, Any], key: str, where: str, types: type | tuple[type, ...], default: Any = ...
) -> Any:
    if key not in table:
        if default is ...:
            raise _Bad(where, f"missing required key {key!r}")
        return default
    value = table[key]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise _Bad(where, f"{key} = {value!r} must be {_type_words(types)}")
    if not isinstance(value, types):
        raise _Bad(where, f"{key} = {value!r} must be {_type_words(types)}")
    return value


def _type_words(types: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table",
             bool: "true or false"}  # fmt: skip
    ts = types if isinstance(types, tuple) else (types,)
    if ts == (int, float) or ts == (float, int):
        return "a number"
    return " or ".join(names.get(t, t.__name__) for t in ts)


def _json_path(text: str, where: str) -> tuple[str | int, ...]:
    """Parse the JSONPath subset ``$``, ``$.a.b``, ``$.a[0].b``, ``$['odd key']``."""
    if not text.startswith("$"):
        raise _Bad(where, f"JSON path {text!r} must start with '$'")
    parts: list[str | int] = []
    pos = 1
    token = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\['([^']*)'\]")
    while pos < len(text):
        m = token.match(text, pos)
        if m is None:
            raise _Bad(where, f"JSON path {text!r}: cannot read {text[pos:]!r} (use $.key, [0] or ['key'])")
        key, index, quoted = m.groups()
        parts.append(int(index) if index is not None else (key if key is not None else quoted))
        pos = m.end()
    return tuple(parts)


def _scale_decimals(*numbers: float) -> int:
    """Decimals a value ``raw * scale + add`` has: those of scale and add (0.001 → 3)."""
    d = 0
    for x in numbers:
        exp = decimal.Decimal(repr(float(x))).normalize().as_tuple().exponent
        if isinstance(exp, int):
            d = max(d, -exp)
    return min(d, 12)


def _target_unit(target: str) -> str | None:
    for unit in sorted(_UNITS, key=len, reverse=True):
        if target.endswith("_" + unit):
            return unit
    return None


def _field(
    raw: Mapping[str, Any], where: str, *, fmt: str, endian: str, in_prefix: bool
) -> FieldSpec:
    keys = ["name", "type", "scale", "add", "decimals", "missing", "bit", "channel", "column",
            "role", "unit"]  # fmt: skip
    keys += ["offset", "endian"] if fmt == "binary" else ["path"]
    _keys(raw, where, keys)
    name = _get(raw, "name", where, str)
    where = f"{where} ({name!r})"
    if fmt == "binary":
        ftype = _get(raw, "type", where, str)
        if ftype not in FIELD_TYPES:
            raise _Bad(where, f"type {ftype!r} is not one of {', '.join(FIELD_TYPES)}")
        offset = _get(raw, "offset", where, int)
        if offset < 0:
            raise _Bad(where, f"offset {offset} must be >= 0")
        fendian = _get(raw, "endian", where, str, endian)
        if fendian not in ("big", "little"):
            raise _Bad(where, f"endian {fendian!r} must be 'big' or 'little'")
        path: tuple[str | int, ...] = ()
    else:
        ftype = _get(raw, "type", where, str, "f64")
        if ftype not in FIELD_TYPES:
            raise _Bad(where, f"type {ftype!r} is not one of {', '.join(FIELD_TYPES)}")
        offset, fendian = 0, "big"
        path = _json_path(_get(raw, "path", where, str), where)
    scale = float(_get(raw, "scale", where, (int, float), 1.0))
    add = float(_get(raw, "add", where, (int, float), 0.0))
    if scale == 0 or not math.isfinite(scale) or not math.isfinite(add):
        raise _Bad(where, f"scale {scale} must be finite and non-zero, add {add} finite")
    is_float = ftype.startswith("f")
    default_decimals = None if is_float or fmt == "json" else _scale_decimals(scale, add)
    decimals = _get(raw, "decimals", where, int, default_decimals)
    if decimals is not None and not 0 <= decimals <= 12:
        raise _Bad(where, f"decimals {decimals} must be between 0 and 12")
    missing = _get(raw, "missing", where, (int, float), None)
    bit = _get(raw, "bit", where, int, None)
    size = int(FIELD_TYPES[ftype][1])
    if missing is not None and not is_float:
        lo, hi = _int_range(ftype)
        if not (float(missing).is_integer() and lo <= missing <= hi):
            raise _Bad(where, f"missing {missing} is not a {ftype} value ({lo}..{hi})")
    if bit is not None and (is_float or not 0 <= bit < 8 * size):
        raise _Bad(where, f"bit {bit} needs an integer type with that bit (type is {ftype})")
    channel = _get(raw, "channel", where, str, None)
    column = _get(raw, "column", where, str, None)
    role = _get(raw, "role", where, str, None)
    if sum(x is not None for x in (channel, column, role)) > 1:
        raise _Bad(where, "give at most one of channel, column and role")
    if channel is not None and channel not in CHANNELS:
        raise _Bad(where, f"channel {channel!r} is not one of {', '.join(CHANNELS)}")
    if column is not None and column not in ARCHIVE_COLUMNS:
        raise _Bad(where, f"column {column!r} is not one of {', '.join(ARCHIVE_COLUMNS)}")
    if role is not None and role not in ROLES:
        raise _Bad(where, f"role {role!r} is not one of {', '.join(ROLES)}")
    if in_prefix and role not in (None, "ts"):
        raise _Bad(where, "a prefix field may only have role 'ts' (or nothing)")
    if in_prefix and (channel or column):
        raise _Bad(where, "a prefix field cannot feed a channel or column")
    if role in ("ts", "event_code", "command_id") and (bit is not None or (is_float and fmt == "binary")):
        raise _Bad(where, f"role {role!r} needs a whole integer field (no float type, no bit)")
    if role == "ts" and (scale != 1 or add != 0):
        raise _Bad(where, "a ts field holds unix seconds UTC: no scale or add")
    unit = _get(raw, "unit", where, str, None)
    target = channel or column
    if unit is not None and target is not None:
        want = _target_unit(target)
        if want is not None and unit.lower() != want:
            raise _Bad(where, f"unit {unit!r} does not match {target!r} (unit {want!r}); "
                              "scale the raw value into the target's unit")  # fmt: skip
    return FieldSpec(
        name=name, type=ftype, offset=offset, endian=fendian,
        scale=scale, add=add, decimals=decimals,
        missing=None if missing is None else float(missing), bit=bit,
        channel=channel, column=column, role=role, unit=unit, path=path,
    )  # fmt: skip


def _int_range(ftype: str) -> tuple[int, int]:
    info = np.iinfo(np.dtype(FIELD_TYPES[ftype]))
    return int(info.min), int(info.max)


def _frame(raw: Mapping[str, Any], where: str, *, fmt: str, endian: str) -> FrameSpec:
    keys = ["type", "kind", "archive", "body", "fields", "prefix", "interval_s"]
    keys += ["endian", "record_size", "prefix_size"] if fmt == "binary" else ["records"]
    _keys(raw, where, keys)
    if fmt == "binary":
        ftype: int | str = _get(raw, "type", where, int)
        assert isinstance(ftype, int)
        if not 0 <= ftype <= 255 or ftype in (ACK_FRAME_TYPE, DOWNLINK_FRAME_TYPE):
            raise _Bad(where, f"type {ftype} must be 0..255 and not 0x80/0x81 (server frames)")
        endian = _get(raw, "endian", where, str, endian)
        if endian not in ("big", "little"):
            raise _Bad(where, f"endian {endian!r} must be 'big' or 'little'")
    else:
        ftype = _get(raw, "type", where, (str, int))
    where = f"{where} (type {ftype!r})"
    kind = _get(raw, "kind", where, str)
    if not kind:
        raise _Bad(where, "kind must not be empty")
    archive = _get(raw, "archive", where, str, None)
    if archive is not None and archive not in ARCHIVE_KINDS:
        raise _Bad(where, f"archive {archive!r} must be one of {', '.join(ARCHIVE_KINDS)}")
    body = _get(raw, "body", where, str, "records")
    if body not in ("records", "secret"):
        raise _Bad(where, f"body {body!r} must be 'records' or 'secret'")
    fields_raw = _get(raw, "fields", where, list, [])
    prefix_raw = _get(raw, "prefix", where, list, [])
    if body == "secret":
        if fields_raw or prefix_raw or fmt != "binary":
            raise _Bad(where, "a body = 'secret' frame (binary ident) has no fields or prefix")
        return FrameSpec(ftype, kind, archive, "secret", "device", (), (), 0, 0, 0)
    if not fields_raw:
        raise _Bad(where, "a records frame needs at least one entry in fields")

    def parse(items: list[Any], label: str, in_prefix: bool) -> tuple[FieldSpec, ...]:
        out = []
        for i, item in enumerate(items):
            w = f"{where}.{label}[{i}]"
            if not isinstance(item, dict):
                raise _Bad(w, "must be a table such as { name = 'x', offset = 0, type = 'u16' }")
            out.append(_field(item, w, fmt=fmt, endian=endian, in_prefix=in_prefix))
        names = [f.name for f in out]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise _Bad(where, f"field name {dup!r} appears twice in {label}")
        return tuple(out)

    prefix = parse(prefix_raw, "prefix", True)
    fields = parse(fields_raw, "fields", False)
    for attr in ("channel", "column"):
        seen = [getattr(f, attr) for f in fields if getattr(f, attr)]
        dup = next((n for n in seen if seen.count(n) > 1), None)
        if dup is not None:
            raise _Bad(where, f"{attr} {dup!r} is fed by two fields")
    roles = [f.role for f in fields if f.role]
    for role in ROLES:
        if roles.count(role) > 1:
            raise _Bad(where, f"role {role!r} is given to two fields")
    if any(f.column for f in fields) and archive is None:
        raise _Bad(where, "fields feed archive columns: say archive = 'hourly' or 'daily'")
    if archive is not None and not any(f.column for f in fields):
        raise _Bad(where, f"archive = {archive!r} but no field has a column")
    if "event_arg" in roles and "event_code" not in roles:
        raise _Bad(where, "role 'event_arg' needs a field with role 'event_code'")
    if "event_code" in roles and any(f.channel or f.column for f in fields):
        raise _Bad(where, "an event frame's fields cannot also feed channels or columns")
    if "command_id" in roles and len(fields) != 1:
        raise _Bad(where, "a command-ack frame has exactly one field (role 'command_id')")
    interval = _get(raw, "interval_s", where, int, 0)
    prefix_ts = any(f.role == "ts" for f in prefix)
    if "ts" in roles:
        time_mode: Literal["record", "prefix", "device"] = "record"
        if prefix_ts:
            raise _Bad(where, "role 'ts' is in both prefix and fields; keep one")
    elif prefix_ts:
        time_mode = "prefix"
        if interval <= 0:
            raise _Bad(where, "the prefix holds the start time: give interval_s > 0 "
                              "(record i is at start + i * interval_s)")  # fmt: skip
    else:
        time_mode = "device"
    if fmt == "json":
        records = _json_path(_get(raw, "records", where, str, "$"), where + ".records")
        return FrameSpec(ftype, kind, archive, "records", time_mode, prefix, fields, 0, 0,
                         interval, records)  # fmt: skip
    prefix_end = max((f.offset + f.size for f in prefix), default=0)
    prefix_size = _get(raw, "prefix_size", where, int, prefix_end)
    if prefix_size < prefix_end:
        raise _Bad(where, f"prefix_size {prefix_size} is smaller than its fields need ({prefix_end})")
    record_end = max(f.offset + f.size for f in fields)
    record_size = _get(raw, "record_size", where, int, record_end)
    if record_size < record_end:
        raise _Bad(where, f"record_size {record_size} is smaller than its fields need ({record_end})")
    for group in (prefix, fields):
        _check_overlaps(group, where)
    slots = tuple(dict.fromkeys(f.slot for f in fields))
    dtype = np.dtype(
        {
            "names": [f"s{i}" for i in range(len(slots))],
            "formats": [("<" if e == "little" else ">") + FIELD_TYPES[t] for (_o, t, e) in slots],
            "offsets": [o for (o, _t, _e) in slots],
            "itemsize": record_size,
        }
    )
    record_struct, struct_slots = _record_struct(slots, record_size)
    return FrameSpec(ftype, kind, archive, "records", time_mode, prefix, fields, prefix_size,
                     record_size, interval, (), dtype, slots, record_struct, struct_slots)  # fmt: skip


_STRUCT_CODES: Final = {"u1": "B", "u2": "H", "u4": "I", "u8": "Q", "i1": "b", "i2": "h", "i4": "i",
                        "i8": "q", "f4": "f", "f8": "d"}  # fmt: skip


def _record_struct(
    slots: Sequence[tuple[int, str, str]], record_size: int
) -> tuple[struct.Struct | None, tuple[tuple[int, str, str], ...]]:
    """One struct for the whole record, or ``None`` when byte orders are mixed."""
    endians = {e for (_o, t, e) in slots if int(FIELD_TYPES[t][1]) > 1}
    if len(endians) > 1:
        return None, ()
    order = tuple(sorted(slots))
    fmt = "<" if endians == {"little"} else ">"
    pos = 0
    for off, t, _e in order:
        fmt += f"{off - pos}x" if off > pos else ""
        fmt += _STRUCT_CODES[FIELD_TYPES[t]]
        pos = off + int(FIELD_TYPES[t][1])
    fmt += f"{record_size - pos}x" if record_size > pos else ""
    return struct.Struct(fmt), order


def _check_overlaps(fields: Sequence[FieldSpec], where: str) -> None:
    slots: dict[tuple[int, str, str], FieldSpec] = {}
    for f in fields:
        if f.slot in slots:
            other = slots[f.slot]
            if f.bit is None or other.bit is None:
                raise _Bad(where, f"fields {other.name!r} and {f.name!r} share offset {f.offset}; "
                                  "only bit fields may share a slot")  # fmt: skip
            if f.bit == other.bit:
                raise _Bad(where, f"fields {other.name!r} and {f.name!r} read the same bit")
            if f.missing != other.missing:
                raise _Bad(where, f"bit fields {other.name!r} and {f.name!r} share a slot: "
                                  "give them the same missing value")  # fmt: skip
            continue
        slots[f.slot] = f
    spans = sorted((s[0], s[0] + int(FIELD_TYPES[s[1]][1]), f.name) for s, f in slots.items())
    for (a0, a1, an), (b0, _b1, bn) in itertools.pairwise(spans):
        if b0 < a1:
            raise _Bad(where, f"fields {an!r} (bytes {a0}..{a1 - 1}) and {bn!r} (from byte {b0}) overlap")


def _events(raw: Mapping[str, Any], where: str, fmt: str) -> dict[int | str, EventSpec]:
    out: dict[int | str, EventSpec] = {}
    for key, value in raw.items():
        w = f"{where}.{key}"
        code: int | str = key
        if fmt == "binary":
            try:
                code = int(key, 0)
            except ValueError:
                raise _Bad(w, f"event code {key!r} of a binary profile must be an integer") from None
        if not isinstance(value, dict):
            raise _Bad(w, "must be a table { code = 'tamper_magnet', severity = 'warning', text = '…' }")
        _keys(value, w, ("code", "severity", "text"))
        name = _get(value, "code", w, str)
        severity = _get(value, "severity", w, str, "info")
        if severity not in SEVERITIES:
            raise _Bad(w, f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
        out[code] = EventSpec(name, severity, _get(value, "text", w, str, name.replace("_", " ")))
    return out


def parse_profile(data: Mapping[str, Any], *, source: Path | None = None) -> DeviceProfile:
    """Build a :class:`DeviceProfile` from a parsed TOML document.

    Raises
    ------
    ProfileError
        Naming the file (when ``source`` is given), the place in it and the problem.
    """
    try:
        return _parse(data, source)
    except _Bad as e:
        label = f"device profile {source}" if source else "device profile"
        raise ProfileError(f"{label}: {e}") from None


def _parse(data: Mapping[str, Any], source: Path | None) -> DeviceProfile:
    _keys(data, "", ("name", "code", "format", "device_kind", "crc", "device_id_format",
                     "counter_modulus_m3", "description", "json", "events", "frames"))  # fmt: skip
    name = _get(data, "name", "", str)
    if not _NAME_RE.match(name):
        raise _Bad("name", f"{name!r} must be lower-case letters, digits, '-', '_', '.' (max 64)")
    fmt = _get(data, "format", "", str, "binary")
    if fmt not in ("binary", "json"):
        raise _Bad("format", f"{fmt!r} must be 'binary' or 'json'")
    code = _get(data, "code", "", int, ... if fmt == "binary" else 0)
    if not (1 if fmt == "binary" else 0) <= code <= 0xFFFF:
        raise _Bad("code", f"{code} must be 1..65535 (0 is the server's own frames)")
    kind = _get(data, "device_kind", "", str)
    if kind not in DEVICE_KINDS:
        raise _Bad("device_kind", f"{kind!r} is not one of {', '.join(DEVICE_KINDS)}")
    crc = _get(data, "crc", "", str, ... if fmt == "binary" else "none")
    if crc not in CRC_ALGORITHMS and not (fmt == "json" and crc == "none"):
        raise _Bad("crc", f"{crc!r} is not one of {', '.join(CRC_ALGORITHMS)}"
                          + (" or 'none'" if fmt == "json" else ""))  # fmt: skip
    id_format = _get(data, "device_id_format", "", str, "D{serial:07d}")
    if not _FORMAT_RE.match(id_format):
        raise _Bad("device_id_format", f"{id_format!r} must contain one {{serial}} placeholder, "
                                       "optionally with a d, x or X format such as {serial:07d}")  # fmt: skip
    modulus = _get(data, "counter_modulus_m3", "", (int, float), None)
    if modulus is not None and not (math.isfinite(modulus) and modulus > 0):
        raise _Bad("counter_modulus_m3", f"{modulus} must be a positive number")
    description = _get(data, "description", "", str, "")
    json_paths: dict[str, tuple[str | int, ...]] = {}
    if fmt == "json":
        jraw = _get(data, "json", "", dict)
        _keys(jraw, "json", ("device_id", "counter", "device_time", "frame_type"))
        for key in ("device_id", "counter", "device_time"):
            json_paths[key] = _json_path(_get(jraw, key, "json", str), f"json.{key}")
        if "frame_type" in jraw:
            json_paths["frame_type"] = _json_path(_get(jraw, "frame_type", "json", str), "json.frame_type")
    elif "json" in data:
        raise _Bad("json", "only a format = 'json' profile has a [json] table")
    endian = "big"
    frames_raw = _get(data, "frames", "", list)
    if not frames_raw:
        raise _Bad("frames", "a profile needs at least one [[frames]] entry")
    frames = []
    for i, fr in enumerate(frames_raw):
        if not isinstance(fr, dict):
            raise _Bad(f"frames[{i}]", "must be a table ([[frames]])")
        frames.append(_frame(fr, f"frames[{i}]", fmt=fmt, endian=endian))
    types = [f.type for f in frames]
    dup = next((t for t in types if types.count(t) > 1), None)
    if dup is not None:
        raise _Bad("frames", f"frame type {dup!r} is declared twice")
    if fmt == "json" and len(frames) > 1 and "frame_type" not in json_paths:
        raise _Bad("json", "a JSON profile with several frames needs json.frame_type")
    events = _events(_get(data, "events", "", dict, {}), "events", fmt)
    if any(any(f.role == "event_code" for f in fr.fields) for fr in frames) and not events:
        _log.debug("profile %s has event frames but no [events] table", name)
    return DeviceProfile(
        name=name, code=code, format=fmt, device_kind=kind, crc=crc,
        device_id_format=id_format, counter_modulus_m3=None if modulus is None else float(modulus),
        frames=tuple(frames), events=events, description=description, json_paths=json_paths,
        source=source,
    )  # fmt: skip


def load_profile(path: Path | str) -> DeviceProfile:
    """Read and validate one profile file.

    Parameters
    ----------
    path
        A ``.toml`` device profile (format in ``ingest/README.md``).

    Raises
    ------
    ProfileError
        The file cannot be read, is not valid TOML, or describes an invalid profile; the
        message names the file and the problem.

    Examples
    --------
    >>> from ingest import SHIPPED_PROFILES, load_profile
    >>> load_profile(SHIPPED_PROFILES / "household-nb.toml").device_kind
    'household_unit'
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ProfileError(f"device profile {path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ProfileError(f"device profile {path}: not UTF-8 text ({e.reason})") from None
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"device profile {path}: not valid TOML ({e})") from None
    return parse_profile(data, source=path)


# --- registry -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _State:
    by_name: Mapping[str, DeviceProfile]
    by_code: Mapping[int, DeviceProfile]
    json_profiles: tuple[DeviceProfile, ...]
    problems: Mapping[Path, str]


class ProfileRegistry:
    """The device profiles a service knows, re-read when their files change.

    Parameters
    ----------
    folders
        Extra folders of ``*.toml`` profiles, read after the shipped ones.
    include_shipped
        Load ``ingest/profiles/`` first (default).  Its names and codes win over extra
        folders; a clash is reported as a problem of the later file.
    max_frame_bytes
        Longer packets are refused with reason ``oversized``.
    rescan_s
        How often (seconds) :meth:`decode` checks the folders for new or changed files;
        a packet naming an unknown profile triggers a check at once (at most 10 per
        second), so a new device type decodes as soon as its file is there.

    Examples
    --------
    >>> reg = ProfileRegistry()
    >>> sorted(reg.names())
    ['corrector-ek', 'gdp-telemetry', 'household-nb', 'mqtt-json']
    """

    def __init__(
        self,
        folders: Sequence[Path | str] = (),
        *,
        include_shipped: bool = True,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        rescan_s: float = 2.0,
    ) -> None:
        self.folders: tuple[Path, ...] = (
            (SHIPPED_PROFILES,) if include_shipped else ()
        ) + tuple(Path(f) for f in folders)
        self.max_frame_bytes = max_frame_bytes
        self.rescan_s = rescan_s
        self._lock = threading.Lock()
        self._seen: dict[Path, tuple[int, int, int]] = {}
        self._loaded: dict[Path, DeviceProfile] = {}
        self._errors: dict[Path, str] = {}
        self._state = _State({}, {}, (), {})
        self._missing_folders: list[Path] = []
        self._last_scan = -math.inf
        self._last_forced = -math.inf
        self.refresh()

    # -- loading --
    def refresh(self) -> bool:
        """Re-read new, changed and removed profile files now.

        Returns ``True`` when anything changed.  A file that became invalid keeps its
        last good version active (and is reported by :meth:`problems`).
        """
        with self._lock:
            self._last_scan = time.monotonic()
            files: dict[Path, tuple[int, int, int]] = {}
            missing_folders = []
            for folder in self.folders:
                if not folder.is_dir():
                    missing_folders.append(folder)
                try:
                    entries = sorted(folder.glob("*.toml"))
                except OSError:
                    entries = []
                for path in entries:
                    try:
                        st = path.stat()
                    except OSError:
                        continue
                    files[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
            if missing_folders != self._missing_folders:
                for folder in missing_folders:
                    _log.warning("device profile folder %s does not exist (yet); it is watched", folder)
                self._missing_folders = missing_folders
                self._state = dataclasses.replace(self._state, problems=self._problems_with_folders(self._state.problems))
            if files == self._seen and self._state.by_name:
                return False
            changed = False
            for path in list(self._loaded):
                if path not in files:
                    del self._loaded[path]
                    changed = True
            for path in list(self._errors):
                if path not in files:
                    del self._errors[path]
                    changed = True
            for path, sig in files.items():
                if self._seen.get(path) == sig and (path in self._loaded or path in self._errors):
                    continue
                changed = True
                try:
                    self._loaded[path] = load_profile(path)
                    self._errors.pop(path, None)
                except ProfileError as e:
                    self._errors[path] = str(e)
                    kept = " (its last good version stays active)" if path in self._loaded else ""
                    _log.warning("%s%s", e, kept)
            self._seen = files
            if changed or not self._state.by_name:
                self._state = self._build(files)
            return changed

    def _build(self, files: Mapping[Path, object]) -> _State:
        by_name: dict[str, DeviceProfile] = {}
        by_code: dict[int, DeviceProfile] = {}
        problems = dict(self._errors)
        for path in files:  # folder order, then file name order
            prof = self._loaded.get(path)
            if prof is None:
                continue
            clash = by_name.get(prof.name)
            if clash is None and prof.code:
                clash = by_code.get(prof.code)
            if clash is not None:
                msg = (f"device profile {path}: name {prof.name!r} / code {prof.code:#06x} is already "
                       f"used by {clash.source}; rename it and give it its own code")  # fmt: skip
                if problems.get(path) != msg:
                    _log.warning("%s", msg)
                problems[path] = msg
                continue
            by_name[prof.name] = prof
            if prof.code:
                by_code[prof.code] = prof
        json_profiles = tuple(p for p in by_name.values() if p.format == "json")
        return _State(by_name, by_code, json_profiles, self._problems_with_folders(problems))

    def _problems_with_folders(self, problems: Mapping[Path, str]) -> dict[Path, str]:
        out = {p: m for p, m in problems.items() if p not in self.folders}
        for folder in self._missing_folders:
            out[folder] = f"device profile folder {folder} does not exist"
        return out

    def _maybe_refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if now - self._last_scan >= self.rescan_s or (force and now - self._last_forced >= 0.1):
            if force:
                self._last_forced = now
            self.refresh()

    # -- lookup --
    def names(self) -> list[str]:
        """Names of the active profiles, sorted."""
        return sorted(self._state.by_name)

    def problems(self) -> dict[Path, str]:
        """Profile files that could not be used, with the reason (one line each)."""
        return dict(self._state.problems)

    def profile(self, name: str) -> DeviceProfile:
        """The active profile ``name``.

        Raises
        ------
        FrameError
            (unknown_profile) when no active profile has that name.
        """
        prof = self._state.by_name.get(name)
        if prof is None:
            self._maybe_refresh(force=True)
            prof = self._state.by_name.get(name)
        if prof is None:
            raise FrameError(
                Reason.UNKNOWN_PROFILE,
                f"no device profile named {name!r} (known: {', '.join(self.names()) or 'none'}); "
                "add a profile file to a profile folder",
            )
        return prof

    def by_code(self, code: int) -> DeviceProfile:
        """The active binary profile with envelope code ``code``.

        Raises
        ------
        FrameError
            (unknown_profile) when no active profile has that code.
        """
        prof = self._state.by_code.get(code)
        if prof is None:
            self._maybe_refresh(force=True)
            prof = self._state.by_code.get(code)
        if prof is None:
            raise FrameError(
                Reason.UNKNOWN_PROFILE,
                f"no device profile has code {code:#06x}; add a profile file with code = {code:#06x}",
            )
        return prof

    def json_profiles(self) -> tuple[DeviceProfile, ...]:
        return self._state.json_profiles

    # -- codec --
    def decode(self, raw: bytes, *, profile: str | None = None) -> Frame:
        """Decode one uplink packet.

        Parameters
        ----------
        raw
            The packet's bytes: a binary envelope frame or a JSON document.
        profile
            Profile name the transport knows (e.g. from the MQTT topic); else the
            binary envelope's profile code (or the only JSON profile) decides.

        Returns
        -------
        Frame
            Times are UTC; readings use the channels of ``warehouse.CHANNELS``.

        Raises
        ------
        FrameError
            For every packet that cannot be decoded, and for no other reason; never any
            other exception.
        """
        from ingest import _decode

        self._maybe_refresh()
        try:
            return _decode.decode(self, bytes(raw), profile)
        except FrameError:
            raise
        except Exception as e:
            _log.error("internal decoder error on a %d-byte packet", len(raw), exc_info=True)
            raise FrameError(Reason.SCHEMA, f"internal decoder error ({type(e).__name__}: {e})") from e

    def encode(self, frame: Frame) -> bytes:
        """Encode ``frame`` as its profile's wire bytes (the inverse of :meth:`decode`).

        Values are quantised to the profile's resolution, so ``decode(encode(f))``
        equals ``f`` up to that resolution.

        Raises
        ------
        FrameError
            (unknown_profile, schema, out_of_range) when the frame does not fit its profile.
        """
        from ingest import _decode

        return _decode.encode(self.profile(frame.profile), frame)

    def encode_ack(
        self, device_id: str, acked_counter: int, *, profile: str, at: dt.datetime | None = None
    ) -> bytes:
        """Server → unit acknowledgement of the committed uplink frame ``acked_counter``."""
        from ingest import _decode

        serial = self.profile(profile).serial(device_id)
        return _decode.encode_server(ACK_FRAME_TYPE, serial, acked_counter,
                                     acked_counter.to_bytes(4, "big"), at)  # fmt: skip

    def encode_command(
        self,
        device_id: str,
        command_id: int,
        command: Mapping[str, object],
        *,
        profile: str,
        at: dt.datetime | None = None,
    ) -> bytes:
        """Server → unit downlink command ``command_id`` (body: id u32 + command JSON)."""
        import json

        from ingest import _decode

        serial = self.profile(profile).serial(device_id)
        body = command_id.to_bytes(4, "big") + json.dumps(dict(command), separators=(",", ":")).encode()
        return _decode.encode_server(DOWNLINK_FRAME_TYPE, serial, command_id, body, at)


#: Frame types every binary profile should declare (the TCP session protocol).
SESSION_FRAME_TYPES: Final = (IDENT_FRAME_TYPE, COMMAND_ACK_FRAME_TYPE)
