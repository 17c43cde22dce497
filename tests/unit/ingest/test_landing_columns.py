"""The bulk decoding landing uses gives exactly what per-packet decoding gives: the same
frame (readings and archives from the numpy columns) or the same FrameError, and the
bulk CRC-16/MODBUS equals the per-message one."""

from __future__ import annotations

import dataclasses
import os
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import Frame, FrameError
from ingest._crc import crc16_modbus
from ingest._decode import decode_many, modbus_many
from tests.unit.ingest.test_wire_fuzz import BINARY, REG, frames

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def per_packet(raw: bytes) -> Frame | tuple[str, str]:
    try:
        return REG.decode(raw)
    except FrameError as e:
        return (str(e.reason), e.detail)


def bulk(raws: list[bytes]) -> list[Frame | tuple[str, str]]:
    out: list[Frame | tuple[str, str]] = []
    for r in decode_many(REG, raws, [None] * len(raws)):
        if isinstance(r, FrameError):
            out.append((str(r.reason), r.detail))
            continue
        frame, cols = r
        if cols is not None:
            assert frame.readings == () and frame.archives == ()
            frame = dataclasses.replace(frame, readings=cols.reading_tuples(), archives=cols.archive_tuples())
        out.append(frame)
    return out


@FAST
@given(st.lists(st.sampled_from(BINARY).flatmap(frames), min_size=1, max_size=12), st.randoms())
def test_bulk_decoding_equals_per_packet_decoding(batch: list[Frame], rnd: random.Random) -> None:
    raws = [REG.encode(f) for f in batch]
    # damage some: a flipped bit, a cut, a byte too many
    damaged = []
    for raw in raws:
        pick = rnd.random()
        if pick < 0.2:
            b = bytearray(raw)
            i = rnd.randrange(len(b) * 8)
            b[i // 8] ^= 1 << (i % 8)
            damaged.append(bytes(b))
        elif pick < 0.3:
            damaged.append(raw[: rnd.randrange(len(raw))])
        elif pick < 0.35:
            damaged.append(raw + b"\x00")
        else:
            damaged.append(raw)
    # at least 8 frames, so that the bulk CRC path is taken
    batch_raws = (damaged * (8 // len(damaged) + 1))[: max(8, len(damaged))]
    assert bulk(batch_raws) == [per_packet(r) for r in batch_raws]


def test_bulk_modbus_equals_per_message() -> None:
    rnd = random.Random(7)
    datas = [os.urandom(rnd.randrange(0, 600)) for _ in range(200)] + [b"", b"1", b"123456789"]
    assert modbus_many(datas) == [crc16_modbus(d) for d in datas]
    assert modbus_many([b"123456789"]) == [0x4B37]
    assert modbus_many([]) == []
