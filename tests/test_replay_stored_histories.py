"""Histories recorded under earlier code still replay under today's (patch, never break)."""

from __future__ import annotations

import base64
import importlib
import json
import re
from pathlib import Path
from typing import Any, get_args

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from audit.replay import replay_case
from domain.case_models import CaseInput
from sop_templates.schema import AnyStep

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_a_recorded_history_replays_deterministically(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    verdict = await replay_case(history)
    assert verdict.deterministic, verdict.divergence
    if _workflow_type(history) == "CaseWorkflow":  # states are a case's (an escalation has none)
        assert verdict.states, "the replay rebuilt no state"


def _workflow_type(history: WorkflowHistory) -> str:
    return history.events[0].workflow_execution_started_event_attributes.workflow_type.name


def test_there_are_recorded_histories() -> None:
    assert len(HISTORIES) >= 2


# --- what the stored histories cover ------------------------------------------------------

WORKFLOW_SOURCES = sorted((Path(__file__).parents[1] / "workflows").glob("*.py"))
_PATCHED = re.compile(r"workflow\.patched\(\s*(?:\"([^\"]+)\"|([A-Z_][A-Z0-9_]*))\s*\)")


def _patches_in_code() -> set[str]:
    """Every patch id the workflows ask for, literal or through a module constant."""
    found: set[str] = set()
    for source in WORKFLOW_SOURCES:
        module = importlib.import_module(f"workflows.{source.stem}")
        for literal, constant in _PATCHED.findall(source.read_text()):
            found.add(literal or getattr(module, constant))
    return found


def _patches_recorded(history: dict[str, Any]) -> set[str]:
    patches = set()
    for event in history["events"]:
        marker = event.get("markerRecordedEventAttributes")
        if marker and marker["markerName"] == "core_patch":
            [payload] = marker["details"]["patch-data"]["payloads"]
            patches.add(json.loads(base64.b64decode(payload["data"]))["id"])
    return patches


def _template_kinds(history: WorkflowHistory) -> dict[str, str]:
    """Step id → kind in the template the recorded case started on."""
    started = history.events[0].workflow_execution_started_event_attributes
    [inp] = pydantic_data_converter.payload_converter.from_payloads(
        started.input.payloads, [CaseInput]
    )
    return {step.id: step.kind for step in inp.template.steps}


def test_every_patch_of_the_workflows_is_in_a_stored_history() -> None:
    """A patch no recorded history carries is a branch the replay test never guards:
    record one (tests/histories/record_*.py) when you add a patch."""
    recorded = set().union(*(_patches_recorded(json.loads(p.read_text())) for p in HISTORIES))
    assert _patches_in_code() - recorded == set()


@pytest.mark.asyncio(loop_scope="session")
async def test_every_step_kind_is_in_a_stored_history() -> None:
    entered: set[str] = set()
    for path in HISTORIES:
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        if _workflow_type(history) != "CaseWorkflow":
            continue
        verdict = await replay_case(history)
        kinds = _template_kinds(history)
        for state in verdict.states:
            entered.update(kinds[e.step] for e in state.history if e.step in kinds)
    assert set(STEP_KINDS) - entered == set()


# Each kind an SOP step can have, from the schema's union of step models.
STEP_KINDS = [get_args(model.model_fields["kind"].annotation)[0] for model in get_args(AnyStep)]
