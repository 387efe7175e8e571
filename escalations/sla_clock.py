"""The SLA clock: a business-time budget from a start, with pauses, a warning and a breach.

An immutable pydantic value, so a workflow can keep it in its state and Temporal's
pydantic data converter can carry it: `pause` and `resume` return new clocks, and every
answer is computed from the instants the clock holds, never from the wall clock.

Budgets are text such as "4h", "90m", "2d" or "1d4h". A day ("d") is a business day: the
working hours of one day on the clock's calendar, so "1d" in Singapore (09:00-18:00) is
9 working hours and the same "1d" started at 09:00 is due at 18:00 that day.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from escalations.calendars import (
    BusinessCalendar,
    UnknownCalendarError,
    as_utc,
    get_calendar,
    pinned_calendar,
)

# Units in a fixed order, each at most once: "1d4h" parses, "4h1d" and "1h1h" do not.
_BUDGET = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
# Anything longer is a typo, not an SLA (about ten years of business days).
MAX_BUDGET_DAYS = 3650
_MAX_BUDGET_SECONDS = MAX_BUDGET_DAYS * 24 * 3600
_ZERO = timedelta(0)

UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


class InvalidBudgetError(ValueError):
    """An SLA budget that is not a positive amount such as 4h, 2d or 1d4h."""


class SlaClockError(ValueError):
    """A pause or resume the clock's state does not allow."""


class Budget(BaseModel):
    """A positive budget in business days (the calendar's working hours) and seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    days: int = Field(default=0, ge=0, le=MAX_BUDGET_DAYS)
    seconds: int = Field(default=0, ge=0, le=_MAX_BUDGET_SECONDS)

    @model_validator(mode="after")
    def _positive(self) -> Budget:
        if self.days == 0 and self.seconds == 0:
            raise ValueError("an SLA budget must be greater than zero")
        return self

    def as_timedelta(self, calendar: BusinessCalendar) -> timedelta:
        """The working time this budget is worth on `calendar`."""
        return self.days * calendar.working_day + timedelta(seconds=self.seconds)

    def __str__(self) -> str:
        """The canonical text form, which `parse_budget` reads back: 1d4h30m."""
        hours, rest = divmod(self.seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        parts = zip((self.days, hours, minutes, seconds), "dhms", strict=True)
        return "".join(f"{amount}{unit}" for amount, unit in parts if amount)


def parse_budget(text: str) -> Budget:
    """'4h', '2d', '30s', '90m', '1d4h' as a Budget; anything else is an InvalidBudgetError."""
    match = _BUDGET.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or not any(match.groups()):
        raise InvalidBudgetError(
            f"SLA budget {text!r} does not parse: write a positive amount in days, hours, "
            "minutes and seconds, in that order, e.g. 4h, 90m, 2d or 1d4h"
        )
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    total_seconds = hours * 3600 + minutes * 60 + seconds
    if days == 0 and total_seconds == 0:
        raise InvalidBudgetError(f"SLA budget {text!r} must be greater than zero")
    if days > MAX_BUDGET_DAYS or total_seconds > _MAX_BUDGET_SECONDS:
        raise InvalidBudgetError(f"SLA budget {text!r} is longer than {MAX_BUDGET_DAYS} days")
    return Budget(days=days, seconds=total_seconds)


class Pause(BaseModel):
    """One pause of the clock; `resumed_at` is None while it lasts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    paused_at: UtcDatetime
    resumed_at: UtcDatetime | None = None
    reason: str = ""

    @model_validator(mode="after")
    def _resumed_after_paused(self) -> Pause:
        if self.resumed_at is not None and self.resumed_at < self.paused_at:
            raise ValueError("resumed_at is before paused_at")
        return self


# The business time a clock ran: from `begin` to `end`, or on from `begin` when end is None.
_Segment = tuple[datetime, datetime | None]


