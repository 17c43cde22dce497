"""The detector base class every alert rule follows (STYLE §2).

``__init__`` stores keyword-only parameters unchanged; the public :meth:`Detector.detect`
checks the input contracts, calls the private ``_detect`` hook and checks that the
result is a valid ``alerts`` frame, so a new rule writes only the hook.
"""

from __future__ import annotations

import abc
import inspect
from typing import Any, ClassVar

import polars as pl

from anomalies.errors import InvalidInputError
from warehouse import ContractError, TableSpec, validate_frame
from warehouse._schemas import ALERTS, DEVICES, READINGS


class Detector(abc.ABC):
    """Base class of the alert rules: readings in, ``alerts`` frame out.

    Subclasses set :attr:`alias` (the ``rule`` column of their alerts), take
    keyword-only parameters in ``__init__`` and store them unchanged, and implement
    ``_detect``.  Detection is stateless: the same readings always give the same alerts
    with the same deterministic ``alert_id``, so re-running is idempotent.
    """

    alias: ClassVar[str]

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]

    def get_params(self) -> dict[str, Any]:
        """The parameters as given to ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def __repr__(self) -> str:
        def show(v: Any) -> str:
            return f"<frame {v.height}x{v.width}>" if isinstance(v, pl.DataFrame) else repr(v)

        return f"{type(self).__name__}({', '.join(f'{k}={show(v)}' for k, v in self.get_params().items())})"

    def detect(self, readings: pl.DataFrame, devices: pl.DataFrame | None = None) -> pl.DataFrame:
        """Find rule violations in telemetry readings.

        Parameters
        ----------
        readings
            The ``readings`` contract: ``device_id``, ``channel``, ``ts`` (UTC), ``value``
            (unit in the channel name; null = missing, never alerts), ``quality``, ….
        devices
            The ``devices`` table, for rules that map a device to its network node or
            metering point.

        Returns
        -------
        polars.DataFrame
            A frame valid against the ``alerts`` contract, sorted by ``ts_start``,
            ``object_id`` and ``channel``; empty when nothing is violated.

        Raises
        ------
        InvalidInputError
            A frame breaks its contract, or a rule needs ``devices`` and got none.
        InvalidParameterError
            The rule's parameters are impossible (checked here, not in ``__init__``).
        """
        self._validate_params()
        readings = check_frame(readings, READINGS, "readings")
        if devices is not None:
            devices = check_frame(devices, DEVICES, "devices")
        alerts = self._detect(readings, devices)
        return validate_frame(alerts, ALERTS).sort("ts_start", "object_id", "channel")

    def _validate_params(self) -> None:
        """Raise :class:`~anomalies.errors.InvalidParameterError` for impossible parameters."""

    @abc.abstractmethod
    def _detect(self, readings: pl.DataFrame, devices: pl.DataFrame | None) -> pl.DataFrame:
        """Return the alerts (``alerts`` columns) of validated readings."""


def check_frame(frame: object, contract: TableSpec, what: str) -> pl.DataFrame:
    """Validate ``frame`` against ``contract``; contract problems become :class:`InvalidInputError`."""
    if not isinstance(frame, pl.DataFrame):
        raise InvalidInputError(
            f"{what}: expected a polars.DataFrame with columns {list(contract.schema)}, got "
            f"{type(frame).__name__}; convert it with polars.from_pandas(...) or pl.DataFrame(...)"
        )
    try:
        return validate_frame(frame, contract)
    except ContractError as exc:
        raise InvalidInputError(f"{what}: {exc}") from exc


def empty_alerts() -> pl.DataFrame:
    """An ``alerts`` frame with no rows."""
    return pl.DataFrame(schema=ALERTS.schema)
