from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import CaseFactory, PredictionFactory, ScanFactory, png_bytes


@pytest.fixture(autouse=True)
def isolated_cache(settings):
    """The login rate limit lives in the cache; each test starts with a fresh one."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


@pytest.fixture
def api(clinician) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=clinician).key}")
    return client


def done_prediction(owner, **kwargs):
    """A finished prediction with a heatmap, on a scan in a case the owner holds."""
    scan = ScanFactory(case=CaseFactory(owner=owner))
    return PredictionFactory(
        scan=scan,
        status="done",
        label="ddd",
        probability=0.8,
        heatmap=ContentFile(png_bytes(value=200), name="heat.png"),
        **kwargs,
    )


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
