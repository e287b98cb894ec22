import re
import uuid
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import logout as auth_logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, resolve_url
from django.urls import reverse
from django.utils import timezone
from django_htmx.http import HttpResponseClientRedirect
from django_otp import user_has_device

from ogpanel.permissions import Role, role_of

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


class IdleSessionMiddleware:
    """Signs out a session nobody has used for OGPANEL_SESSION_IDLE_SECONDS.

    The dashboard refreshes itself every few seconds; those timed refreshes are not activity,
    or an unattended screen on a trading desk would stay signed in forever.
    """

    PASSIVE_TRIGGERS = frozenset({"groups"})  # ids of self-refreshing regions (hx-trigger "every …")
    SESSION_KEY = "ogpanel_last_activity"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            now = timezone.now().timestamp()
            last = request.session.get(self.SESSION_KEY)
            if last is not None and now - last > settings.OGPANEL_SESSION_IDLE_SECONDS:
                from ogpanel import audit

                audit.record(request, "logout", "succeeded", params={"why": "idle"})
                auth_logout(request)
            elif not self.passive(request):
                request.session[self.SESSION_KEY] = now
        return self.get_response(request)

    def passive(self, request: HttpRequest) -> bool:
        htmx = getattr(request, "htmx", None)
        return request.method == "GET" and bool(htmx) and htmx.trigger in self.PASSIVE_TRIGGERS


class SecondFactorMiddleware:
    """The one gate for the TOTP second factor: before any page except signing in and out.

    A user with a confirmed authenticator enters a code after their password; with
    OGPANEL_REQUIRE_2FA, ops and admins without one are sent to enrol first. Viewers are never
    required to, but once enrolled they verify like everyone else.
    """

    EXEMPT = frozenset({"login", "logout", "otp_setup", "otp_verify", "healthz"})

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> HttpResponse | None:
        if request.resolver_match.view_name in self.EXEMPT:
            return None
        step = second_factor_step(request.user)
        if step is None:
            return None
        htmx = getattr(request, "htmx", None)
        # After the code, go back to the page the person was on, not to the fragment htmx asked for.
        back = (htmx.current_url_abs_path if htmx else None) or request.get_full_path()
        url = f"{reverse(step)}?{urlencode({'next': back})}"
        return HttpResponseClientRedirect(url) if htmx else redirect(url)


def second_factor_step(user) -> str | None:
    """The page ("otp_verify" or "otp_setup") a signed-in user must pass next, or None."""
    if not user.is_authenticated or user.is_verified():
        return None
    if user_has_device(user):
        return "otp_verify"
    if settings.OGPANEL_REQUIRE_2FA and role_of(user) >= Role.OPS:
        return "otp_setup"
    return None
