"""Where the CPU goes: seconds of CPU each process of the stack (and the bench) used."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of `pid` so far (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


@contextmanager
def cpu_used(processes: dict[str, int]) -> Iterator[dict[str, float]]:
    """Fills the yielded dict with each process's CPU seconds used inside the block."""
    before = {name: cpu_seconds(pid) for name, pid in processes.items()}
    used: dict[str, float] = {}
    try:
        yield used
    finally:
        for name, pid in processes.items():
            used[name] = cpu_seconds(pid) - before[name]


def per_unit(used: dict[str, float], units: int, prefix: str) -> dict[str, float]:
    """`<prefix>_<process>_ms`: CPU milliseconds per unit of work, by process."""
    if not units:
        return {}
    return {f"{prefix}_{name}_ms": seconds * 1000 / units for name, seconds in used.items()}
