"""SLA timers: many open cases whose deadlines fall at a steady rate; lag to the lead board.

First the backdrop: `sla_open_cases` idle open cases (and as many idle baseline SLA
workflows, each on a timer a day away). Then the baseline: raw workflows, each sleeping
on a timer at the same spread deadlines Casebook's breaches will have, whose firing runs
one activity; its lag is from the deadline to the activity's start. Then Casebook: a
dispute version whose triage SLA is a few seconds on the 24x7 calendar is published;
cases are opened at the rate their deadlines should fall (a deadline is its opening plus
the budget), then nothing else happens while the breaches arrive. The lag of a breach is
the time from its task's `sla_due` until its escalation shows on `GET /escalations`.
Segments: a quiet one at a quarter of the main rate, the main one (0.55x the baseline's
workflows/s), then ramp segments faster, to find the rate at which the lag starts to grow.
A breach whose escalation never reaches the board fails the scenario.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select
from temporalio.service import RPCError, RPCStatusCode

from bench import baseline
from bench.context import Bench
from bench.cpu import cpu_used, per_unit
from bench.progress import say
from bench.scenarios import open_many
from bench.sizes import Sizes
from bench.stack import next_dispute_version, publish_short_sla_dispute, retire_dispute
from bench.stats import percentile
from store.tables import EscalationRow

LAG_TARGET_S = 1.0
RATE_OF_BASELINE = 0.55  # the target asks for at least half the baseline's workflows/s
QUIET_OF_MAIN = 0.25  # the quiet segment: where the lag must stay under LAG_TARGET_S
POLL_S = 0.1  # how often the board is read: the lag is known to about this much
BOARD_SLACK = 50  # rows re-read before the first unseen breach's place, in case of ties
BOARD_PAGE = 200
MAX_IN_FLIGHT = 64  # POST /cases at once while opening on schedule
BUDGET_SLACK = 1.25  # opening can run behind schedule: breaches must not start before it ends
BUDGET_MARGIN_S = 5
BASELINE_LEAD_S = 10.0  # from the baseline's starts to its first deadline
BASELINE_STARTS_PER_S = 20.0  # assumed at least, to give every start time before its deadline
WATCH_TAIL_S = 60.0


@dataclass(frozen=True)
class Segment:
    name: str  # "quiet", "main", "ramp1", ...
    rate: float  # deadlines per second
    count: int


@dataclass
class Breach:
    case_id: str
    segment: int
    due: float  # the task's sla_due, epoch seconds
    seen: float | None = None
    late: bool = False  # on the board, but found only by the check after the watch

    @property
    def lag(self) -> float | None:
        return None if self.seen is None else self.seen - self.due


def segments_of(sizes: Sizes, baseline_per_s: float) -> list[Segment]:
    """The breach rates to try, slowest first: quiet, main, then the ramp."""
    rate = baseline_per_s * RATE_OF_BASELINE
    segments = [Segment("quiet", rate * QUIET_OF_MAIN, sizes.sla_quiet_cases)]
    segments.append(Segment("main", rate, sizes.sla_cases))
    ramp = [
        Segment(f"ramp{i}", baseline_per_s * k, n) for i, (k, n) in enumerate(sizes.sla_ramp, 1)
    ]
    return [s for s in segments + ramp if s.count > 0]


async def sla_timers(bench: Bench, baseline_per_s: float) -> dict[str, float]:
    segments = segments_of(bench.sizes, baseline_per_s)
    opening_s = sum(s.count / s.rate for s in segments)
    budget = math.ceil(opening_s * BUDGET_SLACK + BUDGET_MARGIN_S)
    open_cases = await _backdrop(bench)
    base = await _baseline(bench, segments)
    version = await asyncio.to_thread(next_dispute_version, bench.target)
    await asyncio.to_thread(publish_short_sla_dispute, bench.target, version, budget)
    say(f"sla: dispute v{version} published, triage SLA {budget}s on 24x7")
    try:
        mine = await _measure(bench, segments, budget)
    finally:
        await asyncio.to_thread(retire_dispute, bench.target, version)
    return mine | base | {"idle_open_cases": open_cases}


async def _backdrop(bench: Bench) -> int:
    """`sla_open_cases` open cases, and as many idle baseline SLA workflows; returns that."""
    missing = bench.sizes.sla_open_cases - await asyncio.to_thread(bench.open_cases)
    if missing > 0:
        say(f"sla: opening {missing} idle cases for {bench.sizes.sla_open_cases} open")
        await open_many(bench, missing)
    open_cases = await asyncio.to_thread(bench.open_cases)
    if open_cases > bench.baseline.idle_sla_workflows:
        say(f"sla: {open_cases} idle baseline SLA workflows")
    await baseline.top_up_idle_sla_workflows(bench.baseline, open_cases)
    return open_cases


async def _baseline(bench: Bench, segments: list[Segment]) -> dict[str, float]:
    """The baseline's timer -> activity lag at the same spread of deadlines."""
    total = sum(s.count for s in segments)
    first = time.time() + BASELINE_LEAD_S + total / BASELINE_STARTS_PER_S
    breaches: list[Breach] = []
    at = 0.0
    for index, segment in enumerate(segments):
        for _ in range(segment.count):
            breaches.append(Breach("", index, first + at))
            at += 1 / segment.rate
    say(f"sla: baseline: {total} timers, the first in {first - time.time():.0f}s")
    with cpu_used(bench.processes) as used:
        lags = await baseline.sla_timers(bench.baseline, [b.due for b in breaches])
    for breach, lag in zip(breaches, lags, strict=True):
        breach.seen = None if math.isnan(lag) else breach.due + lag
    figures = _lag_figures(breaches, segments, "baseline_")
    return figures | per_unit(used, total, "baseline_cpu_per_timer")


