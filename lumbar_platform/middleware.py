"""Project-wide middleware: a request id that ties an answer to its log lines, no caching of anything
that may carry patient data, and times shown in the reader's own time zone."""

from __future__ import annotations

import logging
import re
import uuid
import zoneinfo
from collections.abc import Callable
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.cache import patch_cache_control

REQUEST_ID_HEADER = "X-Request-ID"
# An id set by the client or by a proxy in front is kept, so one id follows the request through every
# hop, but only if it cannot smuggle anything into a log line or a response header.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")
_current_request_id: ContextVar[str] = ContextVar("request_id", default="-")


def current_request_id() -> str:
    """The id of the request being handled in this thread or task; "-" outside a request."""
    return _current_request_id.get()


class RequestIdMiddleware:
    """First in the chain: every log line written while the request is handled, and the response, carry
    its id (`X-Request-ID`)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request.request_id = incoming if _SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        token = _current_request_id.set(request.request_id)
        try:
            response = self.get_response(request)
        finally:
            _current_request_id.reset(token)
        response[REQUEST_ID_HEADER] = request.request_id
        return response


class RequestIdLogFilter(logging.Filter):
    """Adds `request_id` to every record. Django logs a failed response ("Internal Server Error: ...")
    after the middleware has returned, so the request the record carries is asked first."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        record.request_id = getattr(request, "request_id", None) or current_request_id()
        return True


class NoStoreMiddleware:
    """Pages, API answers and files may all carry patient data: no browser or shared cache keeps a copy.
    Static files never reach this (WhiteNoise, above it, answers them) and keep their own caching."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        patch_cache_control(response, private=True, no_store=True)
        return response


# static/js/timezone.js sets it from the browser's own zone (Intl), so a clinician reads every time in the
# zone of the screen in front of them; without it, settings.TIME_ZONE.
TIME_ZONE_COOKIE = "tz"


def time_zone_from(name: str | None) -> zoneinfo.ZoneInfo | None:
    """The IANA zone named, or None for a missing or unknown name (the cookie is the client's to write)."""
    if not name or len(name) > 64:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


class TimeZoneMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = time_zone_from(request.COOKIES.get(TIME_ZONE_COOKIE))
        if zone is None:
            timezone.deactivate()
        else:
            timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
