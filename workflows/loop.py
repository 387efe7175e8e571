"""The loop skeleton the long-lived workflows share (a case, an escalation).

Each round: do what needs no waiting, write the read model if it is behind, carry out what
is due, then sleep on a Temporal timer until the state changes or the next deadline falls
due, and fire what is due at it. `ReadModelLoop.run_loop` holds that shape once; a workflow
says what its state's revision is, what it projects, what its next deadline is and what
a round does. The commands it issues are those the two loops issued before they shared it,
in the same order, so recorded histories replay unchanged.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

# The read model must catch up after any outage, so projection retries without end.
PROJECTION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)
PROJECTION_TIMEOUT = timedelta(seconds=30)


class Round(enum.Enum):
    """What a round's work asks of the loop."""

    AGAIN = "again"  # go round at once: something moved that the round must look at
    SLEEP = "sleep"  # nothing to do until a change or a deadline
    DONE = "done"  # the workflow's work is over


def never() -> bool:
    return False


async def sleep_until_change_or_deadline(
    revision: Callable[[], int],
    deadline: datetime | None,
    woken: Callable[[], bool] = never,
) -> bool:
    """Sleep until `revision()` moves or `woken()` holds (False), or `deadline` comes (True:
    the caller fires what is due). A Temporal timer: it fires at the deadline even if every
    worker restarts."""
    seen = revision()
    timeout = (deadline - workflow.now()).total_seconds() if deadline else None
    if timeout is None or timeout > 0:
        try:
            await workflow.wait_condition(lambda: revision() != seen or woken(), timeout=timeout)
            return False
        except TimeoutError:
            pass
    return True


async def write_read_model(activity: str, payload: Any, *, after_commit: bool) -> None:
    """Project `payload` with `activity`. After commit: a regular activity, which Temporal
    runs only once the workflow task that made the state is persisted, so the read model
    never shows a state Temporal lost. Otherwise a local activity, which runs inside the
    workflow task (workflows started before their `project-after-commit` patch)."""
    if after_commit:
        await workflow.execute_activity(
            activity,
            payload,
            start_to_close_timeout=PROJECTION_TIMEOUT,
            retry_policy=PROJECTION_RETRY,
        )
    else:
        await workflow.execute_local_activity(
            activity,
            payload,
            start_to_close_timeout=PROJECTION_TIMEOUT,
            retry_policy=PROJECTION_RETRY,
        )


class ReadModelLoop:
    """The skeleton: a workflow that keeps a read model row in step with its state and
    sleeps on timers between changes. Subclasses set `_projected_revision` and
    `_project_after_commit` in their init and fill in the hooks below."""

    _projection_activity: str
    _projected_revision: int
    _project_after_commit: bool

    # --- hooks ------------------------------------------------------------------------

    def _revision(self) -> int:
        """The revision of the state (every change bumps it)."""
        raise NotImplementedError

    def _projection(self) -> Any:
        """What the projection activity gets for the current state."""
        raise NotImplementedError

    def _projected(self, payload: Any) -> None:
        """Called once `payload` is in the read model."""

    def _next_deadline(self) -> datetime | None:
        """When the next timed event is due (None: none)."""
        raise NotImplementedError

    def _woken(self) -> bool:
        """Besides a new revision, what ends a sleep early."""
        return False

    def _deadline_reached(self, now: datetime) -> None:
        """Fire what is due at `now` (the sleep reached the deadline)."""
        raise NotImplementedError

    async def _prepare_round(self) -> None:
        """A round's work before the read model is written (nothing that waits long)."""

    async def _work_round(self) -> Round:
        """A round's work after the read model is written."""
        raise NotImplementedError

    # --- the skeleton -----------------------------------------------------------------

    async def run_loop(self) -> None:
        """Round after round until the work is done."""
        await self._rounds(self._work_round)

    async def _rounds(
        self, work: Callable[[], Awaitable[Round]], until: Callable[[], bool] = never
    ) -> None:
        """Rounds of `work` until it says DONE; `until()` also ends a sleep (something the
        workflow awaits beside the rounds is done)."""
        while True:
            top = self._revision()
            await self._prepare_round()
            if self._read_model_behind():
                await self._project()
            outcome = await work()
            if outcome is Round.DONE:
                return
            if outcome is Round.AGAIN:
                continue
            if self._project_after_commit and self._revision() != top:
                # A change landed while the round awaited (a projection activity takes a
                # moment): the sleep would take it as seen, so look at it first.
                continue
            await self._sleep_until_change_or_deadline(until)

    def _read_model_behind(self) -> bool:
        return self._revision() > self._projected_revision

    async def _project(self) -> None:
        revision = self._revision()
        payload = self._projection()
        await write_read_model(
            self._projection_activity, payload, after_commit=self._project_after_commit
        )
        self._projected(payload)
        self._projected_revision = max(self._projected_revision, revision)

    async def _sleep_until_change_or_deadline(self, until: Callable[[], bool] = never) -> None:
        """Sleep until a change, `until()` or the next deadline; at the deadline, fire."""

        def woken() -> bool:
            return self._woken() or until()

        if await sleep_until_change_or_deadline(self._revision, self._next_deadline(), woken):
            self._deadline_reached(workflow.now())
