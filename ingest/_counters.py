"""Cumulative registers → hourly consumption (pure Polars; no store, no I/O).

Rules (see ``ingest/README.md``):

* Each device timestamp is snapped to the nearest hour.  An offset of at most
  ``max_offset_s`` (60 s) is normal jitter; a larger one (clock drift) keeps the value
  but marks the hours it bounds ``suspect``.  Several readings that snap to the same
  hour: the one closest to the hour wins.
* The register at instant ``t`` is the cumulative volume at ``t``; the consumption of the
  hour starting at ``t`` is ``R(t + 1 h) − R(t)``.
* A negative step that becomes a plausible step once the device's
  ``counter_modulus_m3`` is added is a **rollover**.  Any other negative step is a
  counter regression or meter replacement, and a step whose hourly rate exceeds the
  plausible maximum is a wrong value: both give ``volume_m3 = null`` with quality
  ``suspect`` — never a negative or huge consumption.
* The plausible maximum per device and channel is
  ``max(min_plausible_m3h, plausible_factor × 95th percentile of its hourly rates)``.
* Missing hours are rows with ``volume_m3 = null`` and quality ``missing``.  The hour
  just before the reading that ends a gap carries the whole accumulated difference,
  flagged ``suspect`` (choice: the register total is kept, so daily and monthly sums stay
  right, and VEE can spread it over the gap later).
"""

from __future__ import annotations

from typing import Final

import polars as pl

from warehouse import validate_frame

STD_CHANNEL: Final = "volume_register_m3"
WORK_CHANNEL: Final = "volume_work_register_m3"
REGISTER_CHANNELS: Final = (STD_CHANNEL, WORK_CHANNEL)
MEAN_CHANNELS: Final = ("pressure_kpa", "temperature_c")
_QUALITY_RANK: Final = {"valid": 0, "estimated": 1, "edited": 2, "suspect": 3, "missing": 4}
_HOUR_US: Final = 3_600_000_000


