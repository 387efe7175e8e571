"""Every route of the app, called as every kind of caller, answers what the policy says.

Generated from the app's own routes: a route gets its action from its `authorize`
dependency, so a new route without one (and not public) fails here. Path parameters are
real resources: a case of vendor `acme` with its task in `disputes-tier1`, an escalation of
that case, a draft of the dispute SOP. For each route and caller: 401 anonymous, 403 when
the role may not do the action, 404 when the resource is outside what the caller may read,
403 when it may read it but not act on it; otherwise anything but 401/403/404 (a 409 or 422
from the business rules is fine). A few hand-written anchors keep the table itself honest.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from access.policy import (
    Action,
    Refusal,
    reach,
    refuse_case,
    refuse_escalation,
    refuse_role,
    refuse_task,
)
from api.app import create_app
from api.console.pages import PREFIX as CONSOLE_PREFIX
from domain.case_models import Actor, Role
from escalations.matrix import shipped_document as shipped_matrix_document
from store.db import session_scope
from store.users import actor_of, create_user
from tests.harness import DISPUTE, Api, eventually, shipped_document

pytestmark = pytest.mark.asyncio(loop_scope="session")

VENDOR, OTHER_VENDOR = "acme", "globex"
QUEUE = "disputes-tier1"
PUBLIC = {"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
STATUS = {"forbidden": 403, "not_found": 404}
ALLOWED = None  # anything but 401, 403, 404


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # One database is enough to check the routes (the listings' SQL runs on both kinds of
    # database in test_vendor_isolation.py): keep the matrix fast.
    yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'casebook.db'}"


@dataclass(frozen=True)
class Caller:
    headers: dict[str, str]
    actor: Actor | None  # None: anonymous


def _caller(api: Api, role: Role, vendor: str | None, queues: list[str]) -> Caller:
    with session_scope(api.engine) as session:
        user, token = create_user(
            session,
            name=f"{role.value}-{uuid.uuid4().hex[:8]}",
            role=role,
            vendor=vendor,
            queues=queues,
        )
        actor = actor_of(user)
    return Caller({"Authorization": f"Bearer {token}"}, actor)


def _callers(api: Api) -> dict[str, Caller]:
    return {
        "anonymous": Caller({}, None),
        "agent_qv": _caller(api, Role.AGENT, VENDOR, [QUEUE]),
        "agent_other_vendor": _caller(api, Role.AGENT, OTHER_VENDOR, [QUEUE]),
        "agent_no_queue": _caller(api, Role.AGENT, VENDOR, ["collections-tier1"]),
        "lead": _caller(api, Role.LEAD, None, ["disputes-tier2"]),
        "lead_other_vendor": _caller(api, Role.LEAD, OTHER_VENDOR, []),
        "sop_owner": _caller(api, Role.SOP_OWNER, None, []),
        "auditor": _caller(api, Role.AUDITOR, None, []),
        "admin": _caller(api, Role.ADMIN, None, []),
        "system": _caller(api, Role.SYSTEM, None, []),
    }


# Expectations written by hand, not derived from the policy module.
ANCHORS = {
    ("GET /cases/{case_id}", "sop_owner"): 403,
    ("GET /cases/{case_id}", "system"): 404,
    ("GET /cases/{case_id}", "agent_other_vendor"): 404,
    ("GET /cases/{case_id}/history", "agent_qv"): 403,
    ("POST /cases/{case_id}/escalate", "agent_other_vendor"): 404,
    ("POST /cases/{case_id}/escalate", "agent_no_queue"): 403,
    ("POST /cases/{case_id}/escalate", "sop_owner"): 403,
    ("POST /tasks/{task_id}/claim", "agent_other_vendor"): 404,
    ("POST /tasks/{task_id}/claim", "agent_no_queue"): 403,
    ("POST /tasks/{task_id}/claim", "auditor"): 403,
    ("POST /queues/{queue}/claim-next", "agent_no_queue"): 403,
    ("GET /escalations/{escalation_id}", "agent_qv"): 403,
    ("GET /escalations/{escalation_id}", "lead_other_vendor"): 404,
    ("POST /escalations/{escalation_id}/acknowledge", "lead_other_vendor"): 404,
    ("GET /cases/{case_id}/history", "lead_other_vendor"): 404,
    ("POST /tasks/{task_id}/claim", "lead_other_vendor"): 404,
    ("POST /sops/{name}/versions", "auditor"): 403,
    ("POST /cases", "auditor"): 403,
    ("GET /metrics", "anonymous"): 401,
    ("GET /healthz", "anonymous"): 200,
}


@dataclass(frozen=True)
class TaskFacts:
    id: str
    vendor: str | None
    queue: str
    assignee: str | None = None


@dataclass(frozen=True)
class CaseFacts:
    id: str
    vendor: str | None
    opened_by: str


@dataclass
class World:
    case: CaseFacts
    task: TaskFacts
    escalation_id: str
    sop_version: int
    matrix_version: int

    def path_values(self, path: str) -> dict[str, str]:
        matrix = path.startswith("/escalation-matrix")
        return {
            "case_id": self.case.id,
            "task_id": self.task.id,
            "escalation_id": self.escalation_id,
            "queue": QUEUE,
            "name": "dispute",
            "version": str(self.matrix_version if matrix else self.sop_version),
            "decision": "approve",
        }


async def _world(api: Api, callers: dict[str, Caller]) -> World:
    agent, admin = callers["agent_qv"], callers["admin"]
    case = await api.open_dispute(agent.headers, customer_id=f"CUST-{uuid.uuid4().hex[:6]}")
    assert case["vendor"] == VENDOR
    task = next(t for t in case["tasks"] if t["queue"] == QUEUE)
    raised = await api.http.post(
        f"/cases/{case['id']}/escalate",
        json={"reason": "matrix", "task_id": task["id"]},
        headers=agent.headers,
    )
    assert raised.status_code == 200, raised.text
    esc_id = raised.json()["id"]

    async def started() -> int:
        return (await api.http.get(f"/escalations/{esc_id}", headers=admin.headers)).status_code

    assert await eventually(started, lambda status: status == 200) == 200
    latest = shipped_document("dispute")
    draft_version = int(latest["version"]) + 1
    draft = await api.http.post(
        "/sops/dispute/versions", json={**latest, "version": draft_version}, headers=admin.headers
    )
    assert draft.status_code == 201, draft.text
    matrix = await api.http.post(
        "/escalation-matrix", json=shipped_matrix_document(), headers=admin.headers
    )
    assert matrix.status_code == 201, matrix.text
    return World(
        case=CaseFacts(case["id"], case["vendor"], case["opened_by"]),
        task=TaskFacts(task["id"], task["vendor"], task["queue"]),
        escalation_id=esc_id,
        sop_version=draft_version,
        matrix_version=matrix.json()["version"],
    )


def _body(key: str, world: World) -> dict[str, Any] | None:
    return {
        "POST /cases": {**DISPUTE, "customer_id": f"CUST-{uuid.uuid4().hex[:6]}"},
        "POST /tasks/{task_id}/complete": {"outcome": "accept"},
        "POST /tasks/{task_id}/pause": {"reason": "awaiting the customer"},
        "POST /cases/{case_id}/escalate": {"reason": "stuck", "task_id": world.task.id},
        "POST /escalations/{escalation_id}/reassign": {"to_queue": QUEUE},
        "POST /escalations/{escalation_id}/resolve": {"note": "done"},
        # An unknown region: allowed callers get a 422 and nothing is swept.
        "POST /collections/overdue-scan": {"region": "XX"},
        "POST /credit-reviews/sweep": {"region": "XX"},
        "POST /sops/{name}/versions": {},
        "POST /escalation-matrix": {},
        "POST /sops/{name}/versions/{version}/migrations": {"dry_run": True},
    }.get(key)


def _query(key: str) -> dict[str, Any] | None:
    return {
        "GET /cases/{case_id}/state": {"as_of": datetime.now(UTC).isoformat()},
        "GET /sops/{name}/diff": {"from": 1, "to": 2},
        "GET /escalation-matrix/diff": {"from": 1, "to": 1},
    }.get(key)


def _api_routes(app: FastAPI) -> Iterator[BaseRoute]:
    """The app's routes, also those of included routers (however FastAPI holds them)."""
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is None:
            yield route
        else:
            yield from (context.original_route for context in contexts())


