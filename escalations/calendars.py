"""Business calendars: when a region works (time zone, days, hours, public holidays).

Pure and deterministic, so workflows may call it: the same instants in give the same
instants out, and nothing reads the wall clock. The shipped calendars (`calendars.yaml`)
are read once, at import time, because a Temporal workflow may not do file I/O while it
runs. Public holidays come from the pinned `holidays` package, computed per year on first
use and cached (`BusinessCalendar.warm` computes them ahead, outside a workflow).

Every instant in and out is a timezone-aware datetime; results are in UTC. Working time
is counted in half-open windows [opens, closes) of local working hours.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import yaml
from pydantic import BaseModel, ConfigDict

CALENDARS_FILE = Path(__file__).with_name("calendars.yaml")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60
# A deadline further out than this is a configuration error, not a plan (about 20 years);
# the bound keeps a calendar with no working days from looping forever.
MAX_DAYS_SCANNED = 7300
_ZERO = timedelta(0)
_SPEC_KEYS = {"timezone", "working_days", "working_hours", "holidays", "closures"}

Window = tuple[datetime, datetime]


class UnknownCalendarError(KeyError):
    """A calendar name that is not configured; the message lists the known ones."""

    def __str__(self) -> str:
        # KeyError's own __str__ shows the repr of its argument, quotes and all.
        return str(self.args[0])


class CalendarConfigError(ValueError):
    """`calendars.yaml` (or another calendar file) is invalid; the message names where."""


def as_utc(instant: datetime) -> datetime:
    """`instant` in UTC; a naive datetime is refused, since its moment is unknowable."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"naive datetime {instant.isoformat()}: business time needs UTC instants")
    return instant.astimezone(UTC)


# Shared by every calendar of the same country and subdivision. Values depend only on the
# key and the pinned `holidays` version, so caching cannot change a result.
_HOLIDAYS: dict[tuple[str, str | None, int], frozenset[date]] = {}


def _public_holidays(country: str, subdiv: str | None, year: int) -> frozenset[date]:
    key = (country, subdiv, year)
    found = _HOLIDAYS.get(key)
    if found is None:
        found = frozenset(holidays.country_holidays(country, subdiv=subdiv, years=year))
        _HOLIDAYS[key] = found
    return found