def readings_to_hourly(
    readings: pl.DataFrame,
    devices: pl.DataFrame,
    *,
    previous: pl.DataFrame | None = None,
    max_offset_s: float = 60.0,
    plausible_factor: float = 20.0,
    min_plausible_m3h: float = 1.0,
) -> pl.DataFrame:
    """Turn cumulative register readings into the hourly archive of each metering point.

    Parameters
    ----------
    readings
        Readings in the ``readings`` contract (UTC ``ts``; registers in m³).  Channels
        other than the two volume registers, ``pressure_kpa`` and ``temperature_c`` are
        ignored, and so are devices without a ``meter_id``.  When it has a ``quality``
        column, a ``suspect`` reading makes the hours it bounds ``suspect``.
    devices
        The ``devices`` table: maps ``device_id`` to ``meter_id`` and gives
        ``counter_modulus_m3`` (null: the register never rolls over).
    previous
        For an incremental load: the last stored register reading of each device and
        register channel *before* the first reading in ``readings`` (columns
        ``device_id``, ``channel``, ``ts``, ``value``).  It closes the hour that was left
        open at the end of the previous batch.
    max_offset_s
        Largest clock offset from the full hour that counts as on time, in seconds.
    plausible_factor, min_plausible_m3h
        Plausible maximum hourly rate: ``max(min_plausible_m3h, plausible_factor × p95)``
        of the device's hourly rates in this batch, in m³/h.

    Returns
    -------
    polars.DataFrame
        The ``hourly_archive`` contract: ``meter_id``, ``ts`` (UTC start of the hour),
        ``volume_m3`` (standard conditions), ``volume_work_m3`` (correctors),
        ``pressure_kpa`` and ``temperature_c`` (hourly means, correctors), ``quality``
        and ``source = "register"``, in no particular order.

    Examples
    --------
    >>> import datetime as dt, polars as pl
    >>> from ingest import readings_to_hourly
    >>> t = [dt.datetime(2022, 1, 1, h, tzinfo=dt.UTC) for h in range(3)]
    >>> r = pl.DataFrame({"device_id": "D1", "channel": "volume_register_m3", "ts": t,
    ...                   "value": [99_999.0, 0.5, 1.5], "quality": "valid"})
    >>> d = pl.DataFrame({"device_id": ["D1"], "kind": ["household_unit"],
    ...                   "meter_id": ["M1"], "counter_modulus_m3": [1e5]})
    >>> readings_to_hourly(r, d).sort("ts")["volume_m3"].to_list()
    [1.5, 1.0]
    """
    dev = devices.select(
        "device_id",
        "meter_id",
        pl.col("counter_modulus_m3").cast(pl.Float64),
    ).filter(pl.col("meter_id").is_not_null())
    # A reading already flagged suspect (e.g. sent by a unit whose clock drifted, see
    # ingest.Landing) makes the hours it bounds suspect, like a late reading.
    flagged = (
        (pl.col("quality") == "suspect").fill_null(False)
        if "quality" in readings.columns
        else pl.lit(False)
    )
    raw = readings.select(
        "device_id", "channel", "ts", pl.col("value").cast(pl.Float64), flagged.alias("flagged")
    ).filter(pl.col("device_id").is_in(dev.get_column("device_id").implode()))
    reg = _snap(raw.filter(pl.col("channel").is_in(REGISTER_CHANNELS)), max_offset_s)
    if previous is not None and previous.height:
        prev = _snap(
            previous.select("device_id", "channel", "ts", pl.col("value").cast(pl.Float64)).filter(
                pl.col("channel").is_in(REGISTER_CHANNELS)
            ),
            max_offset_s,
        ).with_columns(pl.lit(True).alias("is_prev"))
        reg = pl.concat([prev, reg.with_columns(pl.lit(False).alias("is_prev"))])
    else:
        reg = reg.with_columns(pl.lit(False).alias("is_prev"))
    steps = _steps(reg.join(dev, on="device_id", how="left"), plausible_factor, min_plausible_m3h)

    std = steps.filter(pl.col("channel") == STD_CHANNEL).select(
        "device_id", "ts", pl.col("volume").alias("volume_m3"), pl.col("quality")
    )
    work = steps.filter(pl.col("channel") == WORK_CHANNEL).select(
        "device_id", "ts", pl.col("volume").alias("volume_work_m3"), pl.col("quality").alias("quality_work")
    )
    out = std.join(work, on=["device_id", "ts"], how="full", coalesce=True)
    rank = pl.col("quality").replace_strict(_QUALITY_RANK, default=None, return_dtype=pl.Int8)
    rank_w = pl.col("quality_work").replace_strict(_QUALITY_RANK, default=None, return_dtype=pl.Int8)
    names = {v: k for k, v in _QUALITY_RANK.items()}
    out = out.with_columns(
        pl.max_horizontal(rank, rank_w).replace_strict(names, return_dtype=pl.String).alias("quality")
    )

    means = _snap(raw.filter(pl.col("channel").is_in(MEAN_CHANNELS)), max_offset_s, dedupe=False)
    if means.height:
        means = (
            means.group_by("device_id", "hour", "channel")
            .agg(pl.col("value").mean())
            .pivot(on="channel", index=["device_id", "hour"], values="value")
            .rename({"hour": "ts"})
        )
        out = out.join(means, on=["device_id", "ts"], how="left")
    out = out.join(dev.select("device_id", "meter_id"), on="device_id", how="left").with_columns(
        pl.lit("register").alias("source")
    )
    # No final sort: sorting 4 M string keys costs more than the rest, and the store
    # sorts every batch by its key anyway.
    return validate_frame(out, "hourly_archive")


