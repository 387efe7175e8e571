"""Request and response bodies of the HTTP API (separate from tables and workflow models).

Request schemas are as strict as the checks behind them, and say so in OpenAPI: what a
client can read there is what the server accepts, and what it accepts cannot hurt a case
(a `data` Temporal cannot serialise, an instant with no time zone, an integer past 64 bits).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Query
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from domain.case_models import CaseSnapshot, EscalationLink, HistoryEntry, Task, WaitingOn
from domain.escalation_models import EscalationSnapshot
from domain.values import (
    AMOUNT_PATTERN,
    FIRST_YEAR,
    ID_PATTERN,
    LAST_YEAR,
    CaseType,
    currencies,
    is_currency,
    parse_amount,
)
from escalations.calendars import calendar_names

# Limits on what one request may carry. `data` travels in the case's workflow history on
# every task, so its size and depth bound what a case can grow to; the body cap bounds what
# the server reads before it validates anything.
REQUEST_MAX_BYTES = 1024 * 1024
DATA_MAX_BYTES = 32 * 1024
DATA_MAX_DEPTH = 8
MAX_LIST_ITEMS = 500
MAX_OFFSET = 1_000_000
MAX_PAGE = 500
# Temporal's event ids are 64-bit signed integers.
MAX_EVENT_ID = 2**63 - 1

# PostgreSQL stores no NUL in text or JSON; refused at the door rather than at the insert.
NO_NUL = r"^[^\x00]*$"


def _json_depth(value: Any, limit: int) -> int:
    """Nesting depth of `value`, counting stops once past `limit` (so 10,000 levels cost
    no more than `limit + 1`)."""
    level, frontier = 0, [value]
    while frontier and level <= limit:
        level += 1
        frontier = [
            child
            for item in frontier
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]
    return level + (1 if frontier else 0)


def storable_json(value: Any) -> str:
    """`value` as compact JSON; ValueError if a database could not store it (NaN, NUL)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if "\\u0000" in text:
        raise ValueError("contains a NUL character (\\u0000)")
    return text


def _bounded_data(value: dict[str, Any]) -> dict[str, Any]:
    if _json_depth(value, DATA_MAX_DEPTH) > DATA_MAX_DEPTH:
        raise ValueError(f"nested deeper than {DATA_MAX_DEPTH} levels")
    size = len(storable_json(value).encode())
    if size > DATA_MAX_BYTES:
        raise ValueError(f"{size} bytes as JSON; at most {DATA_MAX_BYTES}")
    return value


def _decimal_text(value: Any) -> Any:
    # A JSON number may already have lost cents to binary floating point: refuse it.
    if not isinstance(value, str):
        raise ValueError('send the amount as a decimal string such as "1250.00"')
    parse_amount(value)
    return value


def _known_currency(value: str) -> str:
    if not is_currency(value):
        raise ValueError(f"{value!r} is not an ISO 4217 currency code (e.g. USD, EUR)")
    return value


def _known_region(value: str) -> str:
    if value not in calendar_names():
        raise ValueError(f"unknown calendar {value!r}; known: {', '.join(calendar_names())}")
    return value


def _check_year(year: int) -> None:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValueError(f"must be between the years {FIRST_YEAR} and {LAST_YEAR}")


def _in_years(instant: datetime) -> datetime:
    try:
        _check_year(instant.astimezone(UTC).year)
    except OverflowError:  # year 1 or 9999 with an offset: far outside anyway
        _check_year(instant.year)
    return instant


def _day_in_years(day: date) -> date:
    _check_year(day.year)
    return day


def _as_of(value: str) -> str:
    """An event id (ASCII digits, within 64 bits) or an ISO-8601 instant with a time zone;
    whether the event exists is for the history to say."""
    run, _, event = value.rpartition(":")  # `R:N`: event N of run R (continue-as-new)
    if event.isascii() and event.isdigit() and (not run or (run.isascii() and run.isdigit())):
        if not 1 <= int(event) <= MAX_EVENT_ID or (run and not 1 <= int(run) <= MAX_EVENT_ID):
            raise ValueError(f"an event id (and a run) is between 1 and {MAX_EVENT_ID}")
        return value
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("give an ISO-8601 instant or an event id") from None
    if instant.tzinfo is None:
        raise ValueError("the instant needs a time zone (e.g. Z)")
    _in_years(instant)
    return value


def _enum(values: tuple[str, ...] | frozenset[str], description: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "enum": sorted(values), "description": description})


EntityId = Annotated[
    str,
    StringConstraints(pattern=ID_PATTERN),
    Field(description="letters, digits and `._-`, at most 64, starting with a letter or digit"),
]
Amount = Annotated[
    Decimal,
    BeforeValidator(_decimal_text),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": AMOUNT_PATTERN,
            # Zero matches the pattern but is no amount.
            "not": {"pattern": "^[0.]+$"},
            "description": 'a positive decimal string such as "1250.00" (ASCII digits, at '
            "most 4 decimal places), never a JSON number",
        }
    ),
]
Currency = Annotated[
    str, AfterValidator(_known_currency), _enum(currencies(), "ISO 4217 code, e.g. USD")
]
Region = Annotated[
    str,
    AfterValidator(_known_region),
    _enum(calendar_names(), "the business calendar SLAs run on, e.g. SG"),
]
CaseData = Annotated[
    dict[str, Any],
    AfterValidator(_bounded_data),
    Field(
        description=f"free-form JSON: at most {DATA_MAX_BYTES} bytes and {DATA_MAX_DEPTH} "
        "levels deep"
    ),
]
Instant = Annotated[
    AwareDatetime,
    AfterValidator(_in_years),
    Field(description=f"ISO-8601 with a time zone, years {FIRST_YEAR} to {LAST_YEAR}"),
]
Day = Annotated[date, AfterValidator(_day_in_years)]
AsOf = Annotated[
    str,
    AfterValidator(_as_of),
    Query(
        max_length=40,
        pattern=r"^(([0-9]{1,19}:)?[0-9]{1,19}|[0-9]{4}-[0-9]{2}-[0-9]{2}T.+)$",
        description="ISO-8601 instant with a time zone (years "
        f"{FIRST_YEAR}-{LAST_YEAR}), or a history event id (`RUN:EVENT` for a later run "
        "of a case that continued as new)",
    ),
]
# Paging of every list route.
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NO_NUL)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=NO_NUL)]
Note = Annotated[str, StringConstraints(max_length=4000, pattern=NO_NUL)]


