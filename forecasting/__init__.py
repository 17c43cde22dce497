"""askug forecasting: hourly consumption estimators with ``fit``/``predict``.

Frames in, frames out: history is the :data:`warehouse.CONSUMPTION` frame at hourly
frequency plus per-meter outdoor temperature (:func:`warehouse.load_meter_temperature`);
predictions follow the ``forecasts`` contract (UTC ``ts``, m³ at standard conditions,
80 % prediction interval).  :func:`run_forecasts` does the whole round trip on a store.
"""

from forecasting._auto import AutoForecaster, TrackRecordChoice, auto, choose_by_track_record
from forecasting._backtest import (
    DAY_AHEAD_HOURLY,
    MONTH_AHEAD_DAILY,
    BacktestResult,
    backtest,
)
from forecasting._base import METER_TEMPERATURE, Forecaster, Freq
from forecasting._baselines import SeasonalNaive, WeekdayHourMean
from forecasting._datasets import (
    DATASET_UNITS,
    load_cambridge_gas,
    load_de_market_area_daily,
    load_uk_nts_daily,
)
from forecasting._gbm import GlobalGradientBoosting
from forecasting._hdd import HeatingDegreeRegression
from forecasting._hierarchy import Hierarchy, aggregate, reconcile, summing_matrix
from forecasting._metrics import (
    coverage,
    interval_width,
    mae,
    mase,
    naive_scale,
    rmse,
    score,
    smape,
    wape,
)
from forecasting._prophet import ProphetForecaster
from forecasting._run import run_forecasts
from forecasting._scenarios import (
    ColdSnap,
    Scenario,
    known_scenarios,
    normal_year,
    parse_scenario,
    read_temperature_file,
    register_scenario,
    scenario_temperature,
)
from forecasting._slp import StandardLoadProfile
from forecasting._statsmodels import ExponentialSmoothingForecaster, SarimaxForecaster
from forecasting.errors import (
    ForecastingError,
    InsufficientHistoryError,
    InvalidInputError,
    InvalidParameterError,
    MissingTemperatureError,
    NotFittedError,
    UnknownMeterError,
    UnknownScenarioError,
)

__all__ = [
    "DATASET_UNITS",
    "DAY_AHEAD_HOURLY",
    "METER_TEMPERATURE",
    "MONTH_AHEAD_DAILY",
    "AutoForecaster",
    "BacktestResult",
    "ColdSnap",
    "ExponentialSmoothingForecaster",
    "Forecaster",
    "ForecastingError",
    "Freq",
    "GlobalGradientBoosting",
    "HeatingDegreeRegression",
    "Hierarchy",
    "InsufficientHistoryError",
    "InvalidInputError",
    "InvalidParameterError",
    "MissingTemperatureError",
    "NotFittedError",
    "ProphetForecaster",
    "SarimaxForecaster",
    "Scenario",
    "SeasonalNaive",
    "StandardLoadProfile",
    "TrackRecordChoice",
    "UnknownMeterError",
    "UnknownScenarioError",
    "WeekdayHourMean",
    "aggregate",
    "auto",
    "backtest",
    "choose_by_track_record",
    "coverage",
    "interval_width",
    "known_scenarios",
    "load_cambridge_gas",
    "load_de_market_area_daily",
    "load_uk_nts_daily",
    "mae",
    "mase",
    "naive_scale",
    "normal_year",
    "parse_scenario",
    "read_temperature_file",
    "reconcile",
    "register_scenario",
    "rmse",
    "run_forecasts",
    "scenario_temperature",
    "score",
    "smape",
    "summing_matrix",
    "wape",
]
