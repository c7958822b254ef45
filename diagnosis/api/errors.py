"""One error shape for the whole API: {"message": ..., "errors": {field: [messages]}} with a 4xx status."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import SuspiciousOperation
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from diagnosis.errors import ApplicationError, NotFound, PermissionDenied


def error_response(
    message: str, errors: dict | None = None, status_code: int = 400, headers=None
) -> Response:
    return Response({"message": message, "errors": errors or {}}, status=status_code, headers=headers)


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
    if isinstance(exc, ApplicationError):
        set_rollback()
        return error_response(exc.message, exc.errors, status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, SuspiciousOperation):
        # Too many fields or files, a request body over the limit: Django's own answer would be an HTML page.
        return error_response("The request is too large or malformed.", {}, status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    set_rollback()
    if isinstance(exc, exceptions.ValidationError):
        return error_response("The request is not valid.", _as_field_errors(exc.detail), exc.status_code)
    return error_response(str(exc.detail), {}, exc.status_code, headers)
