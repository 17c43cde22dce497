"""The fleet over the wire: simulated units send their archives over MQTT, TCP or UDP.

:class:`Fleet` takes the units, hourly readings and events of a simulator output folder
(see :func:`ingest.simulate`), shifts their time by whole weeks so the window ends just
before now (landing accepts data up to ``EdgePolicy.late_window`` old), and gives each
unit a device profile by its kind (``household-nb``, ``corrector-ek`` or
``gdp-telemetry``; on MQTT optionally ``mqtt-json`` for correctors).  Readings and
events are rounded to the hour, as the simulator's own clock drift is replaced by the
sender's ``drift`` fault below.

:class:`FleetSender` plays the units' communication sessions: one session per unit per
``session_hours`` of archive, in time order across the fleet, ``concurrency`` sessions
at a time.  Each session encodes what is new since the last one with the profile's
encoder (:meth:`ingest.ProfileRegistry.encode`, at most ``max_frame_bytes`` per frame):

* hourly archive frames: the unit's readings of every channel its profile carries
  (household: register, battery; GDP: all nine channels; corrector: registers, pressure,
  temperature) plus, for ``corrector-ek``, the interval values of the hourly archive
  (standard and working volume from the registers, pressure, temperature);
* daily archive frames (profiles with a ``daily`` archive, i.e. correctors): one record
  per complete gas day of the metering point (its time zone and contract hour), sent in
  the session that holds the day's last hour;
* event frames: the simulator's events (``events.parquet``: magnet tamper, battery,
  valve, power failure, door, …) in the session that holds their hour, coded with the
  profile's ``[events]`` table.  An event whose code the unit's profile cannot carry is
  not sent; it is listed in :attr:`Fleet.unsent_events`.

It adds the faults below, sends everything over the real transport and waits for the
server's ack frames.  Frames that were not acknowledged are sent again at the unit's
next session (and in extra rounds at the end), as real units do after a lost connection.

Faults (rates are per good frame, drawn from ``seed``):

=================  =========================================================  ===================
fault              what the unit sends                                        expected outcome
=================  =========================================================  ===================
``resend``         the same bytes again in the same session                   duplicate
``out_of_order``   the frame is held back and sent after the next session's   stored (late)
``truncated``      an extra packet: a proper prefix of the frame              quarantined truncated
``corrupted``      an extra packet: one bit of the body flipped (binary)      quarantined bad_crc
``replayed``       an earlier acknowledged counter with different content     quarantined replayed
``unknown_device`` an extra frame from a serial that is not registered        quarantined unknown_device
``clock_skew``     an extra frame (new counter) with the clock 5 h ahead      quarantined clock_skew
``drift``          share of units whose clock is 2–30 min off                 stored, suspect
=================  =========================================================  ===================

The sender records the ground truth (:class:`SendReport`): every packet sent with its
SHA-256, fault and expected outcome, and every good frame's readings with whether it was
acknowledged (and likewise its events and archive records), so a test can check that no
acknowledged reading or event was lost, none was stored twice and every bad packet was
quarantined once with the right reason.  :meth:`SendReport.summary_lines` is the
summary ``askug simulate --send`` prints: frames sent and acknowledged, readings,
archive records and events, faults injected by kind.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import logging
import random
import re
import socket
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import polars as pl

from ingest._device_profiles import DeviceProfile, FieldSpec, FrameSpec, ProfileRegistry
from ingest._wire import Frame, FrameError
from ingest.errors import IngestError, IngestFileError

__all__ = [
    "DEFAULT_PROFILES",
    "FAULT_KINDS",
    "FaultRates",
    "Fleet",
    "FleetSender",
    "SendReport",
    "Unit",
    "load_fleet_reference",
    "parse_target",
    "register_fleet",
    "write_report",
]

log = logging.getLogger("askug.ingest.send")

SendTransport = Literal["mqtt", "tcp", "udp"]
#: Profile per device kind.
DEFAULT_PROFILES: Final[Mapping[str, str]] = {
    "household_unit": "household-nb",
    "corrector": "corrector-ek",
    "gdp_unit": "gdp-telemetry",
}
_LEN: Final = struct.Struct(">I")
_HOUR: Final = dt.timedelta(hours=1)
_WEEK: Final = dt.timedelta(days=7)
#: Serials of the "unknown device" fault (never registered: above any simulated id).
_UNKNOWN_SERIAL0: Final = 9_000_000
#: Injected fault kinds (``SentPacket.fault`` values other than good frames, resends of
#: unacknowledged frames, idents and command acks), in the order the summary lists them.
FAULT_KINDS: Final = ("resend", "out_of_order", "truncated", "corrupted", "replayed", "unknown_device", "clock_skew")
#: Interval columns of the hourly/daily archives and the registers they are the differences of.
_VOLUME_COLUMNS: Final = (("volume_m3", "volume_register_m3"), ("volume_work_m3", "volume_work_register_m3"))
_MEAN_COLUMNS: Final = ("pressure_kpa", "temperature_c")
_EVENT_SCHEMA: Final = pl.Schema({"ts": pl.Datetime("us", "UTC"), "code": pl.String(), "severity": pl.String(), "detail": pl.String()})
_UNSENT_SCHEMA: Final = pl.Schema({"device_id": pl.String(), "ts": pl.Datetime("us", "UTC"), "code": pl.String(), "why": pl.String()})


# --- the fleet --------------------------------------------------------------------------
@dataclasses.dataclass
class Unit:
    """One simulated telemetry unit."""

    device_id: str
    kind: str
    profile: str
    modulus: float | None
    counter: int = 0
    drift_s: float = 0.0
    secret: str = ""
    #: (time zone, contract hour) of the unit's metering point: its archive day
    gas_day: tuple[str, int] | None = None

    def next_counter(self) -> int:
        self.counter = (self.counter + 1) & 0xFFFFFFFF
        return self.counter


def _read_reference(sim_dir: Path, table: str) -> pl.DataFrame:
    from ingest._files import _read_reference_csv
    from warehouse import TABLES

    return _read_reference_csv(sim_dir, f"reference/{table}.csv", TABLES[table])


def load_fleet_reference(store: Any, sim_dir: str | Path) -> dict[str, int]:
    """Write the reference tables (companies … devices, contracts) of a simulation into ``store``.

    The readings stay in the folder: they arrive over the wire.  Idempotent.
    Returns rows written per table.
    """
    from warehouse import REFERENCE_TABLES

    root = Path(sim_dir)
    written: dict[str, int] = {}
    with store.transaction():
        for table in REFERENCE_TABLES:
            path = root / "reference" / f"{table}.csv"
            if not path.exists():
                continue
            frame = _read_reference(root, table)
            written[table] = int(store.write(table, frame) or 0)
    return written


def register_fleet(store: Any, fleet: Fleet, *, cost: int = 2**4, rotate: bool = True) -> dict[str, str]:
    """Register every unit of ``fleet`` with its profile; returns and keeps the secrets.

    A low scrypt ``cost`` is fine here: the secrets are random (see ``ingest/_security.py``).
    """
    from ingest._security import DeviceRegistration, register_devices

    regs = [DeviceRegistration(u.device_id, u.profile, kind=u.kind) for u in fleet.units]
    secrets = register_devices(store, regs, rotate=rotate, cost=cost)
    for u in fleet.units:
        u.secret = secrets[u.device_id]
    return secrets


@dataclasses.dataclass
class Fleet:
    """Units, their hourly readings and events (UTC, shifted to end before now), ready to send.

    Build with :meth:`from_simulation`.
    """

    units: list[Unit]
    readings: dict[str, pl.DataFrame]  # device_id -> wide frame: ts + one column per channel
    shift: dt.timedelta
    start: dt.datetime
    end: dt.datetime
    skipped: list[str] = dataclasses.field(default_factory=list)
    #: device_id -> the unit's events in the window: ts (UTC, shifted), code, severity, detail
    events: dict[str, pl.DataFrame] = dataclasses.field(default_factory=dict)
    #: events of the window that the unit's profile cannot carry: device_id, ts, code, why
    unsent_events: pl.DataFrame = dataclasses.field(default_factory=lambda: pl.DataFrame(schema=_UNSENT_SCHEMA))

    @classmethod
    def from_simulation(
        cls,
        sim_dir: str | Path,
        *,
        max_units: int | None = None,
        profiles: Mapping[str, str] = DEFAULT_PROFILES,
        json_share: float = 0.0,
        now: dt.datetime | None = None,
        seed: int = 0,
        registry: ProfileRegistry | None = None,
        last_days: int | None = None,
    ) -> Fleet:
        """Units of a simulator output folder (``askug simulate``) with their readings.

        Parameters
        ----------
        max_units
            Take only the first units (by device id) of each kind, in proportion.
        profiles
            Profile name per device kind.
        json_share
            Share of correctors that use the ``mqtt-json`` profile (MQTT only).
        now
            The wall clock (tests); the data are shifted by whole weeks to end before it.
        last_days
            Send only the last this many days of the window.
        registry
            Profiles; a unit whose device id does not fit its profile's
            ``device_id_format`` is left out (listed in :attr:`skipped`).

        The simulator's events (``events.parquet``) of the chosen units inside the
        window (rounded to the hour like the readings) go to :attr:`events`; those the
        unit's profile has no code for to :attr:`unsent_events`.
        """
        root = Path(sim_dir)
        if not (root / "manifest.json").exists():
            raise IngestFileError(f"{root} is not a simulator output folder (no manifest.json); run `askug simulate --out {root}` first")
        manifest = json.loads((root / "manifest.json").read_text())
        devices = _read_reference(root, "devices").sort("device_id")
        if max_units is not None and max_units < devices.height:
            share = max_units / devices.height
            devices = pl.concat(
                [g.head(max(1, round(g.height * share))) for _, g in devices.group_by("kind", maintain_order=True)]
            ).sort("device_id")
        rng = random.Random(seed)
        reg = registry or ProfileRegistry()
        gas_days = _gas_days(root)
        units: list[Unit] = []
        skipped: list[str] = []
        for row in devices.iter_rows(named=True):
            kind = str(row["kind"])
            profile = profiles.get(kind)
            if profile is None:
                continue
            if kind == "corrector" and json_share > 0 and rng.random() < json_share:
                profile = "mqtt-json"
            try:
                reg.profile(profile).serial(str(row["device_id"]))
            except FrameError:
                skipped.append(str(row["device_id"]))
                continue
            units.append(
                Unit(str(row["device_id"]), kind, profile, row["counter_modulus_m3"], gas_day=gas_days.get(str(row["meter_id"])))
            )
        ids = [u.device_id for u in units]
        parts = [root / p for p in manifest["files"]["readings"]]
        frame = (
            pl.scan_parquet(parts)
            .filter(pl.col("device_id").is_in(ids))
            .select("device_id", "channel", pl.col("ts").dt.round("1h"), "value")
            .unique(["device_id", "channel", "ts"], keep="first")
            .collect()
        )
        if frame.height == 0:
            raise IngestFileError(f"{root}: no readings for the chosen units")
        t1 = frame["ts"].max()
        assert isinstance(t1, dt.datetime)
        if last_days is not None:
            frame = frame.filter(pl.col("ts") > t1 - dt.timedelta(days=last_days))
        t0 = frame["ts"].min()
        assert isinstance(t0, dt.datetime)
        wall = now or dt.datetime.now(dt.UTC)
        weeks = (wall - _HOUR - t1) // _WEEK
        shift = _WEEK * max(0, weeks)
        frame = frame.with_columns(pl.col("ts") + shift)
        wide: dict[str, pl.DataFrame] = {}
        for (device,), g in frame.group_by("device_id"):
            wide[str(device)] = g.pivot(on="channel", index="ts", values="value").sort("ts")
        units = [u for u in units if u.device_id in wide]
        events, unsent = _window_events(root, manifest, units, reg, t0, t1, shift)
        return cls(units, wide, shift, t0 + shift, t1 + shift, skipped, events, unsent)

    @property
    def reading_count(self) -> int:
        """Readings (non-null cells) the units have in the window."""
        return sum(int(sum(w.drop("ts").count().row(0))) for w in self.readings.values())

    @property
    def event_count(self) -> int:
        """Events the units will send (those in :attr:`unsent_events` excluded)."""
        return sum(e.height for e in self.events.values())


def _gas_days(root: Path) -> dict[str, tuple[str, int]]:
    """meter_id -> (time zone, contract hour) from the simulation's metering points."""
    path = root / "reference" / "metering_points.csv"
    if not path.exists():
        return {}
    mp = _read_reference(root, "metering_points")
    if not {"time_zone", "contract_hour"} <= set(mp.columns):
        return {}
    return {
        str(m): (str(tz), int(h))
        for m, tz, h in mp.select("meter_id", "time_zone", "contract_hour").iter_rows()
        if tz is not None and h is not None
    }


