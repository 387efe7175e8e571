"""The escalation matrix: which tier-2 queue takes a late or raised task, and who is next.

Pure: the matrix and how a queue finds its route. Its versions live in the database
(`escalations/matrix_registry.py`); `matrix.yaml` is the shipped content of version 1.
Intake resolves a case's routes from the published version it pins; workflows only ever
see those routes, in their input.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

MATRIX_FILE = Path(__file__).parent / "matrix.yaml"
# The key of a case's own route among its routes: work in a queue the routes do not name.
CASE_ROUTE = "*"


class EscalationLevel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    queue: str
    sla: str = Field(description="this level's own SLA budget, e.g. 4h")


class EscalationRoute(BaseModel):
    """The levels an escalation climbs, first to last."""

    model_config = ConfigDict(frozen=True)

    levels: list[EscalationLevel] = Field(min_length=1)


class _Match(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    queue: str = "*"
    region: str = "*"
    vendor: str = "*"


class _Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    match: _Match = _Match()
    levels: list[EscalationLevel] = Field(min_length=1)


class EscalationMatrix(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: list[_Rule] = Field(min_length=1)

    def route(self, queue: str, region: str, vendor: str | None) -> EscalationRoute:
        """The first rule matching the queue, region and vendor (a missing vendor is '')."""
        for rule in self.rules:
            m = rule.match
            if (
                fnmatchcase(queue, m.queue)
                and fnmatchcase(region, m.region)
                and fnmatchcase(vendor or "", m.vendor)
            ):
                return EscalationRoute(levels=rule.levels)
        raise LookupError(f"no escalation rule matches queue={queue} region={region}")


def shipped_document(path: Path = MATRIX_FILE) -> dict[str, Any]:
    """The shipped matrix as a document: the content of version 1."""
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict):
        raise ValueError(f"{path}: the escalation matrix must be a YAML mapping")
    return document


@lru_cache
def shipped_matrix(path: Path = MATRIX_FILE) -> EscalationMatrix:
    """Version 1 as shipped (tests and seeding; intake reads the published version)."""
    return EscalationMatrix.model_validate(shipped_document(path))


def routes_for(
    queues: set[str], region: str, vendor: str | None, matrix: EscalationMatrix
) -> dict[str, EscalationRoute]:
    """The route of each queue, and of the case as a whole ("*"), fixed at intake."""
    routes = {q: matrix.route(q, region, vendor) for q in sorted(queues)}
    routes[CASE_ROUTE] = matrix.route(CASE_ROUTE, region, vendor)
    return routes
