"""Credentials (hash only, constant-time check) and downlink command validation."""

from __future__ import annotations

import polars as pl
import pytest

from ingest._downlink import list_commands, mark_delivered, queue_command, validate_command
from ingest._security import (
    DeviceRegistration,
    Security,
    check_secret,
    hash_secret,
    register_devices,
)
from ingest.errors import CommandError, DeviceRegistrationError
from warehouse import open_store


def test_hash_and_check() -> None:
    h = hash_secret("s3cret", cost=16)
    assert h.startswith("scrypt$16$8$1$") and "s3cret" not in h
    assert check_secret("s3cret", h) and check_secret(b"s3cret", h)
    assert not check_secret("other", h)
    assert not check_secret("s3cret", "garbage")
    assert hash_secret("s3cret", cost=16) != h  # salted


def test_register_verify_rotate() -> None:
    store = open_store(path=":memory:")
    store.migrate()
    secrets = register_devices(store, [DeviceRegistration("D0000042", "household-nb", kind="household_unit")], cost=16)
    stored = store.read("device_credentials")
    assert stored["serial"].to_list() == [42]
    assert secrets["D0000042"] not in str(stored.to_dicts())
    sec = Security(store)
    assert sec.verify("D0000042", secrets["D0000042"])
    assert sec.verify("D0000042", secrets["D0000042"].encode())  # cached path
    assert not sec.verify("D0000042", "wrong")
    assert not sec.verify("D0000099", secrets["D0000042"])
    with pytest.raises(DeviceRegistrationError, match="already registered"):
        register_devices(store, [DeviceRegistration("D0000042", "household-nb")], cost=16)
    new = register_devices(store, [DeviceRegistration("D0000042", "household-nb")], rotate=True, cost=16)
    assert not sec.verify("D0000042", secrets["D0000042"])
    assert sec.verify("D0000042", new["D0000042"])
    with pytest.raises(DeviceRegistrationError, match="not valid"):
        register_devices(store, [DeviceRegistration("bad id", "p")], cost=16)


@pytest.mark.parametrize(
    ("kind", "payload", "device", "error"),
    [
        ("valve", {"action": "close"}, "corrector", "household units only"),
        ("valve", {"action": "shut"}, "household_unit", "close' or 'open"),
        ("gas_parameters", {"co2_mol_pct": 1.0}, "household_unit", "correctors only"),
        ("gas_parameters", {"density_kg_m3": 5.0}, "corrector", r"\[0.55, 1\]"),
        ("gas_parameters", {"h2": 1.0}, "corrector", "unknown gas parameter"),
        ("gas_parameters", {}, "corrector", "at least one"),
        ("firmware", {"version": "../../etc"}, "gdp_unit", "version"),
        ("schedule", {}, "gdp_unit", "sessions"),
        ("reboot", {}, "gdp_unit", "unknown command"),
    ],
)
def test_command_validation_rejects(kind: str, payload: dict[str, object], device: str, error: str) -> None:
    with pytest.raises(CommandError, match=error):
        validate_command(kind, payload, device)


def test_command_lifecycle() -> None:
    import datetime as dt

    store = open_store(path=":memory:")
    store.migrate()
    store.write("devices", pl.DataFrame({"device_id": ["D1"], "kind": ["household_unit"]}))
    register_devices(store, [DeviceRegistration("D1", "household-nb")], cost=16)
    assert validate_command("valve", {"action": "open"}, "household_unit") == {"action": "open"}
    with pytest.raises(CommandError, match="not registered"):
        queue_command(store, "D2", "firmware", {"version": "1.0"})
    c1 = queue_command(store, "D1", "valve", {"action": "close"})
    c2 = queue_command(store, "D1", "firmware", {"version": "2.1.0"})
    assert c2.command_id > c1.command_id
    t = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert mark_delivered(store, c1.command_id, t)
    pending = list_commands(store, device_id="D1", pending=True)
    assert [(c.command_id, c.status, c.attempts) for c in pending] == [
        (c1.command_id, "delivered", 1),
        (c2.command_id, "queued", 0),
    ]
