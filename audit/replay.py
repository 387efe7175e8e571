"""Replay a case's recorded history against the current code: a verdict, and its states.

The Replayer re-runs the workflow code over the events Temporal recorded, with no server.
An interceptor keeps every case snapshot the workflow hands to its projection during the
replay, and the case after each Update: that is the case as it stood after each change,
rebuilt from the history alone. A case that continued as new is replayed run by run, and
its states carry the whole history of the case (`replay_runs`).
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import (
    HandleUpdateInput,
    Interceptor,
    Replayer,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from activities.read_model import PROJECT_CASE
from domain.case_models import CaseSnapshot, HistoryEntry
from workflows.worker import SANDBOX, WORKFLOWS, warm_calendars

_EVENT_ID = re.compile(r"event(?:[ _]id)?[ =:#]*(\d+)", re.IGNORECASE)


@dataclass
class ReplayVerdict:
    case_id: str
    deterministic: bool
    events: int
    divergence: str | None = None
    divergence_event_id: int | None = None
    states: list[CaseSnapshot] = field(default_factory=list)
    # One verdict per run when the case continued as new (oldest first); empty otherwise.
    runs: list[ReplayVerdict] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "verdict": "intact and deterministic" if self.deterministic else "diverges",
            "deterministic": self.deterministic,
            "events": self.events,
            "divergence": self.divergence,
            "divergence_event_id": self.divergence_event_id,
            "states_rebuilt": len(self.states),
            "runs": [run.run_summary(i) for i, run in enumerate(self.runs or [self], 1)],
        }

    def run_summary(self, number: int) -> dict[str, Any]:
        return {
            "run": number,
            "deterministic": self.deterministic,
            "events": self.events,
            "divergence": self.divergence,
            "divergence_event_id": self.divergence_event_id,
        }


class _KeepSnapshots(Interceptor):
    """Collects what the case workflow projects, in order, while it is replayed."""

    def __init__(self) -> None:
        self.snapshots: list[CaseSnapshot] = []

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        kept = self.snapshots

        def _seen(revision: int) -> bool:
            return bool(kept) and kept[-1].revision == revision

        def keep(activity: str, args: Sequence[Any]) -> None:
            if activity != PROJECT_CASE or not args:
                return
            # A copy: the workflow keeps changing the object it handed over.
            state = CaseSnapshot.model_validate(args[0]).model_copy(deep=True)
            if _seen(state.revision):
                return
            # A projection by activity carries only the entries since the last one.
            before = kept[-1].history[: state.history_offset] if kept else []
            kept.append(state.model_copy(update={"history": before + state.history,
                                                 "history_offset": 0}))  # fmt: skip

        class Outbound(WorkflowOutboundInterceptor):
            def start_local_activity(self, input: StartLocalActivityInput) -> Any:
                keep(input.activity, input.args)
                return super().start_local_activity(input)

            def start_activity(self, input: StartActivityInput) -> Any:
                keep(input.activity, input.args)
                return super().start_activity(input)

        class Inbound(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(Outbound(outbound))

            async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
                # The case as an Update left it: a state of its own, also when no
                # projection followed before the next change.
                result = await super().handle_update_handler(input)
                case = getattr(workflow.instance(), "_case", None)
                if isinstance(case, CaseSnapshot) and not _seen(case.revision):
                    kept.append(case.model_copy(deep=True))
                return result

        return Inbound


async def replay_case(history: WorkflowHistory, workflows: Sequence[type] = WORKFLOWS
                      ) -> ReplayVerdict:  # fmt: skip
    """Replay `history` against `workflows` (the current code by default)."""
    warm_calendars()
    keep = _KeepSnapshots()
    replayer = Replayer(
        workflows=workflows, data_converter=pydantic_data_converter,
        workflow_runner=SANDBOX, interceptors=[keep],
        # Offline, no deadlock to guard against: a busy machine must not turn a long
        # workflow task's replay into a false "diverges".
        debug_mode=True,
    )  # fmt: skip
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    failure = result.replay_failure
    verdict = ReplayVerdict(
        case_id=history.workflow_id, deterministic=failure is None,
        events=len(history.events), states=list(keep.snapshots),
    )  # fmt: skip
    if failure is not None:
        verdict.divergence = str(failure)
        match = _EVENT_ID.search(verdict.divergence)
        verdict.divergence_event_id = (
            int(match.group(1)) if match else await _locate(history, replayer)
        )
    return verdict


async def replay_runs(runs: Sequence[WorkflowHistory], workflows: Sequence[type] = WORKFLOWS
                      ) -> ReplayVerdict:  # fmt: skip
    """Replay every run of a case (oldest first): a verdict for each, and the case's states
    across all of them, each with the case's whole history (a run's own entries follow the
    entries of the runs before it; the copies a run carried over are not repeated)."""
    if len(runs) == 1:
        return await replay_case(runs[0], workflows)
    verdicts = [await _replay_ended_run(run, workflows) for run in runs[:-1]]
    verdicts.append(await replay_case(runs[-1], workflows))
    return ReplayVerdict(
        case_id=runs[0].workflow_id,
        deterministic=all(v.deterministic for v in verdicts),
        events=sum(v.events for v in verdicts),
        divergence=next((v.divergence for v in verdicts if v.divergence), None),
        divergence_event_id=next((v.divergence_event_id for v in verdicts if v.divergence), None),
        states=stitched([v.states for v in verdicts]),
        runs=verdicts,
    )


# Verdicts of runs that continued as new (a run's history never changes once it has):
# a timeline, then a replay, then a state as of a moment replay each earlier run once.
_ENDED_RUNS: OrderedDict[tuple[str, str], ReplayVerdict] = OrderedDict()
_ENDED_RUNS_KEPT = 128


async def _replay_ended_run(run: WorkflowHistory, workflows: Sequence[type]) -> ReplayVerdict:
    if workflows is not WORKFLOWS:
        return await replay_case(run, workflows)
    key = (run.workflow_id, hashlib.sha256(run.to_json().encode()).hexdigest())
    if key not in _ENDED_RUNS:
        _ENDED_RUNS[key] = await replay_case(run, workflows)
        while len(_ENDED_RUNS) > _ENDED_RUNS_KEPT:
            _ENDED_RUNS.popitem(last=False)
    _ENDED_RUNS.move_to_end(key)
    return _ENDED_RUNS[key]


def forget_ended_runs() -> None:
    """Drop the remembered verdicts of ended runs (a benchmark times replays themselves)."""
    _ENDED_RUNS.clear()


def stitched(runs: Sequence[Sequence[CaseSnapshot]]) -> list[CaseSnapshot]:
    """The states of every run, each with the history of the case up to it."""
    states: list[CaseSnapshot] = []
    before: list[HistoryEntry] = []
    for run in runs:
        for state in run:
            states.append(whole(state, before))
        if states:
            before = states[-1].history
    return states


def whole(state: CaseSnapshot, before: Sequence[HistoryEntry]) -> CaseSnapshot:
    """`state` with the entries of earlier runs (`before`) in front of its own."""
    if state.run == 1:
        return state
    own = state.history[state.carried_entries :]
    return state.model_copy(update={"history": [*before, *own], "carried_entries": 0})


async def _locate(history: WorkflowHistory, replayer: Replayer) -> int | None:
    """The first event the code no longer produces: replay growing prefixes of the history,
    one workflow task at a time, and name the first command event of the first that fails."""
    events = list(history.events)
    starts = [i for i, e in enumerate(events) if e.HasField(_WFT_SCHEDULED)] + [len(events)]
    for end in starts[1:]:
        prefix = WorkflowHistory(history.workflow_id, events[:end])
        result = await replayer.replay_workflow(prefix, raise_on_replay_failure=False)
        if result.replay_failure is not None:
            completed = max(i for i in range(end) if events[i].HasField(_WFT_COMPLETED))
            commands = events[completed + 1 : end] or events[completed : completed + 1]
            return commands[0].event_id
    return None


_WFT_SCHEDULED = "workflow_task_scheduled_event_attributes"
_WFT_COMPLETED = "workflow_task_completed_event_attributes"


def event_time(history: WorkflowHistory, event_id: int) -> datetime:
    """When event `event_id` happened (so a state can be asked for as of an event)."""
    for event in history.events:
        if event.event_id == event_id:
            return event.event_time.ToDatetime(tzinfo=UTC)
    raise LookupError(f"event {event_id} is not in the history of {history.workflow_id}")


def state_as_of(states: Sequence[CaseSnapshot], as_of: datetime) -> CaseSnapshot | None:
    """The case as it stood at `as_of`: the last rebuilt state whose changes all came before."""
    current = None
    for state in states:
        if state.history and state.history[-1].at <= as_of:
            current = state
    return current
