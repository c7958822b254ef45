from __future__ import annotations

from ml.models import ModelVersion
from tests.api.conftest import assert_error
from tests.factories import ModelVersionFactory


def test_models_lists_versions_and_the_active_one(api):
    ModelVersion.objects.all().delete()  # the shipped models, registered on migrate
    ModelVersionFactory(name="vgg-1", architecture="vgg")
    ModelVersionFactory(name="invgg-1", is_active=True)
    body = api.get("/api/v1/models/").json()
    assert [(m["name"], m["is_active"]) for m in body["results"]] == [("invgg-1", True), ("vgg-1", False)]
    assert [m["name"] for m in api.get("/api/v1/models/", {"is_active": "false"}).json()["results"]] == [
        "vgg-1"
    ]
    assert_error(api.get("/api/v1/models/", {"ordering": "threshold"}), 400, "ordering")
    assert_error(api.get("/api/v1/models/", {"is_active": "maybe"}), 400, "is_active")