def _event_codes(prof: DeviceProfile) -> set[str]:
    """Event codes the profile can put on the wire (none without an events frame)."""
    if not any(s.kind == "events" for s in prof.frames):
        return set()
    return {ev.code for ev in prof.events.values()}


def _window_events(
    root: Path, manifest: Mapping[str, Any], units: Sequence[Unit], reg: ProfileRegistry,
    t0: dt.datetime, t1: dt.datetime, shift: dt.timedelta,
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:  # fmt: skip
    """The units' events in ``[t0, t1]`` (rounded to the hour, shifted): sendable per unit, and unsent."""
    name = manifest.get("files", {}).get("events")
    if not name or not (root / name).exists() or not units:
        return {}, pl.DataFrame(schema=_UNSENT_SCHEMA)
    codes = {u.device_id: _event_codes(reg.profile(u.profile)) for u in units}
    profile_of = {u.device_id: u.profile for u in units}
    ev = (
        pl.read_parquet(root / name)
        .filter(pl.col("device_id").is_in(list(codes)))
        .with_columns(pl.col("ts").dt.round("1h"))
        .filter(pl.col("ts").is_between(t0, t1))
        .unique(["device_id", "ts", "code"], keep="first", maintain_order=True)
        .sort("device_id", "ts", "code")
        .with_columns(pl.col("ts") + shift)
    )
    ok = pl.Series([c in codes[d] for d, c in zip(ev["device_id"].to_list(), ev["code"].to_list(), strict=True)], dtype=pl.Boolean)
    unsent = ev.filter(~ok).select(
        "device_id", "ts", "code",
        pl.format("profile {} has no event code {}", pl.col("device_id").replace_strict(profile_of, return_dtype=pl.String), "code").alias("why"),
    )  # fmt: skip
    if unsent.height:
        log.warning("%d events have no code in their unit's profile and are not sent, e.g. %s", unsent.height, unsent.row(0))
    events = {
        str(d): g.select(*_EVENT_SCHEMA)
        for (d,), g in ev.filter(ok).group_by("device_id", maintain_order=True)
    }
    return events, unsent


# --- frames from readings ---------------------------------------------------------------
def _archive_spec(prof: DeviceProfile) -> FrameSpec:
    for spec in prof.frames:
        if spec.kind == "archive" and spec.archive in (None, "hourly"):
            return spec
    raise IngestError(f"profile {prof.name!r} has no hourly archive frame to send readings with")


def _max_records(prof: DeviceProfile, spec: FrameSpec, max_frame_bytes: int) -> int:
    if prof.format == "json":
        return 40  # a JSON record is ~60-120 bytes
    from ingest._decode import max_records

    return max(1, max_records(prof, spec, max_frame_bytes))


def _intervals(
    unit: Unit,
    columns: Sequence[str],
    ts_list: Sequence[dt.datetime],
    data: Mapping[str, Sequence[float | None]],
    next_register: Mapping[str, float | None],
    next_ts: dt.datetime | None,
) -> list[dict[str, float | None]]:
    """Hourly archive values (``columns`` of ``hourly_archive``) at each of ``ts_list``.

    The volume of hour ``ts`` is the register at ``ts + 1 h`` minus the register at
    ``ts`` (plus the counter modulus across a rollover): null when either is missing (a
    gap in the readings) or when the register went back by more than a rollover can
    explain.  ``next_register`` holds the registers at ``next_ts``, the
    hour after the rows (the next session's first); without ``next_ts`` it is taken as
    the hour after the last row.  Pressure and temperature are the values at ``ts``.
    """
    pos = {ts: i for i, ts in enumerate(ts_list)}
    last = len(ts_list) - 1
    out: list[dict[str, float | None]] = []
    for i, ts in enumerate(ts_list):
        vals: dict[str, float | None] = {}
        after = ts + _HOUR
        j = pos.get(after)
        for col, reg in _VOLUME_COLUMNS:
            if col not in columns:
                continue
            regs = data.get(reg)
            a = regs[i] if regs is not None else None
            if j is not None:
                b = regs[j] if regs is not None else None
            elif (next_ts is None and i == last) or after == next_ts:
                b = next_register.get(reg)
            else:
                b = None
            v = None if a is None or b is None else b - a
            if v is not None and v < 0:
                # a rollover past the modulus; a register that went back (a spike in the
                # readings) is no interval volume the unit would have archived
                v = v + unit.modulus if unit.modulus and v + unit.modulus < unit.modulus / 2 else None
            vals[col] = None if v is None else round(v, 3)
        for col in _MEAN_COLUMNS:
            if col in columns and col in data:
                vals[col] = data[col][i]
        out.append(vals)
    return out


def _session_frames(
    unit: Unit,
    prof: DeviceProfile,
    rows: pl.DataFrame,
    next_register: Mapping[str, float | None],
    *,
    device_time: dt.datetime,
    max_frame_bytes: int,
    next_ts: dt.datetime | None = None,
) -> list[Frame]:
    """Hourly archive frames (counter set later) carrying ``rows`` (ts + channel columns).

    Every channel of the profile's hourly archive frame that ``rows`` has becomes
    readings; the frame's archive columns (correctors) get the interval values of
    :func:`_intervals` (``next_register`` / ``next_ts``: the registers of the hour after
    the rows).
    """
    spec = _archive_spec(prof)
    channels = [f.channel for f in spec.fields if f.channel and f.channel in rows.columns]
    columns = [f.column for f in spec.fields if f.column]
    per = _max_records(prof, spec, max_frame_bytes)
    ts_list: list[dt.datetime] = rows["ts"].to_list()
    data = {c: rows[c].to_list() for c in rows.columns if c != "ts"}
    archives_of = _intervals(unit, columns, ts_list, data, next_register, next_ts) if columns else []
    frames: list[Frame] = []
    for lo in range(0, len(ts_list), per):
        readings: list[tuple[str, dt.datetime, float | None]] = []
        archives: list[tuple[str, dt.datetime, dict[str, float | None]]] = []
        for i in range(lo, min(lo + per, len(ts_list))):
            ts = ts_list[i]
            for ch in channels:
                v = data[ch][i]
                if v is not None:
                    readings.append((ch, ts, float(v)))
            if columns and any(v is not None for v in archives_of[i].values()):
                archives.append(("hourly", ts, archives_of[i]))
        if readings or archives:
            frames.append(
                Frame(
                    profile=prof.name,
                    device_id=unit.device_id,
                    counter=0,
                    device_time=device_time,
                    kind="archive",
                    readings=tuple(readings),
                    archives=tuple(archives),
                )
            )
    return frames


def _daily_spec(prof: DeviceProfile) -> FrameSpec | None:
    return next((s for s in prof.frames if s.kind == "archive" and s.archive == "daily"), None)


def _daily_records(unit: Unit, prof: DeviceProfile, wide: pl.DataFrame) -> list[tuple[dt.datetime, dt.datetime, dict[str, float | None]]]:
    """The unit's daily archive: ``(gas day start UTC, the day's last hour UTC, values)``.

    Only for a profile with a daily archive frame and a unit whose metering point has a
    gas day (time zone + contract hour).  A day is sent when all its hours (23/24/25
    across DST) have an hourly volume; volumes are the sums of the hours, pressure and
    temperature the means.
    """
    spec = _daily_spec(prof)
    if spec is None or unit.gas_day is None or wide.height == 0:
        return []
    columns = [f.column for f in spec.fields if f.column]
    zone = ZoneInfo(unit.gas_day[0])
    hour = dt.time(unit.gas_day[1])
    ts_list: list[dt.datetime] = wide["ts"].to_list()
    data = {c: wide[c].to_list() for c in wide.columns if c != "ts"}
    hourly = _intervals(unit, columns, ts_list, data, {}, ts_list[-1] + _HOUR)
    by_day: dict[dt.date, list[int]] = defaultdict(list)
    for i, ts in enumerate(ts_list):
        # the gas day of hour ts: local wall clock minus the contract hour
        local = ts.astimezone(zone).replace(tzinfo=None) - dt.timedelta(hours=unit.gas_day[1])
        by_day[local.date()].append(i)
    out: list[tuple[dt.datetime, dt.datetime, dict[str, float | None]]] = []
    for day, idx in sorted(by_day.items()):
        start = dt.datetime.combine(day, hour, zone).astimezone(dt.UTC)
        end = dt.datetime.combine(day + dt.timedelta(days=1), hour, zone).astimezone(dt.UTC)
        hours = [hourly[i] for i in idx]
        if len(idx) != round((end - start) / _HOUR) or any(h.get("volume_m3") is None for h in hours):
            continue
        rec: dict[str, float | None] = {}
        for col, _reg in _VOLUME_COLUMNS:
            if col in columns:
                vs = [h.get(col) for h in hours]
                rec[col] = None if any(v is None for v in vs) else round(sum(v for v in vs if v is not None), 3)
        for col in _MEAN_COLUMNS:
            if col in columns:
                ms = [v for h in hours if (v := h.get(col)) is not None]
                rec[col] = round(sum(ms) / len(ms), 3) if ms else None
        out.append((start, end - _HOUR, rec))
    return out


def _daily_frames(
    unit: Unit, prof: DeviceProfile, records: Sequence[tuple[dt.datetime, dict[str, float | None]]],
    *, device_time: dt.datetime, max_frame_bytes: int,
) -> list[Frame]:  # fmt: skip
    """Daily archive frames carrying ``records`` (gas day start UTC, values)."""
    spec = _daily_spec(prof)
    if spec is None or not records:
        return []
    per = _max_records(prof, spec, max_frame_bytes)
    return [
        Frame(
            profile=prof.name, device_id=unit.device_id, counter=0, device_time=device_time, kind="archive",
            archives=tuple(("daily", ts, vals) for ts, vals in records[lo : lo + per]),
        )
        for lo in range(0, len(records), per)
    ]


def _wire_detail(text: str, detail: str, arg: FieldSpec | None) -> str:
    """The event detail as the unit puts it on the wire: the profile's text, plus the
    argument when the profile has one with a unit and the simulator's detail names a
    value in that unit (``battery 3.281 V`` -> ``battery: 3.281 V``)."""
    if arg is None or not arg.unit:
        return text
    m = re.search(rf"(-?\d+(?:\.\d+)?)\s*{re.escape(arg.unit)}\b", detail)
    return f"{text}: {m.group(1)} {arg.unit}" if m else text


def _event_frames(
    unit: Unit, prof: DeviceProfile, events: Sequence[tuple[dt.datetime, str, str, str]],
    *, device_time: dt.datetime, max_frame_bytes: int,
) -> list[Frame]:  # fmt: skip
    """Event frames carrying ``events`` (ts UTC, code, severity, detail) in the profile's coding.

    The severity and text on the wire are the profile's (a unit sends a code and an
    argument, nothing else); codes the profile lacks are filtered out by
    :meth:`Fleet.from_simulation` (see :attr:`Fleet.unsent_events`).
    """
    if not events:
        return []
    spec = next((s for s in prof.frames if s.kind == "events"), None)
    if spec is None:
        raise IngestError(f"profile {prof.name!r} has no events frame to send {len(events)} events of {unit.device_id} with")
    arg = next((f for f in spec.fields if f.role == "event_arg"), None)
    by_code = {ev.code: ev for ev in prof.events.values()}
    wire: list[tuple[dt.datetime, str, str, str]] = []
    for ts, code, _severity, detail in events:
        ev = by_code.get(code)
        if ev is None:
            raise IngestError(f"profile {prof.name!r} has no event code {code!r} (event of {unit.device_id} at {ts.isoformat()})")
        wire.append((ts, code, ev.severity, _wire_detail(ev.text, detail, arg)))
    per = _max_records(prof, spec, max_frame_bytes)
    return [
        Frame(
            profile=prof.name, device_id=unit.device_id, counter=0, device_time=device_time, kind="events",
            events=tuple(wire[lo : lo + per]),
        )
        for lo in range(0, len(wire), per)
    ]


# --- faults and ground truth ---------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class FaultRates:
    """Fault rates per good frame (0 … 1); ``drift`` is a share of units."""

    resend: float = 0.10
    out_of_order: float = 0.05
    truncated: float = 0.02
    corrupted: float = 0.01
    replayed: float = 0.005
    unknown_device: float = 0.005
    clock_skew: float = 0.005
    drift: float = 0.02

    @classmethod
    def none(cls) -> FaultRates:
        return cls(resend=0, out_of_order=0, truncated=0, corrupted=0, replayed=0, unknown_device=0, clock_skew=0, drift=0)


@dataclasses.dataclass
class SentPacket:
    """One packet a unit sent (ground truth)."""

    device_id: str
    counter: int | None
    sha256: str
    fault: str  # "good", "resend", "ident", "command_ack", or a fault name
    expected: str  # "stored", "duplicate" or a quarantine reason
    transport: str
    readings: int = 0
    #: the transport took it for sure (MQTT: the broker's PUBACK; TCP/UDP: handed to the socket)
    delivered: bool = True
    #: wall-clock time (unix seconds) the session that sent it ended
    sent_at: float = 0.0
    #: events the frame carries (good frames)
    events: int = 0


@dataclasses.dataclass
class SendReport:
    """What the fleet sent and what the server acknowledged (ground truth for tests)."""

    packets: list[SentPacket] = dataclasses.field(default_factory=list)
    #: (device_id, counter) of every good frame -> decoded readings (channel, ts, value)
    good: dict[tuple[str, int], tuple[tuple[str, dt.datetime, float | None], ...]] = dataclasses.field(default_factory=dict)
    #: (device_id, counter) -> number of archive records (hourly and daily)
    good_archives: dict[tuple[str, int], int] = dataclasses.field(default_factory=dict)
    #: (device_id, counter) -> decoded daily archive records (ts, {column: value})
    good_daily: dict[tuple[str, int], tuple[tuple[dt.datetime, dict[str, float | None]], ...]] = dataclasses.field(default_factory=dict)
    #: (device_id, counter) -> decoded events (ts, code, severity, detail)
    good_events: dict[tuple[str, int], tuple[tuple[dt.datetime, str, str, str], ...]] = dataclasses.field(default_factory=dict)
    acked: set[tuple[str, int]] = dataclasses.field(default_factory=set)
    commands: list[tuple[str, int, dict[str, Any]]] = dataclasses.field(default_factory=list)
    sessions: int = 0
    failed_sessions: int = 0
    rounds: int = 0
    seconds: float = 0.0
    #: units whose clock is off by more than a minute (the ``drift`` fault)
    drift_units: int = 0
    #: events the units' profiles could not carry (not sent; see :attr:`Fleet.unsent_events`)
    unsent_events: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    @property
    def sent_readings(self) -> int:
        return sum(len(r) for r in self.good.values())

    @property
    def acked_readings(self) -> int:
        return sum(len(self.good[k]) for k in self.acked if k in self.good)

    @property
    def unacked(self) -> list[tuple[str, int]]:
        return sorted(k for k in self.good if k not in self.acked)

    def bad_packets(self, *, delivered_only: bool = True) -> dict[str, str]:
        """sha256 -> expected quarantine reason of every distinct bad packet.

        ``delivered_only``: only those the transport surely took (a packet whose MQTT
        publish the broker never acknowledged may be lost on the way, like any packet).
        """
        out: dict[str, str] = {}
        for p in self.packets:
            if p.expected not in ("stored", "duplicate") and (p.delivered or not delivered_only):
                out.setdefault(p.sha256, p.expected)
        return out

    def readings_frame(self, *, acked_only: bool = False) -> pl.DataFrame:
        """Good frames' readings: device_id, channel, ts (UTC), value, acked."""
        rows = [
            (dev, ch, ts, v, (dev, c) in self.acked)
            for (dev, c), rs in self.good.items()
            for ch, ts, v in rs
            if v is not None and (not acked_only or (dev, c) in self.acked)
        ]
        return pl.DataFrame(
            rows,
            schema={"device_id": pl.String, "channel": pl.String, "ts": pl.Datetime("us", "UTC"), "value": pl.Float64, "acked": pl.Boolean},
            orient="row",
        )

    def events_frame(self, *, acked_only: bool = False) -> pl.DataFrame:
        """Good frames' events as decoded: device_id, ts (UTC), code, severity, detail, acked."""
        rows = [
            (dev, ts, code, sev, detail, (dev, c) in self.acked)
            for (dev, c), evs in self.good_events.items()
            for ts, code, sev, detail in evs
            if not acked_only or (dev, c) in self.acked
        ]
        schema = pl.Schema({"device_id": pl.String(), **_EVENT_SCHEMA, "acked": pl.Boolean()})
        return pl.DataFrame(rows, schema=schema, orient="row")

    def daily_frame(self, *, acked_only: bool = False) -> pl.DataFrame:
        """Good frames' daily archive records as decoded: device_id, ts (UTC gas day start), the
        archive columns, acked."""
        cols = ("volume_m3", "volume_work_m3", "pressure_kpa", "temperature_c")
        rows = [
            (dev, ts, *(vals.get(k) for k in cols), (dev, c) in self.acked)
            for (dev, c), recs in self.good_daily.items()
            for ts, vals in recs
            if not acked_only or (dev, c) in self.acked
        ]
        schema = pl.Schema({"device_id": pl.String(), "ts": pl.Datetime("us", "UTC"), **dict.fromkeys(cols, pl.Float64()), "acked": pl.Boolean()})
        return pl.DataFrame(rows, schema=schema, orient="row")

    def summary(self) -> dict[str, Any]:
        """Counts of what was sent and acknowledged, and the faults injected by kind."""
        faults: dict[str, int] = defaultdict(int)
        for p in self.packets:
            faults[p.fault] += 1
        acked = self.acked & set(self.good)
        return {
            "packets": len(self.packets),
            "good_frames": len(self.good),
            "acked_frames": len(acked),
            "readings_sent": self.sent_readings,
            "readings_acked": self.acked_readings,
            "archive_records_sent": sum(self.good_archives.values()),
            "archive_records_acked": sum(self.good_archives.get(k, 0) for k in acked),
            "daily_records_sent": sum(len(v) for v in self.good_daily.values()),
            "events_sent": sum(len(v) for v in self.good_events.values()),
            "events_acked": sum(len(self.good_events.get(k, ())) for k in acked),
            "events_unsent": self.unsent_events,
            "bad_packets": len(self.bad_packets()),
            "faults_injected": {k: faults[k] for k in FAULT_KINDS if faults.get(k)},
            "drift_units": self.drift_units,
            "sessions": self.sessions,
            "failed_sessions": self.failed_sessions,
            "rounds": self.rounds,
            "seconds": round(self.seconds, 2),
            "by_fault": dict(sorted(faults.items())),
        }

    def summary_lines(self) -> list[str]:
        """The summary as a few human-readable lines (what ``askug simulate --send`` prints)."""
        s = self.summary()
        injected = ", ".join(f"{k} {n:,}" for k, n in s["faults_injected"].items()) or "none"
        lines = [
            f"frames: {s['good_frames']:,} sent, {s['acked_frames']:,} acknowledged"
            + (f", {s['good_frames'] - s['acked_frames']:,} NOT acknowledged" if s["acked_frames"] < s["good_frames"] else "")
            + f"; {s['packets']:,} packets in all (idents, command acks, resends and faults included)",
            f"readings: {s['readings_sent']:,} sent, {s['readings_acked']:,} acknowledged; "
            f"archive records: {s['archive_records_sent']:,} sent ({s['daily_records_sent']:,} daily), "
            f"{s['archive_records_acked']:,} acknowledged; events: {s['events_sent']:,} sent, {s['events_acked']:,} acknowledged"
            + (f", {s['events_unsent']:,} not sendable (no code in the unit's profile)" if s["events_unsent"] else ""),
            (
                f"faults injected: {injected}; units with clock drift: {s['drift_units']:,}; "
                f"{s['bad_packets']:,} bad packets in all (each should be quarantined once)"
            ),
            f"sessions: {s['sessions']:,} ({s['failed_sessions']:,} failed), extra resend rounds: {s['rounds']}, {s['seconds']:.1f} s",
        ]
        return lines


@dataclasses.dataclass
class _Out:
    raw: bytes
    fault: str
    expected: str
    key: tuple[str, int] | None  # good frame key (acked when the server acks its counter)
    readings: int = 0
    events: int = 0


@dataclasses.dataclass
class _Session:
    """What one unit sends in one session window ``[next_ts - session_hours, next_ts)``."""

    unit: Unit
    rows: pl.DataFrame  # ts + channel columns of the window's hours
    next_register: dict[str, float | None]  # the registers at next_ts (interval of the last hour)
    next_ts: dt.datetime
    daily: list[tuple[dt.datetime, dict[str, float | None]]] = dataclasses.field(default_factory=list)
    events: list[tuple[dt.datetime, str, str, str]] = dataclasses.field(default_factory=list)


# --- links (one per transport) -----------------------------------------------------------------
class _Link:
    """Sends one session's packets for one unit and returns the counters the server acked."""

    transport: SendTransport = "tcp"

    def session(self, unit: Unit, ident: bytes | None, packets: Sequence[bytes], expect: set[int], on_command: Callable[[int, dict[str, Any]], bytes | None], delivered: list[bool]) -> set[int]:
        raise NotImplementedError


def _decode_server(raw: bytes) -> Any:
    from ingest._decode import decode_server

    try:
        return decode_server(raw)
    except FrameError:
        return None


class _TcpLink(_Link):
    transport: SendTransport = "tcp"

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout

    def session(self, unit: Unit, ident: bytes | None, packets: Sequence[bytes], expect: set[int], on_command: Callable[[int, dict[str, Any]], bytes | None], delivered: list[bool]) -> set[int]:
        acked: set[int] = set()
        with socket.create_connection((self.host, self.port), timeout=self.timeout) as s:
            out = bytearray()
            for raw in ([ident] if ident else []) + list(packets):
                out += _LEN.pack(len(raw)) + raw
            s.sendall(out)
            delivered[:] = [True] * len(packets)
            buf = bytearray()
            deadline = time.monotonic() + self.timeout
            pending_cmd_acks: set[int] = set()
            while (not expect <= acked or pending_cmd_acks - acked) and time.monotonic() < deadline:
                s.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    chunk = s.recv(65536)
                except (TimeoutError, OSError):
                    break
                if not chunk:
                    break
                buf += chunk
                while len(buf) >= 4:
                    (n,) = _LEN.unpack_from(buf)
                    if len(buf) < 4 + n:
                        break
                    sf = _decode_server(bytes(buf[4 : 4 + n]))
                    del buf[: 4 + n]
                    if sf is None:
                        continue
                    if sf.kind == "ack" and sf.acked_counter is not None:
                        acked.add(int(sf.acked_counter))
                    elif sf.kind == "command" and sf.command_id is not None:
                        reply = on_command(int(sf.command_id), dict(sf.command or {}))
                        if reply is not None:
                            s.sendall(_LEN.pack(len(reply)) + reply)
                            pending_cmd_acks.add(unit.counter)
            with _suppress():
                s.shutdown(socket.SHUT_WR)
        return acked


class _UdpLink(_Link):
    transport: SendTransport = "udp"

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.addr = (host, port)
        self.timeout = timeout

    def session(self, unit: Unit, ident: bytes | None, packets: Sequence[bytes], expect: set[int], on_command: Callable[[int, dict[str, Any]], bytes | None], delivered: list[bool]) -> set[int]:
        acked: set[int] = set()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i, raw in enumerate(packets):
                s.sendto(raw, self.addr)
                delivered[i] = True
            deadline = time.monotonic() + self.timeout
            while not expect <= acked and time.monotonic() < deadline:
                s.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    data = s.recv(65536)
                except (TimeoutError, OSError):
                    break
                sf = _decode_server(data)
                if sf is None:
                    continue
                if sf.kind == "ack" and sf.acked_counter is not None:
                    acked.add(int(sf.acked_counter))
                elif sf.kind == "command" and sf.command_id is not None:
                    reply = on_command(int(sf.command_id), dict(sf.command or {}))
                    if reply is not None:
                        s.sendto(reply, self.addr)
        return acked


class _MqttLink(_Link):
    transport: SendTransport = "mqtt"

    def __init__(self, host: str, port: int, timeout: float, *, auth: bool) -> None:
        self.host, self.port, self.timeout, self.auth = host, port, timeout, auth

    def session(self, unit: Unit, ident: bytes | None, packets: Sequence[bytes], expect: set[int], on_command: Callable[[int, dict[str, Any]], bytes | None], delivered: list[bool]) -> set[int]:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        acked: set[int] = set()
        up, down = f"askug/up/{unit.device_id}", f"askug/down/{unit.device_id}"
        state = {"subscribed": False, "failed": False}
        replies: list[bytes] = []

        def on_connect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
            if getattr(reason, "is_failure", False):
                state["failed"] = True
                return
            c.subscribe(down, qos=1)

        def on_subscribe(c: Any, u: Any, mid: Any, reasons: Any, props: Any) -> None:
            state["subscribed"] = True

        def on_message(c: Any, u: Any, msg: Any) -> None:
            sf = _decode_server(bytes(msg.payload))
            if sf is None:
                return
            if sf.kind == "ack" and sf.acked_counter is not None:
                acked.add(int(sf.acked_counter))
            elif sf.kind == "command" and sf.command_id is not None:
                reply = on_command(int(sf.command_id), dict(sf.command or {}))
                if reply is not None:
                    replies.append(reply)

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"unit-{unit.device_id}", clean_session=True)
        if self.auth:
            client.username_pw_set(unit.device_id, unit.secret)
        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.max_inflight_messages_set(100)
        deadline = time.monotonic() + self.timeout
        try:
            client.connect(self.host, self.port, keepalive=30)
            while not state["subscribed"] and not state["failed"] and time.monotonic() < deadline:
                client.loop(0.02)
            if not state["subscribed"]:
                return acked
            infos = [client.publish(up, raw, qos=1) for raw in packets]
            while time.monotonic() < deadline:
                client.loop(0.02)
                while replies:
                    client.publish(up, replies.pop(), qos=1)
                if expect <= acked and all(i.is_published() for i in infos):
                    break
            # delivered = the broker acknowledged it (PUBACK): from then on it is the broker's
            delivered[:] = [i.is_published() for i in infos]
        except OSError:
            return acked
        finally:
            with _suppress():
                client.disconnect()
                client.loop(0.01)
        return acked


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


