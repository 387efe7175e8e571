"""How big each scenario is: `tiny` proves it works (CI), `default` measures in minutes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    concurrency: int  # clients for intake, whole cases and the baseline's workflows
    baseline_workflows: int
    intake_cases: int
    claims: int  # claims per run, for each number of agents
    claim_agents: tuple[int, ...]
    whole_cases: int
    open_cases: int  # open cases when the worker's memory is read
    sla_open_cases: int  # open cases (idle) while SLAs breach; the baseline has as many
    sla_quiet_cases: int  # breaching first at a quarter of the main rate
    sla_cases: int  # breaching at 0.55x the baseline's workflows per second (the main rate)
    sla_ramp: tuple[tuple[float, int], ...]  # then (times the baseline's rate, cases)
    inbox_tasks: int
    inbox_requests: int
    audit_events: int


SIZES = {
    "tiny": Sizes(
        concurrency=5,
        baseline_workflows=20,
        intake_cases=15,
        claims=12,
        claim_agents=(10, 50),
        whole_cases=6,
        open_cases=30,
        sla_open_cases=30,
        sla_quiet_cases=3,
        sla_cases=8,
        sla_ramp=(),
        inbox_tasks=2_000,
        inbox_requests=20,
        audit_events=150,
    ),
    "default": Sizes(
        concurrency=10,
        baseline_workflows=100,
        intake_cases=200,
        claims=100,
        claim_agents=(10, 50),
        whole_cases=60,
        open_cases=1_000,
        sla_open_cases=5_000,
        sla_quiet_cases=30,
        sla_cases=120,
        sla_ramp=((1.0, 60), (1.5, 60)),
        inbox_tasks=100_000,
        inbox_requests=200,
        audit_events=1_000,
    ),
    "full": Sizes(
        concurrency=10,
        baseline_workflows=300,
        intake_cases=500,
        claims=400,
        claim_agents=(10, 50),
        whole_cases=200,
        open_cases=5_000,
        sla_open_cases=20_000,
        sla_quiet_cases=100,
        sla_cases=1_000,
        sla_ramp=((1.0, 300), (1.5, 300), (2.0, 300)),
        inbox_tasks=100_000,
        inbox_requests=500,
        audit_events=1_000,
    ),
}
