"""The escalation matrix: which tier-2 queue takes a late or raised task, and who is next."""

from __future__ import annotations

from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

MATRIX_FILE = Path(__file__).parent / "matrix.yaml"


class EscalationLevel(BaseModel):
    model_config = ConfigDict(frozen=True)

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


@lru_cache
def load_matrix(path: Path = MATRIX_FILE) -> EscalationMatrix:
    return EscalationMatrix.model_validate(yaml.safe_load(path.read_text()))


def routes_for(
    queues: set[str], region: str, vendor: str | None, matrix: EscalationMatrix | None = None
) -> dict[str, EscalationRoute]:
    """The route of each queue, and of the case as a whole ("*"), fixed at intake."""
    matrix = matrix or load_matrix()
    routes = {q: matrix.route(q, region, vendor) for q in sorted(queues)}
    routes["*"] = matrix.route("*", region, vendor)
    return routes
