"""The email activity: every message goes through the outbox, so it is sent exactly once.

The outbox row is written (or found) before SMTP is touched and marked sent right after, so a
Temporal retry of an email that already went out finds the row `sent` and does nothing. The
only window left is a crash between SMTP accepting the message and the row being marked; the
retry then sends again with the same `Message-ID`, which mail systems and people can spot.
"""

from __future__ import annotations

import asyncio
import hashlib
import textwrap
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Literal

import aiosmtplib
from jinja2 import TemplateNotFound
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.addresses import InvalidAddressError, parse_address
from domain.case_models import Role
from settings import Settings
from sop_templates.rendering import (
    RenderedEmail,
    RenderError,
    directory_environment,
    one_line,
    render_email,
    render_file,
)
from store.db import session_scope
from store.tables import OutboxRow, UserRow

SEND_EMAIL = "send_email"
# The error type of an email that can never go as it is (it does not render, an address is
# not one address, it renders too big): not retried; the case gives it to a person.
EMAIL_UNSENDABLE = "email_unsendable"
DEFAULT_TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "escalations" / "email_templates"
SMTP_TIMEOUT_SECONDS = 15.0
# RFC 5322's recommended line length, which the email package folds headers to.
FOLD_WIDTH = 78
QUEUE_RECIPIENT_ROLES = (Role.LEAD.value, Role.ADMIN.value)


class InlineTemplate(BaseModel):
    """Jinja2 sources carried in the request (an SOP version ships its own emails)."""

    subject: str
    text: str
    html: str | None = None


class EmailRequest(BaseModel):
    """One email to send; the caller derives `idempotency_key` deterministically."""

    idempotency_key: str
    case_id: str | None = None
    template: str
    context: dict[str, Any] = Field(default_factory=dict)
    to: list[str] = Field(default_factory=list)
    to_queue: str | None = None
    inline: InlineTemplate | None = None


class EmailResult(BaseModel):
    idempotency_key: str
    status: Literal["sent", "already_sent", "no_recipients"]
    recipients: list[str]


class EmailRenderer:
    """Renders inline templates (an SOP's emails) and the notice files `<name>.subject.j2`,
    `<name>.txt.j2` and the optional `<name>.html.j2`, all in the sandbox."""

    def __init__(self, template_dir: Path) -> None:
        self._env = directory_environment(template_dir)

    def render_inline(self, inline: InlineTemplate, context: dict[str, Any]) -> RenderedEmail:
        return render_email(inline.subject, inline.text, inline.html, context)

    def render(self, name: str, context: dict[str, Any]) -> RenderedEmail:
        return RenderedEmail(
            # One line only: a newline in a Subject header would inject headers.
            subject=one_line(render_file(self._env, f"{name}.subject.j2", context)),
            body_text=render_file(self._env, f"{name}.txt.j2", context),
            body_html=self._render_optional(f"{name}.html.j2", context),
        )

    def _render_optional(self, template: str, context: dict[str, Any]) -> str | None:
        try:
            return render_file(self._env, template, context)
        except TemplateNotFound:
            return None


