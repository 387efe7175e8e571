"""The projection activity: writes a case snapshot into the SQL read model."""

from __future__ import annotations

from sqlalchemy import Engine
from temporalio import activity

from store.read_model import project_snapshot
from workflows.case_models import CaseSnapshot

PROJECT_CASE = "project_case"


class ReadModelActivities:
    """Holds the database engine the projection writes with."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @activity.defn(name=PROJECT_CASE)
    def project_case(self, snapshot: CaseSnapshot) -> None:
        # Idempotent and revision-guarded: a retry or a late duplicate changes nothing.
        project_snapshot(self._engine, snapshot)
