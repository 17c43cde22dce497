"""Fuzzed frame decoding: any bytes give a Frame or a FrameError, never anything else;
every proper prefix of a valid frame is truncated; every single-bit flip is caught;
encode/decode round-trips per shipped profile."""

from __future__ import annotations

import datetime as dt
import json
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ingest import Frame, FrameError, ProfileRegistry, Reason, decode_server
from ingest._crc import crc
from ingest._decode import _is_json_prefix, _values, _values_py
from ingest._device_profiles import DeviceProfile, FieldSpec, FrameSpec

REG = ProfileRegistry(rescan_s=3600.0)
PROFILES = {name: REG.profile(name) for name in REG.names()}
BINARY = [p for p in PROFILES.values() if p.format == "binary"]
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_or_error(raw: bytes, **kw: Any) -> Frame | FrameError:
    """Decode; a FrameError is returned, any other exception propagates (fails the test)."""
    try:
        frame = REG.decode(raw, **kw)
    except FrameError as e:
        assert "internal decoder error" not in e.detail, e.detail
        assert isinstance(e.reason, Reason)
        return e
    assert isinstance(frame, Frame)
    return frame


# --- strategies: valid frames of every profile and kind ---------------------------------


def _utc(seconds: int) -> dt.datetime:
    return EPOCH + dt.timedelta(seconds=seconds)


def _value(f: FieldSpec, fmt: str) -> st.SearchStrategy[float | None]:
    """Values on the field's grid (what decoding can produce), None when it can be missing."""
    if f.bit is not None:
        return st.sampled_from([0.0, 1.0])
    if fmt == "json" or f.is_float:
        if f.decimals is not None:
            bound = 2_000_000 if f.type == "f32" else 10**12
            vals = st.integers(-bound, bound).map(lambda r, d=f.decimals: r / 10**d)
        elif f.type == "f32":
            vals = st.floats(width=32, allow_nan=False, allow_infinity=False)
        else:
            vals = st.floats(allow_nan=False, allow_infinity=False)
        return st.one_of(st.none(), vals)
    lo, hi = (0, 2 ** (8 * f.size) - 1) if f.type[0] == "u" else (-(2 ** (8 * f.size - 1)), 2 ** (8 * f.size - 1) - 1)
    raw = st.integers(lo, hi).filter(lambda r: r != f.missing)
    vals = raw.map(lambda r: _values_py(f, [r])[0])
    return st.one_of(st.none(), vals) if f.missing is not None else vals