class SlaClock(BaseModel):
    """A business-time budget on a calendar, counted from `started_at` minus its pauses."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    calendar: str
    budget: Budget
    started_at: UtcDatetime
    warning_ratio: float = Field(default=0.8, gt=0, lt=1)
    pauses: tuple[Pause, ...] = ()
    # The digest of the calendar facts the case pinned (`escalations.calendars.pin`): the
    # clock then answers from them, never from today's calendar file. None: the named
    # shipped calendar (clocks of cases opened before calendars were pinned).
    calendar_digest: str | None = None

    @classmethod
    def start(
        cls,
        calendar: str,
        budget: str | Budget,
        started_at: datetime,
        warning_ratio: float = 0.8,
        calendar_digest: str | None = None,
    ) -> SlaClock:
        """A running clock; a bad calendar or budget raises its own error, not a generic one."""
        if calendar_digest is None:
            get_calendar(calendar)
        if isinstance(budget, str):
            budget = parse_budget(budget)
        return cls(
            calendar=calendar,
            budget=budget,
            started_at=started_at,
            warning_ratio=warning_ratio,
            calendar_digest=calendar_digest,
        )

    # --- validation and serialization ---

    @model_validator(mode="after")
    def _known_calendar(self) -> SlaClock:
        # A pinned clock is read anywhere (the API reads snapshots): only its case's
        # workflow, which pinned the facts, ever computes with it.
        if self.calendar_digest is not None:
            return self
        try:
            get_calendar(self.calendar)
        except UnknownCalendarError as error:
            # pydantic reports ValueErrors as validation errors; a KeyError would escape raw.
            raise ValueError(str(error)) from None
        return self

    @field_validator("budget", mode="before")
    @classmethod
    def _budget_from_text(cls, value: Any) -> Any:
        return parse_budget(value) if isinstance(value, str) else value

    @field_serializer("budget")
    def _budget_as_text(self, budget: Budget) -> str:
        # Stored state stays readable ("budget": "1d4h") and parses back the same.
        return str(budget)

    @model_validator(mode="after")
    def _pauses_in_order(self) -> SlaClock:
        last = self.started_at
        for index, pause in enumerate(self.pauses):
            if pause.paused_at < last:
                raise ValueError(f"pauses[{index}] starts before the clock's previous event")
            if pause.resumed_at is None and index != len(self.pauses) - 1:
                raise ValueError(f"pauses[{index}] never resumed but is not the last pause")
            last = pause.resumed_at or pause.paused_at
        return self

    # --- state changes (each returns a new clock) ---

    @property
    def is_paused(self) -> bool:
        return bool(self.pauses) and self.pauses[-1].resumed_at is None

    def pause(self, at: datetime, reason: str = "") -> SlaClock:
        at = as_utc(at)
        if self.is_paused:
            raise SlaClockError(f"the SLA clock is already paused since {self._last_event()}")
        if at < self._last_event():
            raise SlaClockError(f"cannot pause at {at}, before the clock's last event")
        return self._with_pauses((*self.pauses, Pause(paused_at=at, reason=reason)))

    def resume(self, at: datetime) -> SlaClock:
        at = as_utc(at)
        if not self.is_paused:
            raise SlaClockError("the SLA clock is not paused")
        current = self.pauses[-1]
        if at < current.paused_at:
            raise SlaClockError(f"cannot resume at {at}, before the pause at {current.paused_at}")
        resumed = Pause(paused_at=current.paused_at, resumed_at=at, reason=current.reason)
        return self._with_pauses((*self.pauses[:-1], resumed))

    # --- queries ---

    def business_calendar(self) -> BusinessCalendar:
        if self.calendar_digest is not None:
            return pinned_calendar(self.calendar_digest)
        return get_calendar(self.calendar)

    def on_calendar(self, digest: str) -> SlaClock:
        """The same clock counted on other pinned facts of its calendar (a change applied)."""
        return self._rebuilt(self.pauses, digest)

    def total(self) -> timedelta:
        """The whole budget in business time on this clock's calendar."""
        return self.budget.as_timedelta(self.business_calendar())

    def due_at(self) -> datetime | None:
        """When the budget runs out (the breach). None while paused, unless it already ran
        out before the pause: then the past instant it did."""
        return self._instant_after(self.total())

    def warning_at(self) -> datetime | None:
        """When `warning_ratio` of the budget has run; None while paused, as `due_at`."""
        return self._instant_after(self._warning_budget())

    def elapsed(self, at: datetime) -> timedelta:
        """Business time the clock has run by `at`, pauses excluded."""
        at, cal, total = as_utc(at), self.business_calendar(), _ZERO
        for begin, end in self._segments():
            if begin >= at:
                break
            total += cal.business_time_between(begin, at if end is None else min(end, at))
        return total

    def remaining(self, at: datetime) -> timedelta:
        """Business time left at `at`; zero once breached (see `is_breached`)."""
        return max(self.total() - self.elapsed(at), _ZERO)

    def is_warning(self, at: datetime) -> bool:
        """Whether the warning point has passed by `at` (also true once breached)."""
        return self.elapsed(at) >= self._warning_budget()

    def is_breached(self, at: datetime) -> bool:
        return self.elapsed(at) >= self.total()

    # --- internals ---

    def _warning_budget(self) -> timedelta:
        return self.total() * self.warning_ratio

    def _last_event(self) -> datetime:
        if not self.pauses:
            return self.started_at
        last = self.pauses[-1]
        return last.paused_at if last.resumed_at is None else last.resumed_at

    def _with_pauses(self, pauses: tuple[Pause, ...]) -> SlaClock:
        return self._rebuilt(pauses, self.calendar_digest)

    def _rebuilt(self, pauses: tuple[Pause, ...], digest: str | None) -> SlaClock:
        # Built anew, not model_copy'd, so the new clock is validated like any other.
        return SlaClock(
            calendar=self.calendar,
            budget=self.budget,
            started_at=self.started_at,
            warning_ratio=self.warning_ratio,
            pauses=pauses,
            calendar_digest=digest,
        )

    def _segments(self) -> list[_Segment]:
        """The intervals in which the clock ran; the last is open-ended unless paused."""
        segments: list[_Segment] = []
        begin: datetime | None = self.started_at
        for pause in self.pauses:
            if begin is not None:
                segments.append((begin, pause.paused_at))
            begin = pause.resumed_at
        if begin is not None:
            segments.append((begin, None))
        return segments

    def _instant_after(self, amount: timedelta) -> datetime | None:
        """When `amount` of running business time is reached; None if a pause holds it."""
        cal, remaining = self.business_calendar(), amount
        for begin, end in self._segments():
            ran = None if end is None else cal.business_time_between(begin, end)
            if ran is None or remaining <= ran:
                return cal.add_business_time(begin, remaining)
            remaining -= ran
        return None
