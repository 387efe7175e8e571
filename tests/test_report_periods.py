"""Report periods: local days, ISO weeks, months and quarters as UTC bounds."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from reports.periods import PeriodError, parse_anchor, parse_quarter, period

NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


def test_a_quarter_in_singapore_starts_at_its_local_midnight() -> None:
    q = period("quarter", parse_quarter("2026Q4"), "Asia/Singapore")
    assert q.start == datetime(2026, 9, 30, 16, 0, tzinfo=UTC)
    assert q.end == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    assert q.label == "2026Q4" and [m.label for m in q.months()] == [
        "2026-10",
        "2026-11",
        "2026-12",
    ]


def test_weeks_are_iso_weeks_and_months_cross_a_dst_change() -> None:
    week = period("week", date(2026, 11, 26), "UTC")
    assert (week.first_day, week.label) == (date(2026, 11, 23), "2026-W48")
    march = period("month", date(2026, 3, 10), "Europe/Paris")
    # Paris moves to summer time on March 29: the month is 30 days 23 hours long.
    assert (march.end - march.start).total_seconds() == (31 * 24 - 1) * 3600


def test_the_anchor_defaults_to_today_in_the_zone() -> None:
    assert parse_anchor(None, "day", "Pacific/Auckland", NOW) == date(2026, 12, 2)
    assert parse_anchor(None, "day", "America/Los_Angeles", NOW) == date(2026, 12, 1)
    assert parse_anchor("2026q1", "quarter", "UTC", NOW) == date(2026, 1, 1)


@pytest.mark.parametrize(
    ("kind", "at", "tz", "names"),
    [
        ("fortnight", "2026-11-23", "UTC", "period"),
        ("day", "someday", "UTC", "at"),
        ("day", "0001-01-01", "UTC", "at"),
        ("quarter", "2026Q5", "UTC", "quarter"),
        ("day", "2026-11-23", "Mars/Olympus", "tz"),
        ("day", "2026-11-23", "../../etc/passwd", "tz"),
    ],
)
def test_bad_periods_name_what_is_wrong(kind: str, at: str, tz: str, names: str) -> None:
    with pytest.raises(PeriodError, match=f"^{names}:"):
        period(kind, parse_anchor(at, kind, tz, NOW), tz)
