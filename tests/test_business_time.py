"""Business time: calendars, budgets and the SLA clock (pure code, no Temporal needed)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from escalations import (
    Budget,
    CalendarConfigError,
    InvalidBudgetError,
    SlaClock,
    SlaClockError,
    UnknownCalendarError,
    calendar_names,
    get_calendar,
    load_calendars,
    parse_budget,
)

SINGAPORE = ZoneInfo("Asia/Singapore")
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
H = timedelta(hours=1)


def local(
    zone: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=zone)


# --- calendars -------------------------------------------------------------------------


def test_ships_the_region_calendars() -> None:
    assert set(calendar_names()) >= {"SG", "US", "GB", "AE", "ID", "KR", "JP", "FR", "DE", "24x7"}
    assert get_calendar("US").timezone == "America/New_York"
    assert get_calendar("SG").working_day == 9 * H


def test_unknown_calendar_names_the_known_ones() -> None:
    with pytest.raises(UnknownCalendarError) as raised:
        get_calendar("Atlantis")
    assert isinstance(raised.value, KeyError)
    assert "Atlantis" in str(raised.value) and "SG" in str(raised.value)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        get_calendar("SG").is_open(datetime(2024, 3, 1, 10))


def test_open_and_next_open_in_singapore() -> None:
    sg = get_calendar("SG")
    assert sg.is_open(local(SINGAPORE, 2024, 3, 1, 9))  # Friday 09:00, the opening instant
    assert not sg.is_open(local(SINGAPORE, 2024, 3, 1, 18))  # closing instant is closed
    assert not sg.is_open(local(SINGAPORE, 2024, 3, 2, 12))  # Saturday
    friday_noon = local(SINGAPORE, 2024, 3, 1, 12)
    assert sg.next_open(friday_noon) == friday_noon
    assert sg.next_open(local(SINGAPORE, 2024, 3, 1, 19)) == local(SINGAPORE, 2024, 3, 4, 9)
    assert sg.next_open(friday_noon).tzinfo == UTC


def test_four_hours_from_friday_afternoon_in_singapore_is_monday_morning() -> None:
    # 16:00-18:00 Friday counts 2h; the other 2h run from 09:00 Monday.
    due = get_calendar("SG").add_business_time(local(SINGAPORE, 2024, 3, 1, 16), 4 * H)
    assert due == local(SINGAPORE, 2024, 3, 4, 11)


def test_christmas_and_boxing_day_are_skipped_in_england() -> None:
    gb = get_calendar("GB")  # 09:00-17:30; 25 and 26 Dec 2024 are Wednesday and Thursday
    due = gb.add_business_time(local(LONDON, 2024, 12, 24, 15), 4 * H)
    assert due == local(LONDON, 2024, 12, 27, 10, 30)
    assert not gb.is_working_date(date(2024, 12, 25))
    assert not gb.is_working_date(date(2024, 12, 26))


def test_observed_holidays_close_new_york() -> None:
    # Christmas 2022 fell on a Sunday; New York observed it on Monday 26 December.
    us = get_calendar("US")
    assert not us.is_working_date(date(2022, 12, 26))
    due = us.add_business_time(local(NEW_YORK, 2022, 12, 23, 16), 2 * H)
    assert due == local(NEW_YORK, 2022, 12, 27, 10)


def test_the_24x7_calendar_is_wall_time() -> None:
    wall = get_calendar("24x7")
    saturday_night = datetime(2024, 12, 28, 23, 30, tzinfo=UTC)
    assert wall.is_open(saturday_night)
    assert wall.add_business_time(saturday_night, 50 * H) == saturday_night + 50 * H
    later = saturday_night + timedelta(days=9, minutes=7)
    assert wall.business_time_between(saturday_night, later) == later - saturday_night


def test_a_start_outside_hours_counts_from_the_next_opening() -> None:
    sg = get_calendar("SG")
    saturday = local(SINGAPORE, 2024, 3, 2, 14)
    assert sg.add_business_time(saturday, 3 * H) == local(SINGAPORE, 2024, 3, 4, 12)
    before_opening = local(SINGAPORE, 2024, 3, 4, 7)
    assert sg.add_business_time(before_opening, 30 * timedelta(minutes=1)) == local(
        SINGAPORE, 2024, 3, 4, 9, 30
    )


def test_a_budget_that_fills_the_day_is_due_at_closing_not_next_opening() -> None:
    sg = get_calendar("SG")
    due = sg.add_business_time(local(SINGAPORE, 2024, 3, 1, 9), 9 * H)
    assert due == local(SINGAPORE, 2024, 3, 1, 18)


def test_a_zero_budget_is_due_at_the_start() -> None:
    saturday = local(SINGAPORE, 2024, 3, 2, 14)
    assert get_calendar("SG").add_business_time(saturday, timedelta(0)) == saturday
    with pytest.raises(ValueError, match="negative"):
        get_calendar("SG").add_business_time(saturday, -H)


def test_working_time_between_is_half_open_and_empty_when_reversed() -> None:
    sg = get_calendar("SG")
    friday_9, monday_9 = local(SINGAPORE, 2024, 3, 1, 9), local(SINGAPORE, 2024, 3, 4, 9)
    assert sg.business_time_between(friday_9, monday_9) == 9 * H
    assert sg.business_time_between(monday_9, friday_9) == timedelta(0)


def test_many_business_days_are_counted_quickly() -> None:
    # 500 business days is about two calendar years of windows, scanned day by day.
    sg = get_calendar("SG")
    start = local(SINGAPORE, 2024, 1, 2, 9)
    due = sg.add_business_time(start, 500 * sg.working_day)
    assert sg.business_time_between(start, due) == 500 * sg.working_day
    assert date(2025, 12, 1) < due.date() < date(2026, 2, 1)


def test_loading_a_calendar_file(tmp_path: Path) -> None:
    path = tmp_path / "calendars.yaml"
    path.write_text(
        "OPS:\n  timezone: Asia/Singapore\n  working_days: [sat, sun]\n"
        '  working_hours: {start: "10:00", end: "14:00"}\n  closures: [2024-03-02]\n'
    )
    ops = load_calendars(path)["OPS"]
    saturday = local(SINGAPORE, 2024, 3, 2, 10)  # closed by the extra closure
    assert ops.add_business_time(saturday, H) == local(SINGAPORE, 2024, 3, 3, 11)


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (
            "X:\n  timezone: Mars/Olympus\n  working_days: [mon]\n"
            '  working_hours: {start: "09:00", end: "17:00"}\n',
            "timezone",
        ),
        (
            "X:\n  timezone: UTC\n  working_days: [funday]\n"
            '  working_hours: {start: "09:00", end: "17:00"}\n',
            "working_days",
        ),
        (
            "X:\n  timezone: UTC\n  working_days: [mon]\n"
            '  working_hours: {start: "17:00", end: "09:00"}\n',
            "working_hours",
        ),
        (
            "X:\n  timezone: UTC\n  working_days: [mon]\n"
            '  working_hours: {start: "09:00", end: "17:00"}\n  holidays: {country: ZZ}\n',
            "holidays",
        ),
    ],
)
def test_bad_calendar_files_are_refused_with_the_field(
    tmp_path: Path, body: str, complaint: str
) -> None:
    path = tmp_path / "calendars.yaml"
    path.write_text(body)
    with pytest.raises(CalendarConfigError, match=complaint):
        load_calendars(path)


# --- budgets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "days", "seconds"),
    [("4h", 0, 14400), ("2d", 2, 0), ("30s", 0, 30), ("90m", 0, 5400), ("1d4h", 1, 14400)],
)
def test_parse_budget(text: str, days: int, seconds: int) -> None:
    budget = parse_budget(text)
    assert budget == Budget(days=days, seconds=seconds)
    assert parse_budget(str(budget)) == budget


@pytest.mark.parametrize("text", ["", "0h", "0d0s", "-4h", "4", "h", "4x", "4h1d", "1h1h", "1.5h"])
def test_invalid_budgets_name_the_text(text: str) -> None:
    with pytest.raises(InvalidBudgetError) as raised:
        parse_budget(text)
    assert repr(text) in str(raised.value)


def test_a_business_day_is_the_calendars_working_day() -> None:
    assert parse_budget("1d4h").as_timedelta(get_calendar("SG")) == 13 * H
    assert parse_budget("1d").as_timedelta(get_calendar("24x7")) == 24 * H


# --- the SLA clock ---------------------------------------------------------------------


def test_clock_due_and_warning_at_eighty_percent() -> None:
    clock = SlaClock.start("SG", "10h", local(SINGAPORE, 2024, 3, 4, 9))  # Monday
    assert clock.due_at() == local(SINGAPORE, 2024, 3, 5, 10)
    # 80% of 10h is 8h: Monday 09:00-17:00.
    assert clock.warning_at() == local(SINGAPORE, 2024, 3, 4, 17)
    assert not clock.is_warning(local(SINGAPORE, 2024, 3, 4, 16, 59))
    assert clock.is_warning(local(SINGAPORE, 2024, 3, 4, 17))
    assert not clock.is_breached(local(SINGAPORE, 2024, 3, 4, 23))
    assert clock.is_breached(local(SINGAPORE, 2024, 3, 5, 10))
    assert clock.remaining(local(SINGAPORE, 2024, 3, 4, 17)) == 2 * H
    assert clock.remaining(local(SINGAPORE, 2024, 3, 9)) == timedelta(0)


def test_pause_and_resume_move_the_deadline_by_the_paused_business_time() -> None:
    start = local(SINGAPORE, 2024, 3, 4, 9)
    clock = SlaClock.start("SG", "1d", start)
    assert clock.due_at() == local(SINGAPORE, 2024, 3, 4, 18)
    paused = clock.pause(local(SINGAPORE, 2024, 3, 4, 11), reason="waiting on customer")
    assert paused.is_paused and paused.due_at() is None and paused.warning_at() is None
    # Paused 11:00 Monday to 14:00 Tuesday: 7h + 5h = 12h of business time.
    resumed = paused.resume(local(SINGAPORE, 2024, 3, 5, 14))
    assert not resumed.is_paused
    original_due = clock.due_at()
    assert original_due is not None
    assert resumed.due_at() == get_calendar("SG").add_business_time(original_due, 12 * H)
    assert resumed.due_at() == local(SINGAPORE, 2024, 3, 6, 12)
    assert resumed.elapsed(local(SINGAPORE, 2024, 3, 5, 15)) == 3 * H


def test_pause_and_resume_refuse_what_the_state_does_not_allow() -> None:
    start = local(SINGAPORE, 2024, 3, 4, 9)
    clock = SlaClock.start("SG", "4h", start)
    with pytest.raises(SlaClockError, match="not paused"):
        clock.resume(start + H)
    with pytest.raises(SlaClockError, match="before"):
        clock.pause(start - H)
    paused = clock.pause(start + H)
    with pytest.raises(SlaClockError, match="already paused"):
        paused.pause(start + 2 * H)
    with pytest.raises(SlaClockError, match="before"):
        paused.resume(start)
    with pytest.raises(ValueError, match="naive"):
        paused.resume(datetime(2024, 3, 4, 12))


def test_a_budget_spent_before_a_pause_keeps_its_past_due_time() -> None:
    start = local(SINGAPORE, 2024, 3, 4, 9)
    clock = SlaClock.start("SG", "1h", start).pause(start + 3 * H)
    assert clock.due_at() == start + H
    assert clock.is_breached(start + 5 * H)


def test_clock_start_refuses_bad_calendars_and_budgets() -> None:
    start = local(SINGAPORE, 2024, 3, 4, 9)
    with pytest.raises(UnknownCalendarError):
        SlaClock.start("Atlantis", "4h", start)
    with pytest.raises(InvalidBudgetError, match="'soon'"):
        SlaClock.start("SG", "soon", start)
    with pytest.raises(ValidationError):
        SlaClock.start("SG", "4h", start, warning_ratio=1.5)
    with pytest.raises(ValidationError, match="naive"):
        SlaClock.start("SG", "4h", datetime(2024, 3, 4, 9))


def test_clock_round_trips_through_json() -> None:
    start = local(SINGAPORE, 2024, 3, 4, 9)
    clock = (
        SlaClock.start("SG", "1d4h", start, 0.75)
        .pause(start + H, "customer")
        .resume(start + 30 * H)
        .pause(start + 50 * H)
    )
    data = clock.model_dump(mode="json")
    assert data["budget"] == "1d4h"
    again = SlaClock.model_validate(data)
    assert again == clock
    assert SlaClock.model_validate_json(clock.model_dump_json()) == clock
    assert again.is_paused and again.elapsed(start + 60 * H) == clock.elapsed(start + 60 * H)


def test_stored_clocks_with_pauses_out_of_order_are_refused() -> None:
    start = "2024-03-04T01:00:00Z"
    bad = {
        "calendar": "SG",
        "budget": "4h",
        "started_at": start,
        "pauses": [{"paused_at": "2024-03-04T00:00:00Z"}],
    }
    with pytest.raises(ValidationError, match="before"):
        SlaClock.model_validate(bad)


# --- properties ------------------------------------------------------------------------

CALENDARS = st.sampled_from(["SG", "US", "GB", "AE", "FR", "JP", "24x7"])
INSTANTS = st.datetimes(
    min_value=datetime(2023, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
)
BUDGETS = st.integers(min_value=1, max_value=15 * 9 * 3600).map(lambda s: timedelta(seconds=s))
FEW = settings(max_examples=40, deadline=None)


@FEW
@given(name=CALENDARS, start=INSTANTS, budget=BUDGETS)
def test_due_is_not_before_start_and_lands_in_working_hours(
    name: str, start: datetime, budget: timedelta
) -> None:
    cal = get_calendar(name)
    due = cal.add_business_time(start, budget)
    assert due > start
    # Within a working window or exactly at its close: the microsecond before is working.
    assert cal.is_open(due - timedelta(microseconds=1))


@FEW
@given(name=CALENDARS, start=INSTANTS, budget=BUDGETS)
def test_working_time_up_to_the_due_instant_is_the_budget(
    name: str, start: datetime, budget: timedelta
) -> None:
    cal = get_calendar(name)
    assert cal.business_time_between(start, cal.add_business_time(start, budget)) == budget


@FEW
@given(name=CALENDARS, start=INSTANTS, first=BUDGETS, second=BUDGETS)
def test_a_budget_split_in_two_adds_up(
    name: str, start: datetime, first: timedelta, second: timedelta
) -> None:
    cal = get_calendar(name)
    in_two = cal.add_business_time(cal.add_business_time(start, first), second)
    assert in_two == cal.add_business_time(start, first + second)


@FEW
@given(
    name=CALENDARS,
    start=INSTANTS,
    seconds=st.integers(min_value=1, max_value=3 * 24 * 3600),
    pause_after=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10)),
    pause_for=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10)),
)
def test_pausing_never_brings_the_deadline_forward(
    name: str, start: datetime, seconds: int, pause_after: timedelta, pause_for: timedelta
) -> None:
    clock = SlaClock.start(name, Budget(seconds=seconds), start)
    paused_at = start + pause_after
    resumed = clock.pause(paused_at).resume(paused_at + pause_for)
    due, due_after_pause = clock.due_at(), resumed.due_at()
    assert due is not None and due_after_pause is not None
    assert due_after_pause >= due
    # The deadline moves by exactly the business time the pause took, if it came in time.
    if paused_at < due:
        cal = get_calendar(name)
        moved_by = cal.business_time_between(paused_at, paused_at + pause_for)
        assert due_after_pause == cal.add_business_time(due, moved_by)
    else:
        assert due_after_pause == due
    assert resumed.is_breached(due_after_pause)
    assert not resumed.is_breached(due_after_pause - timedelta(microseconds=1))
