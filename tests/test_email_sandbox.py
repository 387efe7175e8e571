"""SOP email templates cannot run code, and an email that can never go becomes work.

An SOP owner writes the templates, so they are untrusted: the injection payloads below must
be refused at validation (pure and over the API) and do nothing when a template carrying
them reaches a worker anyway. A template error or a bad address at send time must not make
the email activity retry forever: it becomes a task for a person, and the case can close.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.email import EMAIL_UNSENDABLE, EmailActivities, EmailRequest, InlineTemplate
from audit.replay import replay_case
from domain.case_models import CaseSnapshot, ClaimTask, CompleteTask, SopRef
from settings import Settings
from sop_templates.registry import content_hash
from sop_templates.rendering import RENDERED_LIMIT, SOURCE_LIMIT
from sop_templates.schema import DEFAULT_EMAIL_ERROR_QUEUE, SopTemplate
from sop_templates.validation import InvalidTemplateError, parse_template
from store.tables import CaseRow, OutboxRow
from tests.harness import (
    AGENT,
    DISPUTE,
    LEAD,
    Api,
    case_input,
    command,
    shipped_document,
    terminate_cases,
)
from tests.smtp_sink import SmtpSink
from workflows import case_logic
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

# Two ways a plain Jinja2 environment hands a template the `os` module: through a default
# global (`cycler`), and through `self`, which every template has.
# `MARKER` stands for the file the command would create.
PAYLOADS = {
    "cycler": "{{ cycler.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "self": "{{ self.__init__.__globals__.__builtins__.__import__('os')"
    ".popen('touch MARKER').read() }}",
}


def _armed(source: str, marker: Path) -> str:
    return source.replace("MARKER", str(marker))


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "the template ran a shell command"


def _dispute_with(part: str, source: str) -> dict[str, Any]:
    document = shipped_document("dispute")  # the latest: valid but for the payload
    document["emails"]["acknowledgement"][part] = source
    return document


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
@pytest.mark.parametrize("part", ["subject", "text", "html"])
def test_validation_refuses_the_payload_with_its_path_and_runs_nothing(
    payload: str, part: str, marker: Path
) -> None:
    with pytest.raises(InvalidTemplateError) as refused:
        parse_template(_dispute_with(part, _armed(payload, marker)))
    [error] = refused.value.errors
    assert error.path == f"emails.acknowledgement.{part}"
    assert "unsafe" in error.message or "undefined" in error.message


NESTED_LOOPS = (
    "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}"
    "{% endfor %}{% endfor %}{% endfor %}"
)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("x" * (SOURCE_LIMIT + 1), f"more than {SOURCE_LIMIT}"),
        ("{% for i in range(600) %}{{ 'y' * 600 }}{% endfor %}", f"more than {RENDERED_LIMIT}"),
        ("{{ 'y' * 10000000 }}", "repetition would be longer"),
        ("{{ 7 ** 100000 }}", "integer larger"),
        ("{% for i in range(10000000) %}{% endfor %}", "range longer"),
        ("{{ case.amount.__class__ }}", "unsafe"),
        (NESTED_LOOPS, "steps of work"),
        (
            "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}"
            "{{ f(40) }}",
            "steps of work",
        ),
        ("{% set a = 'x' * 200000 %}{% set b = a ~ a %}{{ b|length }}", "`~` would be longer"),
        ("{{ 'x'|center(1000000000) }}", "center would be longer"),
        ("{{ [1, 2]|map('center', 1000000000)|list }}", "center would be longer"),
        ("{{ 'x'.ljust(1000000000) }}", "ljust would be longer"),
        ("{{ '%0999999999d' % 1 }}", "format width"),
        ("{{ '{:>999999999}'.format(1) }}", "str.format is not available"),
        ("{{ ('x' * 100000)|replace('x', 'yyyy') }}", "replace would be longer"),
        ("{{ (['x' * 100000] * 3)|join }}", "join would be longer"),
    ],
    ids=[
        "source",
        "rendered",
        "repeat",
        "power",
        "range",
        "dunder",
        "nested-loops",
        "macro-recursion",
        "concat",
        "center",
        "map-center",
        "ljust",
        "percent-width",
        "str-format",
        "replace",
        "join",
    ],
)
def test_validation_refuses_templates_that_are_unsafe_too_big_or_too_much_work(
    source: str, problem: str
) -> None:
    with pytest.raises(InvalidTemplateError) as refused:
        parse_template(_dispute_with("text", source))
    [error] = refused.value.errors
    assert error.path == "emails.acknowledgement.text" and problem in error.message


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
async def test_a_draft_carrying_the_payload_is_refused_over_the_api(
    api: Api, payload: str, marker: Path
) -> None:
    document = _dispute_with("subject", _armed(payload, marker))
    document["version"] = 90 + list(PAYLOADS.values()).index(payload)
    response = await api.http.post(
        "/sops/dispute/versions", json=document, headers=api.user("sop_owner")
    )
    assert response.status_code == 422, response.text
    paths = [e["path"] for e in response.json()["details"]["errors"]]
    assert paths == ["emails.acknowledgement.subject"]
    listed = await api.http.get("/sops/dispute/versions", headers=api.user("sop_owner"))
    assert document["version"] not in [v["version"] for v in listed.json()]


# --- at send time -------------------------------------------------------------------------


@pytest.fixture
def email(sqlite_engine: Engine, sink: SmtpSink) -> EmailActivities:
    settings = Settings(smtp_host="127.0.0.1", smtp_port=sink.port, mail_from="ar@o2c.test")
    return EmailActivities(sqlite_engine, settings)


def _inline_request(text: str, to: list[str]) -> EmailRequest:
    return EmailRequest(
        idempotency_key=f"k-{uuid.uuid4().hex}",
        case_id="DSP-1",
        template="dispute.v1.acknowledgement",
        context={"case": {"id": "DSP-1", "data": {}}},
        to=to,
        inline=InlineTemplate(subject="Case {{ case.id }}", text=text),
    )


def _outbox_rows(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(OutboxRow)).one()


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize(
    ("text", "to", "field"),
    [
        (PAYLOADS["self"], ["ap@customer.test"], "dispute.v1.acknowledgement.text"),
        ("Ref {{ case.data.reference }}", ["ap@customer.test"], "dispute.v1.acknowledgement.text"),
        ("Hello", ["ap@customer.test\r\nBcc: all@victims.test"], "to"),
        ("Hello", ["ap@customer.test, boss@customer.test"], "to"),
    ],
    ids=["payload", "undefined", "crlf", "two-addresses"],
)
async def test_an_unsendable_email_is_a_non_retryable_error_and_nothing_is_written(
    email: EmailActivities,
    sink: SmtpSink,
    sqlite_engine: Engine,
    marker: Path,
    text: str,
    to: list[str],
    field: str,
) -> None:
    with pytest.raises(ApplicationError) as refused:
        await email.send_email(_inline_request(_armed(text, marker), to))
    assert refused.value.non_retryable and refused.value.type == EMAIL_UNSENDABLE
    assert refused.value.details[0]["field"] == field
    assert _outbox_rows(sqlite_engine) == 0 and sink.messages() == []


# --- the case: a task for a person, never an endless retry --------------------------------


def _mail_then_end(text: str) -> SopTemplate:
    """An SOP built directly (never validated): one email, then the end."""
    return SopTemplate.model_validate(
        {
            "name": "dispute",
            "version": 7,
            "case_type": "dispute",
            "start": "tell",
            "emails": {"notice": {"subject": "Case {{ case.id }}", "text": text}},
            "steps": [
                {
                    "id": "tell",
                    "kind": "email",
                    "template": "notice",
                    "to": "case.data.contact",
                    "next": "done",
                },
                {"id": "done", "kind": "end", "resolution": "told"},
            ],
        }
    )


async def _eventually_case(
    handle: WorkflowHandle[Any, Any], accept: Any, timeout: float = 15.0
) -> CaseSnapshot:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        case: CaseSnapshot = await handle.query(CaseWorkflow.snapshot)
        if accept(case) or asyncio.get_running_loop().time() > deadline:
            return case
        await asyncio.sleep(0.1)


async def _decide(handle: WorkflowHandle[Any, Any], task_id: str, outcome: str) -> CaseSnapshot:
    await command(handle, "claim_task", ClaimTask(task_id=task_id, actor=LEAD))
    return await command(
        handle, "complete_task", CompleteTask(task_id=task_id, actor=LEAD, outcome=outcome)
    )


def _open_email_task_ids(case: CaseSnapshot) -> list[str]:
    return [t.id for t in case.tasks if t.step == "tell" and t.status != "done"]


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize(
    "text", ["Ref {{ case.data.reference }}", PAYLOADS["self"]], ids=["undefined", "payload"]
)
async def test_a_template_error_at_send_time_is_a_task_and_the_case_closes_after_skip(
    time_skipping: WorkflowEnvironment,
    sqlite_engine: Engine,
    sink: SmtpSink,
    marker: Path,
    text: str,
) -> None:
    template = _mail_then_end(_armed(text, marker))
    inp = case_input("dispute", "75.50", data={"contact": "ap@customer.test"}).model_copy(
        update={
            "template": template,
            "sop": SopRef(
                name="dispute",
                version=7,
                content_hash=content_hash(template.model_dump(mode="json")),
            ),
        }
    )
    settings = Settings(smtp_host="127.0.0.1", smtp_port=sink.port, mail_from="ar@o2c.test")
    queue = f"mailfail-{uuid.uuid4().hex[:8]}"
    async with build_worker(time_skipping.client, queue, sqlite_engine, settings):
        handle = await time_skipping.client.start_workflow(
            CaseWorkflow.run, inp, id=inp.case_id, task_queue=queue
        )
        try:
            case = await _eventually_case(handle, _open_email_task_ids)
            [task_id] = _open_email_task_ids(case)
            task = case.task(task_id)
            assert task is not None and task.queue == DEFAULT_EMAIL_ERROR_QUEUE
            assert task.allowed_outcomes == ["retry", "skip"]
            error = task.data["email_error"]
            assert error["error_type"] == EMAIL_UNSENDABLE
            assert "dispute.v7.notice.text" in error["error"]
            # It reached its end, then opened again for the person: still workable.
            assert case.status == "open" and case.current_step == "done"

            # A retry sends again (and fails again, the template is unchanged): a new task.
            await _decide(handle, task_id, "retry")
            again = await _eventually_case(
                handle, lambda c: [i for i in _open_email_task_ids(c) if i != task_id]
            )
            [second] = _open_email_task_ids(again)
            assert again.status == "open"

            skipped = await _decide(handle, second, "skip")
            assert skipped.status == "closed" and skipped.resolution == "told"
            result: CaseSnapshot = await handle.result()
            assert result.status == "closed" and result.history == []  # history: in events
            final = await handle.query(CaseWorkflow.snapshot)
            assert [h.event for h in final.history].count("email_failed") == 2
        finally:
            await terminate_cases(time_skipping.client, [inp.case_id])
        await _assert_each_send_failed_on_its_first_attempt(handle, sends=2)
    assert sink.messages() == [] and _outbox_rows(sqlite_engine) == 0


async def _assert_each_send_failed_on_its_first_attempt(
    handle: WorkflowHandle[Any, Any], sends: int
) -> None:
    """Not retried: each send's one recorded attempt is its first, and it failed; and the
    new path replays deterministically."""
    history = await handle.fetch_history()
    verdict = await replay_case(history)
    assert verdict.deterministic, verdict.divergence
    sending = {
        e.event_id
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "send_email"
    }
    started = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
        and e.activity_task_started_event_attributes.scheduled_event_id in sending
    ]
    failed = [e for e in history.events if e.HasField("activity_task_failed_event_attributes")]
    assert started == [1] * sends and len(failed) == sends


# --- at intake ----------------------------------------------------------------------------


def _case_count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(CaseRow)).one()


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize(
    "contact",
    [
        "ap@customer.example\r\nBcc: everyone@victims.example",
        "ap@customer.example\n",
        "ap@customer.example, boss@customer.example",
        "Accounts <ap@customer.example>",
        "not an address",
        ["ap@customer.example"],
    ],
    ids=["crlf-bcc", "trailing-lf", "two", "display-name", "garbage", "list"],
)
async def test_a_contact_that_is_not_one_address_is_refused_at_intake(
    api: Api, contact: Any
) -> None:
    agent = api.user("agent", queues=["disputes-tier1"])
    before = _case_count(api.engine)
    response = await api.http.post(
        "/cases",
        json={**DISPUTE, "data": {"contact": contact}},
        headers={**agent, "Idempotency-Key": f"bad-contact-{uuid.uuid4().hex}"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["details"]["field"] == "data.contact"
    assert response.json()["message"].startswith("data.contact: ")
    assert _case_count(api.engine) == before


# --- the rules, pure ----------------------------------------------------------------------


def _mail_task_end(error_queue: str | None) -> SopTemplate:
    """An email, then a task, then the end: the email may fail while the task is worked."""
    tell: dict[str, Any] = {
        "id": "tell",
        "kind": "email",
        "template": "notice",
        "to": "case.data.contact",
        "next": "triage",
    }
    if error_queue:
        tell["error_queue"] = error_queue
    return SopTemplate.model_validate(
        {
            "name": "dispute",
            "version": 8,
            "case_type": "dispute",
            "start": "tell",
            "emails": {"notice": {"subject": "Case {{ case.id }}", "text": "Hello"}},
            "steps": [
                tell,
                {
                    "id": "triage",
                    "kind": "human_task",
                    "queue": "disputes-tier1",
                    "outcomes": ["done"],
                    "transitions": {"done": "closed"},
                },
                {"id": "closed", "kind": "end", "resolution": "done"},
            ],
        }
    )


@pytest.mark.parametrize("error_queue", [None, "disputes-tier2"])
def test_a_case_that_ends_while_an_email_task_is_open_waits_for_it(
    error_queue: str | None,
) -> None:
    template = _mail_task_end(error_queue)
    inp = case_input("dispute", "10.00").model_copy(update={"template": template})
    now = datetime(2026, 11, 23, 10, tzinfo=UTC)
    case = case_logic.open_case(inp, now)
    case_logic.email_queued(case, template, ["ap@customer.test"], now)
    error = {"template": "notice", "error": "to: 'x' is not one address"}
    email_task = case_logic.email_refused(case, template, "tell", error, now)
    assert email_task.queue == (error_queue or DEFAULT_EMAIL_ERROR_QUEUE)
    assert email_task.data == {"email_error": error}

    triage = next(t for t in case.tasks if t.step == "triage")
    agent = AGENT.model_copy(update={"queues": ["disputes-tier1"]})
    case_logic.claim(case, ClaimTask(task_id=triage.id, actor=agent), now)
    case_logic.complete(
        case, template, CompleteTask(task_id=triage.id, actor=agent, outcome="done"), now
    )
    assert case.status == "closed"
    assert case_logic.keep_open_for_email_tasks(case, template, now)
    assert case.status == "open" and case.closed_at is None

    case_logic.claim(case, ClaimTask(task_id=email_task.id, actor=LEAD), now)
    case_logic.complete(
        case, template, CompleteTask(task_id=email_task.id, actor=LEAD, outcome="retry"), now
    )
    # Decided: the case closes again, and the email goes once more under a new key.
    assert case.status == "closed" and case.resolution == "done"
    [retry] = case.email_retries
    assert retry.step == "tell" and retry.idempotency_key == f"{case.id}:tell:retry1"
    assert not case_logic.keep_open_for_email_tasks(case, template, now)
    case_logic.email_requeued(case, template, retry, ["ap@customer.test"], now)
    assert case.email_retries == [] and case.history[-1].event == "email_queued"


@pytest.mark.asyncio(loop_scope="session")
async def test_notice_files_render_in_the_same_sandbox(
    sqlite_engine: Engine, sink: SmtpSink, tmp_path: Path, marker: Path
) -> None:
    (tmp_path / "notice.subject.j2").write_text("Case {{ case_id }}")
    (tmp_path / "notice.txt.j2").write_text(_armed(PAYLOADS["self"], marker))
    settings = Settings(smtp_host="127.0.0.1", smtp_port=sink.port, mail_from="ar@o2c.test")
    notices = EmailActivities(sqlite_engine, settings, template_dir=tmp_path)
    request = EmailRequest(
        idempotency_key=f"k-{uuid.uuid4().hex}",
        template="notice",
        context={"case_id": "DSP-1"},
        to=["lead@o2c.test"],
    )
    with pytest.raises(ApplicationError) as refused:
        await notices.send_email(request)
    assert refused.value.non_retryable and refused.value.details[0]["field"] == "notice.txt.j2"
    assert "unsafe" in refused.value.message and sink.messages() == []