async def _measure(bench: Bench, segments: list[Segment], budget: int) -> dict[str, float]:
    board_before = await asyncio.to_thread(_escalations_on_board, bench)
    plan = ", ".join(f"{s.count} at {s.rate:.1f}/s" for s in segments)
    say(f"sla: opening cases on schedule ({plan})")
    opened_by = time.time()
    breaches = await _open_on_schedule(bench, segments)
    opened_by = time.time() - opened_by
    open_cases = await asyncio.to_thread(bench.open_cases)
    first_due = min(b.due for b in breaches)
    if first_due < time.time():
        say("sla: warning: breaches began before every case was open")
    say(f"sla: {open_cases} open cases; breaches from {first_due - time.time():.0f}s on")
    with cpu_used(bench.processes) as used:
        reordered = await _watch_board(bench, breaches, board_before)
    await _account_for_unseen(bench, breaches)
    figures = {
        "open_cases": open_cases,
        "budget_s": budget,
        "opening_s": opened_by,
        "unseen": sum(1 for b in breaches if b.seen is None),
        "found_after_watch": sum(1 for b in breaches if b.late),
        # Shown behind more than BOARD_SLACK newer rows: lost to a read from the newest.
        "reordered_beyond_slack": reordered,
    }
    figures |= _lag_figures(breaches, segments, "")
    return figures | per_unit(used, len(breaches), "cpu_per_breach")


async def _open_on_schedule(bench: Bench, segments: list[Segment]) -> list[Breach]:
    """Open each segment's cases evenly spaced at its rate; note each triage deadline."""
    breaches: list[Breach] = []
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def one(segment: int) -> None:
        async with gate:
            case = await bench.api.open_dispute_patiently(bench.agent)
        triage = await bench.api.first_task(bench.agent, case)
        due = datetime.fromisoformat(triage["sla_due"]).timestamp()
        breaches.append(Breach(case["id"], segment, due))

    started = time.perf_counter()
    at = 0.0
    pending: list[asyncio.Task[None]] = []
    for index, segment in enumerate(segments):
        for _ in range(segment.count):
            await asyncio.sleep(max(0.0, started + at - time.perf_counter()))
            pending.append(asyncio.create_task(one(index)))
            at += 1 / segment.rate
    await asyncio.gather(*pending)
    return breaches


def _escalations_on_board(bench: Bench) -> int:
    with Session(bench.target.engine) as session:
        query = select(func.count()).where(EscalationRow.status == "open")
        return session.exec(query).one()


async def _watch_board(bench: Bench, breaches: list[Breach], board_before: int) -> int:
    """Read the open escalations' newest rows until every breach has shown (or time is up).

    The board lists open escalations by due time, and an escalation's due time grows with
    its opening: an escalation not shown yet opens no earlier than its breach's `sla_due`,
    so it sorts after every row opened before the earliest such deadline. Each read starts
    there (less a little slack) and runs past the newest row seen, however late one
    escalation lags behind the others: a read from just before the newest row seen missed
    those that reached the board out of order by more than the slack. Returns how many did
    so here (what such a read lost).
    """
    waiting = {b.case_id: b for b in breaches}
    opened: list[float] = []  # opening of each escalation of ours seen, sorted
    reordered = 0
    deadline = max(b.due for b in breaches) + WATCH_TAIL_S
    next_report = time.time() + 10
    while waiting and time.time() < deadline:
        now_s = time.time()
        earliest_unseen = min(b.due for b in waiting.values())
        before = bisect.bisect_left(opened, earliest_unseen)
        offset = max(0, board_before + before - BOARD_SLACK)
        # Through the newest row seen and past it, by as many rows as breaches are due.
        due = sum(1 for b in waiting.values() if b.due <= now_s + POLL_S)
        rows = await _board_from(bench, offset, len(opened) - before + due + 2 * BOARD_SLACK)
        now = time.time()
        for row in rows:
            breach = waiting.pop(row["case_id"], None)
            if breach is not None:
                breach.seen = now
                at = datetime.fromisoformat(row["opened_at"]).timestamp()
                reordered += len(opened) - bisect.bisect_right(opened, at) > BOARD_SLACK
                bisect.insort(opened, at)
        if now > next_report:
            say(f"sla: {len(breaches) - len(waiting)}/{len(breaches)} escalations on the board")
            next_report = now + 10
        await asyncio.sleep(POLL_S)
    return reordered


