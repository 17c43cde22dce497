"""Edge security: per-device credentials (only hashes stored) and the device registry.

A unit proves who it is with a random secret issued at registration (``askug devices
add`` prints it once).  The store keeps only ``scrypt$n$r$p$salt$hash`` in
``device_credentials``; :meth:`Security.verify` checks a presented secret in constant
time.  Secrets are random (192 bits), so the scrypt cost only has to make a stolen table
useless, not slow down guessing of a human password: the default cost ``n = 2**12``
takes ~16 ms per check, and a verified secret is remembered per process (as a SHA-256 of
it next to the stored hash) so a reconnecting unit costs nothing.  The cost is recorded
in each hash, so it can be raised for new registrations at any time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import polars as pl

from ingest.errors import DeviceRegistrationError
from warehouse import Store
from warehouse._landing import credential_hash
from warehouse._schemas import DEVICE_KINDS

SCRYPT_N: Final = 2**12
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
DEFAULT_GROUP: Final = "default"
_DEVICE_ID: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_DIGITS: Final = re.compile(r"(\d+)$")


def new_secret() -> str:
    """A fresh random device secret (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


def hash_secret(secret: str | bytes, *, cost: int = SCRYPT_N) -> str:
    """``scrypt$n$r$p$salt_hex$hash_hex`` of ``secret`` with a fresh 16-byte salt.

    ``cost`` is scrypt's ``n`` (a power of two ≥ 2).
    """
    if cost < 2 or cost & (cost - 1):
        raise DeviceRegistrationError(f"scrypt cost must be a power of two ≥ 2, got {cost}")
    raw = secret.encode() if isinstance(secret, str) else secret
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(raw, salt=salt, n=cost, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${cost}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_secret(secret: str | bytes, hashed: str) -> bool:
    """True when ``secret`` matches ``hashed`` (from :func:`hash_secret`); constant time."""
    raw = secret.encode() if isinstance(secret, str) else secret
    try:
        algo, n, r, p, salt, digest = hashed.split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(
            raw, salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(digest) // 2
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, bytes.fromhex(digest))


@dataclass(frozen=True)
class DeviceRegistration:
    """One unit to register: its id, profile and (optionally) kind, serial and group."""

    device_id: str
    profile: str
    kind: str | None = None
    serial: int | None = None
    group: str = DEFAULT_GROUP


class Security:
    """Credential checks against the store's ``device_credentials``.

    Parameters
    ----------
    store
        A migrated store.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._ok: dict[str, tuple[str, bytes]] = {}
        self._lock = threading.Lock()

    def verify(self, device_id: str, secret: str | bytes) -> bool:
        """True when ``device_id`` is registered and ``secret`` is its credential.

        An unknown device and a wrong secret both give False (no oracle for ids).
        """
        stored = credential_hash(self.store, device_id)
        if stored is None:
            # Spend the same time as a real check, so a probe cannot tell the cases apart.
            check_secret(secret, _DUMMY_HASH)
            return False
        hashed = stored
        raw = secret.encode() if isinstance(secret, str) else bytes(secret)
        fingerprint = hashlib.sha256(raw).digest()
        with self._lock:
            cached = self._ok.get(device_id)
        if cached is not None and cached[0] == hashed and hmac.compare_digest(cached[1], fingerprint):
            return True
        if not check_secret(raw, hashed):
            return False
        with self._lock:
            self._ok[device_id] = (hashed, fingerprint)
        return True


_DUMMY_HASH: Final = hash_secret(b"askug-dummy")


def register_devices(
    store: Store,
    devices: Sequence[DeviceRegistration],
    *,
    rotate: bool = False,
    cost: int = SCRYPT_N,
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """Register units (or issue new secrets with ``rotate``) and return their secrets.

    The secrets are returned once and never stored; print or hand them to the units.

    Parameters
    ----------
    devices
        The units.  ``kind`` defaults to the ``devices`` table's kind of that id.
    rotate
        Allow ids that are already registered: they get a new secret (and the given
        profile/group); without it such an id is an error.
    cost
        scrypt ``n``.  Secrets are random, so a low cost (e.g. ``2**4`` for a test fleet
        of 100,000 simulated units) is still safe against a stolen table.

    Raises
    ------
    DeviceRegistrationError
        A malformed id, an unknown kind, an id twice, or an id already registered.
    """
    if not devices:
        return {}
    ids = [d.device_id for d in devices]
    bad = [i for i in ids if not _DEVICE_ID.match(i)]
    if bad:
        raise DeviceRegistrationError(
            f"device id {bad[0]!r} is not valid; use 1–64 letters, digits or _.:- (e.g. D0000123)"
        )
    twice = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if twice:
        raise DeviceRegistrationError(f"device id {twice[0]!r} is listed twice; list each unit once")
    for d in devices:
        if d.kind is not None and d.kind not in DEVICE_KINDS:
            raise DeviceRegistrationError(
                f"device {d.device_id}: kind {d.kind!r} is not one of {', '.join(DEVICE_KINDS)}"
            )
        if not d.profile:
            raise DeviceRegistrationError(f"device {d.device_id}: give its profile (e.g. household-nb)")
    existing = store.read("device_credentials", where={"device_id": ids}, columns=["device_id"])
    if existing.height and not rotate:
        first = existing.item(0, "device_id")
        raise DeviceRegistrationError(
            f"device {first} is already registered ({existing.height} of {len(ids)} are); "
            "pass --rotate to issue new secrets"
        )
    ref = store.read("devices", where={"device_id": ids}, columns=["device_id", "kind"])
    ref_kind = dict(zip(ref["device_id"].to_list(), ref["kind"].to_list(), strict=True))
    issued = {d.device_id: new_secret() for d in devices}
    at = now or dt.datetime.now(dt.UTC)
    frame = pl.DataFrame(
        {
            "device_id": ids,
            "profile": [d.profile for d in devices],
            "serial": [d.serial if d.serial is not None else _serial(d.device_id) for d in devices],
            "kind": [d.kind or ref_kind.get(d.device_id) for d in devices],
            "device_group": [d.group or DEFAULT_GROUP for d in devices],
            "secret_hash": [hash_secret(issued[d.device_id], cost=cost) for d in devices],
            "registered_at": [at] * len(ids),
        },
        schema_overrides={"serial": pl.Int64, "kind": pl.String},
    )
    store.replace("device_credentials", frame, where={"device_id": ids})
    return issued


def list_devices(store: Store, *, group: str | None = None) -> pl.DataFrame:
    """Registered units without their hashes, with last contact (``device_counters``)."""
    creds = store.read(
        "device_credentials",
        where={"device_group": [group]} if group else None,
        columns=["device_id", "profile", "serial", "kind", "device_group", "registered_at"],
    )
    counters = store.read(
        "device_counters",
        where={"device_id": creds["device_id"].to_list()} if creds.height else {"device_id": []},
    )
    return creds.join(counters, on="device_id", how="left").sort("device_id")


def _serial(device_id: str) -> int | None:
    m = _DIGITS.search(device_id)
    if not m:
        return None
    value = int(m.group(1))
    return value if value <= 0xFFFFFFFF else None