@st.composite
def frames(draw: st.DrawFn, prof: DeviceProfile | None = None, spec: FrameSpec | None = None) -> Frame:
    """A valid frame of ``prof`` (drawn if None) and frame type ``spec`` (drawn if None)."""
    if prof is None:
        prof = draw(st.sampled_from(sorted(PROFILES.values(), key=lambda p: p.name)))
    if spec is None:
        spec = draw(st.sampled_from(prof.frames))
    serial = draw(st.integers(0, 2**32 - 1))
    device_id = prof.device_id(serial)
    counter = draw(st.integers(0, 2**32 - 1))
    device_time = _utc(draw(st.integers(0, 2**32 - 1)))
    base = {"profile": prof.name, "device_id": device_id, "counter": counter, "device_time": device_time, "kind": spec.kind}
    if spec.body == "secret":
        return Frame(**base, secret=draw(st.binary(max_size=64)))  # type: ignore[arg-type]
    fields = spec.fields
    if any(f.role == "command_id" for f in fields):
        acks = draw(st.lists(st.integers(0, 2**32 - 1), max_size=8))
        return Frame(**base, command_acks=tuple(acks))  # type: ignore[arg-type]
    n = draw(st.integers(0, 60 if prof.format == "binary" else 8))
    if spec.time == "record":
        starts = draw(st.lists(st.integers(0, 2**32 - 1), min_size=n, max_size=n, unique=True))
        times = sorted(_utc(s) for s in starts)
    elif spec.time == "prefix":
        start = draw(st.integers(0, 2**32 - 1)) // 3600 * 3600
        times = [_utc(start + i * spec.interval_s) for i in range(n)]
    else:
        times = [device_time] * min(n, 1)
    code_f = next((f for f in fields if f.role == "event_code"), None)
    if code_f is not None:
        arg_f = next((f for f in fields if f.role == "event_arg"), None)
        events = []
        for ts in times:
            key = draw(st.sampled_from(sorted(prof.events, key=str)))
            ev = prof.events[key]
            arg = draw(_value(arg_f, prof.format)) if arg_f is not None else None
            detail = ev.text
            if arg is not None and arg_f is not None:
                s = f"{arg:.{arg_f.decimals}f}" if arg_f.decimals is not None else repr(arg)
                detail = f"{ev.text}: {s} {arg_f.unit}" if arg_f.unit else f"{ev.text}: {s}"
            events.append((ts, ev.code, ev.severity, detail))
        return Frame(**base, events=tuple(events))  # type: ignore[arg-type]
    readings = []
    archives = []
    for ts in times:
        row = {}
        for f in fields:
            if f.channel or f.column:
                row[f] = draw(_value(f, prof.format))
        # bit flags of one slot are missing together (the slot holds the sentinel)
        for f in fields:
            if f.bit is not None and draw(st.integers(0, 9)) == 0 and f.missing is not None:
                for g in fields:
                    if g.slot == f.slot and g.bit is not None:
                        row[g] = None
        readings += [(f.channel, ts, v) for f, v in row.items() if f.channel and v is not None]
        if spec.archive:
            archives.append((spec.archive, ts, {f.column: v for f, v in row.items() if f.column}))
    if spec.time == "prefix":
        # the encoder sends records from the first to the last hour with any value
        used = sorted({ts for _c, ts, _v in readings})
        readings = [r for r in readings if used and used[0] <= r[1] <= used[-1]]
    return Frame(**base, readings=tuple(readings), archives=tuple(archives))  # type: ignore[arg-type]


def normal(frame: Frame) -> tuple[Any, ...]:
    """A frame with its collections in a canonical order, for comparison."""
    return (
        frame.profile, frame.device_id, frame.counter, frame.device_time, frame.kind,
        sorted(frame.readings), sorted(frame.archives, key=lambda a: (a[0], a[1])),
        sorted(frame.events), frame.command_acks, frame.secret,
    )  # fmt: skip


# --- round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROFILES))
@FAST
@given(data=st.data())
def test_encode_decode_round_trip(name: str, data: st.DataObject) -> None:
    prof = PROFILES[name]
    frame = data.draw(frames(prof))
    raw = REG.encode(frame)
    back = REG.decode(raw)
    assert normal(back) == normal(frame)
    assert REG.encode(back) == raw  # decoding loses nothing the encoder wrote


@pytest.mark.parametrize(
    ("name", "kind", "size"),
    [("household-nb", "archive", 8), ("corrector-ek", "archive", 36), ("gdp-telemetry", "archive", 20)],
)
def test_record_layouts_have_the_documented_size(name: str, kind: str, size: int) -> None:
    spec = next(s for s in PROFILES[name].frames if s.kind == kind)
    assert spec.record_size == size
    assert spec.dtype is not None and spec.dtype.itemsize == size


def test_every_binary_profile_has_session_frames() -> None:
    for prof in BINARY:
        assert prof.frame_type(0x10) is not None and prof.frame_type(0x10).kind == "ident", prof.name  # type: ignore[union-attr]
        assert prof.frame_type(0x11) is not None and prof.frame_type(0x11).kind == "ack", prof.name  # type: ignore[union-attr]


