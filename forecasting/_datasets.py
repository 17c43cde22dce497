"""Loaders of the real development data (``shared/data``) as forecasting input frames.

Each loader reads the published files where they lie (nothing is copied into the
repository) and returns ``(consumption, temperature)``:

* ``consumption`` follows the :data:`warehouse.CONSUMPTION` contract — ``meter_id``,
  ``ts`` (UTC interval start), ``volume_m3``, ``quality`` — so every estimator takes it;
* ``temperature`` follows :data:`forecasting.METER_TEMPERATURE` — ``meter_id``, ``ts``,
  ``temperature_c`` — with one row per series and step.

**Units are not always m³.**  The contract column is called ``volume_m3`` because the
toolkit forecasts metered volume, but the public data sets publish what they publish:
the Cambridge buildings are gas *energy* in kWh per hour, the German market areas gas
*energy* in MWh per gas day, and only the UK NTS demand is a volume (million m³ per gas
day).  The loaders do not invent a calorific value; :data:`DATASET_UNITS` records the
real unit of the ``volume_m3`` column of each data set, and scale-free metrics (MASE,
WAPE, sMAPE, coverage) are what the benchmark compares.

Daily data sets are labelled by gas day: ``ts`` is the gas day's date at 00:00 UTC (a UK
gas day really runs 05:00–05:00 UK time, a German one 06:00–06:00 CET; the shift is
the same for every row, so it does not bias a daily model).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

import polars as pl

from forecasting.errors import InvalidInputError, InvalidParameterError

#: Default location of the development data (``/work/shared/data`` on the project machines).
DEFAULT_DATA_DIR: Final = Path("/work/shared/data")

#: Real unit of the ``volume_m3`` column returned by each loader.
DATASET_UNITS: Final[dict[str, str]] = {
    "cambridge": "kWh of gas energy per hour (not m³: the archive has no volume or calorific value)",
    "uk_nts": "million m³ (mcm) per gas day",
    "de_market_area": "MWh of gas energy per gas day (not m³)",
}

#: Customer classes of the German market-area publications, in canonical spelling
#: (SLP = standard-load-profile customers, synthetic or analytic method; RLM = interval
#: metered with / without daily band; suffix = high or low calorific gas).
DE_CLASSES: Final = (
    "SLPsyn_H",
    "SLPsyn_L",
    "SLPana_H",
    "SLPana_L",
    "RLMmT_H",
    "RLMmT_L",
    "RLMoT_H",
    "RLMoT_L",
)

#: Runs of exactly-zero hours at least this long are outages (the archive filled missing
#: readings with 0), not real zero use.
ZERO_RUN_HOURS: Final = 24

_CAMBRIDGE_GAS = "cambridge_estates_gas/gas_hourly_kWh_dev.csv.gz"
_CAMBRIDGE_WEATHER = "cambridge_estates_gas/weather_bedford_hourly_2011-2022.csv.gz"
_NTS = "uk_nts_daily/nts_demand_actual_d6_2021-01-11_2024-12-31.csv.gz"
_HADCET = "uk_nts_daily/hadcet_daily_mean_temperature_2020-2024.csv.gz"
_NCG = "de_market_area_daily/netconnect_germany_consumption_daily_2011-04_2021-09.csv.gz"
_GASPOOL = "de_market_area_daily/gaspool_consumption_daily_2016-10_2021-09.csv.gz"
_THE = "de_market_area_daily/trading_hub_europe_consumption_daily_2021-10_2023-03.csv.gz"
_DE_TEMPERATURE = "de_market_area_daily/germany_daily_mean_temperature_2017_2020.csv.gz"

_UTC = pl.Datetime("us", "UTC")
#: First gas day of GASPOOL data; from here to the THE merger Germany = NCG + GASPOOL.
_GASPOOL_START: Final = dt.date(2016, 10, 1)
_THE_START: Final = dt.date(2021, 10, 1)

MarketArea = Literal["germany", "NCG", "GASPOOL", "THE"]


# --- Cambridge: hourly gas per building -------------------------------------------------------


def load_cambridge_gas(
    data_dir: str | Path = DEFAULT_DATA_DIR,
    *,
    buildings: Sequence[str] | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    gas: str | Path | None = None,
    weather: str | Path | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Hourly gas use of the Cambridge University Estates buildings, with Bedford temperature.

    Parameters
    ----------
    data_dir
        The ``shared/data`` folder.
    buildings
        Building ids to keep (``"b2"``, ``"b5"``, …); default every column of the file.
    start, end
        Optional UTC window ``start <= ts < end`` (applied after outage detection, so a
        zero run that crosses ``start`` is still recognised).
    gas, weather
        Explicit file paths (default: the files under ``data_dir``); tests pass small ones.

    Returns
    -------
    consumption, temperature
        ``consumption``: ``meter_id`` = building id, ``ts`` = UTC hour start,
        ``volume_m3`` = **kWh of gas energy in the hour** (see :data:`DATASET_UNITS`),
        ``quality``.  Only hours the archive has a file for are returned (an empty cell
        means the building-year is absent).  Zeros that belong to a run of at least
        :data:`ZERO_RUN_HOURS` zero hours are outages filled by the archive: they become
        null with quality ``missing``; every other value is ``valid``.
        ``temperature``: Bedford air temperature (°C) repeated per building for each of
        its returned hours that the weather file covers (it stops at 2022-12-31).

    Raises
    ------
    InvalidInputError
        A file is missing, or lacks ``timestamp_utc``, or a requested building is absent.
    """
    base = Path(data_dir)
    gas_path = Path(gas) if gas is not None else base / _CAMBRIDGE_GAS
    weather_path = Path(weather) if weather is not None else base / _CAMBRIDGE_WEATHER
    wide = _read_csv(gas_path, infer_schema_length=0)
    if "timestamp_utc" not in wide.columns:
        raise InvalidInputError(
            f"{gas_path}: expected a wide table with 'timestamp_utc' and one column per "
            f"building, got columns {wide.columns[:5]}"
        )
    columns = [c for c in wide.columns if c != "timestamp_utc"]
    if buildings is not None:
        absent = [b for b in buildings if b not in columns]
        if absent:
            raise InvalidInputError(
                f"{gas_path}: buildings {absent} are not in the file; it has {columns}"
            )
        columns = list(buildings)
    long = (
        wide.select("timestamp_utc", *columns)
        .unpivot(index="timestamp_utc", variable_name="meter_id", value_name="raw")
        .filter(pl.col("raw").is_not_null() & (pl.col("raw") != ""))
        .select(
            pl.col("meter_id"),
            _parse_utc("timestamp_utc", "%Y-%m-%d %H:%M:%S").alias("ts"),
            pl.col("raw").cast(pl.Float64).alias("kwh"),
        )
        .sort("meter_id", "ts")
    )
    consumption = _mask_zero_runs(long, "kwh", ZERO_RUN_HOURS, step=dt.timedelta(hours=1))
    if start is not None:
        consumption = consumption.filter(pl.col("ts") >= start)
    if end is not None:
        consumption = consumption.filter(pl.col("ts") < end)

    weather_frame = _read_csv(weather_path, columns=["timestamp_utc", "air_temperature_C"])
    station = weather_frame.select(
        _parse_utc("timestamp_utc", "%Y-%m-%d %H:%M:%S").alias("ts"),
        pl.col("air_temperature_C").cast(pl.Float64).alias("temperature_c"),
    ).filter(pl.col("temperature_c").is_not_null())
    temperature = (
        consumption.select("meter_id", "ts")
        .join(station, on="ts", how="inner")
        .sort("meter_id", "ts")
    )
    return consumption, temperature


