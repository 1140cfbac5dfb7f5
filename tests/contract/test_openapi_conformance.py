"""Each embedded service against its own OpenAPI document (schemathesis): generated requests,
valid and not, never get a 5xx, an undocumented status, or a body outside the document."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis

# schemathesis imports this lazily, deep inside hypothesis's generation, where pytest's assertion
# rewriter parses it: CPython 3.11 then failed with "AST constructor recursion depth mismatch"
# (a SystemError hypothesis reported as a flaky test). Imported here, at a shallow stack.
import schemathesis.generation.dictionaries
from hypothesis import HealthCheck, settings

from schemas.events import LoanOverdue
from services import contact, core_banking, esign
from stack.isolated import isolated_settings
from tests.factories import loan

pytestmark = pytest.mark.integration

SCRATCH = Path(tempfile.mkdtemp(prefix="accord-contract-"))
TOKEN = "contract-test-token"
SETTINGS = isolated_settings(
    SCRATCH,
    core_banking={"token": TOKEN},
    esign={"token": TOKEN},
    contact={"token": TOKEN, "delivery_seconds": 0},
)
CORE_BANKING = core_banking.create_app(SETTINGS, feed=False)
# A loan the generated requests can find (most of them will not).
KNOWN: LoanOverdue = loan(loan_id="L-1001", borrower_id="B-77")
CORE_BANKING.state.book.apply_message(
    SETTINGS.kafka.topics.overdue, 0, 0, KNOWN.model_dump_json().encode()
)

core_banking_schema = schemathesis.openapi.from_asgi("/openapi.json", CORE_BANKING)
esign_schema = schemathesis.openapi.from_asgi("/openapi.json", esign.create_app(SETTINGS))
contact_schema = schemathesis.openapi.from_asgi("/openapi.json", contact.create_app(SETTINGS))


class BearerToken:
    """The bank's credentials, as the adapters send them (generated requests keep them)."""

    def get(self, case: schemathesis.Case, context: object) -> str:
        return TOKEN

    def set(self, case: schemathesis.Case, data: str, context: object) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


for _schema in (core_banking_schema, esign_schema, contact_schema):
    _schema.auth()(BearerToken)

CONFORMANCE = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


@core_banking_schema.parametrize()
@CONFORMANCE
def test_core_banking_conforms(case: schemathesis.Case) -> None:
    case.call_and_validate()


@esign_schema.parametrize()
@CONFORMANCE
def test_esign_conforms(case: schemathesis.Case) -> None:
    case.call_and_validate()


@contact_schema.parametrize()
@CONFORMANCE
def test_contact_gateway_conforms(case: schemathesis.Case) -> None:
    case.call_and_validate()
