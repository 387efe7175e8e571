"""The reconciler: the read model compared with what Temporal holds, and repaired.

The projection can only ever add a newer revision; a state written from a workflow task
Temporal then lost (a worker or server killed at the wrong moment) can sit in the read
model with a revision Temporal never reached, and block every later projection. The
reconciler compares each open case (and those closed recently) with its workflow's state
(the `snapshot` query, else its history replayed: Temporal's, or the archive's) and, where
they differ, replaces the case's rows with Temporal's state and records the repair
(`reconciliations`). Only a state Temporal answered with may win, and only over the very
row that was compared: a projection landing meanwhile is newer and stays.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.service import RPCError

from audit.sources import CaseNotFoundError, replayed_state
from domain.case_models import CaseSnapshot
from store.read_model import (
    case_differences,
    cases_to_reconcile,
    escalation_differences,
    escalations_to_reconcile,
    replace_case_if,
    replace_escalation_if,
    stored_case,
    stored_escalation,
)
from store.tables import ReconciliationRow
from workflows.client import CaseCommandError, get_case, get_escalation, open_case_ids

log = logging.getLogger("casebook.reconcile")
# Where Temporal's state of a case came from.
QUERY = "query"
HISTORY = "history"
# The first pass waits this long after start: the process serves first, then looks back.
FIRST_PASS_AFTER_S = 5.0


@dataclass(frozen=True)
class Difference:
    """A case the read model shows otherwise than Temporal does."""

    case_id: str  # or an escalation's id
    read_model_revision: int | None
    temporal_revision: int
    source: str  # where Temporal's state came from: the query, or the replayed history
    differences: list[str]


@dataclass
class Report:
    """One pass: what was compared, what differed, what was repaired, what could not be read."""

    checked: int = 0
    differing: list[Difference] = field(default_factory=list)
    repaired: list[Difference] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)  # changed while compared: next pass
    unreadable: dict[str, str] = field(default_factory=dict)  # case id -> why

    def lines(self) -> list[str]:
        """The report as an operator reads it."""
        out = [
            f"compared {self.checked} (cases, escalations): {len(self.differing)} differed, "
            f"{len(self.repaired)} repaired, {len(self.moved)} moved meanwhile, "
            f"{len(self.unreadable)} unreadable"
        ]
        repaired = {d.case_id for d in self.repaired}
        for d in self.differing:
            verb = "repaired" if d.case_id in repaired else "differs"
            out.append(
                f"{verb} {d.case_id} (read model r{d.read_model_revision}, Temporal "
                f"r{d.temporal_revision} from its {d.source})"
            )
            out += [f"  {line}" for line in d.differences]
        out += [f"unreadable {cid}: {why}" for cid, why in self.unreadable.items()]
        return out


async def reconcile(
    client: Client,
    engine: Engine,
    task_queue: str,
    *,
    repair: bool = True,
    closed_within: timedelta = timedelta(hours=72),
    case_ids: Iterable[str] | None = None,
) -> Report:
    """Compare (and with `repair`, repair) the read model's open and recently closed cases
    and Temporal's running ones; `case_ids` narrows the pass to those cases."""
    report = Report()
    escalation_ids: Iterable[str] = ()
    if case_ids is None:
        case_ids = await _candidates(client, engine, task_queue, closed_within)
        escalation_ids = await _escalation_candidates(client, engine, task_queue, closed_within)
    for case_id in case_ids:
        await _reconcile_case(client, engine, case_id, repair, report)
    for escalation_id in escalation_ids:
        await _reconcile_escalation(client, engine, escalation_id, repair, report)
    return report


async def reconcile_escalations(
    client: Client, engine: Engine, escalation_ids: Iterable[str], repair: bool = True
) -> Report:
    """The same for escalations (the lead board), by id."""
    report = Report()
    for escalation_id in escalation_ids:
        await _reconcile_escalation(client, engine, escalation_id, repair, report)
    return report


async def _candidates(
    client: Client, engine: Engine, task_queue: str, closed_within: timedelta
) -> list[str]:
    since = datetime.now(UTC) - closed_within
    stored = await asyncio.to_thread(cases_to_reconcile, engine, since)
    running = await open_case_ids(client, task_queue)
    return list(dict.fromkeys([*stored, *running]))


async def _escalation_candidates(
    client: Client, engine: Engine, task_queue: str, closed_within: timedelta
) -> list[str]:
    since = datetime.now(UTC) - closed_within
    stored = await asyncio.to_thread(escalations_to_reconcile, engine, since)
    query = (
        f"WorkflowType = 'EscalationWorkflow' AND TaskQueue = '{task_queue}' "
        "AND ExecutionStatus = 'Running'"
    )
    running = [wf.id async for wf in client.list_workflows(query)]
    return list(dict.fromkeys([*stored, *running]))


