"""Quarantine: every packet landing could not store, once, with its bytes and a reason.

``askug quarantine list`` shows them, ``show`` prints one (hex dump and the reason), and
``reprocess`` runs them again through the current profiles and policy after a fix
(:meth:`ingest.Landing.reprocess`).  Rows stay after a successful reprocess, marked with
``reprocessed_at``, so the audit trail is complete.
"""

from __future__ import annotations

import polars as pl

from ingest._wire import Reason
from ingest.errors import IngestError
from warehouse import Store


def list_quarantine(
    store: Store,
    *,
    reason: str | None = None,
    device_id: str | None = None,
    include_reprocessed: bool = False,
    limit: int | None = None,
) -> pl.DataFrame:
    """Quarantined packets, oldest first (``raw_hex`` left out; see :func:`show_quarantine`).

    Raises
    ------
    IngestError
        ``reason`` is not one of the closed set.
    """
    where: dict[str, list[str]] = {}
    if reason is not None:
        where["reason"] = [_reason(reason)]
    if device_id is not None:
        where["device_id"] = [device_id]
    cols = ["sha256", "received_at", "transport", "device_id", "profile", "counter", "reason", "detail", "reprocessed_at"]
    rows = store.read("quarantine", where=where or None, columns=cols)
    if not include_reprocessed:
        rows = rows.filter(pl.col("reprocessed_at").is_null())
    rows = rows.sort("received_at", "sha256")
    return rows.head(limit) if limit is not None else rows


def show_quarantine(store: Store, sha_prefix: str) -> dict[str, object]:
    """One quarantined packet by (a unique prefix of) its SHA-256, with its raw bytes.

    Raises
    ------
    IngestError
        No packet or more than one packet starts with ``sha_prefix``.
    """
    prefix = sha_prefix.strip().lower()
    if len(prefix) < 6:
        raise IngestError(f"give at least 6 hex digits of the packet's sha256, got {sha_prefix!r}")
    shas = store.read("quarantine", columns=["sha256"]).filter(pl.col("sha256").str.starts_with(prefix))
    if shas.height == 0:
        raise IngestError(f"no quarantined packet has a sha256 starting with {prefix}; see `askug quarantine list`")
    if shas.height > 1:
        raise IngestError(f"{shas.height} quarantined packets start with {prefix}; give more digits")
    row = store.read("quarantine", where={"sha256": [shas.item(0, 0)]}).row(0, named=True)
    return dict(row)


def hexdump(raw: bytes, *, width: int = 16) -> list[str]:
    """Classic offset / hex / ASCII lines of ``raw``."""
    out = []
    for i in range(0, len(raw), width):
        chunk = raw[i : i + width]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        out.append(f"{i:06x}  {chunk.hex(' '):<{width * 3}} {text}")
    return out


def _reason(text: str) -> str:
    try:
        return str(Reason(text))
    except ValueError:
        known = ", ".join(r.value for r in Reason)
        raise IngestError(f"unknown quarantine reason {text!r}; one of {known}") from None