@settings(max_examples=150, deadline=None)
@given(
    f=st.sampled_from([f for p in BINARY for s in p.frames for f in s.fields if f.channel or f.column or f.role == "event_arg"]),
    raw=st.binary(min_size=0, max_size=8 * 70),
)
def test_struct_and_numpy_paths_agree(f: FieldSpec, raw: bytes) -> None:
    """Small frames decode through struct, large ones through numpy: same values."""
    import numpy as np

    dtype = np.dtype(("<" if f.endian == "little" else ">") + {1: "", 2: "", 4: "", 8: ""}[f.size]
                     + {"u": "u", "i": "i", "f": "f"}[f.type[0]] + str(f.size))  # fmt: skip
    col = np.frombuffer(raw[: len(raw) // f.size * f.size], dtype=dtype)
    a = _values(f, col)
    b = _values_py(f, col.tolist())
    assert a == b


# --- any bytes -----------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(raw=st.binary(max_size=600))
def test_any_bytes_give_a_frame_or_a_frame_error(raw: bytes) -> None:
    decode_or_error(raw)


@settings(max_examples=300, deadline=None)
@given(prof=st.sampled_from(BINARY), tail=st.binary(max_size=400))
def test_bytes_after_a_valid_profile_code(prof: DeviceProfile, tail: bytes) -> None:
    decode_or_error(b"\x01" + prof.code.to_bytes(2, "big") + tail)


@st.composite
def crc_valid_garbage(draw: st.DrawFn) -> bytes:
    """Envelope + random body + a correct checksum: exercises the body parser."""
    prof = draw(st.sampled_from(BINARY))
    ftype = draw(st.one_of(st.sampled_from([s.type for s in prof.frames]), st.integers(0, 255)))
    spec = prof.frame_type(ftype)
    if spec is not None and spec.record_size and draw(st.booleans()):
        n = draw(st.integers(0, 40))
        body = draw(st.binary(min_size=spec.prefix_size + n * spec.record_size,
                              max_size=spec.prefix_size + n * spec.record_size))  # fmt: skip
    else:
        body = draw(st.binary(max_size=300))
    head = struct.pack(">BHIIIBH", 1, prof.code, draw(st.integers(0, 2**32 - 1)),
                       draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)), ftype, len(body))  # fmt: skip
    return head + body + crc(prof.crc, head + body)


@settings(max_examples=400, deadline=None)
@given(raw=crc_valid_garbage())
def test_checksummed_garbage_bodies(raw: bytes) -> None:
    out = decode_or_error(raw)
    if isinstance(out, FrameError):
        assert out.reason in (Reason.SCHEMA, Reason.OUT_OF_RANGE), out
    else:  # whatever decoded must encode back to a frame that decodes the same
        keys = [(c, ts) for c, ts, _v in out.readings] + [(a, ts) for a, ts, _v in out.archives]
        if len(set(keys)) == len(keys):  # records repeating a time collapse when re-encoded
            assert normal(REG.decode(REG.encode(out))) == normal(out)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
    max_leaves=20,
)


@st.composite
def json_documents(draw: st.DrawFn) -> bytes:
    """JSON objects with some of the mqtt-json keys, random values, and a valid CRC."""
    doc: dict[str, Any] = draw(st.dictionaries(st.text(max_size=5), json_values, max_size=3))
    for key, strat in [("dev", st.one_of(st.text(max_size=9), st.integers(-5, 2**33), json_values)),
                       ("cnt", st.one_of(st.integers(-5, 2**33), json_values)),
                       ("t", st.one_of(st.integers(-(2**40), 2**40), st.floats(), st.text(max_size=30), json_values)),
                       ("type", st.one_of(st.sampled_from(["archive", "events", "ack", "x"]), json_values)),
                       ("data", st.lists(st.dictionaries(st.sampled_from(["t", "vs", "p", "bat", "q"]),
                                                         json_values, max_size=5), max_size=4)),
                       ("events", st.lists(st.dictionaries(st.sampled_from(["t", "code", "val"]), json_values,
                                                           max_size=3), max_size=3)),
                       ("acks", st.lists(json_values, max_size=3))]:  # fmt: skip
        if draw(st.integers(0, 4)):
            doc[key] = draw(strat)
    text = json.dumps(doc, separators=(",", ":")).encode()
    if len(doc) and draw(st.integers(0, 5)):
        text = text[:-1] + b',"crc":"' + crc("crc32", text).hex().encode() + b'"}'
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=json_documents())
def test_json_documents_give_a_frame_or_a_frame_error(raw: bytes) -> None:
    decode_or_error(raw)
    decode_or_error(raw, profile="mqtt-json")


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200))
def test_server_frames_decode_or_raise_frame_error(raw: bytes) -> None:
    try:
        decode_server(raw)
    except FrameError:
        pass


