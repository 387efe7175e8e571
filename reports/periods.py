"""Reporting periods: a day, week, month or quarter in a time zone, as UTC bounds.

A period is named by its kind and a day inside it (`2026-11-23`), or a quarter as
`2026Q4`; its bounds are the local midnights that open it and the next one, so a month
in Singapore starts eight hours before the same month in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.values import FIRST_YEAR, LAST_YEAR

KINDS = ("day", "week", "month", "quarter")
_QUARTER = re.compile(r"([0-9]{4})Q([1-4])")


class PeriodError(ValueError):
    """A period, anchor or time zone that does not parse; the message names which."""


@dataclass(frozen=True)
class Period:
    kind: str
    first_day: date  # local
    next_first_day: date  # local, exclusive
    timezone: str

    @property
    def start(self) -> datetime:
        return _local_midnight(self.first_day, self.timezone)

    @property
    def end(self) -> datetime:
        return _local_midnight(self.next_first_day, self.timezone)

    @property
    def label(self) -> str:
        if self.kind == "quarter":
            return f"{self.first_day.year}Q{(self.first_day.month - 1) // 3 + 1}"
        if self.kind == "month":
            return self.first_day.strftime("%Y-%m")
        if self.kind == "week":
            year, week, _ = self.first_day.isocalendar()
            return f"{year}-W{week:02d}"
        return self.first_day.isoformat()

    def months(self) -> list[Period]:
        """The months this period overlaps, in order (a quarter's three)."""
        months, day = [], self.first_day.replace(day=1)
        while day < self.next_first_day:
            months.append(period("month", day, self.timezone))
            day = months[-1].next_first_day
        return months


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise PeriodError(f"tz: unknown time zone {name!r} (use an IANA name)") from None


def period(kind: str, anchor: date, timezone: str = "UTC") -> Period:
    """The period of `kind` that contains the local day `anchor`."""
    zone(timezone)
    if kind == "day":
        first, after = anchor, anchor + timedelta(days=1)
    elif kind == "week":  # ISO weeks: Monday to Sunday
        first = anchor - timedelta(days=anchor.weekday())
        after = first + timedelta(days=7)
    elif kind == "month":
        first = anchor.replace(day=1)
        after = _add_months(first, 1)
    elif kind == "quarter":
        first = date(anchor.year, 3 * ((anchor.month - 1) // 3) + 1, 1)
        after = _add_months(first, 3)
    else:
        raise PeriodError(f"period: {kind!r} is not one of {', '.join(KINDS)}")
    return Period(kind, first, after, timezone)


def parse_quarter(text: str) -> date:
    """`2026Q4` as the quarter's first day."""
    match = _QUARTER.fullmatch(text.strip().upper())
    if match is None:
        raise PeriodError(f"quarter: {text!r} is not a quarter such as 2026Q4")
    return date(int(match[1]), 3 * (int(match[2]) - 1) + 1, 1)


def parse_anchor(text: str | None, kind: str, timezone: str, now: datetime) -> date:
    """The day a period is anchored on: given (`2026-11-23`, or `2026Q4`), else today there."""
    if text is None or text == "":
        return now.astimezone(zone(timezone)).date()
    if kind == "quarter" and "Q" in text.upper():
        day = parse_quarter(text)
    else:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise PeriodError(f"at: {text!r} is not a date (YYYY-MM-DD)") from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise PeriodError(f"at: {text!r} is not in the years {FIRST_YEAR} to {LAST_YEAR}")
    return day


def local_bucket(instant: datetime, kind: str, timezone: str) -> str:
    """The label of the `kind` period `instant` falls in, in `timezone`."""
    day = instant.astimezone(zone(timezone)).date() if instant.tzinfo else instant.date()
    return period(kind, day, timezone).label


def _local_midnight(day: date, timezone: str) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone(timezone)).astimezone(UTC)


def _add_months(first: date, months: int) -> date:
    index = first.month - 1 + months
    return date(first.year + index // 12, index % 12 + 1, 1)
