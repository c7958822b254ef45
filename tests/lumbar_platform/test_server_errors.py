"""An unexpected exception: the API answers in its JSON error shape, pages get the project's 500 page, and
both quote the request id that the logged traceback carries."""

from __future__ import annotations

import io
import logging
import re

import pytest
from django.test import Client, RequestFactory

from lumbar_platform.middleware import RequestIdLogFilter
from lumbar_platform.views import server_error


def _boom(**_kwargs):
    raise RuntimeError("selector exploded")


@pytest.fixture
def log_output():
    """What the configured console handler (the one with the request-id filter) writes."""
    handler = next(
        handler
        for handler in logging.getLogger().handlers
        if any(isinstance(f, RequestIdLogFilter) for f in handler.filters)
    )
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


@pytest.fixture
def client_seeing_500s(clinician) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(clinician)
    return client


def _line_with_traceback(log: str, request_id: str) -> str:
    entries = re.split(r"\n(?=\d{4}-\d\d-\d\d )", log)  # one entry per record, traceback included
    matching = [entry for entry in entries if f"[{request_id}]" in entry and "Traceback" in entry]
    assert len(matching) == 1, log
    return matching[0]


def test_api_exception_is_a_json_500_quoting_the_request_id_of_the_logged_traceback(
    client_seeing_500s, monkeypatch, log_output, settings
):
    settings.DEBUG = True  # the API stays JSON even for a developer
    monkeypatch.setattr("diagnosis.api.views.patient_list", _boom)

    response = client_seeing_500s.get("/api/v1/patients/")

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    body = response.json()
    request_id = response["X-Request-ID"]
    assert set(body) == {"message", "errors"} and body["errors"] == {}
    assert request_id in body["message"] and "selector exploded" not in body["message"]
    entry = _line_with_traceback(log_output.getvalue(), request_id)
    assert "Internal Server Error: /api/v1/patients/" in entry and "RuntimeError: selector exploded" in entry


def test_page_exception_renders_the_projects_500_page_with_the_request_id(
    client_seeing_500s, monkeypatch, log_output
):
    monkeypatch.setattr("diagnosis.views.case_list_owned", _boom)

    response = client_seeing_500s.get("/")

    assert response.status_code == 500
    html = response.content.decode()
    request_id = response["X-Request-ID"]
    assert "<h1>Something went wrong</h1>" in html and f"<code>{request_id}</code>" in html
    assert "selector exploded" not in html and "Traceback" not in html
    assert "RuntimeError: selector exploded" in _line_with_traceback(log_output.getvalue(), request_id)


def test_a_sane_incoming_request_id_is_kept_and_anything_else_replaced(client, db):
    kept = client.get("/accounts/login/", HTTP_X_REQUEST_ID="proxy-1234.abcd")
    replaced = client.get("/accounts/login/", HTTP_X_REQUEST_ID="bad id\r\nSet-Cookie: x=1")
    generated = client.get("/accounts/login/")

    assert kept["X-Request-ID"] == "proxy-1234.abcd"
    assert re.fullmatch(r"[0-9a-f]{32}", replaced["X-Request-ID"])
    assert re.fullmatch(r"[0-9a-f]{32}", generated["X-Request-ID"])
    assert generated["X-Request-ID"] != replaced["X-Request-ID"]


def test_handler500_answers_json_under_api_and_the_page_elsewhere():
    request = RequestFactory().get("/api/v1/cases/")
    request.request_id = "req-12345678"

    api = server_error(request)
    page = server_error(RequestFactory().get("/cases/1/"))

    assert api.status_code == 500 and api["Content-Type"] == "application/json"
    assert "req-12345678" in api.content.decode()
    assert page.status_code == 500 and "Something went wrong" in page.content.decode()
