"""askug anomalies: alert rules over telemetry and the sinks that deliver alerts.

Readings in (the ``readings`` contract, UTC), alerts out (the ``alerts`` contract):
:class:`ThresholdRule` checks GDP channels against their min/max limits,
:class:`StoreSink` keeps alerts in the warehouse, :class:`MqttSink` pushes them to an
MQTT broker, and :func:`run_detection` does the round trip on a store.
"""

from anomalies._base import Detector
from anomalies._run import run_detection
from anomalies._sinks import AlertSink, MqttSink, StoreSink
from anomalies._threshold import ThresholdRule, alert_id
from anomalies.errors import (
    AnomaliesError,
    InvalidInputError,
    InvalidParameterError,
    SinkError,
    SinkUnavailableError,
)

__all__ = [
    "AlertSink",
    "AnomaliesError",
    "Detector",
    "InvalidInputError",
    "InvalidParameterError",
    "MqttSink",
    "SinkError",
    "SinkUnavailableError",
    "StoreSink",
    "ThresholdRule",
    "alert_id",
    "run_detection",
]
