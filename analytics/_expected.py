"""Expected consumption: the backcast of the stored forecasts, rolled up to days."""

from __future__ import annotations

import datetime as dt
from typing import Literal

import polars as pl

from warehouse import Store

ExpectedFreq = Literal["hour", "day"]

#: Columns (and dtypes) of the frame :func:`expected_consumption` returns.
_EXPECTED_COLUMNS: dict[str, pl.DataType] = {
    "meter_id": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "expected_m3": pl.Float64(),
    "expected_lo_80_m3": pl.Float64(),
    "expected_hi_80_m3": pl.Float64(),
}
EXPECTED_SCHEMA = pl.Schema(_EXPECTED_COLUMNS)


def expected_consumption(
    store: Store,
    *,
    model: str | None = None,
    freq: ExpectedFreq = "day",
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> pl.DataFrame:
    """Expected consumption per metering point: the backcast of its latest forecast run.

    A forecast run (one ``model`` and ``cutoff``) stores hourly rows in the ``forecasts``
    table; rows with ``ts < cutoff`` are its backcast, i.e. what the model expected for
    hours that have already happened.  For every metering point this takes the run
    with the latest ``cutoff`` that has backcast rows in ``[start, end)`` and returns
    those rows, summed to UTC days with ``freq="day"``.

    Parameters
    ----------
    store
        The warehouse to read the ``forecasts`` table from.
    model
        Only use runs of this model.  ``None`` uses any model; if two models share a
        meter's latest cutoff the choice would be arbitrary, so a ``ValueError`` asks
        for ``model=``.
    freq
        ``"hour"`` returns the hourly backcast; ``"day"`` sums it to UTC days and keeps
        only days with all 24 hours in the backcast (a partial day would understate
        the expected volume).
    start, end
        Half-open UTC range ``start <= ts < end`` of the hours to consider.

    Returns
    -------
    polars.DataFrame
        ``meter_id``, ``ts`` (UTC start of the hour or day), ``expected_m3`` (m³ at
        standard conditions), ``expected_lo_80_m3`` and ``expected_hi_80_m3`` (bounds of
        the 80 % prediction interval; a daily bound is the sum of the hourly bounds, a
        conservative (wide) interval, and null if any hour lacks one).  Sorted by
        ``meter_id`` and ``ts``.

    Raises
    ------
    ValueError
        ``freq`` is unknown, or ``model=None`` and several models share a meter's
        latest cutoff.

    Examples
    --------
    >>> expected = expected_consumption(store, model="hdd", start=day0, end=day14)  # doctest: +SKIP
    """
    if freq not in ("hour", "day"):
        raise ValueError(f"freq must be 'hour' or 'day', got {freq!r}")
    # The backcast is conditioned on observed temperatures; scenario runs add no backcast.
    where: dict[str, list[str]] = {"scenario": ["observed"]}
    if model is not None:
        where["model"] = [model]
    rows = store.read(
        "forecasts",
        start=start,
        end=end,
        where=where,
        columns=[
            "meter_id",
            "ts",
            "model",
            "cutoff",
            "volume_m3",
            "volume_m3_lo_80",
            "volume_m3_hi_80",
        ],
    )
    return latest_backcast(rows, freq=freq)


def latest_backcast(forecasts: pl.DataFrame, *, freq: ExpectedFreq = "day") -> pl.DataFrame:
    """The pure part of :func:`expected_consumption`, on a frame of ``forecasts`` rows.

    Parameters
    ----------
    forecasts
        Rows of the ``forecasts`` table (at least ``meter_id``, ``ts``, ``model``,
        ``cutoff``, ``volume_m3``, ``volume_m3_lo_80``, ``volume_m3_hi_80``; UTC).  If
        it has a ``scenario`` column, only ``"observed"`` rows count.
    freq
        ``"hour"`` or ``"day"``, as in :func:`expected_consumption`.

    Returns
    -------
    polars.DataFrame
        The frame described in :func:`expected_consumption`.
    """
    backcast = forecasts.lazy().filter(pl.col("ts") < pl.col("cutoff"))
    if "scenario" in forecasts.columns:
        # Only the observed scenario has a backcast (what the model expected for the
        # weather that happened); rows of other scenarios are horizon forecasts.
        backcast = backcast.filter(pl.col("scenario") == "observed")
    latest = backcast.group_by("meter_id").agg(pl.col("cutoff").max())
    runs = (
        backcast.join(latest, on=["meter_id", "cutoff"])
        .group_by("meter_id", "cutoff")
        .agg(pl.col("model").unique().sort())
        .collect()
    )
    ambiguous = runs.filter(pl.col("model").list.len() > 1)
    if ambiguous.height:
        first = ambiguous.row(0, named=True)
        raise ValueError(
            f"{ambiguous.height} metering point(s) have several models at their latest cutoff "
            f"(e.g. {first['meter_id']} at {first['cutoff']}: {first['model']}); "
            "pass model= to choose one"
        )
    hourly = backcast.join(latest, on=["meter_id", "cutoff"]).select(
        "meter_id",
        "ts",
        pl.col("volume_m3").alias("expected_m3"),
        pl.col("volume_m3_lo_80").alias("expected_lo_80_m3"),
        pl.col("volume_m3_hi_80").alias("expected_hi_80_m3"),
    )
    if freq == "day":
        hourly = _sum_to_days(hourly)
    return hourly.sort("meter_id", "ts").collect().cast(dict(EXPECTED_SCHEMA))  # type: ignore[arg-type]


def _sum_to_days(hourly: pl.LazyFrame) -> pl.LazyFrame:
    def total(col: str) -> pl.Expr:
        # polars' sum skips nulls; a day with a missing hourly bound has no bound.
        return pl.when(pl.col(col).null_count() == 0).then(pl.col(col).sum()).alias(col)

    return (
        hourly.group_by("meter_id", pl.col("ts").dt.truncate("1d"))
        .agg(
            total("expected_m3"),
            total("expected_lo_80_m3"),
            total("expected_hi_80_m3"),
            pl.len().alias("_hours"),
        )
        .filter(pl.col("_hours") == 24)
        .drop("_hours")
    )


def latest_forecast(
    store: Store,
    *,
    meter_ids: list[str] | None = None,
    model: str | None = None,
    scenario: str = "observed",
) -> pl.DataFrame:
    """All rows (backcast and forecast) of each metering point's latest forecast run.

    Parameters
    ----------
    store
        The warehouse to read the ``forecasts`` table from.
    meter_ids
        Only these metering points (default: all).
    model
        Only runs of this model.  ``None``: any model; when several models share a
        meter's latest cutoff, the first model name in sort order is used.
    scenario
        The temperature scenario of the forecast rows (the backcast is always stored
        under ``"observed"``).

    Returns
    -------
    polars.DataFrame
        The ``forecasts`` rows of the chosen runs (``meter_id``, ``ts`` (UTC hour
        start), ``model``, ``cutoff``, ``volume_m3``, ``volume_m3_lo_80``,
        ``volume_m3_hi_80`` in m³ per hour at standard conditions, ``temperature_c``),
        sorted by ``meter_id`` and ``ts``.  Rows with ``ts < cutoff`` are the backcast.
    """
    where: dict[str, list[str]] = {"scenario": [scenario]}
    if meter_ids is not None:
        where["meter_id"] = list(meter_ids)
    if model is not None:
        where["model"] = [model]
    rows = store.read("forecasts", where=where)
    chosen = (
        rows.group_by("meter_id")
        .agg(pl.col("cutoff").max())
        .join(rows.select("meter_id", "cutoff", "model").unique(), on=["meter_id", "cutoff"])
        .group_by("meter_id", "cutoff")
        .agg(pl.col("model").min())
    )
    return rows.join(chosen, on=["meter_id", "cutoff", "model"]).sort("meter_id", "ts")
