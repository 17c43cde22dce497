"""Deviation of actual from expected consumption, per metering point and day, and its colour."""

from __future__ import annotations

import math
from typing import Final

import polars as pl

from warehouse import CONSUMPTION, validate_frame

#: |deviation| at or below this many percent is green.
GREEN_PCT: Final = 5.0
#: |deviation| at or above this many percent is red; amber sits halfway.
RED_PCT: Final = 30.0
#: Colours of the scale (hex RGB): green, amber, red, and grey for a missing deviation.
GREEN: Final = "#43a047"
AMBER: Final = "#fbc02d"
RED: Final = "#e53935"
GREY: Final = "#d5d8dc"

#: Columns (and dtypes) of the frame :func:`deviation_table` returns.
DEVIATION_SCHEMA = pl.Schema(
    {
        "company_id": pl.String,
        "branch_id": pl.String,
        "branch_name": pl.String,
        "meter_id": pl.String,
        "meter_name": pl.String,
        "category": pl.String,
        "day": pl.Date,
        "actual_m3": pl.Float64,
        "expected_m3": pl.Float64,
        "deviation_m3": pl.Float64,
        "deviation_pct": pl.Float64,
    }
)


def deviation_table(
    actual: pl.DataFrame,
    expected: pl.DataFrame,
    meters: pl.DataFrame,
    *,
    min_expected_m3: float = 0.01,
) -> pl.DataFrame:
    """Compare actual daily consumption with the expected one, per metering point and day.

    Parameters
    ----------
    actual
        Daily consumption, a :data:`warehouse.CONSUMPTION` frame (``ts`` = UTC day
        start, e.g. ``load_consumption(store, freq="day")``).  A day whose quality is
        ``"missing"`` lacks hours, so its partial sum is treated as no actual value.
    expected
        Daily expected consumption from :func:`expected_consumption`: ``meter_id``,
        ``ts`` (UTC day start), ``expected_m3``.
    meters
        The meter directory from :func:`warehouse.load_meters` (``meter_id``, ``name``,
        ``category``, ``branch_id``, ``branch_name``, ``company_id``).
    min_expected_m3
        Below this expected volume (m³) the percentage is undefined and left null,
        instead of dividing by (almost) zero.

    Returns
    -------
    polars.DataFrame
        One row per metering point and day present in ``actual`` or ``expected``:
        ``company_id``, ``branch_id``, ``branch_name``, ``meter_id``, ``meter_name``,
        ``category``, ``day`` (UTC date), ``actual_m3``, ``expected_m3``,
        ``deviation_m3`` (actual − expected, m³) and ``deviation_pct`` (100 ·
        deviation / expected).  Deviations are null where either side is missing.
        Meters absent from the directory keep null directory columns.  Sorted by
        ``branch_id``, ``meter_id``, ``day`` (nulls last).

    Raises
    ------
    warehouse.ContractError
        ``actual`` does not match the consumption contract.

    Examples
    --------
    >>> table = deviation_table(  # doctest: +SKIP
    ...     load_consumption(store, freq="day"), expected_consumption(store), load_meters(store)
    ... )
    """
    act = (
        validate_frame(actual, CONSUMPTION)
        .lazy()
        .select(
            "meter_id",
            pl.col("ts").dt.date().alias("day"),
            pl.when(pl.col("quality") != "missing").then(pl.col("volume_m3")).alias("actual_m3"),
        )
    )
    exp = expected.lazy().select(
        "meter_id", pl.col("ts").dt.date().alias("day"), pl.col("expected_m3").cast(pl.Float64)
    )
    directory = meters.lazy().select(
        "company_id",
        "branch_id",
        "branch_name",
        "meter_id",
        pl.col("name").alias("meter_name"),
        "category",
    )
    out = (
        act.join(exp, on=["meter_id", "day"], how="full", coalesce=True)
        .pipe(_with_deviation, min_expected_m3=min_expected_m3)
        .join(directory, on="meter_id", how="left")
        .select(list(DEVIATION_SCHEMA))
        .sort("branch_id", "meter_id", "day", nulls_last=True)
    )
    return out.collect().cast(dict(DEVIATION_SCHEMA))  # type: ignore[arg-type]


def _with_deviation(frame: pl.LazyFrame, *, min_expected_m3: float) -> pl.LazyFrame:
    deviation = pl.col("actual_m3") - pl.col("expected_m3")
    pct = (
        pl.when(pl.col("expected_m3").abs() >= min_expected_m3)
        .then(100.0 * deviation / pl.col("expected_m3"))
        .otherwise(None)
    )
    return frame.with_columns(deviation.alias("deviation_m3"), pct.alias("deviation_pct"))


def deviation_colour(deviation_pct: float | None) -> str:
    """The colour of a deviation on the green → amber → red scale.

    Parameters
    ----------
    deviation_pct
        Deviation of actual from expected consumption in percent (sign ignored);
        ``None`` or NaN for a missing value.

    Returns
    -------
    str
        A hex colour ``#rrggbb``: :data:`GREEN` for ``|pct| <= 5``, :data:`RED` for
        ``|pct| >= 30``, linear in RGB from green to :data:`AMBER` (at 17.5 %) and from
        amber to red in between; :data:`GREY` for a missing value.

    Examples
    --------
    >>> deviation_colour(3.0), deviation_colour(-45.0), deviation_colour(None)
    ('#43a047', '#e53935', '#d5d8dc')
    """
    if deviation_pct is None or math.isnan(deviation_pct):
        return GREY
    x = abs(deviation_pct)
    if x <= GREEN_PCT:
        return GREEN
    if x >= RED_PCT:
        return RED
    mid = (GREEN_PCT + RED_PCT) / 2
    if x <= mid:
        return _mix(GREEN, AMBER, (x - GREEN_PCT) / (mid - GREEN_PCT))
    return _mix(AMBER, RED, (x - mid) / (RED_PCT - mid))


def _mix(a: str, b: str, t: float) -> str:
    ra, ga, ba = (int(a[i : i + 2], 16) for i in (1, 3, 5))
    rb, gb, bb = (int(b[i : i + 2], 16) for i in (1, 3, 5))
    return f"#{round(ra + (rb - ra) * t):02x}{round(ga + (gb - ga) * t):02x}{round(ba + (bb - ba) * t):02x}"
