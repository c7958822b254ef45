"""Property-based requests generated from the OpenAPI schema (valid and invalid ones) never end in a 5xx."""

from __future__ import annotations

import json

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from diagnosis.services.accounts import token_create
from tests.factories import ModelVersionFactory, PredictionFactory, ScanFactory, done_prediction


def _openapi() -> dict:
    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))


# Built at collection time, when no database is open; test_served_schema_is_the_fuzzed_one ties it to
# what /api/schema/ serves.
schema = schemathesis.openapi.from_dict(_openapi())
schema.app = get_wsgi_application()


@pytest.fixture
def api_headers(clinician) -> dict[str, str]:
    prediction = done_prediction(clinician)
    PredictionFactory(scan=ScanFactory(case=prediction.scan.case))
    ModelVersionFactory(name="vgg-fuzz", architecture="vgg")
    return {"Authorization": f"Token {token_create(user=clinician).token}"}


@pytest.fixture
def in_process_requests():
    """The app runs inside the test's transaction, so the seeded records are visible; the per-request
    connection clean-up would end that transaction, so it is paused, as Django's test client does."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def test_served_schema_is_the_fuzzed_one(client, clinician):
    client.force_login(clinician)
    served = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert served == _openapi()


@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_api_never_answers_with_a_server_error(case, api_headers, in_process_requests):
    case.call_and_validate(headers=api_headers, checks=[not_a_server_error])
