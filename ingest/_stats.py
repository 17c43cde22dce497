"""Landing's packet counters: received = stored + duplicates + quarantined, exactly.

Every packet handed to :meth:`ingest.Landing.submit` adds one to *received* and one to
exactly one outcome, in the same transaction as the data, in ``ingest_counters`` (per
UTC day of receipt, transport, outcome and quarantine reason; rows are sharded per
writer process and summed here).  A reprocess that stores a quarantined packet moves it
from *quarantined* to *stored* on the day and transport it was received and adds one to
*reprocessed* (informational: not part of the equation); received never changes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl

from warehouse import Store


@dataclass(frozen=True)
class IngestStats:
    """Packet counters of landing, from the database (they survive restarts).

    Attributes
    ----------
    received, stored, duplicates, quarantined
        Packets; ``received == stored + duplicates + quarantined``.
    reprocessed
        Quarantined packets a later reprocess stored (already counted in ``stored``).
    readings
        Values (readings + archive records) the stored frames delivered.
    by_transport
        ``{transport: {"received": n, "stored": n, "duplicates": n, "quarantined": n}}``.
    by_reason
        Quarantined packets per reason (sum = ``quarantined``).
    """

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    reprocessed: int = 0
    readings: int = 0
    by_transport: dict[str, dict[str, int]] = field(default_factory=dict)
    by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        """True when received = stored + duplicates + quarantined, overall and per transport."""
        if self.received != self.stored + self.duplicates + self.quarantined:
            return False
        if sum(self.by_reason.values()) != self.quarantined:
            return False
        return all(
            t["received"] == t["stored"] + t["duplicates"] + t["quarantined"]
            for t in self.by_transport.values()
        )

    def lines(self) -> list[str]:
        """Human-readable lines (``askug ingest stats``)."""
        eq = "holds" if self.balanced else "DOES NOT HOLD"
        out = [
            (
                f"received {self.received:,} = stored {self.stored:,} + duplicates "
                f"{self.duplicates:,} + quarantined {self.quarantined:,}  ({eq})"
            ),
            f"values stored {self.readings:,}; reprocessed from quarantine {self.reprocessed:,}",
        ]
        for name, t in sorted(self.by_transport.items()):
            out.append(
                f"  {name:<5} received {t['received']:,}  stored {t['stored']:,}  "
                f"duplicates {t['duplicates']:,}  quarantined {t['quarantined']:,}"
            )
        for reason, n in sorted(self.by_reason.items()):
            if n:
                out.append(f"  quarantined {reason:<16} {n:,}")
        return out


_KEYS = {"received": "received", "stored": "stored", "duplicate": "duplicates", "quarantined": "quarantined"}


def read_stats(store: Store, *, since: dt.date | None = None) -> IngestStats:
    """Sum ``ingest_counters`` (from UTC day ``since`` on, default all)."""
    rows = store.read("ingest_counters")
    if since is not None:
        rows = rows.filter(pl.col("day") >= since)
    totals = rows.group_by("transport", "outcome", "reason").agg(
        pl.col("packets").sum(), pl.col("readings").sum()
    )
    by_transport: dict[str, dict[str, int]] = {}
    by_reason: dict[str, int] = {}
    sums = dict.fromkeys(("received", "stored", "duplicates", "quarantined", "reprocessed"), 0)
    values = 0
    for r in totals.iter_rows(named=True):
        outcome = str(r["outcome"])
        n = int(r["packets"])
        if outcome == "reprocessed":
            sums["reprocessed"] += n
            continue
        key = _KEYS[outcome]
        sums[key] += n
        t = by_transport.setdefault(
            str(r["transport"]), dict.fromkeys(("received", "stored", "duplicates", "quarantined"), 0)
        )
        t[key] += n
        if outcome == "quarantined":
            by_reason[str(r["reason"])] = by_reason.get(str(r["reason"]), 0) + n
        if outcome == "stored":
            values += int(r["readings"])
    return IngestStats(
        received=sums["received"],
        stored=sums["stored"],
        duplicates=sums["duplicates"],
        quarantined=sums["quarantined"],
        reprocessed=sums["reprocessed"],
        readings=values,
        by_transport=by_transport,
        by_reason={k: v for k, v in by_reason.items() if v},
    )
