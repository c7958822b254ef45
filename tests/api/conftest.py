from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from diagnosis.services.accounts import token_create
from tests.factories import done_prediction


@pytest.fixture
def api(clinician) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=clinician).token}")
    return client


@pytest.fixture
def prediction(clinician):
    return done_prediction(clinician)


@pytest.fixture
def others_prediction(other_clinician):
    return done_prediction(other_clinician)


def assert_error(response, status: int, *fields: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"message", "errors"} and body["message"]
    for field in fields:
        assert field in body["errors"], body
    return body