# --- the sender -----------------------------------------------------------------------------------
class FleetSender:
    """Plays a :class:`Fleet`'s communication sessions over one transport, with faults.

    Parameters
    ----------
    fleet
        Units (registered, with their secrets) and readings.
    registry
        Profiles (the encoder).
    transport, host, port
        Where the ingest service (TCP/UDP) or the broker (MQTT) listens.
    faults
        Fault rates; :meth:`FaultRates.none` for a clean run.
    session_hours
        Hours of archive per session (24 = daily sessions).
    concurrency
        Sessions at a time.
    timeout_s
        How long a session waits for its acks.
    rounds
        Extra rounds at the end that resend everything not yet acknowledged.
    mqtt_auth
        Log in to the broker as the unit (device id + secret).
    """

    def __init__(
        self,
        fleet: Fleet,
        registry: ProfileRegistry,
        *,
        transport: SendTransport,
        host: str,
        port: int,
        faults: FaultRates = FaultRates(),
        session_hours: int = 24,
        concurrency: int = 8,
        timeout_s: float = 5.0,
        rounds: int = 3,
        seed: int = 0,
        mqtt_auth: bool = False,
        max_frame_bytes: int = 4096,
        counter_start: int | None = None,
    ) -> None:
        self.fleet = fleet
        self.registry = registry
        self.transport = transport
        self.faults = faults
        self.session_hours = session_hours
        self.concurrency = concurrency
        self.rounds = rounds
        self.seed = seed
        self.rng = random.Random(seed)
        self._rngs: dict[str, random.Random] = {}
        self.max_frame_bytes = max_frame_bytes
        self.report = SendReport()
        self.link: _Link
        if transport == "tcp":
            self.link = _TcpLink(host, port, timeout_s)
        elif transport == "udp":
            self.link = _UdpLink(host, port, timeout_s)
        elif transport == "mqtt":
            self.link = _MqttLink(host, port, timeout_s, auth=mqtt_auth)
        else:
            raise IngestError(f"transport {transport!r} is not mqtt, tcp or udp")
        # Counters continue above anything an earlier run of the same units used.
        base = counter_start if counter_start is not None else (int(time.time()) - 1_700_000_000) * 4
        for u in fleet.units:
            u.counter = base & 0x7FFFFFFF
            if self.rng.random() < faults.drift:
                u.drift_s = self.rng.choice((-1, 1)) * self.rng.uniform(120, 1800)
            else:
                u.drift_s = self.rng.uniform(-20, 20)
        self.report.drift_units = sum(1 for u in fleet.units if abs(u.drift_s) > 60)
        self.report.unsent_events = fleet.unsent_events.height
        self._held: dict[str, list[_Out]] = defaultdict(list)  # out-of-order frames for the next session
        self._held_new: dict[str, list[_Out]] = defaultdict(list)  # held back by the session being built
        self._unacked: dict[str, list[_Out]] = defaultdict(list)
        self._acked_raw: dict[str, list[tuple[int, Frame]]] = defaultdict(list)
        self._unknown_serials = itertools.count(_UNKNOWN_SERIAL0 + self.rng.randrange(100_000))
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)

    # -- sessions ---------------------------------------------------------------------------
    def _plan(self) -> list[_Session]:
        """Sessions in time order across the fleet (session window by session window, units
        in fleet order), each with what is new for its unit in that window."""
        step = dt.timedelta(hours=self.session_hours)
        start = self.fleet.start

        def index(ts: dt.datetime) -> int:
            return int((ts - start) // step)

        planned: list[tuple[int, int, _Session]] = []
        for order, u in enumerate(self.fleet.units):
            prof = self.registry.profile(u.profile)
            w = self.fleet.readings.get(u.device_id)
            sessions: dict[int, _Session] = {}

            def session(k: int, u: Unit = u, w: pl.DataFrame | None = w, sessions: dict[int, _Session] = sessions) -> _Session:
                got = sessions.get(k)
                if got is None:
                    empty = w.clear() if w is not None else pl.DataFrame(schema={"ts": pl.Datetime("us", "UTC")})
                    got = sessions[k] = _Session(u, empty, {}, start + step * (k + 1))
                return got

            if w is not None and w.height:
                regs = [c for c in ("volume_register_m3", "volume_work_register_m3") if c in w.columns]
                at = {row[0]: dict(zip(regs, row[1:], strict=True)) for row in w.select("ts", *regs).iter_rows()}
                keyed = w.with_columns(((pl.col("ts") - start).dt.total_hours() // self.session_hours).cast(pl.Int64).alias("_k"))
                for (k,), rows in keyed.partition_by("_k", as_dict=True, include_key=False).items():
                    sess = session(int(k))
                    sess.rows = rows
                    sess.next_register = at.get(sess.next_ts, {})
                for day, last_hour, vals in _daily_records(u, prof, w):
                    session(index(last_hour)).daily.append((day, vals))
            ev = self.fleet.events.get(u.device_id)
            if ev is not None:
                for ts, code, severity, detail in ev.iter_rows():
                    session(index(ts)).events.append((ts, code, severity, detail))
            planned.extend((k, order, sess) for k, sess in sessions.items())
        planned.sort(key=lambda x: (x[0], x[1]))
        return [sess for _, _, sess in planned]

    def _frame_bytes(self, unit: Unit, frame: Frame) -> bytes:
        return self.registry.encode(frame)

    def _build(self, sess: _Session) -> list[_Out]:
        """Encode one session's frames (counters in order) and add the faults."""
        unit = sess.unit
        prof = self.registry.profile(unit.profile)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        device_time = now + dt.timedelta(seconds=round(unit.drift_s))
        kw: dict[str, Any] = {"device_time": device_time, "max_frame_bytes": self.max_frame_bytes}
        frames = _session_frames(unit, prof, sess.rows, sess.next_register, next_ts=sess.next_ts, **kw)
        frames += _daily_frames(unit, prof, sess.daily, **kw)
        frames += _event_frames(unit, prof, sess.events, **kw)
        outs: list[_Out] = []
        rng = self._unit_rng(unit)
        f = self.faults
        for fr in frames:
            fr = dataclasses.replace(fr, counter=unit.next_counter())
            raw = self._frame_bytes(unit, fr)
            decoded = self.registry.decode(raw)
            key = (unit.device_id, fr.counter)
            with self.report.lock:
                self.report.good[key] = decoded.readings
                self.report.good_archives[key] = len(decoded.archives)
                daily = tuple((ts, vals) for kind, ts, vals in decoded.archives if kind == "daily")
                if daily:
                    self.report.good_daily[key] = daily
                if decoded.events:
                    self.report.good_events[key] = decoded.events
            out = _Out(raw, "good", "stored", key, len(decoded.readings) + len(decoded.archives), len(decoded.events))
            if rng.random() < f.out_of_order:
                out.fault = "out_of_order"
                self._held_new[unit.device_id].append(out)
            else:
                outs.append(out)
            if rng.random() < f.resend:
                outs.append(_Out(raw, "resend", "duplicate", key))
            if rng.random() < f.truncated:
                cut = rng.randrange(19 if prof.format == "binary" else len(raw) // 2, len(raw))
                outs.append(_Out(raw[:cut], "truncated", "truncated", None))
            if rng.random() < f.corrupted and prof.format == "binary":
                bad = bytearray(raw)
                body_len = int.from_bytes(raw[16:18], "big")
                if body_len:
                    pos = 18 + rng.randrange(body_len)
                    bad[pos] ^= 1 << rng.randrange(8)
                    outs.append(_Out(bytes(bad), "corrupted", "bad_crc", None))
            if rng.random() < f.unknown_device and prof.format == "binary":
                ghost = dataclasses.replace(fr, device_id=prof.device_id(next(self._unknown_serials)))
                outs.append(_Out(self._frame_bytes(unit, ghost), "unknown_device", "unknown_device", None))
            if rng.random() < f.clock_skew:
                skewed = dataclasses.replace(fr, counter=unit.next_counter(), device_time=now + dt.timedelta(hours=5))
                outs.append(_Out(self._frame_bytes(unit, skewed), "clock_skew", "clock_skew", None))
            if rng.random() < f.replayed and self._acked_raw[unit.device_id]:
                _counter, old = rng.choice(self._acked_raw[unit.device_id])
                replay = self._altered(old)
                if replay is not None:
                    outs.append(_Out(self._frame_bytes(unit, replay), "replayed", "replayed", None))
        return outs

    def _unit_rng(self, unit: Unit) -> random.Random:
        rng = self._rngs.get(unit.device_id)
        if rng is None:
            rng = self._rngs[unit.device_id] = random.Random(f"{self.seed}:{unit.device_id}")
        return rng

    @staticmethod
    def _altered(frame: Frame) -> Frame | None:
        """The same counter with one value or event time changed (a replay with other content)."""
        if frame.events and not frame.readings and not frame.archives:
            ts, code, severity, detail = frame.events[0]
            return dataclasses.replace(frame, events=((ts + dt.timedelta(minutes=1), code, severity, detail), *frame.events[1:]))
        if frame.readings:
            ch, ts, v = frame.readings[0]
            readings = ((ch, ts, (v or 0.0) + 1.0), *frame.readings[1:])
            return dataclasses.replace(frame, readings=readings)
        if frame.archives:
            kind, ts, vals = frame.archives[0]
            new = dict(vals)
            k = next(iter(new))
            new[k] = (new[k] or 0.0) + 1.0
            return dataclasses.replace(frame, archives=((kind, ts, new), *frame.archives[1:]))
        return None

    def _ident(self, unit: Unit) -> tuple[bytes, _Out]:
        prof = self.registry.profile(unit.profile)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=round(unit.drift_s))
        fr = Frame(profile=prof.name, device_id=unit.device_id, counter=unit.next_counter(), device_time=now, kind="ident", secret=unit.secret.encode())
        raw = self.registry.encode(fr)
        return raw, _Out(raw, "ident", "stored", None)

    def _command_reply(self, unit: Unit, command_id: int, command: dict[str, Any]) -> bytes | None:
        with self.report.lock:
            self.report.commands.append((unit.device_id, command_id, command))
        prof = self.registry.profile(unit.profile)
        if not any(s.kind == "ack" for s in prof.frames):
            return None
        now = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=round(unit.drift_s))
        fr = Frame(profile=prof.name, device_id=unit.device_id, counter=unit.next_counter(), device_time=now, kind="ack", command_acks=(command_id,))
        raw = self.registry.encode(fr)
        self._record(unit, [_Out(raw, "command_ack", "stored", None)])
        return raw

    def _record(self, unit: Unit, outs: Sequence[_Out], delivered: Sequence[bool] | None = None) -> None:
        with self.report.lock:
            for k, o in enumerate(outs):
                counter = int.from_bytes(o.raw[7:11], "big") if len(o.raw) >= 11 and o.raw[0] == 1 else (o.key[1] if o.key else None)
                self.report.packets.append(
                    SentPacket(
                        unit.device_id, counter, hashlib.sha256(o.raw).hexdigest(), o.fault, o.expected,
                        self.transport, o.readings, True if delivered is None else delivered[k], time.time(), o.events,
                    )
                )

    def _run_session(self, unit: Unit, new: list[_Out], *, flush_held: bool) -> None:
        with self._locks[unit.device_id]:
            retry = self._unacked.pop(unit.device_id, [])
            held = self._held.pop(unit.device_id, []) if flush_held else []
            later = self._held_new.pop(unit.device_id, [])
            if later:
                self._held[unit.device_id] = later
            # resent frames are the same bytes: expected duplicate if they had reached the server
            outs = [dataclasses.replace(o, fault="retry" if o.fault != "out_of_order" else o.fault) for o in retry] + new + held
            ident: bytes | None = None
            ident_outs: list[_Out] = []
            if self.transport == "tcp":
                ident, ident_out = self._ident(unit)
                ident_outs = [ident_out]
            expect = {o.key[1] for o in outs if o.key is not None}
            delivered = [False] * len(outs)
            try:
                acked = self.link.session(
                    unit, ident, [o.raw for o in outs], expect, lambda cid, cmd: self._command_reply(unit, cid, cmd), delivered
                )
                failed = False
            except OSError as exc:
                log.debug("session of %s failed: %s", unit.device_id, exc)
                acked, failed = set(), True
            self._record(unit, ident_outs, [not failed] * len(ident_outs))
            self._record(unit, outs, delivered)
            with self.report.lock:
                self.report.sessions += 1
                self.report.failed_sessions += int(failed)
                seen: set[tuple[str, int]] = set()
                for o in outs:
                    if o.key is None or o.key in seen:
                        continue
                    seen.add(o.key)
                    if o.key[1] in acked:
                        self.report.acked.add(o.key)
                    elif o.key not in self.report.acked:
                        self._unacked[unit.device_id].append(o)
                for o in outs:
                    if o.key is not None and o.key in self.report.acked and o.fault in ("good", "out_of_order", "retry"):
                        try:
                            self._acked_raw[unit.device_id].append((o.key[1], self.registry.decode(o.raw)))
                        except FrameError:
                            pass

    def run(
        self,
        *,
        progress: Callable[[int, int], None] | None = None,
        hooks: Sequence[tuple[float, Callable[[], None]]] = (),
    ) -> SendReport:
        """Send every session, then resend what was not acknowledged; returns the ground truth.

        ``concurrency`` worker threads take sessions in time order (a unit's sessions
        one after the other).  ``hooks`` are ``(fraction, fn)``: once that fraction of
        the sessions is done, new sessions wait, the running ones finish, ``fn()`` runs
        in the calling thread, and sending resumes (tests kill and restart servers
        there; ``fn`` may start a thread that strikes while sessions run).
        """
        started = time.perf_counter()
        pending = self._plan()
        total = len(pending)
        cond = threading.Condition()
        busy: set[str] = set()
        state = {"done": 0, "running": 0, "paused": False}

        def take() -> _Session | None:
            with cond:
                while True:
                    if not pending:
                        return None
                    if not state["paused"]:
                        for i, item in enumerate(pending):
                            if item.unit.device_id not in busy:
                                del pending[i]
                                busy.add(item.unit.device_id)
                                state["running"] += 1
                                return item
                    cond.wait(0.05)

        def worker() -> None:
            while (item := take()) is not None:
                unit = item.unit
                try:
                    self._run_session(unit, self._build(item), flush_held=True)
                finally:
                    with cond:
                        busy.discard(unit.device_id)
                        state["running"] -= 1
                        state["done"] += 1
                        cond.notify_all()

        todo = sorted(hooks, key=lambda h: h[0])
        threads = [threading.Thread(target=worker, name=f"askug-unit-{i}", daemon=True) for i in range(self.concurrency)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            with cond:
                cond.wait(0.1)
                done = state["done"]
                if todo and done >= todo[0][0] * total:
                    state["paused"] = True
                    while state["running"]:
                        cond.wait(0.05)
            if progress is not None:
                progress(done, total)
            if state["paused"]:
                _, fn = todo.pop(0)
                try:
                    fn()
                finally:
                    with cond:
                        state["paused"] = False
                        cond.notify_all()
        for _, fn in todo:  # fractions never reached (e.g. 1.0)
            fn()
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="askug-unit") as pool:
            for r in range(self.rounds):
                again = [u for u in self.fleet.units if self._unacked.get(u.device_id) or self._held.get(u.device_id)]
                if not again:
                    break
                self.report.rounds = r + 1
                list(pool.map(lambda u: self._run_session(u, [], flush_held=True), again))
        self.report.seconds = time.perf_counter() - started
        return self.report


def parse_target(text: str, *, transport: SendTransport) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` (or ``mqtt://host:port`` for MQTT)."""
    t = text.strip()
    if t.startswith("mqtt://"):
        from ingest._transports.mqtt import parse_mqtt_url

        host, port, _, _ = parse_mqtt_url(t)
        return host, port
    host, sep, digits = t.rpartition(":")
    if not sep or not host or not digits.isdigit() or not 0 < int(digits) < 65536:
        raise IngestError(f"--to {text!r} is not HOST:PORT (e.g. 127.0.0.1:5020 for {transport})")
    return host, int(digits)


def write_report(report: SendReport, out_dir: str | Path) -> Path:
    """Write the ground truth: ``sent_packets.parquet``, ``sent_readings.parquet``,
    ``sent_events.parquet``, ``sent_daily.parquet`` and ``send_summary.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    packets = pl.DataFrame(
        [dataclasses.astuple(p) for p in report.packets],
        schema={
            "device_id": pl.String,
            "counter": pl.Int64,
            "sha256": pl.String,
            "fault": pl.String,
            "expected": pl.String,
            "transport": pl.String,
            "readings": pl.Int64,
            "delivered": pl.Boolean,
            "sent_at": pl.Float64,
            "events": pl.Int64,
        },
        orient="row",
    )
    packets.write_parquet(out / "sent_packets.parquet")
    report.readings_frame().write_parquet(out / "sent_readings.parquet")
    report.events_frame().write_parquet(out / "sent_events.parquet")
    report.daily_frame().write_parquet(out / "sent_daily.parquet")
    path = out / "send_summary.json"
    path.write_text(json.dumps(report.summary(), indent=2) + "\n")
    return path
