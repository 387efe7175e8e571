"""Escalations: business calendars and SLA clocks (pure, deterministic, workflow-safe)."""

from escalations.calendars import (
    BusinessCalendar,
    CalendarConfigError,
    UnknownCalendarError,
    as_utc,
    calendar_names,
    get_calendar,
    load_calendars,
)
from escalations.sla_clock import (
    Budget,
    InvalidBudgetError,
    Pause,
    SlaClock,
    SlaClockError,
    parse_budget,
)

__all__ = [
    "Budget",
    "BusinessCalendar",
    "CalendarConfigError",
    "InvalidBudgetError",
    "Pause",
    "SlaClock",
    "SlaClockError",
    "UnknownCalendarError",
    "as_utc",
    "calendar_names",
    "get_calendar",
    "load_calendars",
    "parse_budget",
]
