"""Reference data shipped in ``warehouse/_data``: the BDEW gas standard-load-profile
parameters (German BDEW/VKU/GEODE guideline, TU München method, as published in
demandlib; licence and attribution in ``_data/LICENCE_AND_ATTRIBUTION.md``).

The daily profile value of a profile type is the sigmoid::

    h(T) = A / (1 + (B / (T - 40)) ** C) + D

of the geometrically weighted daily mean temperature
``T = (T_d + 0.5 T_{d-1} + 0.25 T_{d-2} + 0.125 T_{d-3}) / 1.875`` (°C), times the
weekday factor; the hourly shares split a day's use over its 24 hours by temperature
band.  The loaders read the shipped files once and return the same frame afterwards.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Final

import numpy as np
import polars as pl

#: Upper edges (°C, daily mean temperature) of the ten temperature bands of the BDEW
#: hourly shares: band 0 is below −15 °C, band 9 is 25 °C and above.
SLP_TEMPERATURE_BANDS_C: Final = (-15.0, -10.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0)

_HOUR_BANDS: Final = tuple(f"temp_intervall_{k:02d}" for k in range(1, 11))


def _read(name: str, schema_overrides: dict[str, pl.DataType] | None = None) -> pl.DataFrame:
    path = resources.files("warehouse") / "_data" / name
    with resources.as_file(path) as file:
        frame = pl.read_csv(file, schema_overrides=schema_overrides)
    # The first, unnamed column of the demandlib files is a row index.
    return frame.drop(frame.columns[0])


@functools.cache
def slp_sigmoid_parameters() -> pl.DataFrame:
    """Sigmoid parameters of every BDEW gas profile type and building class.

    Returns
    -------
    polars.DataFrame
        68 rows: ``shlp_type`` (``EFH`` single-family and ``MFH`` multi-family homes;
        commercial ``GHD`` (all trade), ``GKO``, ``GHA``, ``GMK``, ``GBD``, ``GBH``,
        ``GWA``, ``GGA``, ``GBA``, ``GGB``, ``GPD``, ``GMF``), ``building_class``
        (1–11 for EFH/MFH, 0 otherwise), ``wind_impact`` (0 = normal site, 1 = windy
        site) and ``parameter_a`` … ``parameter_d`` (A, B, C, D; h(T) is a factor
        on the customer value, T in °C).

    Examples
    --------
    >>> p = slp_sigmoid_parameters()
    >>> p.filter(shlp_type="GHD", wind_impact=0).select("parameter_a").item()
    3.008434556
    """
    return _read("shlp_sigmoid_factors.csv.gz").select(
        "shlp_type",
        "building_class",
        "wind_impact",
        "parameter_a",
        "parameter_b",
        "parameter_c",
        "parameter_d",
    )


@functools.cache
def slp_weekday_factors() -> pl.DataFrame:
    """Weekday factors of every BDEW gas profile type.

    Returns
    -------
    polars.DataFrame
        98 rows: ``shlp_type``, ``weekday`` (1 = Monday … 7 = Sunday) and ``factor``
        (multiplies the daily sigmoid value; ``wochentagsfaktor`` in the source).
    """
    frame = _read("shlp_weekday_factors.csv.gz")
    return frame.select(
        "shlp_type",
        (pl.int_range(pl.len()).over("shlp_type") + 1).cast(pl.Int64).alias("weekday"),
        pl.col("wochentagsfaktor").cast(pl.Float64).alias("factor"),
    )


@functools.cache
def slp_hour_factors() -> pl.DataFrame:
    """Hourly shares of daily use of every BDEW gas profile type.

    Returns
    -------
    polars.DataFrame
        2,544 rows: ``shlp_type``, ``building_class`` (1–11 for EFH/MFH, else 0),
        ``weekday`` (0 = the same table for every day, for EFH/MFH; else 1 = Monday …
        7 = Sunday), ``hour_of_day`` (1–24: the hour ending then, so 1 is 00:00–01:00
        local time) and ``temp_intervall_01`` … ``temp_intervall_10``: the share of
        the day's use in that hour for each temperature band of
        :data:`SLP_TEMPERATURE_BANDS_C`.
    """
    return _read("shlp_hour_factors.csv.gz").select(
        "shlp_type", "building_class", "weekday", "hour_of_day", *_HOUR_BANDS
    )


def slp_temperature_band(daily_mean_c: np.ndarray) -> np.ndarray:
    """Index 0..9 of the BDEW temperature band of each daily mean temperature (°C)."""
    band: np.ndarray = np.digitize(daily_mean_c, np.asarray(SLP_TEMPERATURE_BANDS_C))
    return band
