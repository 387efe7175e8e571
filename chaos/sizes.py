"""How big a fault run is: `tiny` proves every fault and check in CI, `default` in minutes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChaosSize:
    disputes: int
    collections: int  # each ends in a payment plan recorded in billing
    agents: int
    sla_s: int  # the triage SLA (24x7): the first cases breach it while agents are away
    breach_first: int  # disputes opened before agents start, so their triage breaches
    worker_kills: int
    fault_gap_s: float  # pause between two faults
    outage_s: float  # how long billing is frozen and the read model's database locked
    deadline_s: float  # every case must reach its end within this, from the first fault


SIZES = {
    "tiny": ChaosSize(
        disputes=6,
        collections=2,
        agents=3,
        sla_s=8,
        breach_first=2,
        worker_kills=2,
        fault_gap_s=3.0,
        outage_s=5.0,
        deadline_s=90.0,
    ),
    "default": ChaosSize(
        disputes=20,
        collections=6,
        agents=5,
        sla_s=20,
        breach_first=6,
        worker_kills=4,
        fault_gap_s=6.0,
        # Past SQLite's 30 s busy timeout: writers fail, not only wait.
        outage_s=35.0,
        deadline_s=300.0,
    ),
}
