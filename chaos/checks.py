"""What a fault run checks at its end, each as a named pass/fail with what it saw."""

from __future__ import annotations

import mailbox
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, col, select

from activities.email import message_id
from domain.case_models import CaseSnapshot, CaseStatus, SlaState
from store.tables import OutboxRow


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def cases_ended(states: dict[str, CaseSnapshot], expected: int) -> Check:
    closed = [cid for cid, s in states.items() if s.status == CaseStatus.CLOSED]
    stuck = sorted(set(states) - set(closed))
    detail = f"{len(closed)}/{expected} closed"
    if stuck:
        detail += "; still open: " + ", ".join(
            f"{cid} at {states[cid].current_step}" for cid in stuck
        )
    return Check("every case reached its end", len(closed) == expected, detail)


def breaches_escalated(states: dict[str, CaseSnapshot], on_board: set[str]) -> Check:
    """Every case with a breached task has an escalation on GET /escalations."""
    breached = sorted(
        cid for cid, s in states.items() if any(t.sla_state == SlaState.BREACHED for t in s.tasks)
    )
    missing = [cid for cid in breached if cid not in on_board]
    detail = f"{len(breached) - len(missing)}/{len(breached)} breached cases on the board"
    if missing:
        detail += "; missing: " + ", ".join(missing)
    # A run where nothing breached proved nothing about escalations.
    return Check("every SLA breach escalated", bool(breached) and not missing, detail)


def billing_once(
    billing_db: Path, invoices: dict[str, CaseSnapshot], plans: dict[str, CaseSnapshot]
) -> Check:
    """Each credited dispute has exactly one memo on its invoice and each collection closed
    on a plan exactly one plan for its customer; every invoice's ledger adds up (open =
    amount - credited - paid, credited = the sum of its memos)."""
    problems: list[str] = []
    memos = recorded = 0
    with sqlite3.connect(billing_db) as db:
        for invoice_id, state in invoices.items():
            rows = db.execute(
                "SELECT amount_cents FROM credit_memos WHERE invoice_id = ?", (invoice_id,)
            ).fetchall()
            memos += len(rows)
            want = 1 if state.resolution == "credited" else 0
            if len(rows) != want:
                problems.append(f"{invoice_id}: {len(rows)} memos, {want} expected")
            problems += _ledger_off(db, invoice_id, sum(r[0] for r in rows))
        for customer_id, state in plans.items():
            (count,) = db.execute(
                "SELECT count(*) FROM payment_plans WHERE customer_id = ?", (customer_id,)
            ).fetchone()
            recorded += count
            want = 1 if state.resolution == "payment_plan" else 0
            if count != want:
                problems.append(f"{customer_id}: {count} payment plans, {want} expected")
    detail = f"{memos} memos on {len(invoices)} invoices, {recorded} plans for {len(plans)}"
    if problems:
        detail += "; " + "; ".join(problems)
    return Check("billing writes exactly once, ledger balances", not problems, detail)


def _ledger_off(db: sqlite3.Connection, invoice_id: str, memo_cents: int) -> list[str]:
    amount, open_, credited, paid = db.execute(
        "SELECT amount_cents, open_cents, credited_cents, paid_cents FROM invoices WHERE id = ?",
        (invoice_id,),
    ).fetchone()
    if credited == memo_cents and open_ == amount - credited - paid:
        return []
    return [f"{invoice_id}: ledger off (amount {amount}, open {open_}, credited {credited})"]


def emails_delivered(engine: object, maildir: Path, case_ids: list[str]) -> Check:
    """Every outbox message of these cases is in the Maildir at least once, under its one
    stable Message-ID; copies of a Message-ID are the same message."""
    with Session(engine) as session:  # type: ignore[arg-type]
        rows = session.exec(select(OutboxRow).where(col(OutboxRow.case_id).in_(case_ids))).all()
    delivered: dict[str, list[tuple[str, str]]] = {}
    for message in mailbox.Maildir(maildir, create=False):
        mid = str(message.get("Message-ID", ""))
        delivered.setdefault(mid, []).append((str(message["Subject"]), str(message["To"])))
    problems: list[str] = []
    copies: Counter[int] = Counter()
    nobody = [row for row in rows if not row.recipients]  # e.g. a queue with no address
    for row in (row for row in rows if row.recipients):
        mid = message_id(row.idempotency_key, row.sender)
        got = delivered.get(mid, [])
        copies[len(got)] += 1
        if row.status != "sent" or not got:
            problems.append(f"{row.idempotency_key}: {row.status}, {len(got)} delivered")
        elif len(set(got)) != 1:
            problems.append(f"{mid}: {len(set(got))} different messages")
    twice = sum(n for k, n in copies.items() if k > 1)
    detail = f"{len(rows)} messages, {twice} delivered more than once (same Message-ID)"
    if nobody:
        detail += f", {len(nobody)} with no recipient"
    if problems:
        detail += "; " + "; ".join(problems[:5])
    sent = len(rows) - len(nobody)
    return Check("emails delivered, one Message-ID each", sent > 0 and not problems, detail)
