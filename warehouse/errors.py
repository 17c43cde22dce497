"""Exceptions raised by the warehouse.  Each message says what was expected, what
arrived and how to fix it, so the command line can print it as one line."""

from __future__ import annotations


class WarehouseError(RuntimeError):
    """Base class of every warehouse error."""


class ContractError(WarehouseError, ValueError):
    """A frame does not match its contract (missing/mistyped columns, nulls, bad codes)."""


class SchemaVersionError(WarehouseError):
    """The store's schema version differs from the one this code expects."""


class StoreUnavailableError(WarehouseError, ConnectionError):
    """The store cannot be reached or opened (bad DSN, server down, file locked)."""


class MigrationError(WarehouseError):
    """A migration failed; the store was left at its previous version."""
