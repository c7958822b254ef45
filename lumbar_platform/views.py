"""The project's own answer to an unhandled exception (`handler500`), for what the API's exception handler
does not see: pages, and failures outside a view; and /favicon.ico."""

from __future__ import annotations

from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponsePermanentRedirect,
    HttpResponseServerError,
    JsonResponse,
)
from django.template import loader
from django.templatetags.static import static

from diagnosis.api.errors import server_error_body
from lumbar_platform.middleware import current_request_id


def server_error(request: HttpRequest) -> HttpResponse:
    request_id = getattr(request, "request_id", None) or current_request_id()
    if request.path_info.startswith("/api/"):
        return JsonResponse(server_error_body(request_id), status=500)
    # Rendered without the request, as Django's own handler does: no context processor may touch the
    # database or the session, which may be what just failed.
    return HttpResponseServerError(loader.get_template("500.html").render({"request_id": request_id}))


def favicon(request: HttpRequest) -> HttpResponse:
    """Pages name their icon (templates/base.html); what asks for /favicon.ico anyway is sent to it. The
    static URL is looked up per request: with the manifest storage it exists only after collectstatic."""
    return HttpResponsePermanentRedirect(static("favicon.svg"))
