"""Signing in and out, the TOTP second factor, and re-authentication before dangerous actions.

Sign-in: /accounts/login/ (fields `username`, `password`, optional `next`). Failed attempts
are counted per username and per client address (throttle.py); past the limit the form
answers 429 without checking the password. Then, for a user with an authenticator,
/accounts/2fa/verify/ (field `token`); SecondFactorMiddleware sends anyone who still owes a
code (or, with OGPANEL_REQUIRE_2FA, an enrolment) there before any other page.

Re-authentication: the kill switch and credential changes call `reauth_ok(request, password=...,
otp=...)` with the `reauth_password` / `reauth_otp` fields that registration/reauth_fields.html
adds to their forms (shown while `reauth_needed(request)`). A right password or authenticator
code opens a window of OGPANEL_REAUTH_SECONDS in which dangerous actions don't ask again;
signing in opens it too.
"""

import logging
from base64 import b32encode
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import devices_for_user, verify_token
from django_otp import login as otp_login
from django_otp.models import Device
from django_otp.plugins.otp_totp.models import TOTPDevice

from ogpanel import audit, throttle
from ogpanel.middleware import IdleSessionMiddleware, is_verified, request_id_of
from ogpanel.models import AuditEvent
from ogpanel.views.common import error_response

logger = logging.getLogger(__name__)

REAUTH_SESSION_KEY = "ogpanel_reauth_at"
# What a view shows when reauth_ok() says no.
REAUTH_REFUSED = "Confirm it's you: enter your password (or your authenticator code) to do this."
REAUTH_WRONG = "That password or authenticator code is not right: nothing was done."
Outcome = AuditEvent.Outcome


