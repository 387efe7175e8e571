"""Typed task data: what a person may put in `data` when completing a task whose step
declares `fields` (see `FieldType` in `sop_templates/schema.py`). Pure code, used by the
Update validator, so bad data is refused before anything lands in the case's history."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

from domain.values import is_id, parse_amount

# A note-sized text on one line: data ends up in emails, billing reasons and reports.
TEXT_MAX_LENGTH = 500
_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", re.ASCII)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _amount(value: Any, _: Sequence[str]) -> str | None:
    if not isinstance(value, str):
        return 'must be a decimal amount as text, e.g. "1250.00"'
    try:
        parse_amount(value)
    except ValueError as exc:
        return str(exc)
    return None


def _invoice(value: Any, invoice_ids: Sequence[str]) -> str | None:
    if value not in invoice_ids:
        return f"must be one of the case's invoices ({', '.join(invoice_ids)})"
    return None


def _id(value: Any, _: Sequence[str]) -> str | None:
    return None if is_id(value) else "must be an id: letters, digits and ._- (at most 64)"


def _date(value: Any, _: Sequence[str]) -> str | None:
    if isinstance(value, str) and _DATE_RE.fullmatch(value):
        try:
            date.fromisoformat(value)
            return None
        except ValueError:
            pass
    return "must be a date as YYYY-MM-DD"


def _text(value: Any, _: Sequence[str]) -> str | None:
    if not isinstance(value, str) or len(value) > TEXT_MAX_LENGTH or _CONTROL_RE.search(value):
        return f"must be a text of at most {TEXT_MAX_LENGTH} characters on one line"
    return None


CHECKS: dict[str, Callable[[Any, Sequence[str]], str | None]] = {
    "amount": _amount,
    "invoice": _invoice,
    "id": _id,
    "date": _date,
    "text": _text,
}


def field_errors(
    fields: Mapping[str, str], data: Mapping[str, Any], invoice_ids: Sequence[str]
) -> list[dict[str, str]]:
    """Every problem with `data`, each as {field: "data.<name>", message}; [] when it fits.

    A field may be left out (the SOP falls back to its default); one not declared is refused,
    so nothing the SOP did not ask for can reach an expression."""
    errors = []
    for name, value in data.items():
        kind = fields.get(name)
        if kind is None:
            allowed = ", ".join(fields) or "none"
            message: str | None = f"is not a field of this task (fields: {allowed})"
        else:
            message = CHECKS[kind](value, invoice_ids)
        if message:
            errors.append({"field": f"data.{name}", "message": message})
    return errors