class RequestBody(BaseModel):
    """A request body: a field the server does not know is refused (422 naming it), not
    ignored; a misspelt `vendor` would otherwise open a case that no vendor owns."""

    model_config = ConfigDict(extra="forbid")


class CaseCreate(RequestBody):
    type: CaseType
    customer_id: EntityId
    invoice_ids: list[EntityId] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    amount: Amount
    currency: Currency | None = Field(
        default=None, description="default: the customer's currency in billing"
    )
    region: Region | None = Field(
        default=None,
        description="default: the customer's region in billing; one that contradicts it is refused",
    )
    reason_code: ShortText | None = None
    vendor: EntityId | None = None
    data: CaseData = Field(default_factory=dict)

    def placed(self) -> tuple[str, str]:
        """Region and currency, once intake has filled them in (api/services/intake.py)."""
        assert self.region is not None and self.currency is not None, "intake fills them"
        return self.region, self.currency


class SopOut(BaseModel):
    name: str
    version: int
    content_hash: str


class TaskOut(BaseModel):
    id: str
    case_id: str
    step: str
    title: str
    queue: str
    status: str
    assignee: str | None
    priority: int
    allowed_outcomes: list[str]
    vendor: str | None
    created_at: datetime
    claimed_at: datetime | None
    completed_at: datetime | None
    outcome: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    note: str | None = None
    sla_due: datetime | None = None
    sla_warning_at: datetime | None = None
    sla_paused: bool = False
    sla_state: str | None = None
    pause_reason: str | None = None
    paused_until: datetime | None = None
    # Business time left while the SLA is paused (frozen; sla_due is null then).
    sla_left_seconds: float | None = None

    @classmethod
    def of(cls, task: Task | Any) -> TaskOut:
        return cls.model_validate(task, from_attributes=True)


class CaseSummary(BaseModel):
    id: str
    type: str
    status: str
    customer_id: str
    amount: str
    currency: str
    region: str
    reason_code: str | None
    vendor: str | None
    sop: SopOut
    current_step: str | None
    resolution: str | None
    opened_at: datetime
    closed_at: datetime | None
    # Why the case waits on a person after an error of its SOP at run time (a task in its
    # step's error queue says what to do); null when it is not stalled.
    stalled: str | None = None


class CaseOut(CaseSummary):
    invoice_ids: list[str]
    data: dict[str, Any]
    opened_by: str
    tasks: list[TaskOut]
    escalations: list[EscalationLink]
    history: list[HistoryEntry]
    revision: int
    # What the case waits on now (GET /cases/{id}): people, timers, outages, leads.
    waiting_on: WaitingOn | None = None
    # The escalation matrix version its routes were resolved from (null: opened before the
    # matrix had versions).
    escalation_matrix_version: int | None = None

    @classmethod
    def of(cls, s: CaseSnapshot, waiting_on: WaitingOn | None = None) -> CaseOut:
        return cls(
            **s.model_dump(exclude={"tasks", "history", "sop", "amount", "status", "escalations"}),
            escalations=s.escalations,
            status=s.status.value,
            amount=str(s.amount),
            sop=SopOut(**s.sop.model_dump()),
            tasks=[TaskOut.of(t) for t in s.tasks],
            history=s.history,
            waiting_on=waiting_on,
        )


class CompleteBody(RequestBody):
    outcome: ShortText
    data: CaseData = Field(default_factory=dict)
    note: Note | None = None


class PauseBody(RequestBody):
    reason: str = Field(
        min_length=1, max_length=200, pattern=NO_NUL, examples=["awaiting_customer"]
    )
    until: Instant | None = Field(default=None, description="resume by itself at this instant")


class EscalateBody(RequestBody):
    reason: Reason
    task_id: ShortText | None = None


class ReassignBody(RequestBody):
    to_user: ShortText | None = None
    to_queue: ShortText | None = None
    note: Note | None = None


class ActionBody(RequestBody):
    note: Note | None = None


class EscalationOut(BaseModel):
    id: str
    case_id: str
    task_id: str | None
    step: str | None
    kind: str
    reason: str
    status: str
    level: int
    level_name: str
    queue: str
    owner: str | None
    vendor: str | None
    region: str
    opened_at: datetime
    due_at: datetime | None
    resolved_at: datetime | None
    # Manual escalations of the same work that joined this one (each a note on its history).
    joined: int = 0
    history: list[HistoryEntry] = Field(default_factory=list)

    @classmethod
    def of(cls, esc: EscalationSnapshot) -> EscalationOut:
        return cls.model_validate(esc.model_dump())