class TokenForm(forms.Form):
    token = forms.CharField(
        label="Authenticator code",
        min_length=6,
        max_length=8,
        strip=True,
        help_text="The 6-digit code your authenticator app shows for ogpanel.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


def _next_url(request: HttpRequest) -> str:
    """Where to go after signing in: the `next` parameter if it is a path on this site.

    Only a path: redirect() would take a bare word ("0", "dashboard") for a view name to reverse.
    """
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate.startswith("/") and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def _with_next(name: str, next_url: str) -> str:
    return f"{reverse(name)}?{urlencode({'next': next_url})}"


def _reauth_stamp(request: HttpRequest) -> None:
    request.session[REAUTH_SESSION_KEY] = throttle.clock()


def _lockout_message(lockout: throttle.Lockout) -> str:
    minutes = max(1, round(lockout.seconds / 60))
    source = "for this username" if lockout.by == "username" else "from your network address"
    return (
        f"Too many failed sign-in attempts {source}. Sign-in is locked for about {minutes} "
        f"minute{'s' if minutes != 1 else ''}; try again later, or ask an admin."
    )


def _locked_response(request: HttpRequest, form: AuthenticationForm, lockout: throttle.Lockout) -> HttpResponse:
    context = {"form": form, "next": _next_url(request), "locked": _lockout_message(lockout)}
    response = render(request, "registration/login.html", context, status=429)
    response["Retry-After"] = str(lockout.seconds)
    return response


@sensitive_post_parameters("password")
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    if request.method in ("GET", "HEAD"):  # HEAD: uptime probes ask for the login page
        if request.user.is_authenticated:
            return redirect(_next_url(request))
        context = {"form": AuthenticationForm(request), "next": _next_url(request)}
        return render(request, "registration/login.html", context)

    username = request.POST.get("username", "")[:150]
    address = audit.client_ip(request)
    lockout = throttle.login_locked(username=username, address=address)
    if lockout is not None:
        # Refused without looking at the password. Not audited one by one: a flood of locked
        # attempts must not become a flood of audit appends that queue the kill switch's.
        logger.warning("sign-in refused while locked out (%s) request_id=%s", lockout.by, request_id_of(request))
        return _locked_response(request, AuthenticationForm(request, initial={"username": username}), lockout)

    form = AuthenticationForm(request, data=request.POST)
    if not form.is_valid():
        lockout = throttle.login_failed(username=username, address=address)
        audit.record(
            request, "login", Outcome.FAILED, params={"username": username}, error="wrong username or password"
        )
        if lockout is not None:
            audit.record(
                request,
                "login_lockout",
                Outcome.DENIED,
                error=_lockout_message(lockout),
                params={"username": username, "by": lockout.by, "seconds": lockout.seconds},
            )
            return _locked_response(request, form, lockout)
        context = {"form": form, "next": _next_url(request)}
        return render(request, "registration/login.html", context, status=400)

    user = form.get_user()
    auth_login(request, user)
    IdleSessionMiddleware.record_activity(request)
    throttle.login_succeeded(username=username)
    _reauth_stamp(request)
    has_device = next(devices_for_user(user), None) is not None
    audit.record(request, "login", Outcome.SUCCEEDED, params={"second_factor": "pending" if has_device else "none"})
    return redirect(_next_url(request))


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        audit.record(request, "logout", Outcome.SUCCEEDED)
    auth_logout(request)
    return redirect(settings.LOGOUT_REDIRECT_URL)


def admin_login(request: HttpRequest) -> HttpResponse:
    """The Django admin's sign-in page, replaced by the panel's (throttled, with the second factor)."""
    if request.user.is_authenticated:
        # The admin sends signed-in users without staff status here; the panel's login would send them back.
        return error_response(request, "Only admins may use the Django admin.", status=403)
    return redirect_to_login(request.GET.get("next") or reverse("admin:index"))


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def otp_setup(request: HttpRequest) -> HttpResponse:
    """Enrol a TOTP authenticator: show its secret as text and confirm it with a first code."""
    user = request.user
    next_url = _next_url(request)
    if next(devices_for_user(user), None) is not None:
        if not is_verified(user):
            # Enrolling a second authenticator would sidestep the confirmed one.
            return redirect(_with_next("otp_verify", next_url))
        messages.warning(
            request,
            "You already have an authenticator. An admin can remove it (Django admin, "
            "TOTP devices) if you need to enrol a new one.",
        )
        return redirect(next_url)

    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="ogpanel", confirmed=False)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(form.cleaned_data["token"]):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
            request.session.cycle_key()
            audit.record(request, "otp_setup", Outcome.SUCCEEDED)
            messages.success(request, "Authenticator enrolled. You'll be asked for a code each time you sign in.")
            return redirect(next_url)
        form.add_error("token", _wrong_code_message(device))
        audit.record(request, "otp_setup", Outcome.FAILED, error="wrong code")
    context = {
        "form": form,
        "next": next_url,
        "required": settings.OGPANEL_REQUIRE_2FA,
        "secret": b32encode(device.bin_key).decode(),
        "config_url": device.config_url,
    }
    return render(request, "registration/otp_setup.html", context, status=400 if form.errors else 200)


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def otp_verify(request: HttpRequest) -> HttpResponse:
    """The second step of signing in for a user with an authenticator."""
    next_url = _next_url(request)
    device = next(devices_for_user(request.user), None)
    if device is None or is_verified(request.user):
        return redirect(next_url)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        verified = verify_token(request.user, device.persistent_id, form.cleaned_data["token"])
        if verified is not None:
            otp_login(request, verified)
            request.session.cycle_key()
            _reauth_stamp(request)
            audit.record(request, "otp_verify", Outcome.SUCCEEDED)
            return redirect(next_url)
        device.refresh_from_db()
        form.add_error("token", _wrong_code_message(device))
        audit.record(request, "otp_verify", Outcome.FAILED, error="wrong code")
    return render(
        request, "registration/otp_verify.html", {"form": form, "next": next_url}, status=400 if form.errors else 200
    )


