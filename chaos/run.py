"""One fault run: the stack, the work, the faults, then the checks and the reconciler."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

from temporalio.client import Client

from bench.casebook_api import CasebookApi
from bench.progress import say
from bench.stack import ManagedStack, Target, next_dispute_version, publish_short_sla_dispute
from chaos import checks
from chaos.checks import Check
from chaos.faults import Fault, Faults
from chaos.sizes import ChaosSize
from chaos.work import (
    QUEUES,
    Agents,
    open_collection,
    open_dispute,
    put_invoices,
    put_overdue_customers,
)
from domain.case_models import CaseSnapshot, Role
from reconcile.reconciler import Report, reconcile, reconcile_escalations
from workflows.client import connect, get_case

SETTLE_S = 5.0  # after the last case closed: emails and escalations still in flight land
QUERY_RETRY_S = 1.0


@dataclass
class Outcome:
    faults: list[Fault] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return not self.checks or not all(c.ok for c in self.checks)


async def run(stack: ManagedStack, target: Target, size: ChaosSize) -> Outcome:
    """Open the disputes, let agents work them under faults, then check everything."""
    tag = uuid.uuid4().hex[:6]
    invoices = put_invoices(target.billing_url, target.billing_token, tag, size.disputes)
    debtors = put_overdue_customers(target.billing_url, target.billing_token, tag, size.collections)
    # A dispute version of the run's own: a triage SLA of seconds, on the 24x7 calendar.
    version = await asyncio.to_thread(next_dispute_version, target)
    await asyncio.to_thread(publish_short_sla_dispute, target, version, size.sla_s)
    api = CasebookApi.connect(target.api_url)
    opener = target.add_user(Role.AGENT)
    # The lead the breaches escalate to, with an address: escalation notices are mail too.
    target.add_user(Role.LEAD, ["disputes-leads"], email="lead@casebook.example")
    agents = Agents(api, [target.add_user(Role.AGENT, list(QUEUES)) for _ in range(size.agents)])
    faults = Faults(target.data_dir)  # type: ignore[arg-type]
    try:
        # The first disputes wait on nobody until their triage SLA is past: breaches.
        early = [await open_dispute(api, opener, inv) for inv in invoices[: size.breach_first]]
        say(f"chaos: {len(early)} disputes left to breach their {size.sla_s}s triage SLA")
        await asyncio.sleep(size.sla_s + 1)
        working = asyncio.create_task(agents.run())
        later = [await open_dispute(api, opener, inv) for inv in invoices[size.breach_first :]]
        collections = [await open_collection(api, opener, c) for c in debtors]
        case_ids = early + later + collections
        await _inject(faults, stack, target, size)
        states = await _until_ended(target, case_ids, size.deadline_s)
        agents.done.set()
        await working
        await asyncio.sleep(SETTLE_S)
        states = await _states(target, case_ids)
        outcome = Outcome(faults.log)
        by_invoice = {inv: states[cid] for inv, cid in zip(invoices, early + later, strict=True)}
        by_debtor = {c: states[cid] for c, cid in zip(debtors, collections, strict=True)}
        outcome.checks = await _check(target, api, case_ids, states, by_invoice, by_debtor)
        say(f"chaos: agents completed {agents.completed} tasks, retried {agents.retried} times")
        return outcome
    finally:
        agents.done.set()
        await api.close()


async def _inject(faults: Faults, stack: ManagedStack, target: Target, size: ChaosSize) -> None:
    """The faults, one after another with a pause between, while the agents work."""
    gap = size.fault_gap_s
    for _ in range(size.worker_kills):
        await asyncio.sleep(gap)
        _said(await faults.kill_worker())
    await asyncio.sleep(gap)
    _said(await faults.kill("temporal", stack.temporal_port))
    await asyncio.sleep(gap)
    _said(await faults.kill("mail", stack.smtp_port))
    await asyncio.sleep(gap)
    _said(await faults.freeze("billing", size.outage_s))
    await asyncio.sleep(gap)
    _said(await faults.lock_database(stack.data_dir / "casebook.db", size.outage_s))
    await asyncio.sleep(gap)
    _said(await faults.kill_worker())


def _said(fault: Fault) -> None:
    back = "never" if fault.back_after_s is None else f"{fault.back_after_s:.1f}s"
    say(f"chaos: {fault.name} at {fault.at_s:.0f}s ({fault.detail}); back after {back}")


async def _states(target: Target, case_ids: list[str]) -> dict[str, CaseSnapshot]:
    """Each case as its workflow holds it (queried again until a worker answers)."""
    client = await connect(target.temporal_address, target.namespace)
    states: dict[str, CaseSnapshot] = {}
    for case_id in case_ids:
        while case_id not in states:
            try:
                states[case_id] = await get_case(client, case_id)
            except Exception:  # Temporal or the worker still coming back
                await asyncio.sleep(QUERY_RETRY_S)
    return states


async def _until_ended(
    target: Target, case_ids: list[str], deadline_s: float
) -> dict[str, CaseSnapshot]:
    deadline = time.monotonic() + deadline_s
    while True:
        states = await _states(target, case_ids)
        open_ = [cid for cid, s in states.items() if s.status != "closed"]
        if not open_ or time.monotonic() > deadline:
            return states
        await asyncio.sleep(1.0)


async def _check(
    target: Target,
    api: CasebookApi,
    case_ids: list[str],
    states: dict[str, CaseSnapshot],
    invoices: dict[str, CaseSnapshot],
    debtors: dict[str, CaseSnapshot],
) -> list[Check]:
    lead = target.add_user(Role.LEAD)
    on_board = {e["case_id"] for cid in case_ids for e in await api.escalations(lead, case_id=cid)}
    data_dir = target.data_dir
    assert data_dir is not None
    found = [
        checks.cases_ended(states, len(case_ids)),
        checks.breaches_escalated(states, on_board),
        checks.billing_once(data_dir / "billing.db", invoices, debtors),
        checks.emails_delivered(target.engine, data_dir / "mail", case_ids),
    ]
    escalation_ids = [e.id for s in states.values() for e in s.escalations if e.started]
    return found + await _read_model_matches(target, case_ids, escalation_ids)


async def _read_model_matches(
    target: Target, case_ids: list[str], escalation_ids: list[str]
) -> list[Check]:
    """The reconciler's comparison (cases and their escalations) before and after its
    repair: after must be clean."""
    client = await connect(target.temporal_address, target.namespace)
    before = await _compare(client, target, case_ids, escalation_ids, repair=True)
    after = await _compare(client, target, case_ids, escalation_ids, repair=False)
    for line in before.lines()[1:]:
        say(f"chaos: reconciler: {line}")
    expected = len(case_ids) + len(escalation_ids)
    return [
        Check(
            "read model before the reconciler",
            True,  # what the projections alone left: reported, repaired just below
            f"{len(before.differing)} of {before.checked} cases and escalations differed "
            f"from Temporal, {len(before.repaired)} repaired",
        ),
        Check(
            "read model equals Temporal",
            not after.differing and not after.unreadable and after.checked == expected,
            f"{len(after.differing)} of {after.checked} differ after repair"
            + (f"; unreadable: {', '.join(after.unreadable)}" if after.unreadable else ""),
        ),
    ]


async def _compare(
    client: Client, target: Target, case_ids: list[str], escalation_ids: list[str], repair: bool
) -> Report:
    report = await reconcile(
        client, target.engine, target.task_queue, repair=repair, case_ids=case_ids
    )
    boards = await reconcile_escalations(client, target.engine, escalation_ids, repair=repair)
    report.checked += boards.checked
    report.differing += boards.differing
    report.repaired += boards.repaired
    report.moved += boards.moved
    report.unreadable |= boards.unreadable
    return report
