"""Exceptions raised by ``ingest``.  Each message is one line: what is wrong, where,
and how to fix it."""

from __future__ import annotations


class IngestError(RuntimeError):
    """Base class of every ingest error."""


class SimulationConfigError(IngestError, ValueError):
    """A :class:`~ingest.SimulationConfig` option is outside its allowed range."""


class IngestFileError(IngestError, ValueError):
    """An input file (simulation output, archive dump) is missing or malformed."""


# --- L: landing, edge security, scheduler, downlink ---------------------------------------
class DeviceRegistrationError(IngestError, ValueError):
    """A device cannot be registered as asked (bad id, unknown kind, already registered)."""


class ScheduleError(IngestError, ValueError):
    """A session schedule is invalid or its concurrency bound cannot be met."""


class CommandError(IngestError, ValueError):
    """A downlink command is invalid for the device it is addressed to."""
