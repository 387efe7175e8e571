"""Driving load: a fixed number of concurrent clients working through a shared pile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


async def run_concurrently(
    items: Sequence[T], concurrency: int, job: Callable[[T], Awaitable[None]]
) -> float:
    """Run `job` on every item with `concurrency` clients; returns the wall time in seconds."""
    pile = list(reversed(items))

    async def client() -> None:
        while pile:
            await job(pile.pop())

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(max(1, min(concurrency, len(items))))))
    return time.perf_counter() - started


async def timed(action: Awaitable[T], into: list[float]) -> T:
    """Await `action`, appending how long it took (seconds) to `into`."""
    started = time.perf_counter()
    result = await action
    into.append(time.perf_counter() - started)
    return result
