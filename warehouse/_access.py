"""Read helpers every layer uses: consumption, per-meter temperature, the meter directory.

They work on any :class:`~warehouse.Store` and return validated long frames (UTC ``ts``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal

import polars as pl

from warehouse._schemas import CONSUMPTION, validate_frame
from warehouse._store import Store

Freq = Literal["hour", "day", "month"]
_FREQ_TABLE: dict[str, str] = {"hour": "hourly_archive", "day": "daily_archive", "month": "monthly_archive"}


def load_consumption(
    store: Store,
    *,
    freq: Freq = "hour",
    meter_ids: Sequence[str] | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> pl.DataFrame:
    """Consumption per metering point in m³ at standard conditions.

    Parameters
    ----------
    freq
        ``"hour"`` reads the hourly archive; ``"day"`` and ``"month"`` read the rollups
        (UTC buckets; run :meth:`Store.refresh_rollups` after loading).
    meter_ids, start, end
        Optional filters; ``start <= ts < end`` in UTC.

    Returns
    -------
    polars.DataFrame
        The :data:`~warehouse.CONSUMPTION` frame: ``meter_id``, ``ts`` (UTC interval
        start), ``volume_m3`` (null = missing), ``quality``.
    """
    if freq not in _FREQ_TABLE:
        raise ValueError(f"freq must be one of {list(_FREQ_TABLE)}, got {freq!r}")
    where = {"meter_id": list(meter_ids)} if meter_ids is not None else None
    frame = store.read(
        _FREQ_TABLE[freq], start=start, end=end, where=where, columns=["meter_id", "ts", "volume_m3", "quality"]
    )
    return validate_frame(frame, CONSUMPTION)


def load_meters(store: Store) -> pl.DataFrame:
    """The metering-point directory joined to its branch and company.

    Returns one row per metering point with ``meter_id``, ``name``, ``category``,
    ``resource``, ``node_id``, ``branch_id``, ``branch_name``, ``company_id``,
    ``company_name``, ``time_zone``, ``contract_hour`` and ``weather_station``.
    """
    meters = store.read("metering_points")
    branches = store.read("branches").rename({"name": "branch_name"})
    companies = store.read("companies").rename({"name": "company_name", "time_zone": "company_time_zone"})
    return (
        meters.join(branches, on="branch_id", how="left")
        .join(companies.drop("contract_hour"), on="company_id", how="left")
        .sort("company_id", "branch_id", "meter_id")
    )


def load_meter_temperature(
    store: Store,
    *,
    meter_ids: Sequence[str] | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> pl.DataFrame:
    """Hourly outdoor temperature at each metering point (its branch's weather station).

    Returns
    -------
    polars.DataFrame
        ``meter_id``, ``ts`` (UTC hour start), ``temperature_c``; hours the station has
        no value for are absent.
    """
    meters = store.read("metering_points", columns=["meter_id", "branch_id"])
    if meter_ids is not None:
        meters = meters.filter(pl.col("meter_id").is_in(list(meter_ids)))
    branches = store.read("branches", columns=["branch_id", "weather_station"])
    stations = meters.join(branches, on="branch_id").select("meter_id", "weather_station")
    names = stations.get_column("weather_station").drop_nulls().unique().to_list()
    weather = store.read(
        "weather", start=start, end=end, where={"station_id": names}, columns=["station_id", "ts", "temperature_c"]
    )
    return (
        stations.join(weather, left_on="weather_station", right_on="station_id")
        .select("meter_id", "ts", "temperature_c")
        .sort("meter_id", "ts")
    )
