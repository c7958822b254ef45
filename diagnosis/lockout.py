"""How django-axes sees a log-in: the address that failures are counted against
(settings.AXES_CLIENT_IP_CALLABLE), and the answer once an account or address is locked out
(settings.AXES_LOCKOUT_CALLABLE), the same on the login page, the admin and the token endpoint."""

from __future__ import annotations

import ipaddress
import math

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

LOCKED_OUT_STATUS = 429


def client_address(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or behind LUMBAR_TRUSTED_PROXIES reverse proxies that each append the address they saw
    to X-Forwarded-For, the entry that many places from the right: the ones further left are whatever the
    client chose to send. Without this, every client behind a proxy shares the proxy's address and its
    count of failures."""
    proxies = settings.LUMBAR_TRUSTED_PROXIES
    forwarded = [entry.strip() for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if proxies and len(forwarded) >= proxies:
        try:
            return str(ipaddress.ip_address(forwarded[-proxies]))
        except ValueError:
            pass
    return request.META.get("REMOTE_ADDR")


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    minutes = math.ceil(settings.LUMBAR_LOGIN_WINDOW_SECONDS / 60)
    message = f"Too many failed log-in attempts. Wait {minutes} minutes and try again."
    if request.path_info.startswith("/api/"):
        response = JsonResponse({"message": message, "errors": {}}, status=LOCKED_OUT_STATUS)
    else:
        response = render(
            request, "registration/locked_out.html", {"message": message}, status=LOCKED_OUT_STATUS
        )
    response["Retry-After"] = str(settings.LUMBAR_LOGIN_WINDOW_SECONDS)
    return response
