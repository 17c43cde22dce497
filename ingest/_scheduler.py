"""Communication sessions: when each unit calls in, spread so the server is never swamped.

A device group (``device_credentials.device_group``) has one or more schedules that
combine (a unit calls at every occurrence of each):

* ``daily@HH:MM``        every day, window opening at HH:MM UTC;
* ``weekly:D@HH:MM``     ISO weekday D (1 = Monday … 7 = Sunday);
* ``monthly:N@HH:MM``    day N of the month (1–28, so every month has it);
* ``once:YYYY-MM-DDTHH:MM``  one session window at that UTC instant.

Each schedule has a *window* (``window_s``) over which its units are spread, an
expected *session length* (``session_s``) and a bound on *concurrent sessions*
(``max_concurrent``).  **Diversity**: a unit's offset into the window is deterministic,
from the SHA-256 of its id:

``even`` (default)
    units are ordered by their hash and placed at equal spacing over
    ``[0, window − session)``: the peak is the least possible, ⌈N·session / (window −
    session)⌉ or so; a unit's offset changes when the group's membership changes.
``hash``
    offset = hash fraction × (window − session): a unit keeps its offset whatever the
    others do, at the price of random clumps (a higher peak).

:func:`plan_sessions` computes every unit's offset and the exact peak of concurrent
sessions (a sweep over the start/end instants) and raises :class:`ScheduleError`
naming the smallest window (or largest bound) that works when the bound cannot be met.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import polars as pl

from ingest.errors import ScheduleError
from warehouse import Store, empty_frame

ScheduleKind = Literal["monthly", "weekly", "daily", "once"]
Spread = Literal["even", "hash"]
_SPEC: Final = re.compile(
    r"^(?:(?P<daily>daily)|weekly:(?P<wd>[1-7])|monthly:(?P<md>\d{1,2}))@(?P<h>\d{1,2}):(?P<m>\d{2})$"
    r"|^once:(?P<once>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?(?:Z|[+-]\d{2}:\d{2})?)$"
)


@dataclass(frozen=True)
class SessionSchedule:
    """One schedule of a device group (see the module docstring for the forms)."""

    group: str
    kind: ScheduleKind
    window_s: int
    session_s: int
    max_concurrent: int
    day: int | None = None
    start_minute: int | None = None
    once_at: dt.datetime | None = None
    spread: Spread = "even"

    @property
    def schedule_id(self) -> str:
        """Stable id, the spec text: ``daily@02:00``, ``weekly:1@03:30``, ``once:…``."""
        if self.kind == "once":
            assert self.once_at is not None
            return "once:" + self.once_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%MZ")
        minute = self.start_minute or 0
        at = f"@{minute // 60:02d}:{minute % 60:02d}"
        if self.kind == "daily":
            return "daily" + at
        return f"{self.kind}:{self.day}{at}"

    def occurrences(self, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
        """Window openings in ``[start, end)`` (UTC)."""
        if self.kind == "once":
            assert self.once_at is not None
            return [self.once_at] if start <= self.once_at < end else []
        minute = self.start_minute or 0
        out: list[dt.datetime] = []
        day = start.astimezone(dt.UTC).date() - dt.timedelta(days=1)
        last = end.astimezone(dt.UTC).date()
        while day <= last:
            ok = (
                self.kind == "daily"
                or (self.kind == "weekly" and day.isoweekday() == self.day)
                or (self.kind == "monthly" and day.day == self.day)
            )
            if ok:
                at = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) + dt.timedelta(minutes=minute)
                if start <= at < end:
                    out.append(at)
            day += dt.timedelta(days=1)
        return out


def parse_schedule(
    group: str,
    spec: str,
    *,
    window_s: int,
    session_s: int,
    max_concurrent: int,
    spread: Spread = "even",
) -> SessionSchedule:
    """Build a schedule from its text form (``daily@02:00``, ``weekly:1@03:00``, …).

    Raises
    ------
    ScheduleError
        A malformed spec, a day outside 1–28 (monthly), an hour/minute out of range,
        non-positive durations, or a session longer than the window.
    """
    m = _SPEC.match(spec.strip())
    if not m:
        raise ScheduleError(
            f"schedule {spec!r} is not one of daily@HH:MM, weekly:D@HH:MM (D = 1 Monday … 7), "
            "monthly:N@HH:MM (N = 1–28), once:YYYY-MM-DDTHH:MMZ"
        )
    if window_s <= 0 or session_s <= 0 or max_concurrent <= 0:
        raise ScheduleError("window, session length and max concurrent sessions must be positive")
    if session_s > window_s:
        raise ScheduleError(f"a session of {session_s} s does not fit in a window of {window_s} s")
    if spread not in ("even", "hash"):
        raise ScheduleError(f"spread must be 'even' or 'hash', got {spread!r}")
    common: dict[str, Any] = {
        "group": group,
        "window_s": int(window_s),
        "session_s": int(session_s),
        "max_concurrent": int(max_concurrent),
        "spread": spread,
    }
    if m.group("once"):
        text = m.group("once").replace("Z", "+00:00")
        at = dt.datetime.fromisoformat(text)
        at = at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)
        return SessionSchedule(kind="once", once_at=at, **common)
    hour, minute = int(m.group("h")), int(m.group("m"))
    if hour > 23 or minute > 59:
        raise ScheduleError(f"time {hour:02d}:{minute:02d} in {spec!r} is not a time of day")
    start = hour * 60 + minute
    if m.group("daily"):
        return SessionSchedule(kind="daily", start_minute=start, **common)
    if m.group("wd"):
        return SessionSchedule(kind="weekly", day=int(m.group("wd")), start_minute=start, **common)
    day = int(m.group("md"))
    if not 1 <= day <= 28:
        raise ScheduleError(f"monthly day must be 1–28 (every month has it), got {day}")
    return SessionSchedule(kind="monthly", day=day, start_minute=start, **common)


# --- diversity ---------------------------------------------------------------------------------
def _hash_fraction(device_id: str) -> float:
    h = hashlib.sha256(device_id.encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def device_offsets(
    device_ids: Sequence[str], *, window_s: int, session_s: int, spread: Spread = "even"
) -> dict[str, int]:
    """Each unit's start offset (seconds) into the window; deterministic (see module doc)."""
    usable = max(window_s - session_s, 0)
    ids = sorted(set(device_ids))
    if spread == "hash":
        return {d: int(_hash_fraction(d) * usable) for d in ids}
    order = sorted(ids, key=lambda d: (_hash_fraction(d), d))
    n = len(order)
    return {d: (i * usable) // n if n else 0 for i, d in enumerate(order)}


def concurrency(offsets: Sequence[int] | np.ndarray, *, session_s: int, window_s: int) -> np.ndarray:
    """Concurrent sessions at each second of the window (a session covers [t, t + session))."""
    starts = np.asarray(offsets, dtype=np.int64)
    diff = np.zeros(window_s + session_s + 1, dtype=np.int64)
    np.add.at(diff, starts, 1)
    np.add.at(diff, starts + session_s, -1)
    return np.cumsum(diff)[: window_s + session_s]


def peak_concurrency(offsets: Sequence[int] | np.ndarray, *, session_s: int) -> int:
    """Largest number of sessions open at one instant (exact sweep over start/end events)."""
    starts = np.sort(np.asarray(offsets, dtype=np.int64))
    if starts.size == 0:
        return 0
    ends = starts + session_s
    # Sessions open at a start instant t: started at or before t, not yet ended (end > t).
    open_at = np.arange(1, starts.size + 1) - np.searchsorted(ends, starts, side="right")
    return int(open_at.max())


@dataclass(frozen=True)
class SessionPlan:
    """Offsets and concurrency of one schedule over its group's units."""

    schedule: SessionSchedule
    offsets: dict[str, int]
    peak: int

    @property
    def units(self) -> int:
        return len(self.offsets)

    def concurrency(self) -> np.ndarray:
        """Concurrent sessions per second from the window's opening."""
        s = self.schedule
        return concurrency(list(self.offsets.values()), session_s=s.session_s, window_s=s.window_s)

    def histogram(self, *, bins: int = 24) -> pl.DataFrame:
        """Peak concurrent sessions and session starts per bin of the window."""
        s = self.schedule
        conc = self.concurrency()
        edges = np.linspace(0, conc.size, bins + 1).astype(np.int64)
        starts = np.asarray(list(self.offsets.values()), dtype=np.int64)
        return pl.DataFrame(
            {
                "from_s": edges[:-1],
                "to_s": edges[1:],
                "peak_sessions": [int(conc[a:b].max()) if b > a else 0 for a, b in itertools.pairwise(edges)],
                "starts": np.histogram(starts, bins=edges)[0] if starts.size else np.zeros(bins, dtype=np.int64),
            }
        ).with_columns(pl.lit(s.max_concurrent).alias("bound"))

    def histogram_lines(self, *, bins: int = 24, width: int = 40) -> list[str]:
        """Text histogram of peak concurrent sessions over the window (``askug schedule show``)."""
        s = self.schedule
        h = self.histogram(bins=bins)
        top = max(int(h["peak_sessions"].max() or 0), s.max_concurrent, 1)  # type: ignore[arg-type]
        out = [
            (
                f"{s.schedule_id}: {self.units:,} units, {s.session_s} s sessions over a "
                f"{_duration(s.window_s)} window, spread {s.spread}; peak {self.peak:,} concurrent "
                f"(bound {s.max_concurrent:,})"
            )
        ]
        mark = round(s.max_concurrent / top * width)
        for row in h.iter_rows(named=True):
            n = int(row["peak_sessions"])
            bar = "█" * round(n / top * width)
            bar = bar.ljust(width)
            bar = bar[:mark] + "|" + bar[mark + 1 :] if mark < width else bar + "|"
            start = int(row["from_s"])
            out.append(f"  +{start // 3600:d}:{start % 3600 // 60:02d}:{start % 60:02d}  {bar} {n:,}")
        return out


def minimum_window(units: int, *, session_s: int, max_concurrent: int) -> int:
    """Smallest window (s) in which ``units`` evenly spread sessions stay within the bound."""
    if units <= max_concurrent:
        return session_s
    window = session_s + math.ceil(units * session_s / max_concurrent)
    ids = [str(i) for i in range(units)]
    while peak_concurrency(
        list(device_offsets(ids, window_s=window, session_s=session_s).values()), session_s=session_s
    ) > max_concurrent:
        window += max(1, session_s // 10)
    return window


def plan_sessions(schedule: SessionSchedule, device_ids: Sequence[str]) -> SessionPlan:
    """Offsets of ``device_ids`` in ``schedule``'s window and the resulting peak.

    Raises
    ------
    ScheduleError
        The peak exceeds ``max_concurrent``; the message gives the window (and bound)
        that would work.
    """
    s = schedule
    offsets = device_offsets(device_ids, window_s=s.window_s, session_s=s.session_s, spread=s.spread)
    peak = peak_concurrency(list(offsets.values()), session_s=s.session_s)
    if peak > s.max_concurrent:
        n = len(offsets)
        fix = f"allow {peak:,} concurrent sessions"
        even = (
            peak_concurrency(
                list(device_offsets(device_ids, window_s=s.window_s, session_s=s.session_s).values()),
                session_s=s.session_s,
            )
            if s.spread == "hash"
            else peak
        )
        if even <= s.max_concurrent:
            fix = "use spread 'even' (it meets the bound in this window), or " + fix
        else:
            need = minimum_window(n, session_s=s.session_s, max_concurrent=s.max_concurrent)
            fix = f"widen the window to at least {_duration(need)} (spread 'even'), or " + fix
        raise ScheduleError(
            f"group {s.group!r} {s.schedule_id}: {n:,} units with {s.session_s} s sessions peak at "
            f"{peak:,} concurrent in a {_duration(s.window_s)} window, above the bound of "
            f"{s.max_concurrent:,}; {fix}"
        )
    return SessionPlan(s, offsets, peak)


def next_sessions(
    device_id: str,
    plans: Sequence[SessionPlan],
    *,
    start: dt.datetime,
    end: dt.datetime,
) -> list[dt.datetime]:
    """The unit's session start times in ``[start, end)`` over all its group's schedules."""
    out: set[dt.datetime] = set()
    for p in plans:
        offset = p.offsets.get(device_id)
        if offset is None:
            continue
        lo = start - dt.timedelta(seconds=p.schedule.window_s)
        for opening in p.schedule.occurrences(lo, end):
            at = opening + dt.timedelta(seconds=offset)
            if start <= at < end:
                out.add(at)
    return sorted(out)


def schedule_figure(plan: SessionPlan, *, bins: int = 48) -> Any:
    """Plotly bar chart of peak concurrent sessions over the window, with the bound."""
    import plotly.graph_objects as go

    h = plan.histogram(bins=bins)
    s = plan.schedule
    fig = go.Figure(
        go.Bar(
            x=(h["from_s"] / 60).to_list(),
            y=h["peak_sessions"].to_list(),
            name="peak concurrent sessions",
            width=[(b - a) / 60 for a, b in zip(h["from_s"], h["to_s"], strict=True)],
            offset=0,
        )
    )
    fig.add_hline(y=s.max_concurrent, line_dash="dash", annotation_text=f"bound {s.max_concurrent}")
    fig.update_layout(
        title=f"{s.group} {s.schedule_id}: {plan.units} units, peak {plan.peak}",
        xaxis_title="minutes after the window opens",
        yaxis_title="concurrent sessions",
        bargap=0,
    )
    return fig


# --- storage -------------------------------------------------------------------------------------
def save_schedule(store: Store, schedule: SessionSchedule, *, check: bool = True) -> SessionPlan | None:
    """Store (or replace) a schedule of a group; with ``check`` plan it first.

    Raises
    ------
    ScheduleError
        With ``check``: the group's current units would exceed the bound.
    """
    plan = plan_sessions(schedule, group_devices(store, schedule.group)) if check else None
    s = schedule
    frame = pl.DataFrame(
        {
            "device_group": [s.group],
            "schedule_id": [s.schedule_id],
            "kind": [s.kind],
            "day": [s.day],
            "start_minute": [s.start_minute],
            "once_at": [s.once_at],
            "window_s": [s.window_s],
            "session_s": [s.session_s],
            "max_concurrent": [s.max_concurrent],
            "spread": [s.spread],
            "created_at": [dt.datetime.now(dt.UTC)],
        },
        schema_overrides={
            "day": pl.Int16,
            "start_minute": pl.Int16,
            "once_at": pl.Datetime("us", "UTC"),
        },
    )
    with store.transaction():
        store.replace(
            "session_schedules", frame,
            where={"device_group": [s.group], "schedule_id": [s.schedule_id]},
        )  # fmt: skip
    return plan


def remove_schedule(store: Store, group: str, schedule_id: str) -> bool:
    """Delete one schedule; False if there was none."""
    have = load_schedules(store, group)
    if not any(s.schedule_id == schedule_id for s in have):
        return False
    store.replace(
        "session_schedules",
        empty_frame("session_schedules"),
        where={"device_group": [group], "schedule_id": [schedule_id]},
    )
    return True


def load_schedules(store: Store, group: str | None = None) -> list[SessionSchedule]:
    """The stored schedules (of one group, or all)."""
    rows = store.read("session_schedules", where={"device_group": [group]} if group else None)
    out = []
    for r in rows.iter_rows(named=True):
        out.append(
            SessionSchedule(
                group=r["device_group"],
                kind=r["kind"],
                window_s=int(r["window_s"]),
                session_s=int(r["session_s"]),
                max_concurrent=int(r["max_concurrent"]),
                day=r["day"],
                start_minute=r["start_minute"],
                once_at=r["once_at"],
                spread=r["spread"],
            )
        )
    return out


def group_devices(store: Store, group: str) -> list[str]:
    """Registered units of a device group."""
    rows = store.read("device_credentials", where={"device_group": [group]}, columns=["device_id"])
    return sorted(rows["device_id"].to_list())


def schedule_payload(store: Store, device_id: str) -> dict[str, Any]:
    """The ``schedule`` downlink payload of a unit: its group's schedules and its offsets."""
    reg = store.read("device_credentials", where={"device_id": [device_id]}, columns=["device_group"])
    if reg.height == 0:
        raise ScheduleError(f"device {device_id} is not registered; register it with `askug devices add`")
    group = str(reg.item(0, 0))
    schedules = load_schedules(store, group)
    if not schedules:
        raise ScheduleError(f"group {group!r} has no schedule; add one with `askug schedule add {group} …`")
    members = group_devices(store, group)
    sessions = []
    for s in schedules:
        plan = plan_sessions(s, members)
        sessions.append({"schedule": s.schedule_id, "offset_s": plan.offsets[device_id], "window_s": s.window_s})
    return {"group": group, "sessions": sessions}


def _duration(seconds: int) -> str:
    """``4 h``, ``90 min``, ``45 s`` when exact, else ``H:MM:SS``."""
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} min"
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

