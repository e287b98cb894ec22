import ipaddress
import re
import uuid
from collections.abc import Callable
from functools import lru_cache
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_plus, urlencode

from django.conf import settings
from django.contrib.auth import logout as auth_logout
from django.core.exceptions import BadRequest, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware import common
from django.shortcuts import redirect, resolve_url
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.log import log_response
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails
from django_otp import user_has_device

from ogpanel.permissions import AnyUser, Role, role_of
from ogpanel.redaction import looks_like_key

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

type GetResponse = Callable[[HttpRequest], HttpResponse]


class ForwardedProtoMiddleware:
    """Drops X-Forwarded-Proto unless a trusted proxy sent the request (OGPANEL_TRUSTED_PROXY_ADDRESSES).

    With OGPANEL_BEHIND_PROXY Django believes the header (SECURE_PROXY_SSL_HEADER) from anyone: a
    client reaching the panel directly over plain HTTP could claim HTTPS, skip the redirect and be
    handed its secure session cookie over the wire. First in the list, before SecurityMiddleware
    reads it.
    """

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if settings.SECURE_PROXY_SSL_HEADER and not _is_proxy(request.META.get("REMOTE_ADDR", "")):
            request.META.pop(settings.SECURE_PROXY_SSL_HEADER[0], None)
        return self.get_response(request)


class RequestIdMiddleware:
    """Tags each request with an id (kept from a trusted proxy's X-Request-ID) and its client address.

    The headers are believed only from a peer in OGPANEL_TRUSTED_PROXY_ADDRESSES (the proxies in
    front of the panel), and X-Forwarded-For only as far as OGPANEL_TRUSTED_PROXIES hops, each
    added by a trusted proxy: anything else is whatever the client chose to send, and trusting it
    would let anyone forge their address past login throttling and into the audit log.
    """

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        trusted = settings.OGPANEL_TRUSTED_PROXIES
        from_proxy = bool(trusted) and _is_proxy(request.META.get("REMOTE_ADDR", ""))
        request_id = incoming if from_proxy and _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        # HttpRequest declares no attributes for what a middleware adds: read them with request_id_of
        # and audit.client_ip.
        request.request_id = request_id  # type: ignore[attr-defined]
        request.client_ip = client_address(request, trusted)  # type: ignore[attr-defined]
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


def request_id_of(request: HttpRequest) -> str:
    """The id RequestIdMiddleware gave the request ("" for one it did not see)."""
    return getattr(request, "request_id", "")


def client_address(request: HttpRequest, trusted_proxies: int) -> str:
    """The peer, or the address the trusted proxies between it and the client saw.

    Each trusted proxy appends the address it saw to X-Forwarded-For: walking from the right,
    an entry is believed only while the hop that wrote it is itself a trusted proxy.
    """
    address = request.META.get("REMOTE_ADDR", "")
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for _ in range(trusted_proxies):
        if not hops or not _is_proxy(address) or not _is_address(hops[-1]):
            break
        address = hops.pop()
    return address


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_proxy(address: str) -> bool:
    return _in_networks(address, tuple(settings.OGPANEL_TRUSTED_PROXY_ADDRESSES))


@lru_cache(maxsize=1024)
def _in_networks(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(network, strict=False) for network in networks)


class HtmxLoginRedirectMiddleware:
    """An htmx request whose session expired gets a whole-page redirect, not a login form in a table cell."""

    def __init__(self, get_response: GetResponse) -> None:
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

    # Ids of self-refreshing regions (hx-trigger "every …"), and the dashboard's change-stamp check.
    PASSIVE_TRIGGERS = frozenset({"groups", "live"})
    SESSION_KEY = "ogpanel_last_activity"

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            now = timezone.now().timestamp()
            last = request.session.get(self.SESSION_KEY)
            if last is not None and now - last > settings.OGPANEL_SESSION_IDLE_SECONDS:
                from ogpanel import audit

                audit.record(request, "logout", "succeeded", params={"why": "idle"})
                auth_logout(request)
            # A session with no activity recorded yet starts its clock now, on any request: else
            # one whose only requests are polls would never be idle.
            elif last is None or not self.passive(request):
                request.session[self.SESSION_KEY] = now
        return self.get_response(request)

    @classmethod
    def record_activity(cls, request: HttpRequest) -> None:
        """Signing in is activity: the idle clock starts there."""
        request.session[cls.SESSION_KEY] = timezone.now().timestamp()

    def passive(self, request: HttpRequest) -> bool:
        htmx: HtmxDetails | None = getattr(request, "htmx", None)
        return request.method == "GET" and bool(htmx and htmx.trigger in self.PASSIVE_TRIGGERS)


class SecondFactorMiddleware:
    """The one gate for the TOTP second factor: before any page except signing in and out.

    A user with a confirmed authenticator enters a code after their password; with
    OGPANEL_REQUIRE_2FA, ops and admins without one are sent to enrol first. Viewers are never
    required to, but once enrolled they verify like everyone else.
    """

    EXEMPT = frozenset({"login", "logout", "otp_setup", "otp_verify", "healthz", "healthz_watcher"})

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponse],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        match = request.resolver_match  # set before process_view runs
        if match is not None and match.view_name in self.EXEMPT:
            return None
        step = second_factor_step(request.user)
        if step is None:
            return None
        # After the code, go back to the page the person was on, not to the fragment htmx asked for.
        back = current_path(request) or request.get_full_path()
        htmx = getattr(request, "htmx", None)
        url = f"{reverse(step)}?{urlencode({'next': back})}"
        return HttpResponseClientRedirect(url) if htmx else redirect(url)


