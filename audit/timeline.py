"""A case's history as a human-readable timeline: who did what, when, under which SOP."""

from __future__ import annotations

from collections.abc import Sequence

from domain.case_models import CaseSnapshot, HistoryEntry
from store.tables import OutboxRow


class TimelineEntry(HistoryEntry):
    """A history entry of the case, or an event about it from elsewhere (an email sent)."""

    def line(self) -> str:
        who = self.actor or "casebook"
        parts = [f"{self.at.isoformat()}  {self.event:<24} by {who}"]
        parts += [f"step={self.step}"] if self.step else []
        parts += [f"task={self.task_id}"] if self.task_id else []
        parts += [f"outcome={self.outcome}"] if self.outcome else []
        parts += [f"note={self.note!r}"] if self.note else []
        parts += [f"{k}={v}" for k, v in self.detail.items() if v not in (None, "", [], {})]
        return "  ".join(parts)


def timeline(case: CaseSnapshot, emails: Sequence[OutboxRow] = ()) -> list[TimelineEntry]:
    """The case's own history, with the emails sent about it, in order of time."""
    entries = [TimelineEntry.model_validate(h.model_dump()) for h in case.history]
    entries += [_email(row) for row in emails if row.sent_at is not None]
    return sorted(entries, key=lambda e: e.at)


def _email(row: OutboxRow) -> TimelineEntry:
    assert row.sent_at is not None
    return TimelineEntry(
        at=row.sent_at, event="email_sent", actor="casebook",
        detail={"template": row.template, "to": ", ".join(row.recipients),
                "subject": row.subject},
    )  # fmt: skip


def render(case: CaseSnapshot, entries: Sequence[TimelineEntry]) -> str:
    head = (f"Case {case.id} ({case.type}) under SOP {case.sop.name} v{case.sop.version} "
            f"[{case.sop.content_hash}] — {case.status.value}")  # fmt: skip
    return "\n".join([head, *(e.line() for e in entries)])
