"""Frame checksums named by device profiles: CRC-16/MODBUS, CRC-16/CCITT-FALSE, CRC-32.

CRC-32 (the zlib/Ethernet polynomial) comes from :func:`zlib.crc32` (C speed).
CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, MSB first) is :func:`binascii.crc_hqx`
seeded with 0xFFFF.  CRC-16/MODBUS (reflected poly 0xA001, init 0xFFFF) has no stdlib
implementation and is table-driven here: one table look-up per byte.

Every algorithm detects every single-bit error and every burst up to its width, which
is what the fuzz tests of the decoders rely on.  The checksum is appended to the frame
in the byte order of :data:`CRC_BYTE_ORDER` (MODBUS sends its CRC low byte first).
"""

from __future__ import annotations

import binascii
import zlib
from collections.abc import Callable
from typing import Final, Literal

__all__ = ["CRC_ALGORITHMS", "CRC_BYTE_ORDER", "CRC_SIZE", "CrcName", "crc", "crc16_ccitt", "crc16_modbus", "crc32"]

#: Names a profile may give in its ``crc`` key.
CrcName = Literal["crc16-modbus", "crc16-ccitt", "crc32"]


def _modbus_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        c = byte
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_MODBUS_TABLE: Final = _modbus_table()


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS of ``data`` (poly 0x8005 reflected, init 0xFFFF, no final xor).

    Examples
    --------
    >>> hex(crc16_modbus(b"123456789"))
    '0x4b37'
    """
    c = 0xFFFF
    table = _MODBUS_TABLE
    for b in data:
        c = (c >> 8) ^ table[(c ^ b) & 0xFF]
    return c


def crc16_ccitt(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (poly 0x1021, init 0xFFFF, no reflection).

    Examples
    --------
    >>> hex(crc16_ccitt(b"123456789"))
    '0x29b1'
    """
    return binascii.crc_hqx(data, 0xFFFF)


def crc32(data: bytes) -> int:
    """CRC-32 (ISO-HDLC, as zlib and Ethernet) of ``data``.

    Examples
    --------
    >>> hex(crc32(b"123456789"))
    '0xcbf43926'
    """
    return zlib.crc32(data) & 0xFFFFFFFF


CRC_ALGORITHMS: Final[dict[str, Callable[[bytes], int]]] = {
    "crc16-modbus": crc16_modbus,
    "crc16-ccitt": crc16_ccitt,
    "crc32": crc32,
}
#: Bytes each checksum takes at the end of a frame.
CRC_SIZE: Final[dict[str, int]] = {"crc16-modbus": 2, "crc16-ccitt": 2, "crc32": 4}
#: Byte order of the checksum at the end of a frame (MODBUS is little-endian on the wire).
CRC_BYTE_ORDER: Final[dict[str, Literal["little", "big"]]] = {
    "crc16-modbus": "little",
    "crc16-ccitt": "big",
    "crc32": "big",
}


def crc(name: str, data: bytes) -> bytes:
    """The checksum ``name`` of ``data`` as the bytes appended to a frame.

    Raises
    ------
    KeyError
        ``name`` is not one of :data:`CRC_ALGORITHMS` (profiles are validated on load,
        so this is a programming error).
    """
    return CRC_ALGORITHMS[name](data).to_bytes(CRC_SIZE[name], CRC_BYTE_ORDER[name])
