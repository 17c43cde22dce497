"""Data contracts: the Polars schemas of every table and frame that crosses a layer.

Conventions (see ``ARCHITECTURE.md``):

* time is UTC everywhere: ``ts`` columns are ``Datetime("us", "UTC")`` and mark the
  *start* of the interval;
* units live in column names (``volume_m3`` is volume reduced to standard conditions,
  ``volume_work_m3`` at working conditions, ``pressure_kpa``, ``temperature_c``);
* every measured value carries a ``quality`` code from :data:`QUALITY_CODES`;
* missing is ``null``, never ``0``.

Each table is described once by a :class:`TableSpec` (schema, natural key, which
columns must be non-null, which string columns take a closed set of values).  The
stores create their tables from the same specs they validate against, so a frame that
passes :func:`validate_frame` can always be written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import polars as pl

from warehouse.errors import ContractError

UTC_TS: Final = pl.Datetime("us", "UTC")

QUALITY_CODES: Final = ("valid", "suspect", "estimated", "edited", "missing")
RESOURCES: Final = ("gas", "water", "electricity", "heat")
CATEGORIES: Final = ("household", "industrial", "municipal", "commercial")
NODE_KINDS: Final = ("gdp", "section", "station")
DEVICE_KINDS: Final = ("household_unit", "corrector", "gdp_unit")
SEVERITIES: Final = ("info", "warning", "critical")
ALERT_STATES: Final = ("open", "acknowledged", "resolved")

#: Channels a telemetry unit reports, with their unit in the name.  Registers are
#: cumulative; everything else is an instantaneous value at ``ts``.
REGISTER_CHANNELS: Final = ("volume_register_m3", "volume_work_register_m3")
GDP_CHANNELS: Final = (
    "inlet_pressure_kpa",
    "outlet_pressure_kpa",
    "gas_temperature_c",
    "room_temperature_c",
    "ch4_pct_lel",
    "door_open",
    "valve_open",
    "mains_voltage_v",
    "battery_voltage_v",
)
METER_CHANNELS: Final = (
    *REGISTER_CHANNELS,
    "pressure_kpa",
    "temperature_c",
    "battery_voltage_v",
    "flow_m3h",  # instantaneous flow at standard conditions (correctors)
    "tamper_magnet",  # 1 = magnetic field detected in the interval, 0 = none
    "valve_open",  # 1 = shut-off valve open, 0 = closed (household units with a valve)
)
CHANNELS: Final = tuple(dict.fromkeys((*METER_CHANNELS, *GDP_CHANNELS)))


@dataclass(frozen=True)
class TableSpec:
    """One stored table or travelling frame.

    Attributes
    ----------
    name
        Table name in every store.
    schema
        Column names and Polars dtypes, in storage order.
    key
        Natural key.  Loading a row whose key is already stored is a no-op.
    required
        Columns that may never be null (the key is always required).
    choices
        String columns restricted to a closed set of values.
    doc
        One line for the docs: what a row is.
    defaults
        Values of required columns that a frame may leave out (added as a literal by
        :func:`validate_frame`); a column that is present but null is still an error.
    """

    name: str
    schema: pl.Schema
    key: tuple[str, ...]
    required: tuple[str, ...] = ()
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    doc: str = ""
    defaults: dict[str, object] = field(default_factory=dict)

    @property
    def not_null(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.key, *self.required)))


def _spec(
    name: str,
    columns: dict[str, pl.DataType | type[pl.DataType]],
    key: tuple[str, ...],
    *,
    required: tuple[str, ...] = (),
    choices: dict[str, tuple[str, ...]] | None = None,
    doc: str = "",
    defaults: dict[str, object] | None = None,
) -> TableSpec:
    return TableSpec(name, pl.Schema(columns), key, required, choices or {}, doc, defaults or {})


# --- reference data (the enterprise) ------------------------------------------------

COMPANIES = _spec(
    "companies",
    {
        "company_id": pl.String,
        "name": pl.String,
        "time_zone": pl.String,  # IANA zone, e.g. Europe/Moscow
        "contract_hour": pl.Int8,  # local hour the gas day starts (0..23)
    },
    ("company_id",),
    required=("name", "time_zone", "contract_hour"),
    doc="A gas distribution company; its time zone and contract hour define its gas day.",
)

BRANCHES = _spec(
    "branches",
    {
        "branch_id": pl.String,
        "company_id": pl.String,
        "name": pl.String,
        "weather_station": pl.String,  # station_id in the weather table
    },
    ("branch_id",),
    required=("company_id", "name"),
    doc="A regional branch of a company.",
)

NETWORK_NODES = _spec(
    "network_nodes",
    {
        "node_id": pl.String,
        "branch_id": pl.String,
        "parent_node_id": pl.String,  # null for a root node
        "kind": pl.String,
        "name": pl.String,
    },
    ("node_id",),
    required=("branch_id", "kind", "name"),
    choices={"kind": NODE_KINDS},
    doc="A node of the distribution network (a GDP is a node); parent/child form the tree.",
)

METERING_POINTS = _spec(
    "metering_points",
    {
        "meter_id": pl.String,
        "branch_id": pl.String,
        "node_id": pl.String,  # the GDP or section feeding it
        "name": pl.String,
        "resource": pl.String,
        "category": pl.String,
        "time_zone": pl.String,
        "contract_hour": pl.Int8,
        "std_temperature_c": pl.Float64,  # standard conditions the volume is reduced to
        "std_pressure_kpa": pl.Float64,
    },
    ("meter_id",),
    required=("branch_id", "name", "resource", "category", "time_zone", "contract_hour"),
    choices={"resource": RESOURCES, "category": CATEGORIES},
    doc="A point where consumption is metered and billed.",
)

DEVICES = _spec(
    "devices",
    {
        "device_id": pl.String,
        "kind": pl.String,
        "meter_id": pl.String,  # set for household units and correctors
        "node_id": pl.String,  # set for GDP units
        "counter_modulus_m3": pl.Float64,  # register rolls over to 0 at this value
        "installed_at": UTC_TS,
    },
    ("device_id",),
    required=("kind",),
    choices={"kind": DEVICE_KINDS},
    doc="A telemetry unit on a meter or at a GDP.",
)

CONTRACTS = _spec(
    "contracts",
    {
        "meter_id": pl.String,
        "valid_from": pl.Date,
        "valid_to": pl.Date,  # inclusive; null = open ended
        "daily_limit_m3": pl.Float64,
        "monthly_limit_m3": pl.Float64,
        "monthly_plan_m3": pl.Float64,
    },
    ("meter_id", "valid_from"),
    doc="Contracted limits and planned volumes of a metering point.",
)

GDP_CHANNEL_LIMITS = _spec(
    "gdp_channels",
    {
        "node_id": pl.String,
        "channel": pl.String,
        "min_value": pl.Float64,  # in the channel's unit (see its name)
        "max_value": pl.Float64,
    },
    ("node_id", "channel"),
    choices={"channel": GDP_CHANNELS},
    doc="Alarm thresholds of one GDP telemetry channel.",
)

# --- time series ---------------------------------------------------------------------

WEATHER = _spec(
    "weather",
    {
        "station_id": pl.String,
        "ts": UTC_TS,
        "temperature_c": pl.Float64,  # outdoor air temperature, hourly mean
        "quality": pl.String,
    },
    ("station_id", "ts"),
    required=("quality",),
    choices={"quality": QUALITY_CODES},
    doc="Hourly outdoor temperature of a weather station (observed or forecast).",
)

READINGS = _spec(
    "readings",
    {
        "device_id": pl.String,
        "channel": pl.String,
        "ts": UTC_TS,  # device time, corrected to UTC
        "value": pl.Float64,  # unit in the channel name; registers are cumulative
        "quality": pl.String,
        "received_at": UTC_TS,  # server time the value arrived; null for file imports
    },
    ("device_id", "channel", "ts"),
    required=("quality",),
    choices={"quality": QUALITY_CODES, "channel": CHANNELS},
    doc="Raw values as a unit sent them: cumulative registers and instantaneous parameters.",
)

HOURLY_ARCHIVE = _spec(
    "hourly_archive",
    {
        "meter_id": pl.String,
        "ts": UTC_TS,  # start of the hour
        "volume_m3": pl.Float64,  # consumption in the hour, standard conditions
        "volume_work_m3": pl.Float64,  # at working conditions (correctors only)
        "pressure_kpa": pl.Float64,  # mean absolute gas pressure (correctors only)
        "temperature_c": pl.Float64,  # mean gas temperature (correctors only)
        "quality": pl.String,
        "source": pl.String,  # register | archive | estimate | edit
    },
    ("meter_id", "ts"),
    required=("quality", "source"),
    choices={"quality": QUALITY_CODES},
    doc="Hourly consumption of a metering point.",
)

DAILY_ARCHIVE = _spec(
    "daily_archive",
    {
        "meter_id": pl.String,
        "ts": UTC_TS,  # start of the UTC day
        "volume_m3": pl.Float64,
        "hours": pl.Int16,  # hours with a value (24 = complete)
        "quality": pl.String,  # worst quality of its hours
    },
    ("meter_id", "ts"),
    required=("hours", "quality"),
    choices={"quality": QUALITY_CODES},
    doc="Daily rollup of the hourly archive (UTC days).",
)

MONTHLY_ARCHIVE = _spec(
    "monthly_archive",
    {
        "meter_id": pl.String,
        "ts": UTC_TS,  # start of the UTC month
        "volume_m3": pl.Float64,
        "hours": pl.Int32,
        "quality": pl.String,
    },
    ("meter_id", "ts"),
    required=("hours", "quality"),
    choices={"quality": QUALITY_CODES},
    doc="Monthly rollup of the hourly archive (UTC months).",
)

EVENTS = _spec(
    "events",
    {
        "device_id": pl.String,
        "ts": UTC_TS,
        "code": pl.String,  # e.g. tamper_magnet, valve_closed, battery_low, power_fail
        "severity": pl.String,
        "detail": pl.String,
    },
    ("device_id", "ts", "code"),
    required=("severity",),
    choices={"severity": SEVERITIES},
    doc="An event a telemetry unit logged.",
)

#: The temperature scenario of backcasts and of forecasts on the weather table as is.
OBSERVED_SCENARIO: Final = "observed"

FORECASTS = _spec(
    "forecasts",
    {
        "meter_id": pl.String,
        "ts": UTC_TS,
        "model": pl.String,
        "cutoff": UTC_TS,  # last history instant the model saw; ts < cutoff is a backcast
        # temperature scenario the row was conditioned on: "observed" (the weather
        # table: observations and any loaded weather forecast; every backcast row),
        # "normal", "normal-5", "cold_snap:-25@2022-02-01+5d", … (forecasting.Scenario)
        "scenario": pl.String,
        "volume_m3": pl.Float64,
        "volume_m3_lo_80": pl.Float64,
        "volume_m3_hi_80": pl.Float64,
        "temperature_c": pl.Float64,  # temperature the forecast was conditioned on
    },
    ("meter_id", "ts", "model", "cutoff", "scenario"),
    required=("volume_m3",),
    # Frames from before scenarios existed (and Forecaster.predict) carry no scenario:
    # they were conditioned on the weather table, i.e. the observed scenario.
    defaults={"scenario": OBSERVED_SCENARIO},
    doc="Expected consumption (per hour or day) under a temperature scenario, 80 % interval.",
)

ALERTS = _spec(
    "alerts",
    {
        "alert_id": pl.String,  # deterministic: rule + object + channel + start
        "rule": pl.String,
        "object_kind": pl.String,  # node | meter | device
        "object_id": pl.String,
        "channel": pl.String,
        "ts_start": UTC_TS,
        "ts_end": UTC_TS,  # last instant seen in violation
        "value": pl.Float64,  # the worst value of the episode
        "threshold": pl.Float64,  # the limit it broke
        "severity": pl.String,
        "state": pl.String,
        "message": pl.String,
    },
    ("alert_id",),
    required=("rule", "object_kind", "object_id", "ts_start", "severity", "state", "message"),
    choices={"severity": SEVERITIES, "state": ALERT_STATES},
    doc="A rule violation for a dispatcher to acknowledge and resolve.",
)

CUBE = _spec(
    "cube",
    {
        "level": pl.String,  # deepest grouping present: company … hour
        "company_id": pl.String,
        "branch_id": pl.String,
        "resource": pl.String,
        "year": pl.Int16,  # company-local calendar
        "month": pl.Int8,
        "day": pl.Int8,
        "hour": pl.Int8,
        "volume_m3": pl.Float64,
        "meters": pl.Int32,  # metering points contributing
        "values": pl.Int64,  # hourly values summed
        "missing": pl.Int64,  # hourly values that were null
    },
    ("level", "company_id", "branch_id", "resource", "year", "month", "day", "hour"),
    required=("volume_m3", "values", "missing"),
    doc="Consolidated consumption company→branch→resource→year→month→day→hour (local time).",
)

# --- ingest: raw packets, quarantine, edge security, schedules, downlink (issue 3) -----
#: Transports a packet can arrive by (``ingest.Transport``).
TRANSPORTS: Final = ("mqtt", "tcp", "udp", "file")
#: The closed set of quarantine reasons (``ingest.Reason``; a test keeps them equal).
QUARANTINE_REASONS: Final = (
    "bad_crc",
    "truncated",
    "oversized",
    "unknown_device",
    "unknown_profile",
    "replayed",
    "clock_skew",
    "out_of_range",
    "schema",
)
PACKET_STATUSES: Final = ("stored", "quarantined")
#: Outcome rows of ``ingest_counters``: received = stored + duplicate + quarantined;
#: ``reprocessed`` counts quarantined packets later stored (informational).
INGEST_OUTCOMES: Final = ("received", "stored", "duplicate", "quarantined", "reprocessed")
SCHEDULE_KINDS: Final = ("monthly", "weekly", "daily", "once")
SCHEDULE_SPREADS: Final = ("even", "hash")
COMMAND_KINDS: Final = ("schedule", "valve", "gas_parameters", "firmware")
COMMAND_STATUSES: Final = ("queued", "delivered", "acknowledged", "cancelled")

RAW_PACKETS = _spec(
    "raw_packets",
    {
        "sha256": pl.String,  # hex digest of the raw bytes: one row per distinct packet
        "raw_hex": pl.String,  # the bytes as received, hex
        "size_bytes": pl.Int32,
        "transport": pl.String,
        "received_at": UTC_TS,  # first arrival (server time)
        "device_id": pl.String,  # frame's device, else the transport's identity
        "profile": pl.String,
        "counter": pl.Int64,  # frame counter; null when the packet could not be decoded
        "status": pl.String,  # stored | quarantined (stored after a successful reprocess)
    },
    ("sha256",),
    required=("raw_hex", "size_bytes", "transport", "received_at", "status"),
    choices={"transport": TRANSPORTS, "status": PACKET_STATUSES},
    doc="Every distinct packet that reached landing, kept for audit and re-processing.",
)

QUARANTINE = _spec(
    "quarantine",
    {
        "sha256": pl.String,  # raw_packets.sha256
        "raw_hex": pl.String,
        "transport": pl.String,
        "received_at": UTC_TS,
        "device_id": pl.String,
        "profile": pl.String,
        "counter": pl.Int64,
        "reason": pl.String,
        "detail": pl.String,
        "reprocessed_at": UTC_TS,  # set when a reprocess stored the packet
    },
    ("sha256",),
    required=("raw_hex", "transport", "received_at", "reason"),
    choices={"transport": TRANSPORTS, "reason": QUARANTINE_REASONS},
    doc="A packet that could not be stored, with its raw bytes and a reason from a closed set.",
)

DEVICE_CREDENTIALS = _spec(
    "device_credentials",
    {
        "device_id": pl.String,
        "profile": pl.String,  # device profile name its frames must carry
        "serial": pl.Int64,  # serial in the binary envelope
        "kind": pl.String,  # household_unit | corrector | gdp_unit (downlink validation)
        "device_group": pl.String,  # session-schedule group
        "secret_hash": pl.String,  # scrypt$n$r$p$salt$hash; the secret itself is never stored
        "registered_at": UTC_TS,
    },
    ("device_id",),
    required=("profile", "device_group", "secret_hash", "registered_at"),
    choices={"kind": DEVICE_KINDS},
    doc="A unit allowed to send: its profile, group and credential hash.",
)

DEVICE_COUNTERS = _spec(
    "device_counters",
    {
        "device_id": pl.String,
        "last_counter": pl.Int64,  # highest frame counter stored
        "last_device_time": UTC_TS,
        "last_received_at": UTC_TS,
        "frames": pl.Int64,  # frames stored
    },
    ("device_id",),
    required=("last_counter", "frames"),
    doc="Frame-counter state of a unit (replay protection, last contact).",
)

INGEST_COUNTERS = _spec(
    "ingest_counters",
    {
        "day": pl.Date,  # UTC day the packets were received
        "transport": pl.String,
        "outcome": pl.String,
        "reason": pl.String,  # quarantine reason; '' for other outcomes
        "shard": pl.Int16,  # spreads concurrent writers over rows; sum over it
        "packets": pl.Int64,
        "readings": pl.Int64,
    },
    ("day", "transport", "outcome", "reason", "shard"),
    required=("packets", "readings"),
    choices={"transport": TRANSPORTS, "outcome": INGEST_OUTCOMES},
    doc="Packet counters of landing: received = stored + duplicate + quarantined.",
)

SESSION_SCHEDULES = _spec(
    "session_schedules",
    {
        "device_group": pl.String,
        "schedule_id": pl.String,
        "kind": pl.String,
        "day": pl.Int16,  # monthly: day of month 1–28; weekly: ISO weekday 1–7
        "start_minute": pl.Int16,  # UTC minute of the day the window opens
        "once_at": UTC_TS,  # once: the instant the window opens
        "window_s": pl.Int32,  # the window over which units are spread
        "session_s": pl.Int32,  # expected length of one unit's session
        "max_concurrent": pl.Int32,  # bound on concurrent sessions
        "spread": pl.String,  # even | hash
        "created_at": UTC_TS,
    },
    ("device_group", "schedule_id"),
    required=("kind", "window_s", "session_s", "max_concurrent", "spread"),
    choices={"kind": SCHEDULE_KINDS, "spread": SCHEDULE_SPREADS},
    doc="A communication-session schedule of a device group (several combine).",
)

DOWNLINK_COMMANDS = _spec(
    "downlink_commands",
    {
        "command_id": pl.Int64,
        "device_id": pl.String,
        "kind": pl.String,
        "payload": pl.String,  # JSON
        "status": pl.String,
        "created_at": UTC_TS,
        "delivered_at": UTC_TS,  # last delivery
        "acknowledged_at": UTC_TS,
        "attempts": pl.Int32,
    },
    ("command_id",),
    required=("device_id", "kind", "payload", "status", "created_at", "attempts"),
    choices={"kind": COMMAND_KINDS, "status": COMMAND_STATUSES},
    doc="A command queued for a unit, delivered at its next session and acknowledged.",
)

DEVICE_DAILY_ARCHIVE = _spec(
    "device_daily_archive",
    {
        "device_id": pl.String,
        "ts": UTC_TS,  # start of the device's archive day
        "volume_m3": pl.Float64,
        "volume_work_m3": pl.Float64,
        "pressure_kpa": pl.Float64,
        "temperature_c": pl.Float64,
        "quality": pl.String,
        "received_at": UTC_TS,
    },
    ("device_id", "ts"),
    required=("quality",),
    choices={"quality": QUALITY_CODES},
    doc="Daily archive records as a corrector sent them (for cross-checks with the hourly).",
)

INGEST_TABLES: tuple[TableSpec, ...] = (
    RAW_PACKETS,
    QUARANTINE,
    DEVICE_CREDENTIALS,
    DEVICE_COUNTERS,
    INGEST_COUNTERS,
    SESSION_SCHEDULES,
    DOWNLINK_COMMANDS,
    DEVICE_DAILY_ARCHIVE,
)

# --- analytics: VEE findings and audit trail (issue 4) ---------------------------------
VEE_RULE_QUALITIES: Final = ("valid", "suspect", "missing")

VEE_FINDINGS = _spec(
    "vee_findings",
    {
        "meter_id": pl.String,
        "rule": pl.String,  # analytics.VEE_RULES: gap, zero_run, frozen, spike, …
        "ts": UTC_TS,  # first interval of the run
        "ts_end": UTC_TS,  # end of the run (exclusive)
        "intervals": pl.Int32,
        "quality": pl.String,  # quality the rule gives the intervals
        "severity": pl.String,
        "value": pl.Float64,  # representative value (unit of the series)
        "expected": pl.Float64,  # what it was compared with
        "detail": pl.String,
        "found_at": UTC_TS,  # when the VEE run that found it ran
    },
    ("meter_id", "rule", "ts"),
    required=("ts_end", "intervals", "quality", "severity", "found_at"),
    choices={"quality": VEE_RULE_QUALITIES, "severity": SEVERITIES},
    doc="A VEE validation finding: one run of intervals of a metering point that broke a rule.",
)

AUDIT_TRAIL = _spec(
    "audit_trail",
    {
        "audit_id": pl.String,  # random UUID
        "meter_id": pl.String,
        "ts": UTC_TS,  # the interval that changed
        "table_name": pl.String,  # hourly_archive
        "column_name": pl.String,  # volume_m3
        "old_value": pl.Float64,
        "new_value": pl.Float64,
        "old_quality": pl.String,
        "new_quality": pl.String,
        "method": pl.String,  # manual, linear_interpolation, hdd_profile, hour_mean, …
        "reason": pl.String,  # why: the user's reason, or the VEE rule(s)
        "changed_by": pl.String,  # user name, or "vee" for the pipeline
        "changed_at": UTC_TS,
    },
    ("audit_id",),
    required=(
        "meter_id", "ts", "table_name", "column_name", "new_quality", "method", "reason",
        "changed_by", "changed_at",
    ),
    choices={"old_quality": QUALITY_CODES, "new_quality": QUALITY_CODES},
    doc="Append-only audit trail of every estimate and edit: who, when, why, old and new value.",
)

VEE_TABLES: tuple[TableSpec, ...] = (VEE_FINDINGS, AUDIT_TRAIL)

# --- analytics: gas-day cubes (issue 4) ------------------------------------------------
#: ``dims`` values of the gas-day cube: the dimensions a cell is grouped by.
GAS_CUBE_DIMS: Final = ("", "company", "company,branch", "company,resource", "company,branch,resource")
#: ``period`` values: the finest part of the company's gas-day calendar a cell is grouped by.
GAS_CUBE_PERIODS: Final = ("all", "year", "month", "day", "hour")

GAS_CUBE = _spec(
    "gas_cube",
    {
        "dims": pl.String,  # GAS_CUBE_DIMS: "" is the grand total
        "period": pl.String,  # GAS_CUBE_PERIODS
        "company_id": pl.String,  # '' when rolled up
        "branch_id": pl.String,
        "resource": pl.String,
        "year": pl.Int16,  # gas-day calendar: year and month of the gas day, -1 when rolled up
        "month": pl.Int8,
        "day": pl.Int8,  # day of month of the gas day
        "hour": pl.Int8,  # hour of the gas day, 0 .. 22/23/24 (DST days have 23/25)
        "gas_day": pl.Date,  # day and hour cells: the gas day (date it starts on)
        "ts": UTC_TS,  # hour cells grouped by company: UTC start of the hour
        "local_hour": pl.Int8,  # hour cells grouped by company: local clock hour
        "meters": pl.Int32,  # metering points of the cell in the directory
        "volume_m3": pl.Float64,  # sum of hourly volumes (standard conditions); null: no value
        "energy_kwh": pl.Float64,  # gas volume × calorific value
        "hours": pl.Int64,  # hourly values present
        "expected_hours": pl.Int64,  # meters × hours of the cell
        "completeness": pl.Float64,  # hours / expected_hours, 0..1
        "estimated_hours": pl.Int64,  # values with quality 'estimated'
        "share_estimated": pl.Float64,  # estimated_hours / hours, 0..1
        "pressure_kpa_min": pl.Float64,
        "pressure_kpa_avg": pl.Float64,  # weighted by pressure_hours
        "pressure_kpa_max": pl.Float64,
        "pressure_hours": pl.Int64,
        "temperature_c_min": pl.Float64,
        "temperature_c_avg": pl.Float64,
        "temperature_c_max": pl.Float64,
        "temperature_hours": pl.Int64,
    },
    ("dims", "period", "company_id", "branch_id", "resource", "year", "month", "day", "hour"),
    required=("meters", "hours", "expected_hours", "estimated_hours", "pressure_hours", "temperature_hours"),
    choices={"dims": GAS_CUBE_DIMS, "period": GAS_CUBE_PERIODS},
    doc="Consolidated gas-day cube: the five groupings' cells, company-local gas calendar.",
)

CUBE_TABLES: tuple[TableSpec, ...] = (GAS_CUBE,)

# --- analytics: billing uploads, limits and balance (issue 4) --------------------------
BILLING_FORMATS: Final = ("xml", "csv")
BILLING_STATUSES: Final = ("sent", "failed", "unchanged")

BILLING_UPLOADS = _spec(
    "billing_uploads",
    {
        "upload_id": pl.String,  # random UUID of this attempt; also in the file
        "ts": UTC_TS,  # when the attempt was made
        "period": pl.String,  # billing month, YYYY-MM (gas days of that month)
        "fmt": pl.String,  # xml (1C exchange) | csv
        "destination": pl.String,  # folder path or http(s) URL (without credentials)
        "scope": pl.String,  # "all", or the company ids the file covers, comma-separated
        "revision": pl.Int32,  # 1, 2, … per period, format and destination
        "file_name": pl.String,
        "accounts": pl.Int32,  # billing accounts (metering points) in the file
        "volume_m3": pl.Float64,  # total of the file, m³ at standard conditions
        "data_sha256": pl.String,  # checksum of the account rows (decides re-sending)
        "file_sha256": pl.String,  # checksum of the bytes delivered
        "bytes": pl.Int64,
        "status": pl.String,
        "detail": pl.String,  # written path, HTTP status, or the error
    },
    ("upload_id",),
    required=(
        "ts", "period", "fmt", "destination", "scope", "revision", "file_name", "accounts",
        "data_sha256", "status",
    ),
    choices={"fmt": BILLING_FORMATS, "status": BILLING_STATUSES},
    doc="One billing-upload attempt: what was sent, when, where, its checksum, rows and status.",
)

BILLING_TABLES: tuple[TableSpec, ...] = (BILLING_UPLOADS,)

# --- analytics: network inflow (issue 4) ----------------------------------------------
NODE_INFLOW = _spec(
    "node_inflow",
    {
        "node_id": pl.String,  # the GDP or station whose inlet meter measured the gas
        "ts": UTC_TS,  # start of the hour
        "volume_m3": pl.Float64,  # gas into the node in the hour, standard conditions
        "quality": pl.String,
        "source": pl.String,  # archive (inlet meter, telemetry) | act (supplier file) | estimate | edit
    },
    ("node_id", "ts"),
    required=("quality", "source"),
    choices={"quality": QUALITY_CODES},
    doc="Metered hourly gas inflow of a network node (the inlet meter of a GDP or station).",
)

INFLOW_TABLES: tuple[TableSpec, ...] = (NODE_INFLOW,)

TABLES: Final[dict[str, TableSpec]] = {
    t.name: t
    for t in (
        COMPANIES,
        BRANCHES,
        NETWORK_NODES,
        METERING_POINTS,
        DEVICES,
        CONTRACTS,
        GDP_CHANNEL_LIMITS,
        WEATHER,
        READINGS,
        HOURLY_ARCHIVE,
        DAILY_ARCHIVE,
        MONTHLY_ARCHIVE,
        EVENTS,
        FORECASTS,
        ALERTS,
        CUBE,
        *INGEST_TABLES,
        *VEE_TABLES,
        *CUBE_TABLES,
        *BILLING_TABLES,
        *INFLOW_TABLES,
    )
}

#: Reference tables in the order they must be loaded (parents first).
REFERENCE_TABLES: Final = (
    "companies",
    "branches",
    "network_nodes",
    "metering_points",
    "devices",
    "contracts",
    "gdp_channels",
)

#: The consumption frame that travels from the warehouse to forecasting, analytics
#: and dashboards: one row per metering point and interval.
CONSUMPTION = _spec(
    "consumption",
    {"meter_id": pl.String, "ts": UTC_TS, "volume_m3": pl.Float64, "quality": pl.String},
    ("meter_id", "ts"),
    required=("quality",),
    choices={"quality": QUALITY_CODES},
    doc="Consumption per metering point and interval (hourly or daily; the caller says).",
)


def spec(name: str) -> TableSpec:
    """Return the spec of a stored table, with a clear error for an unknown name."""
    try:
        return TABLES[name]
    except KeyError:
        known = ", ".join(TABLES)
        raise ContractError(f"unknown table {name!r}; known tables: {known}") from None


def validate_frame(
    frame: pl.DataFrame, contract: TableSpec | str, *, cast: bool = True
) -> pl.DataFrame:
    """Check a frame against a contract and return it in the contract's column order.

    Parameters
    ----------
    frame
        The frame to check.  Extra columns are dropped; absent nullable columns are
        added as nulls, absent columns with a default (:attr:`TableSpec.defaults`, e.g.
        ``forecasts.scenario = "observed"``) as that value; time columns must be
        time-zone aware (converted to UTC).
    contract
        A :class:`TableSpec` or the name of a stored table.
    cast
        Cast columns whose dtype differs but converts losslessly (e.g. Int64 → Int8,
        naive-UTC is *not* accepted).  With ``cast=False`` any dtype difference fails.

    Returns
    -------
    polars.DataFrame
        The frame with exactly the contract's columns and dtypes.

    Raises
    ------
    ContractError
        Naming every missing or mistyped column, nulls in required columns and values
        outside a closed set, with the fix.

    Examples
    --------
    >>> import polars as pl
    >>> from warehouse import validate_frame
    >>> df = pl.DataFrame({"company_id": ["c1"], "name": ["Gas Co"],
    ...                    "time_zone": ["Europe/Moscow"], "contract_hour": [10]})
    >>> validate_frame(df, "companies").schema["contract_hour"]
    Int8
    """
    t = spec(contract) if isinstance(contract, str) else contract
    problems: list[str] = []
    defaulted = [c for c in t.defaults if c not in frame.columns]
    if defaulted:
        frame = frame.with_columns(
            pl.lit(t.defaults[c], dtype=t.schema[c]).alias(c) for c in defaulted
        )
    missing = [c for c in t.not_null if c not in frame.columns]
    if missing:
        problems.append(f"missing required columns {missing}")
    # A nullable column that is absent is all-missing, and missing is null.
    absent = [c for c in t.schema if c not in frame.columns and c not in missing]
    if absent:
        frame = frame.with_columns(pl.lit(None, dtype=t.schema[c]).alias(c) for c in absent)
    exprs = []
    for col, dtype in t.schema.items():
        if col in missing:
            continue
        got = frame.schema[col]
        if got == dtype:
            exprs.append(pl.col(col))
            continue
        if isinstance(dtype, pl.Datetime) and isinstance(got, pl.Datetime):
            if got.time_zone is None:
                problems.append(
                    f"column {col!r} is a naive datetime; expected UTC "
                    f"(use .dt.replace_time_zone('UTC') if the values are UTC)"
                )
            else:
                exprs.append(pl.col(col).dt.convert_time_zone("UTC").dt.cast_time_unit("us"))
            continue
        if got == pl.Null or (cast and _castable(got, dtype)):
            exprs.append(pl.col(col).cast(dtype))
            continue
        problems.append(f"column {col!r} has dtype {got}, expected {dtype}")
    if problems:
        raise ContractError(f"{t.name}: " + "; ".join(problems))
    try:
        out = frame.select(exprs)
    except pl.exceptions.PolarsError as exc:  # e.g. 300 does not fit Int8
        raise ContractError(f"{t.name}: cannot convert to the contract's dtypes: {exc}") from exc
    for col in t.not_null:
        n = out.get_column(col).null_count()
        if n:
            problems.append(f"{n} null value(s) in required column {col!r}")
    for col, allowed in t.choices.items():
        # Only the first row of each run of equal values is looked up: telemetry frames
        # come in runs (a channel, a quality), so this is a fraction of the rows.
        values = out.get_column(col)
        heads = values.filter((values != values.shift(1)).fill_null(True) & values.is_not_null())
        bad = heads.filter(~heads.is_in(list(allowed)))
        if bad.len():
            sample = bad.unique(maintain_order=True).head(3).to_list()
            problems.append(f"column {col!r} has values {sample} outside {list(allowed)}")
    if problems:
        raise ContractError(f"{t.name}: " + "; ".join(problems))
    return out


def _castable(got: pl.DataType, want: pl.DataType) -> bool:
    numeric = got.is_numeric() and want.is_numeric()
    return numeric or (got == pl.String and want == pl.Categorical) or (
        got in (pl.Categorical, pl.Enum) and want == pl.String
    )


def empty_frame(contract: TableSpec | str) -> pl.DataFrame:
    """An empty frame with the contract's schema."""
    t = spec(contract) if isinstance(contract, str) else contract
    return pl.DataFrame(schema=t.schema)
