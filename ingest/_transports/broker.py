"""Mosquitto password file and per-device ACL, generated from the device registry.

Mosquitto stores only PBKDF2-SHA512 hashes in its password file; the plain secrets
(one per unit, the same secret the unit uses for its TCP ident) come from the
provisioning CSV that ``askug devices add`` prints (``device_id,secret``).  The ACL lets
each unit publish only to its own uplink topic and read only its own downlink topic, and
lets the ingest service user read every uplink and write every downlink::

    user askug-ingest
    topic read askug/up/#
    topic write askug/down/#

    user D0000001
    topic write askug/up/D0000001
    topic read askug/down/D0000001
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from ingest.errors import IngestError, IngestFileError

__all__ = ["BrokerAuth", "read_secrets_csv", "write_broker_auth"]

_NAME: Final = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


@dataclasses.dataclass(frozen=True)
class BrokerAuth:
    """Files written by :func:`write_broker_auth`."""

    password_file: Path
    acl_file: Path
    devices: int


def read_secrets_csv(path: str | Path) -> dict[str, str]:
    """``{device_id: secret}`` from a CSV with a ``device_id,secret`` header.

    Raises
    ------
    IngestFileError
        When the file is missing, has another header, or a row is empty or repeated.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise IngestFileError(f"cannot read secrets file {p}: {exc.strerror}; pass the CSV written by `askug devices add`") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip() for c in rows[0][:2]] != ["device_id", "secret"]:
        raise IngestFileError(f"{p} line 1: header must be 'device_id,secret'; fix the first line")
    out: dict[str, str] = {}
    for i, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2 or not row[0].strip() or not row[1]:
            raise IngestFileError(f"{p} line {i}: need a device_id and a secret; fix or remove the line")
        device = row[0].strip()
        if device in out:
            raise IngestFileError(f"{p} line {i}: device {device!r} is listed twice; keep one line per device")
        out[device] = row[1]
    return out


def _check_name(name: str, what: str) -> None:
    if not _NAME.match(name):
        raise IngestError(f"{what} {name!r} cannot be a broker user name (letters, digits, _ . - only, ≤ 64); rename it")


def write_broker_auth(
    out_dir: str | Path,
    secrets: Mapping[str, str],
    *,
    ingest_user: str,
    ingest_password: str,
    devices: Iterable[str] | None = None,
    passwd_bin: str = "mosquitto_passwd",
) -> BrokerAuth:
    """Write ``passwords`` (hashed with ``mosquitto_passwd -U``) and ``acl`` into ``out_dir``.

    Parameters
    ----------
    out_dir
        Folder for the two files (created; the files are replaced atomically).
    secrets
        Plain secret per device id.
    ingest_user, ingest_password
        Broker account of the ingest service.
    devices
        The registered devices (the registry); only these get an account.  ``None`` =
        every device in ``secrets``.  A registered device without a secret is an error.
    passwd_bin
        The ``mosquitto_passwd`` program.

    Raises
    ------
    IngestError
        When a registered device has no secret, a name cannot be a broker user, or
        ``mosquitto_passwd`` is missing or fails.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = sorted(secrets) if devices is None else sorted(set(devices))
    missing = [d for d in ids if d not in secrets]
    if missing:
        raise IngestError(
            f"{len(missing)} registered device(s) have no secret, e.g. {missing[0]!r}; "
            "add them to the secrets CSV (or re-issue their credentials with `askug devices add`)"
        )
    _check_name(ingest_user, "ingest user")
    for d in ids:
        _check_name(d, "device id")
    if ingest_user in ids:
        raise IngestError(f"ingest user {ingest_user!r} is also a device id; choose another --ingest-user")
    exe = shutil.which(passwd_bin)
    if exe is None:
        raise IngestError(f"{passwd_bin} not found; install mosquitto (apt-get install mosquitto) or pass its path")
    acl_lines = ["# written by askug ingest broker-config", f"user {ingest_user}", "topic read askug/up/#", "topic write askug/down/#", ""]
    for d in ids:
        acl_lines += [f"user {d}", f"topic write askug/up/{d}", f"topic read askug/down/{d}", ""]
    fd, tmp_name = tempfile.mkstemp(prefix=".passwords-", dir=out)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{ingest_user}:{ingest_password}\n")
            for d in ids:
                secret = secrets[d]
                if ":" in secret or "\n" in secret:
                    raise IngestError(f"the secret of {d!r} contains ':' or a newline; issue a new secret")
                f.write(f"{d}:{secret}\n")
        res = subprocess.run([exe, "-U", str(tmp)], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise IngestError(f"mosquitto_passwd -U failed: {(res.stderr or res.stdout).strip()}")
        tmp.chmod(0o600)
        password_file = out / "passwords"
        os.replace(tmp, password_file)
    finally:
        tmp.unlink(missing_ok=True)
    acl_file = out / "acl"
    tmp_acl = out / ".acl.tmp"
    tmp_acl.write_text("\n".join(acl_lines), encoding="utf-8")
    os.replace(tmp_acl, acl_file)
    return BrokerAuth(password_file, acl_file, len(ids))