async def _board_from(bench: Bench, offset: int, rows: int) -> list[dict[str, Any]]:
    """Up to `rows` open escalations from `offset` on, a page at a time, as a lead reads."""
    found: list[dict[str, Any]] = []
    while len(found) < rows:
        page = await bench.api.escalations(
            bench.lead, status="open", offset=offset + len(found), limit=BOARD_PAGE
        )
        found += page
        if len(page) < BOARD_PAGE:
            break
    return found


async def _account_for_unseen(bench: Bench, breaches: list[Breach]) -> None:
    """Where each breach the watcher never saw went; raises if one never reached the board.

    An escalation on the board (in any status) that the watcher missed is counted late:
    seen now, so its lag is a lower bound. One not on the board is a lost breach, told
    apart by what Temporal holds: no escalation workflow (the case never escalated), or one
    that runs but was never projected.
    """
    lost: list[str] = []
    for breach in (b for b in breaches if b.seen is None):
        if await bench.api.escalations(bench.lead, case_id=breach.case_id):
            breach.seen = time.time()
            breach.late = True
            continue
        lost.append(f"{breach.case_id} ({await _escalation_in_temporal(bench, breach)})")
    late = sum(1 for b in breaches if b.late)
    if late:
        say(f"sla: {late} escalations were on the board but found only after the watch")
    if lost:
        raise BreachLost(
            f"{len(lost)} of {len(breaches)} breaches never reached the board: "
            + ", ".join(lost[:10])
        )


async def _escalation_in_temporal(bench: Bench, breach: Breach) -> str:
    """What Temporal says of the case's first escalation workflow (`{case_id}.e1`)."""
    try:
        described = await bench.temporal.get_workflow_handle(f"{breach.case_id}.e1").describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return "no escalation workflow in Temporal"
        raise
    return f"escalation workflow {described.status.name if described.status else '?'}"


class BreachLost(RuntimeError):
    """A breached SLA whose escalation never reached the lead board."""


def _lag_figures(breaches: list[Breach], segments: list[Segment], prefix: str) -> dict[str, float]:
    """Lag p50/p99/max of the main segment, p99 of every other; where the lag grows."""
    figures: dict[str, float] = {}
    grows_at = math.nan
    for index, segment in enumerate(segments):
        part = [b for b in breaches if b.segment == index]
        rate = _rate(part)
        lags = [b.lag for b in part if b.lag is not None]
        p99 = percentile(lags, 99)
        name = "" if segment.name == "main" else f"{segment.name}_"
        figures[f"{prefix}{name}breach_rate_per_s"] = rate
        figures[f"{prefix}{name}lag_p99_ms"] = p99 * 1000
        if segment.name == "main":
            figures[f"{prefix}target_rate_per_s"] = segment.rate
            figures[f"{prefix}lag_p50_ms"] = percentile(lags, 50) * 1000
            figures[f"{prefix}lag_max_ms"] = max(lags, default=math.nan) * 1000
        who = prefix.rstrip("_") or "casebook"
        say(f"sla: {who} {segment.name}: {rate:.1f} breaches/s, lag p99 {p99 * 1000:.0f} ms")
        missed = math.isnan(p99) or p99 > LAG_TARGET_S or len(lags) < len(part)
        if missed and math.isnan(grows_at):
            grows_at = rate
    figures[f"{prefix}lag_grows_at_per_s"] = grows_at
    return figures


def _rate(breaches: list[Breach]) -> float:
    """Deadlines per second across a segment (they were spread evenly)."""
    dues = sorted(b.due for b in breaches)
    if len(dues) < 2 or dues[-1] == dues[0]:
        return math.nan
    return (len(dues) - 1) / (dues[-1] - dues[0])
