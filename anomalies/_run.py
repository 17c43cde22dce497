"""Run the alert rules over a store's readings and hand the alerts to the sinks."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

import polars as pl

from anomalies._base import empty_alerts
from anomalies._sinks import AlertSink, StoreSink
from anomalies._threshold import ThresholdRule
from warehouse import Store

logger = logging.getLogger(__name__)


def run_detection(
    store: Store,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    sinks: Sequence[AlertSink] | None = None,
    min_duration_hours: float = 1,
) -> pl.DataFrame:
    """Check GDP readings against the ``gdp_channels`` limits and send the alerts.

    Parameters
    ----------
    store
        An open, migrated store.
    start, end
        Half-open UTC range ``start <= ts < end`` of the readings to check (default:
        all).  An episode that began before ``start`` is seen as starting at ``start``.
    sinks
        Where the alerts go (default: ``[StoreSink(store)]``); an empty list only
        returns them.
    min_duration_hours
        Passed to :class:`ThresholdRule`.

    Returns
    -------
    polars.DataFrame
        The alerts found (``alerts`` contract, UTC), whether or not they were new.
    """
    store.check_schema()
    limits = store.read("gdp_channels")
    devices = store.read("devices")
    gdp_devices = devices.filter(pl.col("node_id").is_not_null()).get_column("device_id").to_list()
    channels = limits.get_column("channel").unique().to_list()
    if limits.height == 0 or not gdp_devices:
        alerts = empty_alerts()
    else:
        readings = store.read(
            "readings", start=start, end=end, where={"device_id": gdp_devices, "channel": channels}
        )
        rule = ThresholdRule(limits=limits, min_duration_hours=min_duration_hours)
        alerts = rule.detect(readings, devices)
    for sink in [StoreSink(store)] if sinks is None else sinks:
        n = sink.send(alerts)
        logger.info(
            "run_detection: %s took %d of %d alert(s)", type(sink).__name__, n, alerts.height
        )
    return alerts
