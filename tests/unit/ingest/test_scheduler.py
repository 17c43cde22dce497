"""Session scheduler: spec parsing, deterministic diversity, the peak bound, occurrences."""

from __future__ import annotations

import datetime as dt

import pytest

from ingest._scheduler import (
    device_offsets,
    minimum_window,
    next_sessions,
    parse_schedule,
    peak_concurrency,
    plan_sessions,
)
from ingest.errors import ScheduleError

IDS = [f"D{i:07d}" for i in range(2000)]


def daily(**kw: object) -> object:
    args: dict[str, object] = {"window_s": 4 * 3600, "session_s": 90, "max_concurrent": 20}
    args.update(kw)
    return parse_schedule("g", "daily@02:00", **args)  # type: ignore[arg-type]


def test_peak_is_an_exact_sweep() -> None:
    assert peak_concurrency([0, 10, 20], session_s=10) == 1  # [0,10) and [10,20) do not overlap
    assert peak_concurrency([0, 5, 9, 30], session_s=10) == 3
    assert peak_concurrency([], session_s=10) == 0


def test_offsets_are_deterministic_and_inside_the_window() -> None:
    a = device_offsets(IDS, window_s=3600, session_s=60, spread="hash")
    b = device_offsets(list(reversed(IDS)), window_s=3600, session_s=60, spread="hash")
    assert a == b and all(0 <= v <= 3600 - 60 for v in a.values())
    # hash spread: a unit keeps its offset when others join
    c = device_offsets(IDS[:10], window_s=3600, session_s=60, spread="hash")
    assert all(c[d] == a[d] for d in c)
    even = device_offsets(IDS, window_s=3600, session_s=60)
    assert even == device_offsets(list(reversed(IDS)), window_s=3600, session_s=60)
    first, second = sorted(even.values())[:2]
    assert second - first in (1, 2)


def test_even_spread_meets_the_bound_and_errors_clearly() -> None:
    plan = plan_sessions(daily(), IDS)  # type: ignore[arg-type]
    assert plan.peak <= 20 and plan.units == 2000
    assert plan.peak == int(plan.concurrency().max())
    with pytest.raises(ScheduleError, match=r"peak at \d+ concurrent .* widen the window to at least"):
        plan_sessions(daily(window_s=3600), IDS)  # type: ignore[arg-type]
    need = minimum_window(2000, session_s=90, max_concurrent=20)
    assert plan_sessions(daily(window_s=need), IDS).peak <= 20  # type: ignore[arg-type]


def test_hash_spread_suggests_even_when_that_fits() -> None:
    s = daily(spread="hash", max_concurrent=14)
    with pytest.raises(ScheduleError, match="use spread 'even'"):
        plan_sessions(s, IDS)  # type: ignore[arg-type]


def test_specs_and_occurrences() -> None:
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)  # a Monday
    end = start + dt.timedelta(days=62)
    common = {"window_s": 3600, "session_s": 60, "max_concurrent": 5}
    assert len(parse_schedule("g", "daily@02:00", **common).occurrences(start, end)) == 62
    weekly = parse_schedule("g", "weekly:3@23:30", **common).occurrences(start, end)
    assert len(weekly) == 9 and all(t.isoweekday() == 3 and (t.hour, t.minute) == (23, 30) for t in weekly)
    monthly = parse_schedule("g", "monthly:28@01:00", **common).occurrences(start, end)
    assert [t.day for t in monthly] == [28, 28]
    once = parse_schedule("g", "once:2024-01-05T06:00Z", **common)
    assert once.occurrences(start, end) == [dt.datetime(2024, 1, 5, 6, tzinfo=dt.UTC)]
    assert once.schedule_id == "once:2024-01-05T06:00Z"
    for bad in ("hourly@01:00", "monthly:31@01:00", "daily@25:00", "weekly:8@01:00"):
        with pytest.raises(ScheduleError):
            parse_schedule("g", bad, **common)
    with pytest.raises(ScheduleError, match="does not fit"):
        parse_schedule("g", "daily@01:00", window_s=60, session_s=120, max_concurrent=1)


def test_schedules_combine_for_a_unit() -> None:
    common = {"window_s": 3600, "session_s": 60, "max_concurrent": 100}
    plans = [
        plan_sessions(parse_schedule("g", "daily@02:00", **common), IDS[:50]),
        plan_sessions(parse_schedule("g", "weekly:1@12:00", **common), IDS[:50]),
    ]
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    times = next_sessions("D0000007", plans, start=start, end=start + dt.timedelta(days=7))
    assert len(times) == 8
    offset = plans[0].offsets["D0000007"]
    assert times[0] == start + dt.timedelta(hours=2, seconds=offset)
