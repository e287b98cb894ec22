"""Signing in and out, throttling, idle sessions, the second factor, re-authentication, roles by
command, security headers, the deploy check and /healthz."""

import io
import json
import os
import re
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from ogpanel import throttle
from ogpanel.models import AccessScope, AuditEvent
from ogpanel.permissions import Role, role_of, scope_of
from ogpanel.views.accounts import reauth_ok

ROOT = Path(__file__).resolve().parent.parent
LOGIN = reverse("login")


def password_of(user: User) -> str:
    return f"{user.username}-password-1"  # as tests.panel_fixtures.make_user sets it


def sign_in(client: Client, username: str, password: str, *, address: str = "10.0.0.1", **extra):
    return client.post(
        LOGIN, {"username": username, "password": password, "next": "/accounts/reauth/"}, REMOTE_ADDR=address, **extra
    )


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def all_audit_text() -> str:
    return json.dumps(list(AuditEvent.objects.values()), default=str)


def confirmed_device(user: User) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


def code_for(device: TOTPDevice) -> str:
    device.refresh_from_db()
    return f"{TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token():06d}"


def wrong_code_for(device: TOTPDevice) -> str:
    """A code no step within the device's tolerance would produce."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    near = {totp.token()}
    for offset in (-1, 1):
        totp.drift = device.drift + offset
        near.add(totp.token())
    return next(f"{n:06d}" for n in range(1_000_000) if n not in near)


class Clock:
    """Stands in for throttle.clock(): starts at the beginning of a counting window."""

    def __init__(self, window: int):
        self.now = float((1_700_000_000 // window + 1) * window)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch, settings) -> Clock:
    fake = Clock(settings.OGPANEL_LOGIN_WINDOW_SECONDS)
    monkeypatch.setattr(throttle, "clock", fake)
    return fake


@pytest.fixture
def limits(settings):
    settings.OGPANEL_LOGIN_MAX_FAILURES = 3
    settings.OGPANEL_LOGIN_MAX_FAILURES_PER_ADDRESS = 5
    settings.OGPANEL_LOGIN_WINDOW_SECONDS = 900
    settings.OGPANEL_LOGIN_LOCKOUT_SECONDS = 900
    settings.OGPANEL_TRUSTED_PROXIES = 0
    return settings


@pytest.fixture
def no_otp_throttle(settings):
    # django-otp makes a device wait 1s, 2s, 4s... after each wrong code; these tests follow a
    # wrong code with a right one at once.
    settings.OTP_TOTP_THROTTLE_FACTOR = 0


# --- signing in and out ------------------------------------------------------------------------


@pytest.mark.django_db
def test_login_page_has_the_form_fields_browser_tests_fill_in(client):
    response = client.get(LOGIN + "?next=/kill-switch/")
    assert response.status_code == 200
    html = response.content.decode()
    for part in (
        'name="username"',
        'name="password"',
        'name="next" value="/kill-switch/"',
        'name="csrfmiddlewaretoken"',
    ):
        assert part in html
    assert '<label for="id_username">' in html and '<label for="id_password">' in html


@pytest.mark.django_db
def test_it_signs_in_goes_to_next_and_audits_without_the_password(client, operator):
    response = sign_in(client, "otto", password_of(operator))
    assert response.status_code == 302 and response["Location"] == "/accounts/reauth/"
    assert client.get("/accounts/reauth/").status_code == 302  # signed in, and the fresh sign-in counts as reauth
    [event] = events("login")
    assert (event.outcome, event.actor_username, event.actor_role) == ("succeeded", "otto", "ops")
    assert event.client_ip == "10.0.0.1"
    assert password_of(operator) not in all_audit_text()


@pytest.mark.django_db
def test_it_refuses_a_wrong_password_and_audits_the_username_only(client, operator):
    response = sign_in(client, "otto", "not-the-password-xyz")
    assert response.status_code == 400
    assert "correct username and password" in response.content.decode()
    [event] = events("login")
    assert event.outcome == "failed" and event.params == {"username": "otto"} and event.actor_id is None
    assert "not-the-password-xyz" not in all_audit_text()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_it_ignores_a_next_that_leaves_the_site(client, operator):
    form = {"username": "otto", "password": password_of(operator), "next": "https://evil.example/"}
    response = client.post(LOGIN, form)
    assert response["Location"] == reverse("dashboard")


@pytest.mark.django_db
def test_logout_is_post_only_and_audited(as_operator):
    assert as_operator.get(reverse("logout")).status_code == 405
    response = as_operator.post(reverse("logout"))
    assert response.status_code == 302 and response["Location"] == LOGIN
    assert "_auth_user_id" not in as_operator.session
    [event] = events("logout")
    assert event.actor_username == "otto" and event.outcome == "succeeded"


@pytest.mark.django_db
def test_login_and_logout_need_the_csrf_token(operator):
    strict = Client(enforce_csrf_checks=True)
    assert strict.post(LOGIN, {"username": "otto", "password": password_of(operator)}).status_code == 403
    strict.force_login(operator)
    assert strict.post(reverse("logout")).status_code == 403


@pytest.mark.django_db
def test_admin_site_signs_in_through_the_panel_login(client):
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302 and response["Location"] == f"{LOGIN}?next=/admin/"


@pytest.mark.django_db
def test_admin_site_refuses_signed_in_users_without_staff_status_instead_of_looping(as_operator):
    response = as_operator.get("/admin/", follow=True)
    assert response.status_code == 403 and "Only admins" in response.content.decode()


@pytest.mark.django_db
def test_admin_site_logout_goes_through_the_panel_and_is_audited(as_admin):
    assert as_admin.post("/admin/logout/").status_code == 302
    assert [e.actor_username for e in events("logout")] == ["ada"]


# --- throttling --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_locks_a_username_out_after_too_many_failures(client, operator, limits, clock):
    for n in range(2):
        assert sign_in(client, "otto", "wrong", address=f"10.0.1.{n}").status_code == 400
    locked = sign_in(client, "otto", "wrong", address="10.0.1.9")
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts for this username" in locked.content.decode()
    assert locked["Retry-After"] == "900"

    # Even the right password, from a fresh address, is refused while the lock lasts.
    response = sign_in(client, "otto", password_of(operator), address="10.0.2.1")
    assert response.status_code == 429 and "_auth_user_id" not in client.session
    [lockout] = events("login_lockout")
    assert lockout.params == {"username": "otto", "by": "username", "seconds": 900}
    assert [e.outcome for e in events("login")] == ["failed"] * 3  # the refused attempt checked nothing


@pytest.mark.django_db
def test_it_locks_an_address_out_whatever_usernames_it_tries(client, operator, limits, clock):
    for n in range(4):
        assert sign_in(client, f"guess{n}", "wrong").status_code == 400
    assert sign_in(client, "guess9", "wrong").status_code == 429
    response = sign_in(client, "otto", password_of(operator))
    assert response.status_code == 429 and "from your network address" in response.content.decode()
    # Someone elsewhere is not affected.
    assert sign_in(Client(), "otto", password_of(operator), address="10.9.9.9").status_code == 302


@pytest.mark.django_db
def test_a_forged_forwarded_for_does_not_escape_the_address_lockout(client, operator, limits, clock):
    for n in range(5):
        sign_in(client, f"guess{n}", "wrong", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
    response = sign_in(client, "otto", password_of(operator), HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert response.status_code == 429
    assert {e.client_ip for e in events("login")} == {"10.0.0.1"}


@pytest.mark.django_db
def test_behind_a_trusted_proxy_clients_are_told_apart_by_forwarded_for(client, operator, limits, clock):
    limits.OGPANEL_TRUSTED_PROXIES, limits.OGPANEL_TRUSTED_PROXY_ADDRESSES = 1, ["10.0.0.254"]
    for n in range(5):
        sign_in(client, f"guess{n}", "wrong", address="10.0.0.254", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert sign_in(client, "x", "wrong", address="10.0.0.254", HTTP_X_FORWARDED_FOR="203.0.113.5").status_code == 429
    response = sign_in(client, "otto", password_of(operator), address="10.0.0.254", HTTP_X_FORWARDED_FOR="203.0.113.6")
    assert response.status_code == 302


@pytest.mark.django_db
def test_the_lockout_lifts_after_its_time(client, operator, limits, clock):
    for _ in range(3):
        sign_in(client, "otto", "wrong")
    clock.advance(899)
    assert sign_in(client, "otto", password_of(operator)).status_code == 429
    clock.advance(2)
    assert sign_in(client, "otto", password_of(operator)).status_code == 302


@pytest.mark.django_db
def test_failures_spread_beyond_the_window_do_not_add_up(client, operator, limits, clock):
    for _ in range(2):
        sign_in(client, "otto", "wrong")
    clock.advance(2 * 900)
    for _ in range(2):
        assert sign_in(client, "otto", "wrong").status_code == 400


@pytest.mark.django_db
def test_failures_either_side_of_a_window_boundary_add_up(client, operator, limits, clock):
    clock.advance(890)
    for _ in range(2):
        sign_in(client, "otto", "wrong")
    clock.advance(20)  # now in the next counting window, 20s after the first failures
    assert sign_in(client, "otto", "wrong").status_code == 429


@pytest.mark.django_db
def test_a_successful_sign_in_clears_the_username_failures(operator, limits, clock):
    for _ in range(2):
        sign_in(Client(), "otto", "wrong")
    assert sign_in(Client(), "otto", password_of(operator)).status_code == 302
    for _ in range(2):
        assert sign_in(Client(), "otto", "wrong").status_code == 400


# --- idle sessions -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_session_expires_after_being_idle_not_after_a_fixed_time(settings, as_viewer, monkeypatch):
    assert settings.SESSION_SAVE_EVERY_REQUEST is True
    age = settings.SESSION_COOKIE_AGE
    assert age == 30 * 60
    page = reverse("reauth")
    start = timezone.now()

    def travel(seconds: int) -> None:
        monkeypatch.setattr(timezone, "now", lambda: start + timedelta(seconds=seconds))

    travel(0)
    assert as_viewer.get(page).status_code == 200
    travel(age - 60)
    assert as_viewer.get(page).status_code == 200  # each request pushes expiry forward...
    travel(2 * age - 120)
    assert as_viewer.get(page).status_code == 200  # ...so an active session outlives the age
    travel(3 * age - 120 + 1)
    response = as_viewer.get(page)
    assert response.status_code == 302 and response["Location"].startswith(LOGIN)


@pytest.mark.django_db
def test_the_dashboards_own_refreshes_do_not_keep_an_idle_session_alive(
    settings, sim, subaccounts, as_viewer, monkeypatch
):
    idle = settings.OGPANEL_SESSION_IDLE_SECONDS
    start = timezone.now()
    poll = {"HX-Request": "true", "HX-Trigger": "groups", "HX-Current-URL": "http://testserver/"}

    def travel(seconds: int) -> None:
        monkeypatch.setattr(timezone, "now", lambda: start + timedelta(seconds=seconds))

    travel(0)
    assert as_viewer.get("/").status_code == 200  # a person looks at the dashboard
    for seconds in range(60, idle, 60):  # then only the page's timer asks, for longer than the idle limit
        travel(seconds)
        assert as_viewer.get("/", headers=poll).status_code == 200
    travel(idle + 1)
    response = as_viewer.get("/", headers=poll)

    assert response.status_code == 200 and response["HX-Redirect"].startswith(LOGIN)
    assert AuditEvent.objects.filter(action="logout", params__why="idle").count() == 1


# --- second factor -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_ops_without_an_authenticator_must_enrol_when_2fa_is_required(settings, as_operator, as_admin):
    settings.OGPANEL_REQUIRE_2FA = True
    for client in (as_operator, as_admin):
        response = client.get("/kill-switch/")
        assert response.status_code == 302
        assert response["Location"] == reverse("otp_setup") + "?next=%2Fkill-switch%2F"


@pytest.mark.django_db
def test_an_htmx_request_owing_a_second_factor_gets_a_whole_page_redirect(settings, as_operator):
    settings.OGPANEL_REQUIRE_2FA = True
    response = as_operator.get("/", HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL="http://testserver/audit/")
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("otp_setup") + "?next=%2Faudit%2F"


@pytest.mark.django_db
def test_viewers_are_not_required_to_enrol(settings, as_viewer):
    settings.OGPANEL_REQUIRE_2FA = True
    assert as_viewer.get(reverse("reauth")).status_code == 200


@pytest.mark.django_db
def test_nobody_must_enrol_when_2fa_is_not_required(settings, as_operator):
    settings.OGPANEL_REQUIRE_2FA = False
    assert as_operator.get(reverse("reauth")).status_code == 200


@pytest.mark.django_db
def test_enrolment_shows_the_secret_and_confirms_it_with_a_code(settings, as_operator, operator, no_otp_throttle):
    settings.OGPANEL_REQUIRE_2FA = True
    page = as_operator.get(reverse("otp_setup") + "?next=/audit/")
    device = TOTPDevice.objects.get(user=operator)
    assert not device.confirmed
    html = page.content.decode()
    assert "otpauth://totp/ogpanel%3Aotto?secret=" in html and page.context["secret"] in html
    assert "<script" not in html.split("</head>")[1]  # no QR library, nothing inline

    wrong = as_operator.post(reverse("otp_setup"), {"token": wrong_code_for(device), "next": "/audit/"})
    assert wrong.status_code == 400 and "not right" in wrong.content.decode()
    device.refresh_from_db()
    assert not device.confirmed

    right = as_operator.post(reverse("otp_setup"), {"token": code_for(device), "next": "/audit/"})
    assert right.status_code == 302 and right["Location"] == "/audit/"
    device.refresh_from_db()
    assert device.confirmed
    assert as_operator.get(reverse("reauth")).status_code == 200  # through the gate
    assert [e.outcome for e in events("otp_setup")] == ["failed", "succeeded"]
    assert page.context["secret"] not in all_audit_text()


@pytest.mark.django_db
def test_a_user_with_an_authenticator_must_enter_a_code_after_the_password(operator, no_otp_throttle):
    device = confirmed_device(operator)
    client = Client()
    assert sign_in(client, "otto", password_of(operator))["Location"] == "/accounts/reauth/"
    assert events("login")[0].params == {"second_factor": "pending"}

    response = client.get("/accounts/reauth/")
    assert response.status_code == 302
    assert response["Location"] == reverse("otp_verify") + "?next=%2Faccounts%2Freauth%2F"
    assert client.get("/kill-switch/")["Location"].startswith(reverse("otp_verify"))

    wrong = client.post(reverse("otp_verify"), {"token": wrong_code_for(device), "next": "/accounts/reauth/"})
    assert wrong.status_code == 400 and "not right" in wrong.content.decode()
    assert client.get("/kill-switch/")["Location"].startswith(reverse("otp_verify"))

    right = client.post(reverse("otp_verify"), {"token": code_for(device), "next": "/accounts/reauth/"})
    assert right.status_code == 302 and right["Location"] == "/accounts/reauth/"
    assert client.get("/accounts/reauth/").status_code == 302  # verified, and within the reauth window
    assert client.get(reverse("otp_verify"))["Location"] == reverse("dashboard")
    assert [e.outcome for e in events("otp_verify")] == ["failed", "succeeded"]


@pytest.mark.django_db
def test_a_viewer_who_enrolled_verifies_too(viewer):
    confirmed_device(viewer)
    client = Client()
    sign_in(client, "vera", password_of(viewer))
    assert client.get("/accounts/reauth/")["Location"].startswith(reverse("otp_verify"))


@pytest.mark.django_db
def test_enrolling_again_cannot_sidestep_the_confirmed_authenticator(operator):
    confirmed_device(operator)
    client = Client()
    sign_in(client, "otto", password_of(operator))
    response = client.get(reverse("otp_setup"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("otp_verify"))
    assert TOTPDevice.objects.filter(user=operator).count() == 1


@pytest.mark.django_db
def test_signing_in_and_health_stay_reachable_while_a_code_is_owed(settings, as_operator):
    settings.OGPANEL_REQUIRE_2FA = True
    assert as_operator.get(LOGIN).status_code == 302  # already signed in: on to the next page (and the gate)
    assert as_operator.get(reverse("healthz")).status_code == 200
    assert as_operator.post(reverse("logout")).status_code == 302


# --- re-authentication -------------------------------------------------------------------------


def request_for(user: User):
    request = RequestFactory().post("/kill-switch/", REMOTE_ADDR="10.0.0.5")
    request.user = user
    request.session = SessionStore()
    request.session.create()
    return request


@pytest.mark.django_db
def test_reauth_accepts_the_password_and_then_does_not_ask_again_for_a_while(operator, clock, settings):
    request = request_for(operator)
    assert reauth_ok(request) is False  # nothing given, no recent sign-in
    assert reauth_ok(request, password="wrong-password") is False
    assert reauth_ok(request, password=password_of(operator)) is True
    clock.advance(settings.OGPANEL_REAUTH_SECONDS - 1)
    assert reauth_ok(request) is True
    clock.advance(2)
    assert reauth_ok(request) is False
    assert [e.outcome for e in events("reauth")] == ["failed", "succeeded"]
    assert password_of(operator) not in all_audit_text() and "wrong-password" not in all_audit_text()


@pytest.mark.django_db
def test_reauth_accepts_a_current_code_from_an_enrolled_authenticator(operator, no_otp_throttle):
    device = confirmed_device(operator)
    request = request_for(operator)
    assert reauth_ok(request, otp=wrong_code_for(device)) is False
    assert reauth_ok(request, otp=code_for(device)) is True
    assert events("reauth")[-1].params == {"with": "code"}


@pytest.mark.django_db
def test_reauth_refuses_a_code_from_a_user_without_an_authenticator(operator):
    assert reauth_ok(request_for(operator), otp="123456") is False


@pytest.mark.django_db
def test_reauth_page_returns_to_next_after_the_right_password(as_operator, operator):
    page = reverse("reauth") + "?next=/kill-switch/"
    form = as_operator.get(page)
    assert 'name="reauth_password"' in form.content.decode()
    wrong = as_operator.post(page, {"reauth_password": "nope", "next": "/kill-switch/"})
    assert wrong.status_code == 403
    right = as_operator.post(page, {"reauth_password": password_of(operator), "next": "/kill-switch/"})
    assert right.status_code == 302 and right["Location"] == "/kill-switch/"
    assert as_operator.get(page)["Location"] == "/kill-switch/"  # window open: straight through


@pytest.mark.django_db
def test_too_many_wrong_reauth_answers_sign_the_session_out(as_operator, limits):
    page = reverse("reauth")
    for _ in range(2):
        assert as_operator.post(page, {"reauth_password": "guess"}).status_code == 403
    response = as_operator.post(page, {"reauth_password": "guess"})
    assert response.status_code == 302 and response["Location"].startswith(LOGIN)
    assert "_auth_user_id" not in as_operator.session
    assert events("login_lockout")[0].params == {"by": "session"}


# --- roles by command --------------------------------------------------------------------------


@pytest.mark.django_db
def test_grant_gives_a_role_and_a_scope_and_audits_it(viewer):
    call_command("grant", "vera", "ops", "--subaccounts", "0,3-5", stdout=io.StringIO())
    user = User.objects.get(pk=viewer.pk)
    assert role_of(user) is Role.OPS and scope_of(user) == {0, 3, 4, 5}
    assert not user.is_staff
    [event] = events("role_change")
    assert (event.actor_username, event.actor_role, event.outcome) == ("grant", "system", "succeeded")
    assert event.params["username"] == "vera"
    assert event.params["before"] == {"role": "viewer", "subaccounts": "all"}
    assert event.params["after"] == {"role": "ops", "subaccounts": [0, 3, 4, 5]}


@pytest.mark.django_db
def test_grant_replaces_the_role_keeps_the_scope_unless_told(scoped_operator):
    call_command("grant", "sam", "admin", stdout=io.StringIO())
    user = User.objects.get(pk=scoped_operator.pk)
    assert role_of(user) is Role.ADMIN and scope_of(user) == {1}
    assert user.is_staff and list(user.groups.values_list("name", flat=True)) == ["admin"]

    call_command("grant", "sam", "viewer", "--all-subaccounts", stdout=io.StringIO())
    user = User.objects.get(pk=scoped_operator.pk)
    assert role_of(user) is Role.VIEWER and scope_of(user) is None and not user.is_staff
    assert not AccessScope.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_an_admin_granted_by_command_can_manage_users_in_the_django_admin(administrator, viewer):
    call_command("grant", "ada", "admin", stdout=io.StringIO())
    client = Client()
    client.force_login(administrator)
    assert client.get(f"/admin/auth/user/{viewer.pk}/change/").status_code == 200


@pytest.mark.django_db
def test_grant_none_removes_every_role(operator):
    call_command("grant", "otto", "none", stdout=io.StringIO())
    assert role_of(User.objects.get(pk=operator.pk)) is Role.NONE


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, message",
    [
        (["vera", "root"], "invalid choice"),
        (["vera", "ops", "--subaccounts", "33"], "0..32"),
        (["vera", "ops", "--subaccounts", "2-40"], "0..32"),
        (["vera", "ops", "--subaccounts", "7-3"], "backwards"),
        (["vera", "ops", "--subaccounts", "1,x"], "not a number"),
        (["vera", "ops", "--subaccounts", "-1"], "not a number"),
        (["vera", "ops", "--subaccounts", ""], "not a number"),
        (["vera", "ops", "--subaccounts", "1", "--all-subaccounts"], "not allowed with"),
        (["nobody", "ops"], "No user named"),
    ],
)
def test_grant_refuses_bad_input_and_changes_nothing(viewer, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("grant", *args)
    assert role_of(User.objects.get(pk=viewer.pk)) is Role.VIEWER
    assert not AccessScope.objects.exists() and not events("role_change")


@pytest.mark.django_db
def test_grant_follows_the_configured_highest_subaccount(settings, viewer):
    settings.OGPANEL_MAX_SUBACCOUNT = 63
    call_command("grant", "vera", "ops", "--subaccounts", "40-63", stdout=io.StringIO())
    assert scope_of(User.objects.get(pk=viewer.pk)) == set(range(40, 64))


@pytest.mark.django_db
def test_grant_will_not_pretend_to_demote_a_superuser():
    User.objects.create_superuser("root", password="root-password-1")
    with pytest.raises(CommandError, match="superuser"):
        call_command("grant", "root", "viewer")


# --- headers, deploy check, health ----------------------------------------------------------------


@pytest.mark.django_db
def test_pages_carry_a_strict_csp_and_the_usual_security_headers(client):
    response = client.get(LOGIN)
    csp = response["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    nonce = directives["script-src"].split("'nonce-")[1].split("'")[0]
    assert directives["default-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
    html = response.content.decode()
    assert html.count("<script") == html.count(f'nonce="{nonce}"') >= 1
    assert '"allowEval": false' in html and '"includeIndicatorStyles": false' in html
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_the_csrf_token_htmx_sends_from_the_page_is_what_mutations_need(viewer):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(viewer)
    html = strict.get(reverse("reauth")).content.decode()
    token = re.search(r"<body hx-headers='\{\"X-CSRFToken\": \"([A-Za-z0-9]{64})\"\}'>", html).group(1)
    assert strict.post(reverse("logout"), HTTP_HX_REQUEST="true").status_code == 403
    response = strict.post(reverse("logout"), HTTP_HX_REQUEST="true", HTTP_X_CSRFTOKEN=token)
    assert response["HX-Redirect"] == LOGIN and "_auth_user_id" not in strict.session


def test_deploy_check_is_clean_with_production_settings(tmp_path):
    keep = ("PATH", "HOME", "LANG", "SYSTEMROOT")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(
        DJANGO_SETTINGS_MODULE="ogpanel.settings",
        SECRET_KEY=secrets.token_urlsafe(64),
        OGPANEL_DEBUG="0",
        ALLOWED_HOSTS="panel.example.com",
        OGPANEL_VAR_DIR=str(tmp_path),
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.django_db
def test_healthz_answers_ok_without_signing_in(client, settings):
    settings.OGPANEL_REQUIRE_2FA = True
    response = client.get("/healthz")
    assert response.status_code == 200
    assert {key: response.json()[key] for key in ("status", "database")} == {"status": "ok", "database": "ok"}
    assert response.json()["cache"]["status"] in ("ok", "not configured")  # Redis, or no shared cache at all
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_healthz_is_exempt_from_the_https_redirect_that_covers_everything_else(settings):
    settings.SECURE_SSL_REDIRECT = True
    client = Client()
    assert client.get("/healthz").status_code == 200
    assert client.get(LOGIN).status_code == 301


@pytest.mark.django_db
def test_healthz_answers_503_when_the_database_is_down(client, monkeypatch):
    def unreachable(*args, **kwargs):
        raise OperationalError('connection to server at "db.internal" (10.1.2.3), port 5432 failed: password')

    monkeypatch.setattr(connection, "cursor", unreachable)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "unavailable"}