async def _reconcile_escalation(
    client: Client, engine: Engine, escalation_id: str, repair: bool, report: Report
) -> None:
    """An escalation started before `escalation-project-after-commit` projects from a local
    activity: its board row can hold a state Temporal lost, as a case's could. Only its
    workflow's answer may replace it."""
    stored = await asyncio.to_thread(stored_escalation, engine, escalation_id)
    try:
        snapshot = await get_escalation(client, escalation_id)
    except (CaseCommandError, RPCError) as exc:
        report.unreadable[escalation_id] = str(exc)
        return
    report.checked += 1
    found = escalation_differences(stored, snapshot)
    if not found:
        return
    revision = stored["revision"] if stored else None
    difference = Difference(escalation_id, revision, snapshot.revision, QUERY, found)
    record = _record(snapshot.case_id, difference)
    record.escalation_id = escalation_id
    await _repair(
        report,
        difference,
        repair,
        lambda: replace_escalation_if(engine, snapshot, revision, record),
    )


def _record(case_id: str, difference: Difference) -> ReconciliationRow:
    return ReconciliationRow(
        case_id=case_id,
        repaired_at=datetime.now(UTC),
        read_model_revision=difference.read_model_revision,
        temporal_revision=difference.temporal_revision,
        source=difference.source,
        differences=difference.differences,
    )


async def _repair(
    report: Report, difference: Difference, repair: bool, replace: Callable[[], bool]
) -> None:
    """Note the difference; with `repair`, replace the row (False: it moved meanwhile)."""
    report.differing.append(difference)
    if not repair:
        return
    if await asyncio.to_thread(replace):
        report.repaired.append(difference)
        log.warning(
            "read model repaired for %s: %s", difference.case_id, "; ".join(difference.differences)
        )
    else:
        report.moved.append(difference.case_id)


async def _reconcile_case(
    client: Client, engine: Engine, case_id: str, repair: bool, report: Report
) -> None:
    # The read model first: a projection landing after this read is newer than what was
    # read, and the compare-and-swap below will then leave it alone.
    stored = await asyncio.to_thread(stored_case, engine, case_id)
    try:
        snapshot, source = await temporal_state(client, engine, case_id)
    except (CaseNotFoundError, CaseCommandError) as exc:
        report.unreadable[case_id] = str(exc)
        return
    report.checked += 1
    found = case_differences(stored, snapshot)
    if not found:
        return
    revision = stored.revision if stored else None
    difference = Difference(case_id, revision, snapshot.revision, source, found)
    record = _record(case_id, difference)
    await _repair(
        report, difference, repair, lambda: replace_case_if(engine, snapshot, revision, record)
    )


async def temporal_state(client: Client, engine: Engine, case_id: str) -> tuple[CaseSnapshot, str]:
    """The case as Temporal holds it: its workflow's answer, or its history replayed (no
    worker answering, or Temporal past its retention: the archive)."""
    try:
        return await get_case(client, case_id), QUERY
    except CaseCommandError as exc:
        if exc.kind not in ("unavailable", "not_found"):
            raise
    return await replayed_state(client, engine, case_id), HISTORY


async def reconcile_periodically(
    client: Client,
    engine: Engine,
    task_queue: str,
    every: float,
    closed_within: timedelta,
    on_report: Callable[[Report], None] | None = None,
) -> None:
    """A pass shortly after start (a restart is when lost states show), then every `every`
    seconds, until cancelled. A failed pass is logged and the next one comes on time."""
    await asyncio.sleep(min(every, FIRST_PASS_AFTER_S))
    while True:
        try:
            report = await reconcile(client, engine, task_queue, closed_within=closed_within)
        except asyncio.CancelledError:
            raise
        except Exception:  # an outage of Temporal or the database: the next pass retries
            log.exception("reconciler pass failed")
        else:
            if report.differing:
                log.warning("reconciler: %s", report.lines()[0])
            if on_report is not None:
                on_report(report)
        await asyncio.sleep(every)


async def reconcile_after_start(
    client: Client, engine: Engine, task_queue: str, closed_within: timedelta
) -> None:
    """One pass shortly after a worker starts (a worker killed mid-flight is when Temporal
    drops a state the read model may already show); errors are logged, never raised."""
    await asyncio.sleep(FIRST_PASS_AFTER_S)
    try:
        report = await reconcile(client, engine, task_queue, closed_within=closed_within)
    except Exception:  # the worker serves on; the API's periodic pass comes anyway
        log.exception("reconciler pass after start failed")
        return
    if report.differing:
        log.warning("reconciler after start: %s", report.lines()[0])