def current_path(request: HttpRequest) -> str | None:
    """The path of the page an htmx request came from (HX-Current-URL), or None, malformed included."""
    htmx: HtmxDetails | None = getattr(request, "htmx", None)
    try:
        return htmx.current_url_abs_path if htmx else None
    except ValueError:  # urlsplit refuses "http://[" and the like
        return None


def is_verified(user: AnyUser) -> bool:
    """Has the user passed the second factor in this session? (django_otp's OTPMiddleware adds the method.)"""
    verified: bool = user.is_verified()  # type: ignore[union-attr]  # added at run time, unknown to the stubs
    return verified


def second_factor_step(user: AnyUser) -> str | None:
    """The page ("otp_verify" or "otp_setup") a signed-in user must pass next, or None."""
    if not user.is_authenticated or is_verified(user):
        return None
    if user_has_device(user):
        return "otp_verify"
    if settings.OGPANEL_REQUIRE_2FA and role_of(user) >= Role.OPS:
        return "otp_setup"
    return None


# --- hostile input and caching (bodies, addresses, the slash-less POST, empty refusals, no-store) ----

# Marked before any view runs, so that an error report of anything (a middleware, a URL that does
# not resolve) hides them; views add their own. redaction.KeyFilter also hides them by name and value.
SENSITIVE_POST_PARAMETERS = ["private_key", "password", "reauth_password", "reauth_otp", "token"]
_UNREADABLE = {
    BadRequest: "The form must be sent as UTF-8 (application/x-www-form-urlencoded without another charset).",
    MultiPartParserError: "The form's multipart body could not be read.",
    TooManyFilesSent: "The form sends too many files.",
    TooManyFieldsSent: "The form sends too many fields.",
    RequestDataTooBig: "The request body is too large.",
}
_REFUSALS = {400: "Bad request.", 403: "You are not allowed to do this.", 404: "Not found."}


class HostileInputMiddleware:
    """A request the panel cannot read, or should not, is refused before anything reads it: a 400 that says why.

    - A POST body that does not parse. The CSRF check reads every POST's form; Django raises from
      there for a body it cannot parse, and for a form declaring another charset than UTF-8 its own
      400 page parses it again and fails (a 500 without security headers, on any URL, signed in or
      not). A malformed multipart body was a 400 logged with a traceback.
    - An address carrying key material: redirects (to sign in, to add a slash) and DEBUG's 404
      page would send it back, and access logs would keep it. Keys go in the credential form only.

    It also gives a refusal that has no body (a 405 from require_http_methods) a message.
    """

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Django's own attribute (sensitive_post_parameters sets it); the stubs do not declare it.
        request.sensitive_post_parameters = SENSITIVE_POST_PARAMETERS  # type: ignore[attr-defined]
        problem = self.key_in_address(request) or (request.method == "POST" and self.unreadable(request))
        if problem:
            response = _refusal(request, 400, problem)
            log_response("Bad Request (%s): %s", problem, request.path, response=response, request=request)
            return response
        response = self.get_response(request)
        status = response.status_code
        if 400 <= status < 500 and request.method != "HEAD" and not response.streaming and not response.content:
            message = _REFUSALS.get(status) or f"{HTTPStatus(status).phrase}."
            if status == 405:
                message = f"This address does not take {request.method} requests."
            response.content = _message_page(request, status, message)
            response["Content-Type"] = "text/html; charset=utf-8"
            if response.has_header("Content-Length"):  # set by CommonMiddleware, for the empty body
                response["Content-Length"] = str(len(response.content))
        return response

    @staticmethod
    def key_in_address(request: HttpRequest) -> str:
        address = request.path + "?" + unquote_plus(request.META.get("QUERY_STRING", ""), errors="replace")
        return "The address carries what looks like a private key." if looks_like_key(address) else ""

    @staticmethod
    def unreadable(request: HttpRequest) -> str:
        try:
            request.POST  # noqa: B018 (parsing is the point)
            request.FILES  # noqa: B018
        except tuple(_UNREADABLE) as exc:
            return next(message for kind, message in _UNREADABLE.items() if isinstance(exc, kind))
        return ""


def _message_page(request: HttpRequest, status: int, message: str) -> str:
    return render_to_string("ogpanel/error.html", {"message": message, "status": status}, request=request)


def _refusal(request: HttpRequest, status: int, message: str) -> HttpResponse:
    return HttpResponse(_message_page(request, status, message), status=status)


class CommonMiddleware(common.CommonMiddleware):
    """Django's, except that only a GET or HEAD is redirected to the address with the slash.

    A POST to a slash-less address is a 404, like any address that does not exist: Django raises
    for it in DEBUG (and its error page showed the posted body, private key included) and
    otherwise redirects it, which makes the browser GET the new address and drop the form.
    """

    def should_redirect_with_slash(self, request: HttpRequest) -> bool:
        return request.method in ("GET", "HEAD") and super().should_redirect_with_slash(request)


class NoStoreMiddleware:
    """Nothing a signed-in user was sent is kept by a browser's or a proxy's cache.

    Pages and fragments show positions, keys' fingerprints and the audit log; the back button on
    a shared desk machine, after signing out, must not bring them back.
    """

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        signed_in = request.user.is_authenticated
        response = self.get_response(request)
        if signed_in or request.user.is_authenticated:
            add_never_cache_headers(response)
        return response
