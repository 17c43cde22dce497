"""Downlink commands: validated per device kind, queued, delivered at the unit's next
session, acknowledged by the unit.

Lifecycle (``downlink_commands.status``)::

    queued ──delivered at a session──▶ delivered ──ack in an uplink frame──▶ acknowledged
       │                                 │ (no ack: delivered again at the next session,
       └──────────── cancelled ◀─────────┘  ``attempts`` counts the deliveries)

Commands and who may receive them:

=================  ===========================  =========================================
kind               devices                      payload
=================  ===========================  =========================================
``schedule``       every unit                   ``{"group": ..., "sessions": [...],
                                                "offset_s": ...}`` (its new schedule)
``valve``          ``household_unit``           ``{"action": "close" | "open"}``
``gas_parameters`` ``corrector``                ``{"density_kg_m3": 0.55–1.0,
                                                "co2_mol_pct": 0–20, "n2_mol_pct": 0–20}``
                                                (at least one)
``firmware``       every unit                   ``{"version": "1.2.3", "url"?: ...}``
=================  ===========================  =========================================
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import polars as pl

from ingest.errors import CommandError
from warehouse import Store
from warehouse import _landing as wl
from warehouse._schemas import COMMAND_KINDS

#: Gas parameter → inclusive plausible range.
GAS_PARAMETERS: Final = {
    "density_kg_m3": (0.55, 1.0),  # standard density of natural gas
    "co2_mol_pct": (0.0, 20.0),
    "n2_mol_pct": (0.0, 20.0),
}
_VERSION: Final = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}$")


@dataclass(frozen=True)
class Command:
    """A downlink command as stored (``payload`` decoded from JSON)."""

    command_id: int
    device_id: str
    kind: str
    payload: dict[str, Any]
    status: str
    created_at: dt.datetime
    delivered_at: dt.datetime | None = None
    acknowledged_at: dt.datetime | None = None
    attempts: int = 0


def validate_command(kind: str, payload: Mapping[str, Any], device_kind: str | None) -> dict[str, Any]:
    """Check a command for a unit of ``device_kind``; return the normalised payload.

    Raises
    ------
    CommandError
        Unknown kind, a command the device kind does not support, or a bad payload.
    """
    if kind not in COMMAND_KINDS:
        raise CommandError(f"unknown command {kind!r}; one of {', '.join(COMMAND_KINDS)}")
    p = dict(payload)
    if kind == "valve":
        if device_kind != "household_unit":
            raise CommandError(
                f"valve commands are for household units only; this unit is a {device_kind or 'unit of unknown kind'}"
            )
        action = p.get("action")
        if action not in ("close", "open"):
            raise CommandError(f"valve action must be 'close' or 'open', got {action!r}")
        return {"action": action}
    if kind == "gas_parameters":
        if device_kind != "corrector":
            raise CommandError(
                f"gas parameters are for volume correctors only; this unit is a {device_kind or 'unit of unknown kind'}"
            )
        unknown = sorted(set(p) - set(GAS_PARAMETERS))
        if unknown:
            raise CommandError(f"unknown gas parameter {unknown[0]!r}; use {', '.join(GAS_PARAMETERS)}")
        if not p:
            raise CommandError("give at least one gas parameter: density, CO2 or N2")
        out: dict[str, Any] = {}
        for name, value in p.items():
            lo, hi = GAS_PARAMETERS[name]
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or not lo <= value <= hi:
                raise CommandError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}")
            out[name] = float(value)
        if out.get("co2_mol_pct", 0.0) + out.get("n2_mol_pct", 0.0) > 30.0:
            raise CommandError("CO2 + N2 above 30 mol % is not natural gas; check the values")
        return out
    if kind == "firmware":
        version = p.get("version")
        if not isinstance(version, str) or not _VERSION.match(version):
            raise CommandError(f"firmware version must look like 1.2.3, got {version!r}")
        out = {"version": version}
        if p.get("url") is not None:
            out["url"] = str(p["url"])
        return out
    # schedule
    sessions = p.get("sessions")
    if not isinstance(sessions, list) or not sessions:
        raise CommandError("a schedule command needs a non-empty 'sessions' list (see `askug schedule show`)")
    return p


def device_kind(store: Store, device_id: str) -> str | None:
    """Kind of a unit: the ``devices`` table's, else the registry's; None if unknown."""
    ref = store.read("devices", where={"device_id": [device_id]}, columns=["kind"])
    if ref.height:
        return str(ref.item(0, "kind"))
    reg = store.read("device_credentials", where={"device_id": [device_id]}, columns=["kind"])
    if reg.height and reg.item(0, "kind") is not None:
        return str(reg.item(0, "kind"))
    return None


def queue_command(
    store: Store,
    device_id: str,
    kind: str,
    payload: Mapping[str, Any],
    *,
    now: dt.datetime | None = None,
) -> Command:
    """Validate and queue a command for ``device_id``; it goes out at the unit's next session.

    Raises
    ------
    CommandError
        The unit is not registered, or the command does not suit it.
    """
    known = store.read("device_credentials", where={"device_id": [device_id]}, columns=["device_id"])
    if known.height == 0:
        raise CommandError(f"device {device_id} is not registered; register it with `askug devices add`")
    clean = validate_command(kind, payload, device_kind(store, device_id))
    at = now or dt.datetime.now(dt.UTC)
    cid = wl.queue_command(
        store, device_id=device_id, kind=kind, payload=json.dumps(clean, sort_keys=True), created_at=at
    )
    return Command(cid, device_id, kind, clean, "queued", at)


def list_commands(
    store: Store,
    *,
    device_id: str | None = None,
    status: str | None = None,
    pending: bool = False,
) -> list[Command]:
    """Commands, oldest first; ``pending`` = queued or delivered but not acknowledged."""
    if pending and device_id is not None:
        return pending_commands(store, [device_id])
    where: dict[str, list[Any]] = {}
    if device_id is not None:
        where["device_id"] = [device_id]
    if pending:
        where["status"] = ["queued", "delivered"]
    elif status is not None:
        where["status"] = [status]
    return _read_commands(store, where)


def _read_commands(store: Store, where: dict[str, list[Any]]) -> list[Command]:
    """Commands matching ``where`` by the store's generic read, oldest first."""
    rows = store.read("downlink_commands", where=where or None)
    return [_command(r) for r in rows.sort("command_id").iter_rows(named=True)]


