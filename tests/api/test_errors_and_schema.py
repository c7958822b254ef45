from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.api.conftest import assert_error


@pytest.mark.parametrize(
    "path",
    ["/api/v1/nothing/", "/api/v1/cases/abc/", "/api/v1/cases/99999999999999999999999/", "/api/v1/cases/0/"],
)
def test_unknown_paths_and_ids_are_404_in_the_error_shape(api, path):
    assert_error(api.get(path), 404)


def test_wrong_method_and_unacceptable_format_are_4xx_json(api, case):
    assert_error(api.delete(f"/api/v1/cases/{case.pk}/"), 405)
    assert_error(api.get("/api/v1/cases/", HTTP_ACCEPT="text/html"), 406)


def test_oversized_multipart_request_is_400_json(api, case):
    fields = {f"field{number}": "x" for number in range(1001)}
    assert_error(api.post(f"/api/v1/cases/{case.pk}/scans/", fields, format="multipart"), 400)


def test_schema_is_openapi_3_and_documents_the_multipart_upload(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    upload = schema["paths"]["/api/v1/cases/{id}/scans/"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert {"201", "200", "400", "404"} <= set(upload["responses"])


def test_docs_page_loads_swagger_from_local_static_files(clinician):
    client = APIClient()
    client.force_login(clinician)
    html = client.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "//cdn" not in html and "unpkg" not in html