class EmailActivities:
    """Holds the database engine, the SMTP settings and the template directory."""

    def __init__(
        self, engine: Engine, settings: Settings, template_dir: Path = DEFAULT_TEMPLATE_DIR
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._renderer = EmailRenderer(template_dir)

    @activity.defn(name=SEND_EMAIL)
    async def send_email(self, req: EmailRequest) -> EmailResult:
        row = await asyncio.to_thread(self._get_or_create, req)
        if row.status == "sent":
            # A row with nobody to tell was final from the start; a retry reports the same.
            status: Literal["already_sent", "no_recipients"] = (
                "already_sent" if row.recipients else "no_recipients"
            )
            return EmailResult(
                idempotency_key=req.idempotency_key, status=status, recipients=row.recipients
            )
        try:
            refused = await self._deliver(row)
        except Exception as exc:
            # Recorded for operators; re-raised so Temporal retries with backoff.
            await asyncio.to_thread(self._record_failure, row.idempotency_key, exc)
            raise
        await asyncio.to_thread(self._mark_sent, row.idempotency_key, refused)
        return EmailResult(
            idempotency_key=req.idempotency_key, status="sent", recipients=row.recipients
        )

    # --- outbox ---------------------------------------------------------------------------

    def _get_or_create(self, req: EmailRequest) -> OutboxRow:
        try:
            with session_scope(self._engine) as session:
                row = _row_by_key(session, req.idempotency_key)
                if row is None:
                    row = self._new_row(session, req)
                    session.add(row)
                return row
        except IntegrityError:
            # A concurrent attempt inserted the same key first: its row is the one.
            existing = self._find(req.idempotency_key)
            if existing is None:
                raise
            return existing

    def _find(self, key: str) -> OutboxRow | None:
        with session_scope(self._engine) as session:
            return _row_by_key(session, key)

    def _new_row(self, session: Session, req: EmailRequest) -> OutboxRow:
        """The message to store, or `unsendable(...)`: nothing is written for a message that
        can never go, so a person's retry renders it afresh."""
        try:
            rendered = (
                self._renderer.render_inline(req.inline, req.context)
                if req.inline
                else self._renderer.render(req.template, req.context)
            )
        except RenderError as exc:
            # An inline part is named by the SOP email it belongs to; a file by its name.
            part = f"{req.template}.{exc.part}" if req.inline else exc.part
            raise unsendable(part, exc.message) from None
        to = [*req.to, *_queue_recipients(session, req.to_queue)]
        for address in to:
            try:
                parse_address(address)
            except InvalidAddressError as exc:
                raise unsendable("to", f"{address!r} {exc}") from None
        recipients = _dedupe(to)
        now = datetime.now(UTC)
        return OutboxRow(
            idempotency_key=req.idempotency_key,
            case_id=req.case_id,
            template=req.template,
            sender=self._settings.mail_from,
            recipients=recipients,
            subject=rendered.subject,
            body_text=rendered.body_text,
            body_html=rendered.body_html,
            # Nobody to tell is final: record it as done so it is never retried.
            status="sent" if not recipients else "pending",
            created_at=now,
            sent_at=now if not recipients else None,
        )

    def _record_failure(self, key: str, exc: BaseException) -> None:
        with session_scope(self._engine) as session:
            row = _row_by_key(session, key)
            if row is not None:
                row.attempts += 1
                row.last_error = f"{type(exc).__name__}: {exc}"[:2000]

    def _mark_sent(self, key: str, refused: dict[str, str]) -> None:
        with session_scope(self._engine) as session:
            row = _row_by_key(session, key)
            if row is None:
                return
            row.status = "sent"
            row.sent_at = datetime.now(UTC)
            row.attempts += 1
            if refused:
                row.last_error = f"refused recipients: {refused}"[:2000]

    # --- SMTP -----------------------------------------------------------------------------

    async def _deliver(self, row: OutboxRow) -> dict[str, str]:
        """Send the stored message; returns the recipients the server refused (if any)."""
        s = self._settings
        errors, _ = await aiosmtplib.send(
            _build_message(row),
            sender=row.sender,
            recipients=row.recipients,
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username or None,
            password=s.smtp_password.get_secret_value() or None,
            # Implicit TLS and STARTTLS exclude each other; without TLS, upgrade if offered.
            use_tls=s.smtp_use_tls,
            start_tls=False if s.smtp_use_tls else None,
            timeout=SMTP_TIMEOUT_SECONDS,
        )
        return {address: str(response) for address, response in errors.items()}


def unsendable(field: str, message: str) -> ApplicationError:
    """An error retrying cannot fix: Temporal stops at once and the case makes it work."""
    return ApplicationError(
        f"{field}: {message}",
        {"field": field, "message": message},
        type=EMAIL_UNSENDABLE,
        non_retryable=True,
    )


def _row_by_key(session: Session, key: str) -> OutboxRow | None:
    return session.exec(select(OutboxRow).where(OutboxRow.idempotency_key == key)).first()


def _queue_recipients(session: Session, queue: str | None) -> list[str]:
    if queue is None:
        return []
    users = session.exec(
        select(UserRow)
        .where(col(UserRow.role).in_(QUEUE_RECIPIENT_ROLES), col(UserRow.email).is_not(None))
        .order_by(UserRow.name)
    ).all()
    # Queues are a JSON list: filtered here, the same way on SQLite and PostgreSQL.
    return [u.email for u in users if u.email and queue in u.queues]


def _dedupe(addresses: list[str]) -> list[str]:
    seen: set[str] = set()
    unique: list[str] = []
    for address in (a.strip() for a in addresses):
        if address and address.lower() not in seen:
            seen.add(address.lower())
            unique.append(address)
    return unique


def _build_message(row: OutboxRow) -> EmailMessage:
    message = EmailMessage()
    message["From"] = row.sender
    message["To"] = ", ".join(row.recipients)
    set_subject(message, row.subject)
    message["Message-ID"] = message_id(row.idempotency_key, row.sender)
    # From the row, not the clock: a resent copy is byte-for-byte the same message.
    message["Date"] = format_datetime(_as_utc(row.created_at))
    message.set_content(row.body_text)
    if row.body_html is not None:
        message.add_alternative(row.body_html, subtype="html")
    return message


def set_subject(message: EmailMessage, subject: str) -> None:
    """The Subject folded at spaces, its first line never empty.

    The standard library folds a subject that does not fit beside `Subject: ` but fits on
    a line of its own onto that next line, leaving the header's first line empty (mail
    clients then show a subject that starts with a blank or a line break). An ASCII
    subject is folded here at spaces instead; a subject in another script, or with a word
    too long for a line, is left to the library's encoded words."""
    name = "Subject"
    lines = textwrap.wrap(
        subject,
        width=FOLD_WIDTH,
        initial_indent=f"{name}: ",
        subsequent_indent=" ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    if not subject.isascii() or not lines or any(len(line) > FOLD_WIDTH for line in lines):
        message[name] = subject
        return
    first = lines[0].removeprefix(f"{name}: ")
    # Kept as written: lines within the limit are not folded again when sent.
    message.set_raw(name, "\n".join([first, *lines[1:]]))


def message_id(idempotency_key: str, sender: str) -> str:
    """A stable `Message-ID` for a key, so a duplicate delivery is recognisable."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    domain = sender.rsplit("@", 1)[-1] if "@" in sender else "casebook.invalid"
    return f"<{digest}.casebook@{domain}>"


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands datetimes back naive; they were written as UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
