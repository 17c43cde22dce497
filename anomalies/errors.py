"""Exceptions raised by :mod:`anomalies`.

Every message says what was expected, what arrived and how to fix it.
"""

from __future__ import annotations


class AnomaliesError(RuntimeError):
    """Base class of every anomalies error."""


class InvalidInputError(AnomaliesError, ValueError):
    """An input frame breaks its contract (columns, dtypes, naive times) or is missing."""


class InvalidParameterError(AnomaliesError, ValueError):
    """A rule or sink parameter has an impossible value (bad limits, URL, duration)."""


class SinkUnavailableError(AnomaliesError, ConnectionError):
    """An alert sink cannot be reached (broker down, connection refused, bad credentials)."""


class SinkError(AnomaliesError):
    """A reachable sink did not confirm delivery (e.g. no PUBACK within the timeout)."""
