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
# Add the specs above this line and list them here.
INGEST_TABLES: tuple[TableSpec, ...] = ()

# --- analytics: VEE findings and audit trail (issue 4) ---------------------------------
VEE_TABLES: tuple[TableSpec, ...] = ()

# --- analytics: gas-day cubes (issue 4) ------------------------------------------------
CUBE_TABLES: tuple[TableSpec, ...] = ()

# --- analytics: billing uploads, limits and balance (issue 4) --------------------------
BILLING_TABLES: tuple[TableSpec, ...] = ()

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
        bad = out.filter(pl.col(col).is_not_null() & ~pl.col(col).is_in(list(allowed)))
        if bad.height:
            sample = bad.get_column(col).unique().head(3).to_list()
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