def pending_commands(store: Store, device_ids: Sequence[str]) -> list[Command]:
    """The pending commands of ``device_ids``, oldest first (one indexed query on PostgreSQL)."""
    rows = wl.pending_commands(store, device_ids)
    if rows is None:  # no fast path on this backend: the generic read
        return _read_commands(store, {"device_id": list(device_ids), "status": ["queued", "delivered"]})
    return [_command(r) for r in rows]


def mark_delivered(store: Store, command_id: int, at: dt.datetime) -> bool:
    """Record a delivery of a pending command (False if it is not pending any more)."""
    return wl.mark_command_delivered(store, command_id, at)


def cancel_command(store: Store, command_id: int) -> bool:
    """Cancel a pending command (False if it was acknowledged or cancelled already)."""
    return wl.cancel_command(store, command_id)


def commands_frame(commands: list[Command]) -> pl.DataFrame:
    """Commands as a frame (for the CLI and notebooks)."""
    return pl.DataFrame(
        {
            "command_id": [c.command_id for c in commands],
            "device_id": [c.device_id for c in commands],
            "kind": [c.kind for c in commands],
            "payload": [json.dumps(c.payload, sort_keys=True) for c in commands],
            "status": [c.status for c in commands],
            "created_at": [c.created_at for c in commands],
            "delivered_at": [c.delivered_at for c in commands],
            "acknowledged_at": [c.acknowledged_at for c in commands],
            "attempts": [c.attempts for c in commands],
        },
        schema_overrides={
            "command_id": pl.Int64,
            "device_id": pl.String,
            "kind": pl.String,
            "payload": pl.String,
            "status": pl.String,
            "created_at": pl.Datetime("us", "UTC"),
            "delivered_at": pl.Datetime("us", "UTC"),
            "acknowledged_at": pl.Datetime("us", "UTC"),
            "attempts": pl.Int32,
        },
    )


def _command(r: Mapping[str, Any]) -> Command:
    return Command(
        command_id=int(r["command_id"]),
        device_id=str(r["device_id"]),
        kind=str(r["kind"]),
        payload=json.loads(r["payload"]),
        status=str(r["status"]),
        created_at=r["created_at"],
        delivered_at=r["delivered_at"],
        acknowledged_at=r["acknowledged_at"],
        attempts=int(r["attempts"]),
    )
