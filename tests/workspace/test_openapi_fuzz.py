"""schemathesis against the hub's own OpenAPI document: no generated request may cause a server error.

Requests carry a real operator token (every scope), so they get past authentication and
into the handlers, over a database with two clinics' data in it. (schemathesis' pytest
plugin does not load under this pytest, so the operations are driven with hypothesis here.)
"""

from __future__ import annotations

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.harness import api_token
from tests.workspace.world import World


def test_no_request_the_spec_allows_causes_a_server_error(app: FastAPI, world: World) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # An operator's token (fleet routes) and a clinic's (the FHIR routes answer only those).
    operator = {"Authorization": f"Bearer {api_token(world.db, name='fuzz')}"}
    clinic = {"Authorization": f"Bearer {api_token(world.db, clinic='north-clinic', name='fuzz-clinic')}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    for operation in operations:
        fuzz(operation, clinic if operation.path.startswith("/fhir/") else operator)


def fuzz(operation: schemathesis.APIOperation, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def no_server_error(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=[not_a_server_error])

    no_server_error()
