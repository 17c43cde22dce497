"""askug forecasting: hourly consumption estimators with ``fit``/``predict``.

Frames in, frames out: history is the :data:`warehouse.CONSUMPTION` frame at hourly
frequency plus per-meter outdoor temperature (:func:`warehouse.load_meter_temperature`);
predictions follow the ``forecasts`` contract (UTC ``ts``, m³ at standard conditions,
80 % prediction interval).  :func:`run_forecasts` does the whole round trip on a store.
"""

from forecasting._base import METER_TEMPERATURE, Forecaster
from forecasting._hdd import HeatingDegreeRegression
from forecasting._run import run_forecasts
from forecasting.errors import (
    ForecastingError,
    InsufficientHistoryError,
    InvalidInputError,
    InvalidParameterError,
    MissingTemperatureError,
    NotFittedError,
    UnknownMeterError,
)

__all__ = [
    "METER_TEMPERATURE",
    "Forecaster",
    "ForecastingError",
    "HeatingDegreeRegression",
    "InsufficientHistoryError",
    "InvalidInputError",
    "InvalidParameterError",
    "MissingTemperatureError",
    "NotFittedError",
    "UnknownMeterError",
    "run_forecasts",
]
