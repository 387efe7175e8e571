"""An SOP email step can carry per-language variants; the case's language (from billing's
master data at intake) picks one, any other language the step's default."""

from __future__ import annotations

import copy
import uuid
from datetime import date
from typing import Any

import pytest
from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment

from sop_templates.registry import publish_document, shipped_documents
from sop_templates.schema import EmailStep
from sop_templates.validation import InvalidTemplateError, parse_template
from store.db import session_scope
from tests.billing_harness import BillingService
from tests.harness import eventually, running_api, terminate_cases
from tests.smtp_sink import SmtpSink

FRENCH_SUBJECT = "Nous avons bien reçu votre contestation"


def _dispute_with_french_acknowledgement(version: int) -> dict[str, Any]:
    document = copy.deepcopy(
        max((d for d in shipped_documents() if d["name"] == "dispute"), key=lambda d: d["version"])
    )
    document["version"] = version
    document["emails"]["acknowledgement_fr"] = {
        "subject": FRENCH_SUBJECT + " ({{ case.id }})",
        "text": "Bonjour,\n\nNous examinons votre contestation {{ case.id }}.\n",
    }
    step = next(s for s in document["steps"] if s["id"] == "acknowledge")
    step["languages"] = {"fr": "acknowledgement_fr"}
    return document


def test_a_variant_naming_no_email_is_reported_with_its_path() -> None:
    document = _dispute_with_french_acknowledgement(3)
    index = next(i for i, s in enumerate(document["steps"]) if s["id"] == "acknowledge")
    document["steps"][index]["languages"]["de"] = "acknowledgement_de"
    with pytest.raises(InvalidTemplateError) as caught:
        parse_template(document)
    paths = {e.path: e.message for e in caught.value.errors}
    assert paths == {f"steps[{index}].languages.de": "no email 'acknowledgement_de' in `emails`"}


def test_no_template_may_name_a_step_intake_check() -> None:
    document = _dispute_with_french_acknowledgement(3)
    index = next(i for i, s in enumerate(document["steps"]) if s["id"] == "triage")
    document["steps"][index]["id"] = "intake_check"
    with pytest.raises(InvalidTemplateError) as caught:
        parse_template(document)
    assert f"steps[{index}].id" in {e.path for e in caught.value.errors}


def test_the_case_language_picks_the_variant_else_the_default() -> None:
    template = parse_template(_dispute_with_french_acknowledgement(3))
    step = template.step("acknowledge")
    assert isinstance(step, EmailStep)
    assert step.template_for("fr") == "acknowledgement_fr"
    assert step.template_for("fr-CA") == "acknowledgement_fr"  # its primary language
    for other in ("de", "", None, 7):
        assert step.template_for(other) == "acknowledgement"


@pytest.mark.asyncio(loop_scope="session")
async def test_a_french_customer_gets_the_french_email(
    dev_server: WorkflowEnvironment,
    sqlite_engine: Engine,
    sink: SmtpSink,
    tmp_path: Any,
) -> None:
    with session_scope(sqlite_engine) as session:
        publish_document(session, _dispute_with_french_acknowledgement(90), actor="owner")
    today = date.today()
    with BillingService(f"sqlite:///{tmp_path / 'billing.db'}") as ledger:
        opened = []
        for language in ("fr", "de"):
            customer = f"L-{uuid.uuid4().hex[:6]}"
            ledger.put_customer(customer, region="FR", language=language)
            ledger.put_invoice(f"{customer}-1", customer, "100.00", today, today)
            opened.append((language, customer))
        async with running_api(
            dev_server.client,
            sqlite_engine,
            billing_url=ledger.url,
            intake_check="billing",
            smtp_host="127.0.0.1",
            smtp_port=sink.port,
        ) as api:
            lead = api.user("lead")
            case_ids = []
            try:
                for _, customer in opened:
                    body = {
                        "type": "dispute",
                        "customer_id": customer,
                        "invoice_ids": [f"{customer}-1"],
                        "amount": "50.00",
                        "reason_code": "pricing",
                    }
                    response = await api.http.post("/cases", json=body, headers=lead)
                    assert response.status_code == 201, response.text
                    assert response.json()["sop"]["version"] == 90
                    case_ids.append(response.json()["id"])

                async def subjects() -> dict[str, str]:
                    return {str(m["To"]): str(m["Subject"]) for m in sink.messages()}

                sent = await eventually(subjects, lambda s: len(s) >= 2, timeout=30)
            finally:
                await terminate_cases(dev_server.client, case_ids)
    french, german = (f"ap@{customer.lower()}.example" for _, customer in opened)
    assert sent[french].startswith(FRENCH_SUBJECT)
    assert not sent[german].startswith(FRENCH_SUBJECT)  # no German variant: the default