@dataclass(frozen=True)
class BusinessCalendar:
    """Working days and hours in one time zone, minus public holidays and closures."""

    name: str
    zone: ZoneInfo
    working_days: frozenset[int]  # date.weekday() numbers: 0 is Monday
    opens_minute: int  # minutes after local midnight
    closes_minute: int  # after opens_minute; 1440 is midnight at the end of the day
    holiday_country: str | None = None
    holiday_subdiv: str | None = None
    closures: frozenset[date] = frozenset()

    @property
    def timezone(self) -> str:
        return self.zone.key

    @property
    def working_day(self) -> timedelta:
        """How long a business day ("1d" in an SLA budget) is on this calendar."""
        return timedelta(minutes=self.closes_minute - self.opens_minute)

    def is_working_date(self, day: date) -> bool:
        """Whether the local date `day` has working hours at all."""
        if day.weekday() not in self.working_days or day in self.closures:
            return False
        if self.holiday_country is None:
            return True
        return day not in _public_holidays(self.holiday_country, self.holiday_subdiv, day.year)

    def warm(self, years: Iterable[int]) -> None:
        """Compute holidays ahead of use, e.g. in a worker before workflows run."""
        if self.holiday_country is not None:
            for year in years:
                _public_holidays(self.holiday_country, self.holiday_subdiv, year)

    def window(self, day: date) -> Window | None:
        """The working window of local date `day` as UTC instants, or None when closed."""
        if not self.is_working_date(day):
            return None
        opens, closes = self._local(day, self.opens_minute), self._local(day, self.closes_minute)
        # Hours set inside a daylight-saving gap can leave nothing of a day's window.
        return (opens, closes) if opens < closes else None

    def is_open(self, instant: datetime) -> bool:
        instant = as_utc(instant)
        opens, _ = next(self._windows_from(instant))
        return opens <= instant

    def next_open(self, instant: datetime) -> datetime:
        """The first working instant at or after `instant` (itself when open)."""
        instant = as_utc(instant)
        opens, _ = next(self._windows_from(instant))
        return max(opens, instant)

    def add_business_time(self, start: datetime, budget: timedelta) -> datetime:
        """The instant at which `budget` of working time has passed since `start`.

        A zero budget is due at `start` itself, open or not. A positive budget ends inside
        a working window or exactly at its close (never at the next opening), so that
        adding a budget in two parts gives the same instant as adding it at once.
        """
        start = as_utc(start)
        if budget < _ZERO:
            raise ValueError(f"a business-time budget cannot be negative, got {budget}")
        if budget == _ZERO:
            return start
        remaining = budget
        for opens, closes in self._windows_from(start):
            begin = max(opens, start)
            if remaining <= closes - begin:
                return begin + remaining
            remaining -= closes - begin
        raise AssertionError("unreachable: _windows_from raises when it runs out")

    def business_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Working time within [a, b); zero when b is not after a."""
        a, b = as_utc(a), as_utc(b)
        total = _ZERO
        if b <= a:
            return total
        for opens, closes in self._windows_from(a):
            if opens >= b:
                break
            total += min(closes, b) - max(opens, a)
        return total

    def business_start(self, end: datetime, budget: timedelta) -> datetime:
        """The latest instant `s` with `business_time_between(s, end) >= budget`: walking
        back from `end` through the working windows until `budget` is used up (the reports
        age a backlog by comparing openings with it, not by counting each task's age)."""
        end = as_utc(end)
        remaining = budget
        day = end.astimezone(self.zone).date()
        for _ in range(MAX_DAYS_SCANNED):
            found = self.window(day)
            if found is not None and found[0] < end:
                opens, stop = found[0], min(found[1], end)
                if remaining <= stop - opens:
                    return stop - remaining
                remaining -= stop - opens
            day -= timedelta(days=1)
        raise ValueError(
            f"calendar {self.name}: no {budget} of working time within {MAX_DAYS_SCANNED} "
            f"days before {end.isoformat()}"
        )

    def _local(self, day: date, minute: int) -> datetime:
        # 24:00 is not a time of day: it is the next day's midnight.
        day += timedelta(days=minute // MINUTES_PER_DAY)
        minute %= MINUTES_PER_DAY
        return as_utc(datetime.combine(day, time(minute // 60, minute % 60), self.zone))

    def _windows_from(self, instant: datetime) -> Iterator[Window]:
        """Working windows that close after `instant`, in order (one a day at most)."""
        day = instant.astimezone(self.zone).date()
        for _ in range(MAX_DAYS_SCANNED):
            found = self.window(day)
            if found is not None and found[1] > instant:
                yield found
            day += timedelta(days=1)
        raise ValueError(
            f"calendar {self.name}: no working time within {MAX_DAYS_SCANNED} days of "
            f"{instant.isoformat()}"
        )


# --- pinning: the facts a case's deadlines were computed from ---------------------------


class CalendarFacts(BaseModel):
    """Everything a calendar answers with, for the years `first_year`..`last_year`.

    A case carries these in its workflow input (and gets new ones only when someone applies
    a calendar change), so replaying it years later never reads `calendars.yaml`, the
    `holidays` package or tzdata's future rules: its deadlines cannot move under it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    timezone: str
    working_days: tuple[int, ...]
    opens_minute: int
    closes_minute: int
    first_year: int
    last_year: int
    # Public holidays and closures on working weekdays within the years above.
    days_off: tuple[date, ...] = ()

    def digest(self) -> str:
        """The content hash that names these facts (the same facts, the same name)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


# How far ahead a case's pinned calendar reaches; later dates fall back to weekdays only.
PINNED_YEARS_AHEAD = 3


def calendar_facts(calendar: BusinessCalendar, years: range) -> CalendarFacts:
    """What `calendar` says over `years` (computes holidays: call outside a workflow)."""
    days_off = [
        day
        for year in years
        for day in _dates_of(year)
        if day.weekday() in calendar.working_days and not calendar.is_working_date(day)
    ]
    return CalendarFacts(
        name=calendar.name,
        timezone=calendar.timezone,
        working_days=tuple(sorted(calendar.working_days)),
        opens_minute=calendar.opens_minute,
        closes_minute=calendar.closes_minute,
        first_year=years.start,
        last_year=years.stop - 1,
        days_off=tuple(days_off),
    )


def facts_for(names: Iterable[str], around: date) -> list[CalendarFacts]:
    """Pinned facts for each named calendar, from `around`'s year to a few years on."""
    return [_shipped_facts(name, around.year) for name in sorted(set(names))]


@cache
def _shipped_facts(name: str, first_year: int) -> CalendarFacts:
    # The shipped calendars are read once per process: their facts per year are too, so a
    # case's intake does not walk four years of days.
    years = range(first_year, first_year + PINNED_YEARS_AHEAD + 1)
    return calendar_facts(get_calendar(name), years)


def _dates_of(year: int) -> Iterator[date]:
    day = date(year, 1, 1)
    while day.year == year:
        yield day
        day += timedelta(days=1)


# Pinned calendars by digest. Keyed by content, so a worker that replays many cases with
# many calendar versions keeps each once and can never hand one case another's facts.
_PINNED: dict[str, BusinessCalendar] = {}
_PINNED_FACTS: dict[str, CalendarFacts] = {}


def pin(facts: CalendarFacts) -> str:
    """Make `facts` resolvable by their digest (pure: no I/O, no holidays computed)."""
    digest = facts.digest()
    if digest not in _PINNED:
        _PINNED_FACTS[digest] = facts
        _PINNED[digest] = BusinessCalendar(
            name=facts.name,
            zone=ZoneInfo(facts.timezone),
            working_days=frozenset(facts.working_days),
            opens_minute=facts.opens_minute,
            closes_minute=facts.closes_minute,
            closures=frozenset(facts.days_off),
        )
    return digest


def pinned_facts(digest: str) -> CalendarFacts:
    try:
        return _PINNED_FACTS[digest]
    except KeyError:
        raise UnknownCalendarError(f"pinned calendar {digest} was never pinned") from None


def pinned_calendar(digest: str) -> BusinessCalendar:
    try:
        return _PINNED[digest]
    except KeyError:
        raise UnknownCalendarError(f"pinned calendar {digest} was never pinned") from None


# --- loading ---------------------------------------------------------------------------


def _fail(name: str, what: str) -> CalendarConfigError:
    return CalendarConfigError(f"calendar {name!r}: {what}")


def _minute_of_day(name: str, text: Any) -> int:
    """'HH:MM' as minutes after midnight; '24:00' is allowed as an end of day."""
    hour, _, minute = str(text).partition(":")
    if not (hour.isdigit() and minute.isdigit() and len(minute) == 2):
        raise _fail(name, f"working_hours: {text!r} is not HH:MM")
    total = int(hour) * 60 + int(minute)
    if int(minute) >= 60 or total > MINUTES_PER_DAY:
        raise _fail(name, f"working_hours: {text!r} is not a time of day")
    return total


def _working_hours(name: str, spec: Any) -> tuple[int, int]:
    if not isinstance(spec, Mapping) or set(spec) != {"start", "end"}:
        raise _fail(name, "working_hours: needs exactly start and end, e.g. 09:00 and 18:00")
    opens, closes = _minute_of_day(name, spec["start"]), _minute_of_day(name, spec["end"])
    if not opens < closes:
        raise _fail(name, f"working_hours: end {spec['end']} is not after start {spec['start']}")
    return opens, closes


def _working_days(name: str, spec: Any) -> frozenset[int]:
    if not isinstance(spec, list) or not spec:
        raise _fail(name, f"working_days: a non-empty list of {', '.join(WEEKDAYS)}")
    unknown = [day for day in spec if day not in WEEKDAYS]
    if unknown:
        raise _fail(name, f"working_days: unknown {unknown}; use {', '.join(WEEKDAYS)}")
    return frozenset(WEEKDAYS.index(day) for day in spec)


def _zone(name: str, spec: Any) -> ZoneInfo:
    try:
        return ZoneInfo(str(spec))
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise _fail(name, f"timezone: {spec!r} is not an IANA time zone") from error


def _holiday_source(name: str, spec: Any) -> tuple[str | None, str | None]:
    if spec is None:
        return None, None
    if not isinstance(spec, Mapping) or "country" not in spec or set(spec) - {"country", "subdiv"}:
        raise _fail(name, "holidays: needs country and optionally subdiv")
    country, subdiv = str(spec["country"]), spec.get("subdiv")
    subdiv = None if subdiv is None else str(subdiv)
    try:
        # Constructing without years computes nothing; it only checks the codes exist.
        holidays.country_holidays(country, subdiv=subdiv)
    except NotImplementedError as error:
        raise _fail(name, f"holidays: {error}") from error
    return country, subdiv


def _closures(name: str, spec: Any) -> frozenset[date]:
    try:
        # YAML reads an unquoted 2025-12-24 as a date already; a quoted one is text.
        return frozenset(d if isinstance(d, date) else date.fromisoformat(d) for d in spec or [])
    except (TypeError, ValueError) as error:
        raise _fail(name, f"closures: dates must be YYYY-MM-DD ({error})") from error


def build_calendar(name: str, spec: Any) -> BusinessCalendar:
    """One calendar from its configuration mapping (the shape of `calendars.yaml`)."""
    if not isinstance(spec, Mapping):
        raise _fail(name, "must be a mapping")
    if extra := set(spec) - _SPEC_KEYS:
        raise _fail(name, f"unknown keys {sorted(extra)}; allowed: {sorted(_SPEC_KEYS)}")
    opens, closes = _working_hours(name, spec.get("working_hours"))
    country, subdiv = _holiday_source(name, spec.get("holidays"))
    return BusinessCalendar(
        name=name,
        zone=_zone(name, spec.get("timezone")),
        working_days=_working_days(name, spec.get("working_days")),
        opens_minute=opens,
        closes_minute=closes,
        holiday_country=country,
        holiday_subdiv=subdiv,
        closures=_closures(name, spec.get("closures")),
    )


def _read(path: Path) -> dict[str, BusinessCalendar]:
    specs = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(specs, Mapping) or not specs:
        raise CalendarConfigError(f"{path}: expected a mapping of calendar name to calendar")
    return {str(name): build_calendar(str(name), spec) for name, spec in specs.items()}


_SHIPPED = _read(CALENDARS_FILE)


def load_calendars(path: Path | str | None = None) -> dict[str, BusinessCalendar]:
    """The shipped calendars (already loaded; no I/O), or those of the file at `path`."""
    if path is None:
        return dict(_SHIPPED)
    return _read(Path(path))


def calendar_names() -> tuple[str, ...]:
    """The names of the shipped calendars, sorted: the valid region codes."""
    return tuple(sorted(_SHIPPED))


def get_calendar(name: str) -> BusinessCalendar:
    """A shipped calendar by name (a region code); unknown names raise UnknownCalendarError."""
    try:
        return _SHIPPED[name]
    except KeyError:
        known = ", ".join(calendar_names())
        raise UnknownCalendarError(f"unknown calendar {name!r}; known: {known}") from None
