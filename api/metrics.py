"""Prometheus metrics of the API: requests by route and status, and their latency."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime

from fastapi import Depends, FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from access.policy import Action
from api.deps import ServicesDep, authorize
from reports.live import LiveNumbers, live_numbers
from store.read_model import count_repairs, count_stalled


class _LiveGauges:
    """The live KPIs (reports/live.py), set afresh at every scrape."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.open_tasks = Gauge(
            "casebook_tasks_open",
            "tasks not done, by queue and state (open, claimed)",
            ["queue", "state"],
            registry=registry,
        )
        self.warning = Gauge(
            "casebook_tasks_in_warning", "open tasks past their SLA warning", registry=registry
        )
        self.breaches = Gauge(
            "casebook_sla_breaches_last_hour",
            "task SLAs breached in the last hour",
            registry=registry,
        )
        self.oldest = Gauge(
            "casebook_oldest_open_task_age_seconds",
            "age of the oldest open task",
            registry=registry,
        )

    def update(self, numbers: LiveNumbers) -> None:
        self.open_tasks.clear()  # a queue that emptied must not keep its last count
        for (queue, state), count in numbers.open_tasks.items():
            self.open_tasks.labels(queue, state).set(count)
        self.warning.set(numbers.in_warning)
        self.breaches.set(numbers.breaches_last_hour)
        self.oldest.set(numbers.oldest_open_age_seconds)


def install_metrics(app: FastAPI) -> None:
    """Count and time every request by its route template (not its raw path: ids vary)."""
    registry = CollectorRegistry()
    requests = Counter(
        "casebook_http_requests_total",
        "HTTP requests",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "casebook_http_request_seconds",
        "HTTP request latency",
        ["method", "route"],
        registry=registry,
    )

    @app.middleware("http")
    async def _measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        requests.labels(request.method, name, str(response.status_code)).inc()
        latency.labels(request.method, name).observe(time.perf_counter() - started)
        return response

    stalled = Gauge(
        "casebook_cases_stalled",
        "open cases waiting on a person after an error of their SOP at run time",
        registry=registry,
    )

    repairs = RepairsCounter()
    registry.register(repairs)
    live = _LiveGauges(registry)

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(authorize(Action.METRICS))])
    async def metrics(svc: ServicesDep) -> Response:
        stalled.set(await run_in_threadpool(count_stalled, svc.engine))
        repairs.total = await run_in_threadpool(count_repairs, svc.engine)
        live.update(await run_in_threadpool(live_numbers, svc.engine, datetime.now(UTC)))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class RepairsCounter(Collector):
    """`casebook_read_model_repairs_total`: cases whose read model the reconciler replaced
    with Temporal's state, by any process (API, worker, CLI): the `reconciliations` rows,
    counted at each scrape."""

    def __init__(self) -> None:
        self.total = 0

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "casebook_read_model_repairs",
            "read-model repairs by the reconciler (rows of `reconciliations`)",
            value=self.total,
        )