def _mask_zero_runs(
    frame: pl.DataFrame, value: str, min_run: int, *, step: dt.timedelta
) -> pl.DataFrame:
    """CONSUMPTION frame from ``meter_id, ts, <value>``: zeros in runs of ``min_run`` or
    more consecutive steps (a gap in ``ts`` ends a run) become null / ``missing``."""
    is_zero = pl.col(value) == 0.0
    brk = (
        (pl.col("meter_id") != pl.col("meter_id").shift(1))
        | (pl.col("ts") - pl.col("ts").shift(1) != step)
        | (is_zero != is_zero.shift(1))
    ).fill_null(True)
    runs = frame.with_columns(brk.cum_sum().alias("_run")).with_columns(
        pl.len().over("_run").alias("_len")
    )
    outage = is_zero & (pl.col("_len") >= min_run)
    return runs.select(
        "meter_id",
        "ts",
        pl.when(outage).then(None).otherwise(pl.col(value)).alias("volume_m3"),
        pl.when(outage).then(pl.lit("missing")).otherwise(pl.lit("valid")).alias("quality"),
    )


# --- UK: national transmission system daily demand --------------------------------------------


def load_uk_nts_daily(
    data_dir: str | Path = DEFAULT_DATA_DIR,
    *,
    demand: str | Path | None = None,
    temperature: str | Path | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """GB national gas demand per gas day (latest revision) with the HadCET daily mean.

    Parameters
    ----------
    data_dir
        The ``shared/data`` folder.
    demand, temperature
        Explicit file paths (default: the files under ``data_dir``).

    Returns
    -------
    consumption, temperature
        One series, ``meter_id = "GB_NTS"``; ``ts`` = gas day at 00:00 UTC;
        ``volume_m3`` = **million m³ per gas day** (mcm/d) from the publication with the
        latest ``Generated Time`` for that day (earlier revisions hold gross errors that
        later ones correct); ``quality`` = ``valid`` (``missing`` for an empty value).
        ``temperature``: HadCET daily mean (°C) for the days that have demand.

    Raises
    ------
    InvalidInputError
        A file is missing or lacks the expected columns.
    """
    base = Path(data_dir)
    demand_path = Path(demand) if demand is not None else base / _NTS
    temp_path = Path(temperature) if temperature is not None else base / _HADCET
    raw = _read_csv(demand_path, infer_schema_length=0)
    _require(raw, demand_path, ("Applicable For", "Value", "Generated Time"))
    latest = (
        raw.select(
            pl.col("Applicable For").str.strptime(pl.Date, "%d/%m/%Y").alias("day"),
            pl.col("Generated Time")
            .str.strptime(pl.Datetime("us"), "%d/%m/%Y %H:%M:%S")
            .alias("generated"),
            pl.col("Value").cast(pl.Float64, strict=False).alias("value"),
        )
        .sort("day", "generated")
        .group_by("day", maintain_order=True)
        .last()
    )
    consumption = latest.select(
        pl.lit("GB_NTS").alias("meter_id"),
        _day_ts("day"),
        pl.col("value").alias("volume_m3"),
        pl.when(pl.col("value").is_null())
        .then(pl.lit("missing"))
        .otherwise(pl.lit("valid"))
        .alias("quality"),
    )
    temps = _read_csv(temp_path, infer_schema_length=0)
    _require(temps, temp_path, ("date", "tmean_C"))
    daily = temps.select(
        pl.col("date").str.strptime(pl.Date, "%Y-%m-%d").alias("day"),
        pl.col("tmean_C").cast(pl.Float64).alias("temperature_c"),
    )
    return consumption, _daily_temperature(consumption, daily)


# --- Germany: market-area daily consumption by customer class ---------------------------------


def load_de_market_area_daily(
    data_dir: str | Path = DEFAULT_DATA_DIR,
    *,
    classes: Sequence[str] = ("SLPsyn_H", "SLPsyn_L", "SLPana_H", "SLPana_L"),
    market_area: MarketArea = "germany",
    netconnect: str | Path | None = None,
    gaspool: str | Path | None = None,
    the: str | Path | None = None,
    temperature: str | Path | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """German gas consumption per gas day and customer class, with the national mean temperature.

    Reads the three publication formats — NetConnect Germany (``dd.mm.yyyy``, kWh with a
    unit column per value), GASPOOL (``dd.mm.yyyy``, MWh) and Trading Hub Europe
    (``dd/mm/yyyy``, kWh with thousands separators, newest first, a ``State`` column) —
    and converts every value to MWh.

    Parameters
    ----------
    data_dir
        The ``shared/data`` folder.
    classes
        Customer classes to return, spelled as in :data:`DE_CLASSES`.
    market_area
        ``"germany"`` (default): NCG + GASPOOL from 2016-10-01 (when GASPOOL data
        starts) to 2021-09-30, then THE, which replaced both; a day counts only when
        every area of its period has a value.  ``"NCG"``, ``"GASPOOL"``, ``"THE"``: one
        publication alone.
    netconnect, gaspool, the, temperature
        Explicit file paths (default: the files under ``data_dir``).

    Returns
    -------
    consumption, temperature
        ``meter_id`` = ``"<area>/<class>"`` (area ``DE`` for ``"germany"``), ``ts`` = gas
        day at 00:00 UTC, ``volume_m3`` = **MWh of gas energy per gas day**, ``quality``
        = ``valid`` (``suspect`` for THE's ``preliminary`` rows, ``missing`` for empty
        cells).  ``temperature``: the national daily mean (°C); the file covers only
        2017–2020, so later and earlier days have consumption but no temperature.

    Raises
    ------
    InvalidParameterError
        An unknown class or market area.
    InvalidInputError
        A file is missing or lacks the expected columns or units.
    """
    unknown = [c for c in classes if c not in DE_CLASSES]
    if unknown or not classes:
        raise InvalidParameterError(
            f"classes: expected a non-empty subset of {list(DE_CLASSES)}, got unknown {unknown}"
        )
    if market_area not in ("germany", "NCG", "GASPOOL", "THE"):
        raise InvalidParameterError(
            f"market_area: expected 'germany', 'NCG', 'GASPOOL' or 'THE', got {market_area!r}"
        )
    base = Path(data_dir)
    paths = {
        "NCG": Path(netconnect) if netconnect is not None else base / _NCG,
        "GASPOOL": Path(gaspool) if gaspool is not None else base / _GASPOOL,
        "THE": Path(the) if the is not None else base / _THE,
    }
    readers = {"NCG": _read_netconnect, "GASPOOL": _read_gaspool, "THE": _read_the}
    areas = ["NCG", "GASPOOL", "THE"] if market_area == "germany" else [market_area]
    parts = [readers[a](paths[a]).with_columns(pl.lit(a).alias("area")) for a in areas]
    long = pl.concat(parts).filter(pl.col("cls").is_in(list(classes)))
    if market_area == "germany":
        long = long.filter(
            ((pl.col("area") == "THE") & (pl.col("day") >= _THE_START))
            | (
                (pl.col("area") != "THE")
                & pl.col("day").is_between(_GASPOOL_START, _THE_START, closed="left")
            )
        )
        expected = pl.when(pl.col("day") >= _THE_START).then(1).otherwise(2)
        long = (
            long.group_by("day", "cls")
            .agg(
                pl.col("mwh").sum().alias("mwh"),
                pl.col("mwh").is_not_null().sum().alias("_n"),
                (pl.col("quality") == "suspect").any().alias("_suspect"),
            )
            .select(
                pl.lit("DE").alias("area"),
                "day",
                "cls",
                pl.when(pl.col("_n") == expected).then(pl.col("mwh")).otherwise(None).alias("mwh"),
                pl.when(pl.col("_n") != expected)
                .then(pl.lit("missing"))
                .when(pl.col("_suspect"))
                .then(pl.lit("suspect"))
                .otherwise(pl.lit("valid"))
                .alias("quality"),
            )
        )
    consumption = long.select(
        pl.concat_str([pl.col("area"), pl.col("cls")], separator="/").alias("meter_id"),
        _day_ts("day"),
        pl.col("mwh").alias("volume_m3"),
        pl.when(pl.col("mwh").is_null())
        .then(pl.lit("missing"))
        .otherwise(pl.col("quality"))
        .alias("quality"),
    ).sort("meter_id", "ts")
    temp_path = Path(temperature) if temperature is not None else base / _DE_TEMPERATURE
    temps = _read_csv(temp_path, infer_schema_length=0)
    _require(temps, temp_path, ("date", "temperature_C"))
    daily = temps.select(
        pl.col("date").str.strptime(pl.Date, "%Y-%m-%d").alias("day"),
        pl.col("temperature_C").cast(pl.Float64).alias("temperature_c"),
    )
    return consumption, _daily_temperature(consumption, daily)


def _read_netconnect(path: Path) -> pl.DataFrame:
    raw = _read_csv(path, separator=";", infer_schema_length=0)
    _require(raw, path, ("DayOfUse",))
    frames = []
    for cls in DE_CLASSES:
        kind, gas = cls.split("_")
        col = f"{gas}Gas{kind}"
        _require(raw, path, (col, f"Unit{col}"))
        units = set(raw.get_column(f"Unit{col}").drop_nulls().unique().to_list())
        factor = {"kWh": 1e-3, "MWh": 1.0, "GWh": 1e3}
        if not units <= set(factor):
            raise InvalidInputError(
                f"{path}: column Unit{col} has units {sorted(units)}, expected kWh/MWh/GWh"
            )
        frames.append(
            raw.select(
                pl.col("DayOfUse").str.strptime(pl.Date, "%d.%m.%Y").alias("day"),
                pl.lit(cls).alias("cls"),
                (
                    _number(col)
                    * pl.col(f"Unit{col}").replace_strict(
                        factor, default=None, return_dtype=pl.Float64
                    )
                ).alias("mwh"),
                pl.lit("valid").alias("quality"),
            )
        )
    return pl.concat(frames)


def _read_gaspool(path: Path) -> pl.DataFrame:
    raw = _read_csv(path, separator=";", infer_schema_length=0)
    _require(raw, path, ("Datum",))
    frames = []
    for cls in DE_CLASSES:
        col = f"{cls} [MWh]"
        _require(raw, path, (col,))
        frames.append(
            raw.select(
                pl.col("Datum").str.strptime(pl.Date, "%d.%m.%Y").alias("day"),
                pl.lit(cls).alias("cls"),
                _number(col).alias("mwh"),
                pl.lit("valid").alias("quality"),
            )
        )
    return pl.concat(frames)


def _read_the(path: Path) -> pl.DataFrame:
    raw = _read_csv(path, separator=";", infer_schema_length=0)
    _require(raw, path, ("Gasday", "State"))
    frames = []
    for cls in DE_CLASSES:
        kind, gas = cls.split("_")
        col = f"{kind} {gas}-Gas"
        _require(raw, path, (col,))
        frames.append(
            raw.select(
                pl.col("Gasday").str.strptime(pl.Date, "%d/%m/%Y").alias("day"),
                pl.lit(cls).alias("cls"),
                (_number(col) * 1e-3).alias("mwh"),
                pl.when(pl.col("State").str.strip_chars() == "preliminary")
                .then(pl.lit("suspect"))
                .otherwise(pl.lit("valid"))
                .alias("quality"),
            )
        )
    return pl.concat(frames).sort("day", "cls")


# --- helpers ------------------------------------------------------------------------------------


def _read_csv(path: Path, **kwargs: object) -> pl.DataFrame:
    if not path.is_file():
        raise InvalidInputError(
            f"{path}: file not found; pass data_dir= the shared/data folder (see its README.md)"
        )
    return pl.read_csv(path, **kwargs)  # type: ignore[arg-type]


def _require(frame: pl.DataFrame, path: Path, columns: Sequence[str]) -> None:
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise InvalidInputError(
            f"{path}: expected columns {list(columns)}, missing {absent}; got {frame.columns}"
        )


def _number(column: str) -> pl.Expr:
    """A published number as Float64: thousands separators (``,``) and blanks removed."""
    text = pl.col(column).str.strip_chars().str.replace_all(",", "")
    return pl.when(text == "").then(None).otherwise(text).cast(pl.Float64)


def _parse_utc(column: str, fmt: str) -> pl.Expr:
    return pl.col(column).str.strptime(pl.Datetime("us"), fmt).dt.replace_time_zone("UTC")


def _day_ts(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("ts")


def _daily_temperature(consumption: pl.DataFrame, daily: pl.DataFrame) -> pl.DataFrame:
    station = daily.filter(pl.col("temperature_c").is_not_null()).select(
        _day_ts("day"), "temperature_c"
    )
    return (
        consumption.select("meter_id", "ts")
        .join(station, on="ts", how="inner")
        .sort("meter_id", "ts")
    )
