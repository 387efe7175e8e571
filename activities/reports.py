"""The digest activity: each vendor's review of a period, as emails to its leads."""

from __future__ import annotations

from datetime import UTC, date, datetime

from pydantic import BaseModel
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio import activity

from activities.email import EmailRequest
from domain.case_models import Role
from reports import digest
from reports.digest import table_lines
from reports.hypercare import compare, in_hypercare
from reports.kpis import ReportFilter
from reports.periods import period
from reports.targets import targets_for
from store.tables import UserRow

PREPARE_DIGESTS = "prepare_digests"
DIGEST_TEMPLATE = "report_digest"
KIND_TITLES = {"day": "Daily", "week": "Weekly", "month": "Monthly"}


class DigestRequest(BaseModel):
    kind: str  # day, week or month
    at: date  # a day in the period reviewed


class ReportActivities:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @activity.defn(name=PREPARE_DIGESTS)
    def prepare_digests(self, req: DigestRequest) -> list[EmailRequest]:
        """One email per vendor with leads that have an address, keyed by vendor and
        period: the outbox sends each at most once, however often this runs."""
        emails = [
            self._email(req, vendor, addresses)
            for vendor, addresses in sorted(_vendor_leads(self._engine).items())
        ]
        if req.kind == "day":
            emails += self._hypercare_emails(req.at)
        return emails

    def _hypercare_emails(self, day: date) -> list[EmailRequest]:
        """Each SOP version whose hypercare window is open on `day`: its owner (who
        published it) gets its steps beside the previous version's."""
        emails = []
        for window in in_hypercare(self._engine, day):
            name, version = window.sop_name, window.sop_version
            report = compare(self._engine, name, version, _now())
            title = f"Hypercare of {name} v{version} against v{version - 1}: {day.isoformat()}"
            until = f"Hypercare until {window.until:%Y-%m-%d %H:%M} UTC"
            factor = f"its steps warn after {window.warn_factor:g} of the usual time"
            lines = table_lines(report) if report.rows else ["(no task on this version yet)"]
            emails.append(
                EmailRequest(
                    idempotency_key=f"hypercare:{name}:{version}:{day.isoformat()}",
                    template=DIGEST_TEMPLATE,
                    context={
                        "title": title,
                        "body": "\n".join([title, f"{until}; {factor}.", "", *lines]),
                    },
                    to=[window.owner_email],
                )
            )
        return emails

    def _email(self, req: DigestRequest, vendor: str, to: list[str]) -> EmailRequest:
        tz = targets_for(vendor)["timezone"]
        p = period(req.kind, req.at, tz)
        f = ReportFilter(
            start=p.start, end=p.end, timezone=tz, vendor=vendor, as_of=min(p.end, _now())
        )
        title = f"{KIND_TITLES[req.kind]} review of {vendor}: {p.label}"
        text = digest.as_text(digest.review(self._engine, title, f))
        return EmailRequest(
            idempotency_key=f"digest:{req.kind}:{vendor}:{p.label}",
            template=DIGEST_TEMPLATE,
            context={"title": title, "body": text},
            to=to,
        )


def _vendor_leads(engine: Engine) -> dict[str, list[str]]:
    """Vendor -> the addresses of its active leads."""
    query = select(UserRow).where(
        UserRow.role == Role.LEAD.value,
        col(UserRow.vendor).is_not(None),
        col(UserRow.email).is_not(None),
        col(UserRow.disabled_at).is_(None),
    )
    leads: dict[str, list[str]] = {}
    with Session(engine) as session:
        for user in session.exec(query):
            assert user.vendor is not None and user.email is not None
            leads.setdefault(user.vendor, []).append(user.email)
    return leads


def _now() -> datetime:
    return datetime.now(UTC)