def _snap(frame: pl.DataFrame, max_offset_s: float, *, dedupe: bool = True) -> pl.DataFrame:
    """Add ``hour`` (ts rounded to the hour) and ``late`` (|offset| > max_offset_s)."""
    offset = (pl.col("ts") - pl.col("hour")).dt.total_microseconds().abs()
    late = offset > max_offset_s * 1e6
    if "flagged" in frame.columns:
        late = late | pl.col("flagged")
    out = (
        frame.filter(pl.col("value").is_not_null() & pl.col("value").is_finite())
        .with_columns(pl.col("ts").dt.round("1h").alias("hour"))
        .with_columns(offset.alias("offset_us"), late.alias("late"))
    )
    if "flagged" in out.columns:
        out = out.drop("flagged")
    if not dedupe:
        return out
    # Sorted once; a row repeating the previous row's (device, channel, hour) is dropped,
    # which keeps the reading closest to the hour (cheaper than ``unique``).
    out = out.sort("device_id", "channel", "hour", "offset_us")
    same = (
        (pl.col("device_id") == pl.col("device_id").shift(1))
        & (pl.col("channel") == pl.col("channel").shift(1))
        & (pl.col("hour") == pl.col("hour").shift(1))
    )
    return out.filter(~same.fill_null(False))


def _steps(reg: pl.DataFrame, factor: float, floor: float) -> pl.DataFrame:
    """One output row per hour between consecutive readings of a device and channel."""
    by = ["device_id", "channel"]
    reg = reg.sort("device_id", "channel", "hour")
    # Whole-frame shifts on the sorted frame, masked at series boundaries (faster than over()).
    same = (pl.col("device_id") == pl.col("device_id").shift(1)) & (pl.col("channel") == pl.col("channel").shift(1))
    prev_value = pl.when(same).then(pl.col("value").shift(1))
    prev_hour = pl.when(same).then(pl.col("hour").shift(1))
    prev_late = pl.when(same).then(pl.col("late").shift(1))
    steps = reg.with_columns(
        (pl.col("value") - prev_value).alias("diff"),
        ((pl.col("hour") - prev_hour).dt.total_microseconds() // _HOUR_US).alias("dh"),
        prev_hour.alias("prev_hour"),
        (pl.col("late") | prev_late).alias("late_pair"),
    ).filter(pl.col("diff").is_not_null() & ~pl.col("is_prev"))
    rolled = pl.col("diff") + pl.col("counter_modulus_m3")
    steps = steps.with_columns(
        pl.when(pl.col("diff") >= 0).then(pl.col("diff")).otherwise(rolled).alias("step"),
    ).with_columns((pl.col("step") / pl.col("dh")).alias("rate"))
    p95 = (
        steps.filter((pl.col("diff") >= 0) & (pl.col("dh") == 1))
        .group_by(by)
        .agg(pl.col("rate").quantile(0.95).alias("p95"))
    )
    steps = steps.join(p95, on=by, how="left").with_columns(
        pl.max_horizontal(pl.lit(floor), pl.col("p95") * factor).alias("limit")
    )
    bad = pl.col("step").is_null() | (pl.col("rate") > pl.col("limit"))
    steps = steps.with_columns(
        pl.when(bad).then(None).otherwise(pl.col("step")).alias("volume"),
        pl.when(bad | pl.col("late_pair") | (pl.col("dh") > 1))
        .then(pl.lit("suspect"))
        .otherwise(pl.lit("valid"))
        .alias("quality"),
        (pl.col("hour") - pl.duration(hours=1)).alias("ts"),
    )
    cols = ["device_id", "channel", "ts", "volume", "quality"]
    result = steps.select(cols)
    gaps = steps.filter(pl.col("dh") > 1)
    if gaps.height:
        missing = (
            gaps.select(
                "device_id",
                "channel",
                pl.datetime_ranges(
                    pl.col("prev_hour"), pl.col("ts"), "1h", closed="left", time_unit="us", time_zone="UTC"
                ).alias("ts"),
            )
            .explode("ts")
            .with_columns(pl.lit(None, dtype=pl.Float64).alias("volume"), pl.lit("missing").alias("quality"))
            .select(cols)
        )
        result = pl.concat([result, missing])
    return result
