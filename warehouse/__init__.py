"""askug warehouse: data contracts, the two stores, rollups and the consolidated cube.

Only this package talks SQL.  Callers exchange validated long-format Polars frames
(UTC ``ts``, units in column names, a quality code on every value).
"""

from warehouse._access import load_consumption, load_meter_temperature, load_meters
from warehouse._cube import LEVELS as CUBE_LEVELS
from warehouse._cube import CubeSummary, build_cube, cube_from_frames, read_cube
from warehouse._cubes import (
    DEFAULT_CALORIFIC_VALUE_KWH_M3,
    GROUPINGS,
    GasCubeSummary,
    build_gas_cube,
    cube_directory,
    gas_cube_from_frames,
    gas_cube_grouping,
    read_gas_cube,
    refresh_gas_cube,
    rollup_hourly,
)
from warehouse._gasday import GAS_DAY_CALENDAR_SCHEMA, gas_day_bounds, gas_day_calendar
from warehouse._reference import (
    SLP_TEMPERATURE_BANDS_C,
    slp_hour_factors,
    slp_sigmoid_parameters,
    slp_temperature_band,
    slp_weekday_factors,
)
from warehouse._schemas import (
    CATEGORIES,
    CHANNELS,
    CONSUMPTION,
    GDP_CHANNELS,
    QUALITY_CODES,
    REFERENCE_TABLES,
    TABLES,
    TableSpec,
    empty_frame,
    spec,
    validate_frame,
)
from warehouse._store import SCHEMA_VERSION, Store, open_store
from warehouse.errors import (
    ContractError,
    MigrationError,
    SchemaVersionError,
    StoreUnavailableError,
    WarehouseError,
)

__all__ = [
    "CATEGORIES",
    "CHANNELS",
    "CONSUMPTION",
    "CUBE_LEVELS",
    "DEFAULT_CALORIFIC_VALUE_KWH_M3",
    "GAS_DAY_CALENDAR_SCHEMA",
    "GDP_CHANNELS",
    "GROUPINGS",
    "QUALITY_CODES",
    "REFERENCE_TABLES",
    "SCHEMA_VERSION",
    "SLP_TEMPERATURE_BANDS_C",
    "TABLES",
    "ContractError",
    "CubeSummary",
    "GasCubeSummary",
    "MigrationError",
    "SchemaVersionError",
    "Store",
    "StoreUnavailableError",
    "TableSpec",
    "WarehouseError",
    "build_cube",
    "build_gas_cube",
    "cube_directory",
    "cube_from_frames",
    "empty_frame",
    "gas_cube_from_frames",
    "gas_cube_grouping",
    "gas_day_bounds",
    "gas_day_calendar",
    "load_consumption",
    "load_meter_temperature",
    "load_meters",
    "open_store",
    "read_cube",
    "read_gas_cube",
    "refresh_gas_cube",
    "rollup_hourly",
    "slp_hour_factors",
    "slp_sigmoid_parameters",
    "slp_temperature_band",
    "slp_weekday_factors",
    "spec",
    "validate_frame",
]
