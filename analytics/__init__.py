"""askug analytics: frames in, frames out, on top of the warehouse's public API.

So far: expected consumption from the stored forecasts and the colour-coded deviation
table of actual against expected consumption.
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

__all__ = [
    "AMBER",
    "DEVIATION_SCHEMA",
    "EXPECTED_SCHEMA",
    "GREEN",
    "GREEN_PCT",
    "GREY",
    "RED",
    "RED_PCT",
    "deviation_colour",
    "deviation_table",
    "expected_consumption",
    "latest_backcast",
    "latest_forecast",
]
