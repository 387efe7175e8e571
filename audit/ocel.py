"""Cases as an OCEL 2.0 event log (JSON), for process mining across cases (e.g. pm4py).

Objects: cases, their tasks, customers and invoices. Events: every entry of each case's
history, related to its case (and task, where it has one).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from domain.case_models import CaseSnapshot, HistoryEntry

EPOCH = "1970-01-01T00:00:00Z"
EVENT_ATTRIBUTES = ("actor", "step", "outcome", "note")
CASE_ATTRIBUTES = ("type", "status", "amount", "currency", "region", "reason_code", "sop")


def _time(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _attrs(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": k, "time": EPOCH, "value": str(v)} for k, v in values.items() if v is not None]


def _case_object(case: CaseSnapshot) -> dict[str, Any]:
    values = {
        "type": case.type,
        "status": case.status.value,
        "amount": case.amount,
        "currency": case.currency,
        "region": case.region,
        "reason_code": case.reason_code,
        "sop": f"{case.sop.name} v{case.sop.version}",
    }
    relationships = [{"objectId": f"customer:{case.customer_id}", "qualifier": "customer"}]
    relationships += [
        {"objectId": f"invoice:{i}", "qualifier": "disputes"} for i in case.invoice_ids
    ]
    return {
        "id": case.id,
        "type": "case",
        "attributes": _attrs(values),
        "relationships": relationships,
    }


def _event(case: CaseSnapshot, index: int, entry: HistoryEntry) -> dict[str, Any]:
    values = {
        "actor": entry.actor,
        "step": entry.step,
        "outcome": entry.outcome,
        "note": entry.note,
    }
    relationships = [{"objectId": case.id, "qualifier": "case"}]
    if entry.task_id:
        relationships.append({"objectId": entry.task_id, "qualifier": "task"})
    if entry.event == "case_opened":  # who and what the case is about, from its first event
        relationships.append({"objectId": f"customer:{case.customer_id}", "qualifier": "customer"})
        relationships += [
            {"objectId": f"invoice:{i}", "qualifier": "invoice"} for i in case.invoice_ids
        ]
    return {
        "id": f"{case.id}:{index}",
        "type": entry.event,
        "time": _time(entry.at),
        "attributes": [{"name": k, "value": str(v)} for k, v in values.items() if v is not None],
        "relationships": relationships,
    }


def ocel_log(cases: Sequence[CaseSnapshot]) -> dict[str, Any]:
    """One OCEL 2.0 JSON document for `cases`."""
    objects: dict[str, dict[str, Any]] = {}
    events: list[dict[str, Any]] = []
    for case in cases:
        objects[case.id] = _case_object(case)
        objects[f"customer:{case.customer_id}"] = {
            "id": f"customer:{case.customer_id}",
            "type": "customer",
            "attributes": [],
        }
        for invoice in case.invoice_ids:
            objects[f"invoice:{invoice}"] = {
                "id": f"invoice:{invoice}",
                "type": "invoice",
                "attributes": [],
            }
        for task in case.tasks:
            objects[task.id] = {
                "id": task.id,
                "type": "task",
                "attributes": _attrs({"step": task.step, "queue": task.queue}),
                "relationships": [{"objectId": case.id, "qualifier": "part of"}],
            }
        # Done tasks of earlier runs are no longer on a case that continued as new: every
        # task its history names is still an object of the log.
        for entry in case.history:
            if entry.task_id and entry.task_id not in objects:
                objects[entry.task_id] = {
                    "id": entry.task_id,
                    "type": "task",
                    "attributes": _attrs({"step": entry.step, "queue": entry.detail.get("queue")}),
                    "relationships": [{"objectId": case.id, "qualifier": "part of"}],
                }
        events += [_event(case, i, entry) for i, entry in enumerate(case.history, 1)]
    return {
        "objectTypes": _object_types(),
        "eventTypes": [
            {"name": t, "attributes": [{"name": a, "type": "string"} for a in EVENT_ATTRIBUTES]}
            for t in sorted({e["type"] for e in events})
        ],
        "objects": list(objects.values()),
        "events": sorted(events, key=lambda e: e["time"]),
    }


def _object_types() -> list[dict[str, Any]]:
    string = "string"
    return [
        {"name": "case", "attributes": [{"name": a, "type": string} for a in CASE_ATTRIBUTES]},
        {
            "name": "task",
            "attributes": [{"name": "step", "type": string}, {"name": "queue", "type": string}],
        },
        {"name": "customer", "attributes": []},
        {"name": "invoice", "attributes": []},
    ]
