import re
import uuid

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django_htmx.http import HttpResponseClientRedirect

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    """Tags each request with an id (kept from a trusted proxy's X-Request-ID) and its client address.

    The address comes from X-Forwarded-For only as far as OGPANEL_TRUSTED_PROXIES hops: entries
    further left are whatever the client chose to send, so trusting them would let anyone forge
    their address past login throttling.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        trusted = settings.OGPANEL_TRUSTED_PROXIES
        request.request_id = incoming if trusted and _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.client_ip = client_address(request, trusted)
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response


def client_address(request: HttpRequest, trusted_proxies: int) -> str:
    peer = request.META.get("REMOTE_ADDR", "")
    if not trusted_proxies:
        return peer
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    # Each trusted proxy appends the address it saw; the client is the last one they added.
    return hops[-trusted_proxies] if len(hops) >= trusted_proxies else peer


class HtmxLoginRedirectMiddleware:
    """An htmx request whose session expired gets a whole-page redirect, not a login form in a table cell."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if getattr(request, "htmx", False) and response.status_code == 302:
            login = resolve_url(settings.LOGIN_URL)
            if response["Location"].startswith(login):
                return HttpResponseClientRedirect(response["Location"])
        return response
