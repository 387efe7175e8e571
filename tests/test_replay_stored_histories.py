"""Histories recorded under earlier code still replay under today's (patch, never break)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory

from audit.replay import replay_case

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_a_recorded_history_replays_deterministically(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    verdict = await replay_case(history)
    assert verdict.deterministic, verdict.divergence
    assert verdict.states, "the replay rebuilt no state"


def test_there_are_recorded_histories() -> None:
    assert len(HISTORIES) >= 2
