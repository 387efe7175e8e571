"""Disputes and dunning, as a collection sees them: pure, deterministic code.

Billing is the system of record: an open dispute takes its invoices out of dunning (the
exposure's `dunning_amount`/`dunning_invoice_ids` leave them out and `disputes` names the
dispute case). A collection reads its exposure before each notice; comparing that read with
the one before tells which invoices left dunning (and under which dispute) or came back
(with the dispute's outcome and what is still open), so the case's history says why its
notices changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LEFT = "invoice_left_dunning"
RETURNED = "invoice_back_in_dunning"


def _in_dispute(exposure: Any) -> dict[str, str]:
    """Invoice id → the open dispute holding it, in an exposure as billing answered it."""
    if not isinstance(exposure, Mapping) or not isinstance(exposure.get("disputes"), list):
        return {}
    return {
        str(item["invoice_id"]): str(item["dispute_id"])
        for item in exposure["disputes"]
        if isinstance(item, Mapping) and item.get("status") == "open"
    }


def changes(before: Any, after: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(event, detail) for each invoice that left dunning or came back between two reads of
    a customer's exposure; nothing for an answer that says nothing of disputes (billing
    before disputes existed, histories recorded then)."""
    if not isinstance(after.get("disputes"), list):
        return []
    was, now = _in_dispute(before), _in_dispute(after)
    closed = {
        (str(i["invoice_id"]), str(i["dispute_id"])): i
        for i in after["disputes"]
        if isinstance(i, Mapping) and i.get("status") == "closed"
    }
    found: list[tuple[str, dict[str, Any]]] = []
    for invoice_id, dispute_id in now.items():
        if was.get(invoice_id) != dispute_id:
            reason = f"in dispute {dispute_id}: out of dunning until it closes"
            detail = {"invoice_id": invoice_id, "dispute_id": dispute_id, "reason": reason}
            found.append((LEFT, detail))
    for invoice_id, dispute_id in was.items():
        if invoice_id in now:
            continue
        item = closed.get((invoice_id, dispute_id), {})
        outcome = str(item.get("outcome") or "closed")
        open_balance = item.get("open_balance")
        back = {
            "invoice_id": invoice_id,
            "dispute_id": dispute_id,
            "outcome": outcome,
            "open_balance": open_balance,
            "reason": f"dispute {dispute_id} closed {outcome}; "
            f"{open_balance if open_balance is not None else 'its balance'} open is dunned again",
        }
        found.append((RETURNED, back))
    return found
