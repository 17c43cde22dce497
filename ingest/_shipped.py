"""Data shipped in ``ingest/_data``: the Bedford hourly temperature (see
``_data/LICENCE_AND_ATTRIBUTION.md``); and views of the BDEW gas standard-load-profile
parameters, which ``warehouse`` ships (``warehouse/_data``)."""

from __future__ import annotations

import datetime as dt
import functools
from importlib import resources
from typing import Final

import numpy as np
import polars as pl

from warehouse import slp_hour_factors, slp_sigmoid_parameters, slp_weekday_factors

STATION_ID: Final = "bedford"
#: First and last hour of the shipped temperature series (UTC).
TEMPERATURE_START: Final = dt.datetime(2011, 1, 1, tzinfo=dt.UTC)
TEMPERATURE_END: Final = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)  # exclusive

#: Upper edges of the BDEW hourly-factor temperature bands (°C, daily mean).
_BAND_EDGES: Final = np.array([-15.0, -10.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0])


def _data_path(name: str) -> str:
    return str(resources.files("ingest") / "_data" / name)


@functools.cache
def hourly_temperature() -> np.ndarray:
    """Hourly air temperature at Bedford in °C, one value per UTC hour from 2011-01-01."""
    frame = pl.read_csv(
        _data_path("bedford_temperature_hourly_2011-2022.csv.gz"),
        schema={"timestamp_utc": pl.String, "temperature_c": pl.Float64},
    )
    values = frame.get_column("temperature_c").to_numpy().astype(np.float64)
    expected = int((TEMPERATURE_END - TEMPERATURE_START).total_seconds() // 3600)
    if values.shape[0] != expected or np.isnan(values).any():  # pragma: no cover - shipped file
        raise RuntimeError("shipped temperature file is damaged; reinstall askug")
    values.setflags(write=False)
    return values


@functools.cache
def daily_temperature() -> tuple[np.ndarray, np.ndarray]:
    """Daily mean and BDEW geometric 4-day mean temperature (°C) per UTC day from 2011-01-01.

    The geometric mean is (T_d + 0.5 T_{d-1} + 0.25 T_{d-2} + 0.125 T_{d-3}) / 1.875;
    before the first day the first day's mean is repeated.
    """
    daily = hourly_temperature().reshape(-1, 24).mean(axis=1)
    padded = np.concatenate([np.repeat(daily[:1], 3), daily])
    geo = (padded[3:] + 0.5 * padded[2:-1] + 0.25 * padded[1:-2] + 0.125 * padded[:-3]) / 1.875
    return daily, geo


def temperature_band(daily_mean_c: np.ndarray) -> np.ndarray:
    """BDEW temperature band index 0..9 of a daily mean temperature."""
    band: np.ndarray = np.digitize(daily_mean_c, _BAND_EDGES, right=False)
    return band


def _sigmoids() -> pl.DataFrame:
    return slp_sigmoid_parameters()


def sigmoid_parameters(shlp_type: str, building_class: int = 0, *, wind_impact: int = 0) -> tuple[float, ...]:
    """``(A, B, C, D)`` of the BDEW sigmoid h(T) = A / (1 + (B / (T - 40))^C) + D."""
    rows = _sigmoids().filter(
        (pl.col("shlp_type") == shlp_type)
        & (pl.col("building_class") == building_class)
        & (pl.col("wind_impact") == wind_impact)
    )
    if rows.height != 1:
        raise KeyError(f"no BDEW sigmoid for {shlp_type} class {building_class}")
    row = rows.row(0, named=True)
    return tuple(float(row[f"parameter_{k}"]) for k in "abcd")


def sigmoid(temperature_c: np.ndarray, params: tuple[float, ...]) -> np.ndarray:
    """The BDEW daily profile value h(T) for geometric-mean temperatures in °C."""
    a, b, c, d = params
    return a / (1.0 + (b / (temperature_c - 40.0)) ** c) + d


@functools.cache
def weekday_factors(shlp_type: str) -> np.ndarray:
    """Seven BDEW weekday factors, Monday first."""
    frame = slp_weekday_factors()
    values = frame.filter(pl.col("shlp_type") == shlp_type).sort("weekday").get_column("factor").to_numpy()
    if values.shape[0] != 7:
        raise KeyError(f"no BDEW weekday factors for {shlp_type}")
    return values.astype(np.float64)


def _hour_table() -> pl.DataFrame:
    return slp_hour_factors()


@functools.cache
def hour_factors(shlp_type: str, building_class: int = 0) -> np.ndarray:
    """BDEW hourly shares as an array ``[weekday 0..6 (Mon..Sun), hour 0..23, band 0..9]``.

    Residential types (EFH, MFH) have one table for every weekday.
    """
    rows = _hour_table().filter(
        (pl.col("shlp_type") == shlp_type) & (pl.col("building_class") == building_class)
    )
    bands = [f"temp_intervall_{k:02d}" for k in range(1, 11)]
    out = np.zeros((7, 24, 10))
    weekdays = sorted(set(rows.get_column("weekday").to_list()))
    if weekdays == [0]:
        table = rows.sort("hour_of_day").select(bands).to_numpy()
        out[:] = table[None, :, :]
    elif weekdays == list(range(1, 8)):
        for wd in range(1, 8):
            out[wd - 1] = rows.filter(pl.col("weekday") == wd).sort("hour_of_day").select(bands).to_numpy()
    else:
        raise KeyError(f"no BDEW hour factors for {shlp_type} class {building_class}")
    return out
