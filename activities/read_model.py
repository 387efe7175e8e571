"""The projection activity: writes a case snapshot into the SQL read model."""

from __future__ import annotations

from sqlalchemy import Engine
from temporalio import activity

from domain.case_models import CaseSnapshot
from domain.escalation_models import EscalationSnapshot
from store.read_model import project_escalation, project_snapshot

PROJECT_CASE = "project_case"
PROJECT_ESCALATION = "project_escalation"


class ReadModelActivities:
    """Holds the database engine the projection writes with."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @activity.defn(name=PROJECT_CASE)
    def project_case(self, snapshot: CaseSnapshot) -> None:
        # Idempotent and revision-guarded: a retry or a late duplicate changes nothing.
        project_snapshot(self._engine, snapshot)

    @activity.defn(name=PROJECT_ESCALATION)
    def project_escalation(self, snapshot: EscalationSnapshot) -> None:
        project_escalation(self._engine, snapshot)
