"""Exceptions raised by :mod:`forecasting`.

Every message says what was expected, what arrived and how to fix it.  All of them
subclass :class:`ValueError` (bad input or state), so callers that only know the
built-ins still catch them.
"""

from __future__ import annotations


class ForecastingError(ValueError):
    """Base class of every forecasting error."""


class NotFittedError(ForecastingError, AttributeError):
    """``predict`` (or a learned attribute) was used before ``fit``.

    Subclasses both :class:`ValueError` and :class:`AttributeError`, as in
    scikit-learn, so ``hasattr``-style checks keep working.
    """


class InvalidInputError(ForecastingError):
    """An input frame breaks its contract: columns, dtypes, naive times, not hourly, duplicates."""


class InvalidParameterError(ForecastingError):
    """A hyper-parameter has an impossible value (checked at ``fit``)."""


class InsufficientHistoryError(ForecastingError):
    """No metering point has enough usable hourly history to fit the model."""


class MissingTemperatureError(ForecastingError):
    """Temperatures needed for a forecast are absent or null (names the meters and hours)."""


class UnknownMeterError(ForecastingError):
    """A meter was asked for that the model did not fit (never seen, or skipped in ``fit``)."""


class UnknownScenarioError(InvalidParameterError):
    """A temperature scenario name or spelling is unknown (the message lists the known ones)."""