def _action(route: APIRoute) -> Action | None:
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        action = getattr(dependency.call, "action", None)
        if action is not None:
            return action
        pending.extend(dependency.dependencies)
    return None


def _expected(key: str, path: str, action: Action, actor: Actor, world: World) -> int | None:
    """The status the policy table gives `actor` on this route's resource (None: allowed)."""
    refusal: Refusal | None = refuse_role(actor, action)
    if refusal is None:
        if key == "POST /cases/{case_id}/escalate" or "{task_id}" in path:
            refusal = refuse_task(actor, action, world.task)  # escalate judges the task too
        elif "{escalation_id}" in path:
            refusal = refuse_escalation(actor, action, world.escalation_id, world.case.vendor)
        elif "{case_id}" in path:
            refusal = refuse_case(actor, action, world.case)
        elif "{queue}" in path:
            queues = reach(actor, action).queues
            if queues is not None and QUEUE not in queues:
                refusal = Refusal("forbidden", "queue")
    return STATUS.get(refusal.kind) if refusal else ALLOWED


async def test_every_route_answers_every_caller_as_the_policy_says(api: Api) -> None:
    callers = _callers(api)
    world = await _world(api, callers)
    app = create_app(api.settings)
    mismatches: list[str] = []
    seen_anchors: set[tuple[str, str]] = set()
    for route in _api_routes(app):
        path = getattr(route, "path", "")
        if path.startswith(CONSOLE_PREFIX):
            continue  # pages over these same routes' services: tests/test_console_access.py
        methods = sorted(set(getattr(route, "methods", None) or ()) - {"HEAD"})
        action = _action(route) if isinstance(route, APIRoute) else None
        if action is None:
            assert path in PUBLIC, f"{methods} {path} declares no action: add authorize(...)"
        for method in methods:
            key = f"{method} {path}"
            url = path.format(**world.path_values(path))
            for who, caller in callers.items():
                response = await api.http.request(
                    method,
                    url,
                    headers=caller.headers,
                    json=_body(key, world),
                    params=_query(key),
                )
                if action is None:
                    want: int | None = 200 if path == "/healthz" else ALLOWED
                elif caller.actor is None:
                    want = 401
                else:
                    want = _expected(key, path, action, caller.actor, world)
                anchor = ANCHORS.get((key, who))
                if anchor is not None:
                    seen_anchors.add((key, who))
                    assert want == anchor, f"the policy table gives {key} as {who} {want}"
                got = response.status_code
                wrong = got != want if want is not None else got in (401, 403, 404)
                if wrong or got >= 500:
                    mismatches.append(
                        f"{key} as {who}: {got} (want {want or 'not 401/403/404'}) "
                        f"{response.text[:160]}"
                    )
    assert not mismatches, "\n".join(mismatches)
    assert seen_anchors == set(ANCHORS), set(ANCHORS) - seen_anchors
