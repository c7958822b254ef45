"""One error shape for the whole API: {"message": ..., "errors": {field: [messages]}} with a 4xx status, and
with a 500 for anything unexpected, whose message quotes the request id its logged traceback carries."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404
from django.utils.log import log_response
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from diagnosis.errors import ApplicationError, Conflict, NotFound, PermissionDenied
from lumbar_platform.middleware import current_request_id


def error_response(
    message: str, errors: dict | None = None, status_code: int = 400, headers=None
) -> Response:
    return Response({"message": message, "errors": errors or {}}, status=status_code, headers=headers)


def server_error_body(request_id: str) -> dict:
    """The body of every API 500, from a view (below) or from further out (lumbar_platform.views)."""
    return {
        "message": f"Something went wrong on our side; it has been logged as request {request_id}.",
        "errors": {},
    }


def _as_field_errors(detail) -> dict:
    if isinstance(detail, dict):
        return {field: _as_list(messages) for field, messages in detail.items()}
    return {"non_field_errors": _as_list(detail)}


def _as_list(messages) -> list:
    if isinstance(messages, dict):
        return [_as_field_errors(messages)]
    if isinstance(messages, list):
        return [m if isinstance(m, dict | list) else str(m) for m in messages]
    return [str(messages)]


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, NotFound):
        return error_response(exc.message, exc.errors, status.HTTP_404_NOT_FOUND)
    if isinstance(exc, PermissionDenied):
        return error_response(exc.message, exc.errors, status.HTTP_403_FORBIDDEN)
    if isinstance(exc, Conflict):
        set_rollback()
        return error_response(exc.message, exc.errors, status.HTTP_409_CONFLICT)
    if isinstance(exc, ApplicationError):
        set_rollback()
        return error_response(exc.message, exc.errors, status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, OperationalError | InterfaceError):
        # The database is restarting or out of reach. Services write in one transaction (an upload removes
        # its file when it fails), so nothing is half-written and the same request can simply be sent again.
        return error_response(
            "The database is unavailable; try again in a moment.",
            {},
            status.HTTP_503_SERVICE_UNAVAILABLE,
            {"Retry-After": "5"},
        )
    if isinstance(exc, SuspiciousOperation):
        # Too many fields or files, a request body over the limit: Django's own answer would be an HTML page.
        return error_response("The request is too large or malformed.", {}, status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return _server_error(exc, context["request"])
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    set_rollback()
    if isinstance(exc, exceptions.ValidationError):
        return error_response("The request is not valid.", _as_field_errors(exc.detail), exc.status_code)
    return error_response(str(exc.detail), {}, exc.status_code, headers)


def _server_error(exc: Exception, request) -> Response:
    """Answered here rather than left to Django, so the API stays JSON even with DEBUG on."""
    set_rollback()
    response = Response(server_error_body(current_request_id()), status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    # Django's own line for an unhandled exception, traceback included; it also keeps Django from logging
    # the 500 a second time.
    log_response("Internal Server Error: %s", request.path, response=response, request=request, exception=exc)
    return response