def _wrong_code_message(device: Device) -> str:
    allowed, details = device.verify_is_allowed()
    if not allowed and details and details.get("locked_until"):
        wait = max(1, round((details["locked_until"] - timezone.now()).total_seconds()))
        return f"That code is not right, and too many were. Wait {wait} seconds, then enter the newest code."
    return "That code is not right. Check your phone's clock and enter the newest code."


# --- re-authentication --------------------------------------------------------------------------


def reauth_needed(request: HttpRequest) -> bool:
    """False while the window opened by the last sign-in or re-authentication lasts."""
    at = request.session.get(REAUTH_SESSION_KEY)
    return at is None or throttle.clock() - at > settings.OGPANEL_REAUTH_SECONDS


def confirm_identity(request: HttpRequest, form: forms.Form) -> bool:
    """The re-authentication step of a dangerous form, after it validated: True to go on.

    Otherwise the form carries the refusal (through its `refuse()` when it has one, so forms
    holding a private key drop it). The caller answers 403, or sends a user whom too many wrong
    answers signed out to the login page.
    """
    password, otp = request.POST.get("reauth_password", ""), request.POST.get("reauth_otp", "")
    if reauth_ok(request, password=password, otp=otp):
        return True
    if password or otp:  # say that what was typed is wrong, not only that it is wanted
        form.add_error(None, REAUTH_WRONG)
    getattr(form, "refuse", lambda message: form.add_error(None, message))(REAUTH_REFUSED)
    return False


def reauth_ok(request: HttpRequest, *, password: str = "", otp: str = "") -> bool:
    """May the signed-in user go on with a dangerous action (kill switch, credential change)?

    Yes within the re-authentication window; otherwise only if `password` is theirs or `otp`
    is a current code from their authenticator, which opens a new window. Wrong answers are
    audited and counted per session: after OGPANEL_LOGIN_MAX_FAILURES of them the session is
    signed out, so a stolen session cannot guess the password here. (The per-username login
    lockout is deliberately not applied: anyone could otherwise lock a risk officer who is
    already signed in out of the kill switch by failing to sign in as them.)
    """
    user = request.user
    if not user.is_authenticated:
        return False
    if not reauth_needed(request):
        return True
    if not password and not otp:
        return False
    if password and user.check_password(password):
        method = "password"
    elif otp and _code_ok(user, otp.strip()):
        method = "code"
    else:
        method = ""
    if method:
        _reauth_stamp(request)
        audit.record(request, "reauth", Outcome.SUCCEEDED, params={"with": method})
        return True
    audit.record(request, "reauth", Outcome.FAILED, error="wrong password or code")
    if throttle.reauth_failed(session_key=request.session.session_key or ""):
        audit.record(
            request,
            "login_lockout",
            Outcome.DENIED,
            params={"by": "session"},
            error="too many wrong re-authentication answers: signed out",
        )
        auth_logout(request)
    return False


def _code_ok(user: User, code: str) -> bool:
    device = next(devices_for_user(user), None)
    return device is not None and verify_token(user, device.persistent_id, code) is not None


@sensitive_post_parameters("reauth_password")
@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def reauth(request: HttpRequest) -> HttpResponse:
    """A page of its own for re-authenticating, for flows that ask before showing a form.

    It reads the same fields as registration/reauth_fields.html gives any other form.
    """
    next_url = _next_url(request)
    if request.method == "GET":
        if not reauth_needed(request):
            return redirect(next_url)
        return render(request, "registration/reauth.html", {"next": next_url, "reauth_needed": True})
    password, otp = request.POST.get("reauth_password", ""), request.POST.get("reauth_otp", "")
    if reauth_ok(request, password=password, otp=otp):
        return redirect(next_url)
    if not request.user.is_authenticated:  # signed out after too many wrong answers
        return redirect(_with_next("login", next_url))
    context = {"next": next_url, "reauth_needed": True, "error": "That password or code is not right."}
    return render(request, "registration/reauth.html", context, status=403)