# --- truncation and bit flips --------------------------------------------------------


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames())
def test_every_proper_prefix_is_truncated(frame: Frame) -> None:
    raw = REG.encode(frame)
    for k in range(len(raw)):
        out = decode_or_error(raw[:k])
        assert isinstance(out, FrameError) and out.reason is Reason.TRUNCATED, (k, len(raw), out)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames())
def test_every_single_bit_flip_is_caught(frame: Frame) -> None:
    raw = REG.encode(frame)
    assume(len(raw) <= 1200)
    binary = PROFILES[frame.profile].format == "binary"
    for i in range(len(raw)):
        for bit in range(8):
            bad = bytearray(raw)
            bad[i] ^= 1 << bit
            out = decode_or_error(bytes(bad))
            assert isinstance(out, FrameError), (i, bit)
            if binary and i >= 18:  # body and checksum: only the CRC can tell
                assert out.reason is Reason.BAD_CRC, (i, bit, out)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_single_bit_flips_of_one_full_frame_per_profile(name: str) -> None:
    """Deterministic companion of the property test: a frame with data in every field."""
    prof = PROFILES[name]
    spec = next(s for s in prof.frames if s.kind == "archive")
    frame = _full_frame(prof, spec)
    raw = REG.encode(frame)
    assert normal(REG.decode(raw)) == normal(frame)
    reasons = set()
    for i in range(len(raw)):
        for bit in range(8):
            bad = bytearray(raw)
            bad[i] ^= 1 << bit
            out = decode_or_error(bytes(bad))
            assert isinstance(out, FrameError), (i, bit)
            reasons.add(out.reason)
    assert Reason.BAD_CRC in reasons


def _full_frame(prof: DeviceProfile, spec: FrameSpec) -> Frame:
    t0 = 1_700_000_000 // 3600 * 3600
    times = [_utc(t0 + 3600 * h) for h in range(3)]
    readings, archives = [], []
    for h, ts in enumerate(times):
        row = {}
        for f in spec.fields:
            if f.channel or f.column:
                row[f] = float(h % 2) if f.bit is not None else 2.5 + 0.5 * h
        readings += [(f.channel, ts, v) for f, v in row.items() if f.channel]
        if spec.archive:
            archives.append((spec.archive, ts, {f.column: v for f, v in row.items() if f.column}))
    return Frame(prof.name, prof.device_id(4242), 9, _utc(t0 + 86400), spec.kind,
                 readings=tuple(readings), archives=tuple(archives))  # type: ignore[arg-type]  # fmt: skip


# --- JSON prefix scanner -------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(value=json_values)
def test_json_prefix_scanner_accepts_every_proper_prefix(value: Any) -> None:
    text = json.dumps(value)
    for k in range(len(text)):
        prefix = text[:k]
        try:
            json.loads(prefix)
        except ValueError:
            assert _is_json_prefix(prefix), prefix


@pytest.mark.parametrize("text", ['{"a":1}x', '{"a" 1', "[1,]", '{"a":tru e}', '"\\x"', "01", "[1}", '{"a":1}}'])
def test_json_prefix_scanner_rejects_broken_json(text: str) -> None:
    assert not _is_json_prefix(text)
