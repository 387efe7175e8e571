"""What a workflow costs Temporal: the events of its history and its workflow tasks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client


@dataclass
class HistoryCost:
    events: int = 0
    workflow_tasks: int = 0
    by_type: Counter[str] = field(default_factory=Counter)


async def history_cost(client: Client, workflow_ids: Sequence[str]) -> HistoryCost:
    """Summed over `workflow_ids` (a case and the children it starts, say)."""
    cost = HistoryCost()
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        for event in history.events:
            name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
            cost.by_type[name] += 1
        cost.events += len(history.events)
    cost.workflow_tasks = cost.by_type["WORKFLOW_TASK_COMPLETED"]
    return cost
