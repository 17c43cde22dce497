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
from ingest._archive_files import (
    ArchiveImport,
    ArchiveMapping,
    ArchiveMappingError,
    RowError,
    load_archive_mapping,
    read_archive_file,
    write_archive_import,
)
from ingest._decode import decode_server
from ingest._device_profiles import (
    SHIPPED_PROFILES,
    DeviceProfile,
    ProfileError,
    ProfileRegistry,
    load_profile,
)
from ingest._wire import Frame, FrameError, Packet, Reason, ServerFrame, Transport

__all__ += [
    "SHIPPED_PROFILES",
    "ArchiveImport",
    "ArchiveMapping",
    "ArchiveMappingError",
    "DeviceProfile",
    "Frame",
    "FrameError",
    "Packet",
    "ProfileError",
    "ProfileRegistry",
    "Reason",
    "RowError",
    "ServerFrame",
    "Transport",
    "decode_server",
    "load_archive_mapping",
    "load_profile",
    "read_archive_file",
    "write_archive_import",
]

# --- L: landing, quarantine, edge security, scheduler, downlink --------------------------
from ingest._downlink import Command, list_commands, mark_delivered, queue_command, validate_command
from ingest._landing import EdgePolicy, Landing, Outcome, ReprocessSummary
from ingest._quarantine import list_quarantine, show_quarantine
from ingest._scheduler import (
    SessionPlan,
    SessionSchedule,
    minimum_window,
    next_sessions,
    parse_schedule,
    plan_sessions,
    schedule_figure,
)
from ingest._security import DeviceRegistration, Security, list_devices, register_devices
from ingest._stats import IngestStats, read_stats
from ingest.errors import CommandError, DeviceRegistrationError, ScheduleError

__all__ += [
    "Command",
    "CommandError",
    "DeviceRegistration",
    "DeviceRegistrationError",
    "EdgePolicy",
    "IngestStats",
    "Landing",
    "Outcome",
    "ReprocessSummary",
    "ScheduleError",
    "Security",
    "SessionPlan",
    "SessionSchedule",
    "list_commands",
    "list_devices",
    "list_quarantine",
    "mark_delivered",
    "minimum_window",
    "next_sessions",
    "parse_schedule",
    "plan_sessions",
    "queue_command",
    "read_stats",
    "register_devices",
    "schedule_figure",
    "show_quarantine",
    "validate_command",
]

# --- T: transports and the fleet sender ---------------------------------------------------
from ingest._send import (
    FaultRates,
    Fleet,
    FleetSender,
    SendReport,
    load_fleet_reference,
    register_fleet,
)
from ingest._transports import (
    IngestService,
    MqttConfig,
    ServiceConfig,
    TcpConfig,
    UdpConfig,
    write_broker_auth,
)
from ingest._transports.service import open_service

__all__ += [
    "FaultRates",
    "Fleet",
    "FleetSender",
    "IngestService",
    "MqttConfig",
    "SendReport",
    "ServiceConfig",
    "TcpConfig",
    "UdpConfig",
    "load_fleet_reference",
    "open_service",
    "register_fleet",
    "write_broker_auth",
]
