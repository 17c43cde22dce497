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
        and ``source = "register"``, sorted by ``meter_id`` and ``ts`` when each
        metering point has one device.

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
    # Integer keys inside: a device is its row in ``dev``, a channel its code in
    # ``_CHANNEL_CODE``.  Sorting and joining on them costs a fraction of string keys.
    dev = (
        devices.select("device_id", "meter_id", pl.col("counter_modulus_m3").cast(pl.Float64))
        .filter(pl.col("meter_id").is_not_null())
        .sort("meter_id", "device_id")  # device codes in meter order: the output is sorted by them
        .with_row_index("dev")
    )
    # A reading already flagged suspect (e.g. sent by a unit whose clock drifted, see
    # ingest.Landing) makes the hours it bounds suspect, like a late reading.
    flagged = (
        (pl.col("quality") == "suspect").fill_null(False)
        if "quality" in readings.columns
        else pl.lit(False)
    )
    raw = _coded(readings, dev, pl.col("value").cast(pl.Float64), flagged.alias("flagged"))
    reg = _snap(raw.filter(pl.col("ch") < len(REGISTER_CHANNELS)), max_offset_s)
    if previous is not None and previous.height:
        prev = _snap(
            _coded(previous, dev, pl.col("value").cast(pl.Float64)).filter(pl.col("ch") < len(REGISTER_CHANNELS)),
            max_offset_s,
        ).with_columns(pl.lit(True).alias("is_prev"))
        reg = pl.concat([prev, reg.with_columns(pl.lit(False).alias("is_prev"))])
    else:
        reg = reg.with_columns(pl.lit(False).alias("is_prev"))
    modulus = dev.select("dev", "counter_modulus_m3")
    steps = _steps(reg.join(modulus, on="dev", how="left"), plausible_factor, min_plausible_m3h)

    std = steps.filter(pl.col("ch") == 0).select("dev", "ts", pl.col("volume").alias("volume_m3"), "rank")
    work = steps.filter(pl.col("ch") == 1).select(
        "dev", "ts", pl.col("volume").alias("volume_work_m3"), pl.col("rank").alias("rank_work")
    )
    out = std.join(work, on=["dev", "ts"], how="full", coalesce=True) if work.height else std
    rank = pl.max_horizontal("rank", "rank_work") if work.height else pl.col("rank")
    out = out.with_columns(pl.lit(_QUALITIES).gather(rank).alias("quality"))

    means = _snap(raw.filter(pl.col("ch") >= len(REGISTER_CHANNELS)), max_offset_s, dedupe=False)
    if means.height:
        for code, name in enumerate(MEAN_CHANNELS, start=len(REGISTER_CHANNELS)):
            mean = (
                means.filter(pl.col("ch") == code)
                .group_by("dev", "hour")
                .agg(pl.col("value").mean().alias(name))
                .rename({"hour": "ts"})
            )
            if mean.height:
                out = out.join(mean, on=["dev", "ts"], how="left")
    # Sorted by the integer keys, which is (meter_id, ts) order when each metering point
    # has one device: the store then need not sort the hours by their string key.
    out = out.with_columns((pl.col("dev").cast(pl.Int64) * (1 << 32) + pl.col("ts").dt.epoch("us") // _HOUR_US).alias("okey"))
    if not _increasing(out, strict=False, col="okey"):
        out = out.sort("okey")
    out = out.with_columns(
        pl.lit(dev.get_column("meter_id")).gather(pl.col("dev")).alias("meter_id"),
        pl.lit("register").alias("source"),
    )
    return validate_frame(out, "hourly_archive")


#: Channel → integer code used inside (registers first, then the mean channels).
_CHANNEL_CODE: Final = {c: i for i, c in enumerate((*REGISTER_CHANNELS, *MEAN_CHANNELS))}
#: Quality by rank (the order of ``_QUALITY_RANK``).
_QUALITIES: Final = pl.Series("quality", sorted(_QUALITY_RANK, key=_QUALITY_RANK.__getitem__), dtype=pl.String)


def _coded(frame: pl.DataFrame, dev: pl.DataFrame, *values: pl.Expr) -> pl.DataFrame:
    """``frame``'s rows of the channels used and the devices in ``dev``: integer ``dev``
    and ``ch`` codes, ``ts`` and ``values``."""
    code = pl.lit(None, dtype=pl.Int8)
    for name, i in reversed(_CHANNEL_CODE.items()):
        code = pl.when(pl.col("channel") == name).then(pl.lit(i, dtype=pl.Int8)).otherwise(code)
    return (
        frame.select("device_id", code.alias("ch"), "ts", *values)
        .filter(pl.col("ch").is_not_null())
        .join(dev.select("device_id", "dev"), on="device_id", how="inner")
        .drop("device_id")
    )


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
    # One integer sort key: (device, channel) series, then hour.  Rows already in key
    # order with no repeated hour (landing hands them over so) need neither the sort
    # nor the dedupe.  Otherwise sorted once, and a row repeating the previous row's
    # key is dropped, which keeps the reading closest to the hour.
    out = out.with_columns(_key().alias("key"))
    if not _increasing(out, strict=True):
        out = out.sort("key", "offset_us")
        out = out.filter((pl.col("key") != pl.col("key").shift(1)).fill_null(True))
    return out


#: Sort key of a snapped register reading: (device code × 8 + channel code) in the high
#: bits, the hour since 1970 (offset by 2³¹, so hours before 1970 sort too) in the low 32.
def _key() -> pl.Expr:
    hours = pl.col("hour").dt.epoch("us") // _HOUR_US + (1 << 31)
    return (pl.col("dev").cast(pl.Int64) * 8 + pl.col("ch").cast(pl.Int64)) * (1 << 32) + hours


def _increasing(frame: pl.DataFrame, *, strict: bool, col: str = "key") -> bool:
    step = pl.col(col) > pl.col(col).shift(1) if strict else pl.col(col) >= pl.col(col).shift(1)
    return bool(frame.select(step.fill_null(True).all()).item())


def _steps(reg: pl.DataFrame, factor: float, floor: float) -> pl.DataFrame:
    """One output row per hour between consecutive readings of a device and channel."""
    if not _increasing(reg, strict=False):
        reg = reg.sort("key", maintain_order=True)
    reg = reg.with_columns((pl.col("key") // (1 << 32)).alias("series"))
    # Whole-frame shifts on the sorted frame, masked at series boundaries (faster than over()).
    same = pl.col("series") == pl.col("series").shift(1)
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
        .group_by("series")
        .agg(pl.col("rate").quantile(0.95).alias("p95"))
    )
    steps = steps.join(p95, on="series", how="left").with_columns(
        pl.max_horizontal(pl.lit(floor), pl.col("p95") * factor).alias("limit")
    )
    bad = pl.col("step").is_null() | (pl.col("rate") > pl.col("limit"))
    steps = steps.with_columns(
        pl.when(bad).then(None).otherwise(pl.col("step")).alias("volume"),
        pl.when(bad | pl.col("late_pair") | (pl.col("dh") > 1))
        .then(pl.lit(_QUALITY_RANK["suspect"], dtype=pl.Int8))
        .otherwise(pl.lit(_QUALITY_RANK["valid"], dtype=pl.Int8))
        .alias("rank"),
        (pl.col("hour") - pl.duration(hours=1)).alias("ts"),
    )
    cols = ["dev", "ch", "ts", "volume", "rank"]
    result = steps.select(cols)
    gaps = steps.filter(pl.col("dh") > 1)
    if gaps.height:
        missing = (
            gaps.select(
                "dev",
                "ch",
                pl.datetime_ranges(
                    pl.col("prev_hour"), pl.col("ts"), "1h", closed="left", time_unit="us", time_zone="UTC"
                ).alias("ts"),
            )
            .explode("ts")
            .with_columns(
                pl.lit(None, dtype=pl.Float64).alias("volume"),
                pl.lit(_QUALITY_RANK["missing"], dtype=pl.Int8).alias("rank"),
            )
            .select(cols)
        )
        result = pl.concat([result, missing])
    return result
