"""GDP parameter thresholds: min/max limits per node and channel, merged into episodes."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from typing import ClassVar, Final

import polars as pl

from anomalies._base import Detector, check_frame, empty_alerts
from anomalies.errors import InvalidInputError, InvalidParameterError
from warehouse._schemas import GDP_CHANNEL_LIMITS

#: Unit shown in messages, by channel-name suffix.
_UNITS: Final = (("_kpa", "kPa"), ("_pct_lel", "% LEL"), ("_c", "°C"), ("_v", "V"), ("_m3", "m³"))


class ThresholdRule(Detector):
    """Alert when a GDP channel leaves its ``[min_value, max_value]`` band.

    Readings of a node's telemetry units (``devices.node_id``) are compared with the
    node's limits in the ``gdp_channels`` table.  Consecutive out-of-range readings of
    one node and channel on the same side of the band form one **episode** and one
    alert: ``ts_start``/``ts_end`` are its first and last violating readings, ``value``
    the worst reading (lowest below the minimum, highest above the maximum) and
    ``threshold`` the limit it broke.  A reading inside the band ends the episode; a
    null reading neither violates nor ends it.  A limit that is null is not checked.

    Each reading is taken to stand for the interval until the next one, so an episode
    of *k* readings at the series' usual spacing *Δ* (the median gap between its
    readings; 1 h for a single reading) lasts *k·Δ*; episodes shorter than
    ``min_duration_hours`` are dropped.

    Parameters
    ----------
    limits
        The ``gdp_channels`` table: ``node_id``, ``channel``, ``min_value``,
        ``max_value`` (in the channel's unit; see its name).
    min_duration_hours
        Shortest episode that raises an alert, in hours (0 = every violating reading).
    critical_fraction
        Severity rule: an episode is ``critical`` when its worst value lies beyond the
        broken limit by at least ``critical_fraction`` times the width of the band
        (``max_value - min_value``; with only one limit, times ``|limit|``); otherwise
        ``warning``.  With the default 0.5 and a 2.8–3.2 kPa band, 2.6 kPa or lower is
        critical.

    Notes
    -----
    ``alert_id`` is the first 32 hex digits of SHA-256 over rule, object, channel and
    ``ts_start``: the same episode always gets the same id, and an episode that goes on
    keeps its id as its ``ts_end`` grows.

    Examples
    --------
    >>> rule = ThresholdRule(limits=store.read("gdp_channels"))  # doctest: +SKIP
    >>> alerts = rule.detect(readings, devices)  # doctest: +SKIP
    """

    alias: ClassVar[str] = "gdp_threshold"

    def __init__(
        self,
        *,
        limits: pl.DataFrame,
        min_duration_hours: float = 1,
        critical_fraction: float = 0.5,
    ) -> None:
        self.limits = limits
        self.min_duration_hours = min_duration_hours
        self.critical_fraction = critical_fraction

    def _validate_params(self) -> None:
        for name in ("min_duration_hours", "critical_fraction"):
            v = getattr(self, name)
            if (
                isinstance(v, bool)
                or not isinstance(v, int | float)
                or not math.isfinite(v)
                or v < 0
            ):
                raise InvalidParameterError(f"{name}: expected a finite number >= 0, got {v!r}")
        limits = check_frame(self.limits, GDP_CHANNEL_LIMITS, "limits")
        crossed = limits.filter(pl.col("min_value") > pl.col("max_value"))
        if crossed.height:
            rows = crossed.head(3).rows()
            raise InvalidParameterError(
                f"limits: expected min_value <= max_value, got {crossed.height} crossed row(s), "
                f"e.g. {rows}; fix them in the gdp_channels table"
            )

    def _detect(self, readings: pl.DataFrame, devices: pl.DataFrame | None) -> pl.DataFrame:
        if devices is None:
            raise InvalidInputError(
                "ThresholdRule.detect: expected the devices table to map device_id to node_id, "
                "got None; pass store.read('devices')"
            )
        limits = check_frame(self.limits, GDP_CHANNEL_LIMITS, "limits").filter(
            pl.col("min_value").is_not_null() | pl.col("max_value").is_not_null()
        )
        series = ["node_id", "channel"]
        nodes = devices.filter(pl.col("node_id").is_not_null()).select("device_id", "node_id")
        value, lo, hi = pl.col("value"), pl.col("min_value"), pl.col("max_value")
        side = pl.when(value < lo).then(pl.lit("below")).when(value > hi).then(pl.lit("above"))
        checked = (
            readings.lazy()
            .filter(value.is_not_null() & value.is_not_nan())
            .join(nodes.lazy(), on="device_id", how="inner")
            .join(limits.lazy(), on=series, how="inner")
            .sort([*series, "ts"])
            .with_columns(
                side.alias("side"),
                pl.col("ts")
                .diff()
                .median()
                .over(series)
                .fill_null(dt.timedelta(hours=1))
                .alias("step"),
            )
            # A new episode starts wherever the side changes (in range counts as a side).
            .with_columns(
                pl.col("side").ne_missing(pl.col("side").shift(1)).over(series).alias("new")
            )
            .with_columns(pl.col("new").cum_sum().over(series).alias("episode"))
            .filter(pl.col("side").is_not_null())
        )
        worst = pl.when(pl.col("side").first() == "below").then(value.min()).otherwise(value.max())
        episodes = (
            checked.group_by([*series, "episode"])
            .agg(
                pl.col("side").first(),
                pl.col("ts").min().alias("ts_start"),
                pl.col("ts").max().alias("ts_end"),
                worst.alias("value"),
                lo.first(),
                hi.first(),
                pl.col("step").first(),
            )
            .with_columns(
                (pl.col("ts_end") - pl.col("ts_start") + pl.col("step")).alias("duration")
            )
            .filter(pl.col("duration") >= dt.timedelta(hours=self.min_duration_hours))
            .collect()
        )
        if episodes.height == 0:
            return empty_alerts()
        threshold = pl.when(pl.col("side") == "below").then(lo).otherwise(hi)
        band = (
            pl.when(lo.is_not_null() & hi.is_not_null() & (hi > lo))
            .then(hi - lo)
            .otherwise(pl.col("threshold").abs())
        )
        excess = (pl.col("value") - pl.col("threshold")).abs()
        # A hair of tolerance so a value exactly at the critical line (2.6 vs 2.8 - 0.2)
        # is not lost to binary rounding.
        critical = excess >= self.critical_fraction * band - 1e-9 * band
        alerts = episodes.with_columns(threshold.alias("threshold")).with_columns(
            pl.when(critical & (band > 0))
            .then(pl.lit("critical"))
            .otherwise(pl.lit("warning"))
            .alias("severity"),
            pl.lit(self.alias).alias("rule"),
            pl.lit("node").alias("object_kind"),
            pl.col("node_id").alias("object_id"),
            pl.lit("open").alias("state"),
        )
        # One id and one message per episode (not per reading): a list over episodes.
        rows = alerts.select(
            "node_id", "channel", "ts_start", "side", "value", "threshold", "duration"
        ).rows()
        return alerts.with_columns(
            pl.Series(
                "alert_id",
                [alert_id(self.alias, "node", n, c, t) for n, c, t, *_ in rows],
                dtype=pl.String,
            ),
            pl.Series(
                "message",
                [_message(n, c, s, v, th, d) for n, c, _, s, v, th, d in rows],
                dtype=pl.String,
            ),
        )


def alert_id(
    rule: str, object_kind: str, object_id: str, channel: str | None, ts_start: dt.datetime
) -> str:
    """Deterministic alert id: SHA-256 of rule, object, channel and start (UTC), 32 hex digits."""
    text = "|".join(
        (rule, object_kind, object_id, channel or "", ts_start.astimezone(dt.UTC).isoformat())
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def unit_of(channel: str) -> str:
    """Display unit of a channel from its name suffix ('' for flags such as ``door_open``)."""
    for suffix, unit in _UNITS:
        if channel.endswith(suffix):
            return unit
    return ""


def _message(
    node: str, channel: str, side: str, value: float, threshold: float, duration: dt.timedelta
) -> str:
    unit = unit_of(channel)
    u = f" {unit}" if unit else ""
    limit = "min" if side == "below" else "max"
    return f"{node} {channel} {value:.4g}{u} {side} {limit} {threshold:.4g}{u} for {_duration(duration)}"


def _duration(d: dt.timedelta) -> str:
    minutes = round(d.total_seconds() / 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes / 60:.1f} h"
