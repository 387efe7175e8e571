"""SLA timers: many open cases whose deadlines fall at a steady rate; lag to the lead board.

A dispute version whose triage SLA is a few seconds on the 24x7 calendar is published;
cases are opened at the rate their deadlines should fall (a deadline is its opening plus
the budget), then nothing else happens while the breaches arrive. The lag of a breach is
the time from its task's `sla_due` until its escalation shows on `GET /escalations`.
Ramp segments then open cases faster, to find the rate at which the lag starts to grow.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, select

from bench.context import Bench
from bench.cpu import cpu_used, per_unit
from bench.progress import say
from bench.stack import next_dispute_version, publish_short_sla_dispute, retire_dispute
from bench.stats import percentile
from store.tables import EscalationRow

LAG_TARGET_S = 1.0
RATE_OF_BASELINE = 0.55  # the target asks for at least half the baseline's workflows/s
POLL_S = 0.1  # how often the board is read: the lag is known to about this much
BOARD_SLACK = 50  # rows re-read behind the last seen, in case the board reorders a little
BOARD_PAGE = 200
MAX_IN_FLIGHT = 64  # POST /cases at once while opening on schedule
BUDGET_SLACK = 1.25  # opening can run behind schedule: breaches must not start before it ends
BUDGET_MARGIN_S = 5
WATCH_TAIL_S = 60.0


@dataclass
class Breach:
    case_id: str
    segment: int
    due: float  # the task's sla_due, epoch seconds
    seen: float | None = None

    @property
    def lag(self) -> float | None:
        return None if self.seen is None else self.seen - self.due


async def sla_timers(bench: Bench, baseline_per_s: float) -> dict[str, float]:
    rate = baseline_per_s * RATE_OF_BASELINE
    segments = [(rate, bench.sizes.sla_cases)]
    segments += [(baseline_per_s * k, n) for k, n in bench.sizes.sla_ramp]
    opening_s = sum(n / r for r, n in segments)
    budget = math.ceil(opening_s * BUDGET_SLACK + BUDGET_MARGIN_S)
    version = await asyncio.to_thread(next_dispute_version, bench.target)
    await asyncio.to_thread(publish_short_sla_dispute, bench.target, version, budget)
    say(f"sla: dispute v{version} published, triage SLA {budget}s on 24x7")
    try:
        return await _measure(bench, segments, budget)
    finally:
        await asyncio.to_thread(retire_dispute, bench.target, version)


async def _measure(
    bench: Bench, segments: list[tuple[float, int]], budget: int
) -> dict[str, float]:
    board_before = await asyncio.to_thread(_escalations_on_board, bench)
    plan = ", ".join(f"{n} at {r:.1f}/s" for r, n in segments)
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
        await _watch_board(bench, breaches, board_before)
    figures = _figures(breaches, segments, open_cases, budget, opened_by)
    return figures | per_unit(used, len(breaches), "cpu_per_breach")


async def _open_on_schedule(bench: Bench, segments: list[tuple[float, int]]) -> list[Breach]:
    """Open each segment's cases evenly spaced at its rate; note each triage deadline."""
    breaches: list[Breach] = []
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def one(segment: int) -> None:
        async with gate:
            case = await bench.api.open_dispute(bench.agent)
        triage = await bench.api.first_task(bench.agent, case)
        due = datetime.fromisoformat(triage["sla_due"]).timestamp()
        breaches.append(Breach(case["id"], segment, due))

    started = time.perf_counter()
    at = 0.0
    pending: list[asyncio.Task[None]] = []
    for segment, (rate, count) in enumerate(segments):
        for _ in range(count):
            await asyncio.sleep(max(0.0, started + at - time.perf_counter()))
            pending.append(asyncio.create_task(one(segment)))
            at += 1 / rate
    await asyncio.gather(*pending)
    return breaches


def _escalations_on_board(bench: Bench) -> int:
    with Session(bench.target.engine) as session:
        query = select(func.count()).where(EscalationRow.status == "open")
        return session.exec(query).one()


async def _watch_board(bench: Bench, breaches: list[Breach], board_before: int) -> None:
    """Read the open escalations' newest rows until every breach has shown (or time is up).

    The board lists open escalations by due time: new ones come after those already there,
    so each read starts a little before the last row seen.
    """
    waiting = {b.case_id: b for b in breaches}
    new_ids: set[str] = set()
    deadline = max(b.due for b in breaches) + WATCH_TAIL_S
    next_report = time.time() + 10
    while waiting and time.time() < deadline:
        offset = max(0, board_before + len(new_ids) - BOARD_SLACK)
        rows = await bench.api.escalations(
            bench.lead, status="open", offset=offset, limit=BOARD_PAGE
        )
        now = time.time()
        for row in rows:
            breach = waiting.pop(row["case_id"], None)
            if breach is not None:
                breach.seen = now
                new_ids.add(row["id"])
        if now > next_report:
            say(f"sla: {len(breaches) - len(waiting)}/{len(breaches)} escalations on the board")
            next_report = now + 10
        await asyncio.sleep(POLL_S)


def _figures(
    breaches: list[Breach],
    segments: list[tuple[float, int]],
    open_cases: int,
    budget: int,
    opening_s: float,
) -> dict[str, float]:
    main = [b for b in breaches if b.segment == 0]
    lags = [b.lag for b in main if b.lag is not None]
    figures = {
        "target_rate_per_s": segments[0][0],
        "breach_rate_per_s": _rate(main),
        "open_cases": open_cases,
        "budget_s": budget,
        "opening_s": opening_s,
        "lag_p50_ms": percentile(lags, 50) * 1000,
        "lag_p99_ms": percentile(lags, 99) * 1000,
        "lag_max_ms": max(lags, default=math.nan) * 1000,
        "unseen": sum(1 for b in breaches if b.seen is None),
    }
    say(
        f"sla: breach rate {figures['breach_rate_per_s']:.1f}/s "
        f"(target {figures['target_rate_per_s']:.1f}/s), lag p99 {figures['lag_p99_ms']:.0f} ms"
    )
    figures.update(_ramp(breaches, len(segments)))
    return figures


def _ramp(breaches: list[Breach], segments: int) -> dict[str, float]:
    """Lag by segment; the lowest breach rate whose lag p99 misses the target."""
    figures: dict[str, float] = {}
    grows_at = math.nan
    for segment in range(segments):
        part = [b for b in breaches if b.segment == segment]
        rate = _rate(part)
        lags = [b.lag for b in part if b.lag is not None]
        p99 = percentile(lags, 99)
        if segment:
            figures[f"ramp{segment}_rate_per_s"] = rate
            figures[f"ramp{segment}_lag_p99_ms"] = p99 * 1000
            say(f"sla: ramp {segment}: {rate:.1f} breaches/s, lag p99 {p99 * 1000:.0f} ms")
        missed = math.isnan(p99) or p99 > LAG_TARGET_S or len(lags) < len(part)
        if missed and math.isnan(grows_at):
            grows_at = rate
    figures["lag_grows_at_per_s"] = grows_at
    figures["highest_rate_tried_per_s"] = max(
        (_rate([b for b in breaches if b.segment == s]) for s in range(segments)), default=0.0
    )
    return figures


def _rate(breaches: list[Breach]) -> float:
    """Deadlines per second across a segment (they were spread evenly)."""
    dues = sorted(b.due for b in breaches)
    if len(dues) < 2 or dues[-1] == dues[0]:
        return math.nan
    return (len(dues) - 1) / (dues[-1] - dues[0])
