"""Shared wire types of the ingest services: packets, decoded frames and frame errors.

A *transport* (MQTT, TCP, UDP, archive file) turns whatever arrived into a
:class:`Packet` (the raw bytes plus where and when they came from).  A *decoder*
(:meth:`ingest.ProfileRegistry.decode`) turns a packet's bytes into a :class:`Frame`
or raises :class:`FrameError` with a :class:`Reason` from a closed set; *landing*
stores frames and quarantines packets.  These types are the contract between the three
parts, so they are small, frozen and free of behaviour.

All datetimes are timezone-aware UTC.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from typing import Literal

from ingest.errors import IngestError

__all__ = [
    "ACK_FRAME_TYPE",
    "COMMAND_ACK_FRAME_TYPE",
    "DOWNLINK_FRAME_TYPE",
    "HEADER_SIZE",
    "IDENT_FRAME_TYPE",
    "MAX_FRAME_BYTES",
    "SERVER_PROFILE_CODE",
    "Frame",
    "FrameError",
    "Packet",
    "Reason",
    "ServerFrame",
    "Transport",
]

#: Size of the binary envelope header (version .. body length), bytes.
HEADER_SIZE = 18
#: Default maximum size of one frame, bytes (configurable per service).
MAX_FRAME_BYTES = 4096
#: Frame type of the identification frame a unit sends first (body = credential secret).
IDENT_FRAME_TYPE = 0x10
#: Frame type of a unit's acknowledgement of downlink commands (body = command ids).
COMMAND_ACK_FRAME_TYPE = 0x11
#: Frame type of the server's acknowledgement of a committed uplink frame (server → unit).
ACK_FRAME_TYPE = 0x80
#: Frame type of a downlink command (server → unit).
DOWNLINK_FRAME_TYPE = 0x81
#: Profile code the server uses in the envelope of its own frames (ack, downlink).
SERVER_PROFILE_CODE = 0


class Reason(enum.StrEnum):
    """The closed set of reasons a packet is quarantined."""

    BAD_CRC = "bad_crc"
    TRUNCATED = "truncated"
    OVERSIZED = "oversized"
    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_PROFILE = "unknown_profile"
    REPLAYED = "replayed"
    CLOCK_SKEW = "clock_skew"
    OUT_OF_RANGE = "out_of_range"
    SCHEMA = "schema"


class FrameError(IngestError, ValueError):
    """A packet could not be decoded (or is refused); raised by every decoder.

    Parameters
    ----------
    reason
        Why, from the closed set :class:`Reason`; it becomes the quarantine reason.
    detail
        One line for a human: what was wrong and, where it helps, how to fix it.

    Examples
    --------
    >>> err = FrameError(Reason.TRUNCATED, "need 37 bytes, got 20")
    >>> str(err)
    'truncated: need 37 bytes, got 20'
    """

    reason: Reason
    detail: str

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = Reason(reason)
        self.detail = detail

    def __reduce__(self) -> tuple[type[FrameError], tuple[Reason, str]]:
        # keep the two-argument constructor when pickled (multiprocessing, logging handlers)
        return (type(self), (self.reason, self.detail))


#: The transport a packet came in by.
Transport = Literal["mqtt", "tcp", "udp", "file"]


@dataclasses.dataclass(frozen=True, slots=True)
class Packet:
    """What a transport hands to landing: the raw bytes and where and when they came from.

    Attributes
    ----------
    raw
        The bytes exactly as received (kept for audit and re-processing).
    transport
        ``"mqtt"``, ``"tcp"``, ``"udp"`` or ``"file"``.
    received_at
        Server receive time, UTC.
    device_id
        Identity the transport established (MQTT topic, TCP ident); ``None`` = take it
        from the frame.
    profile
        Profile name hint (e.g. from the MQTT topic); ``None`` = from the frame's
        profile code.
    """

    raw: bytes
    transport: Transport
    received_at: dt.datetime
    device_id: str | None = None
    profile: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """One decoded uplink frame.

    Attributes
    ----------
    profile
        Profile name, e.g. ``"household-nb"``.
    device_id
        Telemetry unit id, e.g. ``"D0000123"``.
    counter
        Monotonic frame counter of the unit (u32).
    device_time
        The unit's clock when it sent the frame, UTC.
    kind
        ``"archive"``, ``"events"``, ``"instant"``, ``"ident"``, ``"ack"`` (command
        acknowledgement), … as the profile names its frame types.
    readings
        ``(channel, ts UTC, value)``; channels are those of
        :data:`warehouse._schemas.CHANNELS` (units in the names, registers cumulative);
        ``None`` = missing.
    archives
        ``("hourly" | "daily", ts UTC interval start, {column: value})`` interval values
        of correctors, columns of the ``hourly_archive`` table (``volume_m3``,
        ``volume_work_m3``, ``pressure_kpa``, ``temperature_c``).
    events
        ``(ts UTC, code, severity, detail)``.
    command_acks
        Downlink command ids the unit confirms.
    secret
        Body of an ident frame (the unit's credential secret); empty otherwise.
    """

    profile: str
    device_id: str
    counter: int
    device_time: dt.datetime
    kind: str
    readings: tuple[tuple[str, dt.datetime, float | None], ...] = ()
    archives: tuple[tuple[str, dt.datetime, dict[str, float | None]], ...] = ()
    events: tuple[tuple[dt.datetime, str, str, str], ...] = ()
    command_acks: tuple[int, ...] = ()
    secret: bytes = b""


@dataclasses.dataclass(frozen=True, slots=True)
class ServerFrame:
    """A decoded server → unit frame (what a unit, or the fleet simulator, receives).

    Attributes
    ----------
    kind
        ``"ack"`` (frame type 0x80: an uplink frame was committed) or ``"command"``
        (frame type 0x81: a downlink command).
    serial
        The unit's envelope serial.
    sent_at
        Server clock when it sent the frame, UTC.
    acked_counter
        ``ack``: the committed uplink frame's counter.
    command_id, command
        ``command``: the command id (to confirm in a 0x11 frame) and its JSON object.
    """

    kind: Literal["ack", "command"]
    serial: int
    sent_at: dt.datetime
    acked_counter: int | None = None
    command_id: int | None = None
    command: dict[str, object] | None = None
