"""askug analytics: frames in, frames out, on top of the warehouse's public API.

Expected consumption and the colour-coded deviation table; VEE (validation, estimation,
editing) with its audit trail; consolidated gas-day cubes and the universal report;
streamed exports and the billing upload; gas balance, limit discipline and weather
normalisation.  See ``analytics/README.md``.
"""

from analytics._deviation import (
    AMBER,
    DEVIATION_SCHEMA,
    GREEN,
    GREEN_PCT,
    GREY,
    RED,
    RED_PCT,
    deviation_colour,
    deviation_table,
)
from analytics._expected import (
    EXPECTED_SCHEMA,
    expected_consumption,
    latest_backcast,
    latest_forecast,
)
from analytics.errors import AnalyticsError

__all__ = [
    "AMBER",
    "DEVIATION_SCHEMA",
    "EXPECTED_SCHEMA",
    "GREEN",
    "GREEN_PCT",
    "GREY",
    "RED",
    "RED_PCT",
    "AnalyticsError",
    "deviation_colour",
    "deviation_table",
    "expected_consumption",
    "latest_backcast",
    "latest_forecast",
]

# --- VEE: validation, estimation, editing, audit ---------------------------------------

# --- gas-day cubes and the universal report ---------------------------------------------

# --- exports and the billing upload -----------------------------------------------------

# --- gas balance, limit discipline, weather normalisation -------------------------------
