"""askug ingest: the fleet simulator, file import and register → consumption conversion.

Public API::

    SimulationConfig, simulate, SimulationSummary    # synthetic enterprise + telemetry files
    load_simulation, LoadSummary                     # validate and load those files into a Store
    readings_to_hourly                               # cumulative registers -> hourly consumption
    IngestError, IngestFileError, SimulationConfigError

All timestamps are UTC; volumes are m³ at standard conditions unless named ``work``.
"""

from ingest._counters import readings_to_hourly
from ingest._files import LoadSummary, load_simulation
from ingest._simulator import SimulationConfig, SimulationSummary, simulate
from ingest.errors import IngestError, IngestFileError, SimulationConfigError

__all__ = [
    "IngestError",
    "IngestFileError",
    "LoadSummary",
    "SimulationConfig",
    "SimulationConfigError",
    "SimulationSummary",
    "load_simulation",
    "readings_to_hourly",
    "simulate",
]

# --- P: device profiles, frames, archive files -----------------------------------------

# --- L: landing, quarantine, edge security, scheduler, downlink --------------------------

# --- T: transports and the fleet sender ---------------------------------------------------
