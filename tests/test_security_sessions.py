"""Sessions and what surrounds them: idle sign-out under passive polling, no-store, forwarded addresses."""

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from ogpanel.models import AuditEvent, Credential
from ogpanel.settings import env_networks
from tests.test_canary import crawl

LOGIN = reverse("login")
POLL = {"HX-Request": "true", "HX-Trigger": "groups", "HX-Current-URL": "http://testserver/"}


@pytest.fixture
def travel(monkeypatch):
    start = timezone.now()

    def to(seconds: float) -> None:
        monkeypatch.setattr(timezone, "now", lambda: start + timedelta(seconds=seconds))

    to(0)
    return to


# --- idle sessions ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_session_whose_only_requests_after_signing_in_are_polls_is_signed_out_when_idle(
    settings, sim, subaccounts, viewer, travel
):
    idle = settings.OGPANEL_SESSION_IDLE_SECONDS
    client = Client()
    assert client.post(LOGIN, {"username": "vera", "password": "vera-password-1"}).status_code == 302
    for seconds in range(60, idle, 60):  # nobody looks: only the dashboard's timer asks
        travel(seconds)
        assert client.get("/", headers=POLL).status_code == 200
    travel(idle + 1)

    response = client.get("/", headers=POLL)

    assert response.status_code == 200 and response["HX-Redirect"].startswith(LOGIN)
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action="logout", actor_username="vera", params__why="idle").count() == 1


@pytest.mark.django_db
def test_a_session_with_no_activity_recorded_starts_its_idle_clock_at_its_first_poll(
    settings, sim, subaccounts, as_viewer, travel
):
    """A session signed in some other way (the admin, an older panel) gets a clock as soon as it is used."""
    idle = settings.OGPANEL_SESSION_IDLE_SECONDS
    assert as_viewer.get("/", headers=POLL).status_code == 200
    travel(idle - 1)
    assert "HX-Redirect" not in as_viewer.get("/", headers=POLL)
    travel(idle + 1)

    assert as_viewer.get("/", headers=POLL)["HX-Redirect"].startswith(LOGIN)


@pytest.mark.django_db
def test_a_person_using_the_panel_after_signing_in_stays_signed_in(settings, sim, subaccounts, viewer, travel):
    idle = settings.OGPANEL_SESSION_IDLE_SECONDS
    client = Client()
    client.post(LOGIN, {"username": "vera", "password": "vera-password-1"})
    for seconds in range(idle // 2, 3 * idle, idle // 2):
        travel(seconds)
        assert client.get(reverse("audit_log")).status_code == 200
    assert "HX-Redirect" not in client.get("/", headers=POLL)


# --- no-store -------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("persona", ["viewer", "operator", "scoped_operator", "administrator"])
def test_every_page_and_fragment_sent_to_a_signed_in_user_is_no_store(
    request, settings, sim, subaccounts, credential, persona
):
    """The canary crawl's every page, partial, form post, refusal, redirect and export."""
    settings.OGPANEL_LIST_CACHE_SECONDS = 0
    user = request.getfixturevalue(persona)
    client = Client(raise_request_exception=False)
    client.force_login(user)
    group, other, doomed = sim.create_group(1, 10), sim.create_group(2, 10), sim.create_group(1, 10)
    pages = crawl(
        client,
        f"{user.username}-password-1",
        credential=credential.pk,
        group=group,
        other=other,
        doomed=doomed,
        canary_pem="not a key",
    )

    cached, statuses = {}, set()
    for method, url, data, headers in pages:
        response = getattr(client, method)(url, data, headers=headers)
        statuses.add(response.status_code)
        if "no-store" not in response.get("Cache-Control", ""):
            cached[f"{method} {url} {headers}"] = (response.status_code, response.get("Cache-Control"))

    assert cached == {}
    assert "_auth_user_id" in client.session  # signed in throughout
    assert {200, 302, 404} <= statuses  # pages, redirects and refusals alike
    assert Credential.objects.exists()  # the crawl's own credential, untouched by refusals


@pytest.mark.django_db
def test_static_files_stay_cacheable_for_signed_in_users_and_the_sign_in_page_is_not(client, as_viewer):
    assert "no-store" in client.get(LOGIN)["Cache-Control"]
    static = as_viewer.get("/static/ogpanel/panel.css")
    assert static.status_code == 200 and "no-store" not in static.get("Cache-Control", "")


# --- forwarded addresses ----------------------------------------------------------------------------


def failed_sign_in(client: Client, **extra) -> tuple[AuditEvent, str]:
    response = client.post(LOGIN, {"username": "nobody", "password": "wrong"}, **extra)
    return AuditEvent.objects.filter(action="login").latest("seq"), response["X-Request-ID"]


@pytest.mark.django_db
def test_a_client_reaching_the_panel_directly_cannot_forge_its_address_or_request_id(settings, client):
    settings.OGPANEL_TRUSTED_PROXIES = 1  # as compose sets it

    event, request_id = failed_sign_in(
        client,
        REMOTE_ADDR="203.0.113.9",
        HTTP_X_FORWARDED_FOR="198.51.100.1",
        HTTP_X_REQUEST_ID="forged-request-id",
    )

    assert event.client_ip == "203.0.113.9"
    assert request_id != "forged-request-id" and event.request_id == request_id


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("peer", "treated_as"),
    [("203.0.113.9", "http"), ("127.0.0.1", "https")],  # a client reaching the panel directly; the proxy
)
def test_only_a_trusted_proxy_may_say_the_request_came_over_https(settings, client, peer, treated_as):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")  # OGPANEL_BEHIND_PROXY=1
    settings.SECURE_SSL_REDIRECT = True

    response = client.get("/accounts/login/", REMOTE_ADDR=peer, HTTP_X_FORWARDED_PROTO="https")

    if treated_as == "http":
        assert response.status_code == 301 and response["Location"].startswith("https://")
    else:
        assert response.status_code == 200


@pytest.mark.django_db
def test_behind_the_configured_proxy_the_address_it_saw_is_the_client(settings, client):
    settings.OGPANEL_TRUSTED_PROXIES = 1
    settings.OGPANEL_TRUSTED_PROXY_ADDRESSES = ["172.16.0.0/12"]

    event, request_id = failed_sign_in(
        client,
        REMOTE_ADDR="172.18.0.1",
        HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.7",  # what the client sent, then what the proxy saw
        HTTP_X_REQUEST_ID="proxy-request-1",
    )

    assert event.client_ip == "203.0.113.7" and request_id == "proxy-request-1"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("forwarded", "client_ip"),
    [
        # The inner proxy saw a client, not the outer proxy: what the client sent before it is not believed.
        ("198.51.100.1, 203.0.113.7", "203.0.113.7"),
        # The inner proxy saw the outer one, which saw the client.
        ("198.51.100.1, 203.0.113.7, 10.0.0.5", "203.0.113.7"),
        # Two proxies are configured: a third trusted-looking hop is still only what the outer proxy saw.
        ("198.51.100.1, 10.0.0.7, 10.0.0.5", "10.0.0.7"),
        ("not-an-address", "10.0.0.2"),  # garbage from the proxy: the proxy itself
        ("", "10.0.0.2"),
    ],
)
def test_each_forwarded_hop_is_believed_only_if_a_trusted_proxy_wrote_it(settings, client, forwarded, client_ip):
    settings.OGPANEL_TRUSTED_PROXIES = 2
    settings.OGPANEL_TRUSTED_PROXY_ADDRESSES = ["10.0.0.0/24"]

    event, _ = failed_sign_in(client, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded)

    assert event.client_ip == client_ip


def test_a_proxy_address_that_does_not_parse_stops_the_process(monkeypatch):
    monkeypatch.setenv("OGPANEL_TRUSTED_PROXY_ADDRESSES", "10.0.0.0/8, proxy.internal")
    with pytest.raises(ImproperlyConfigured, match=r"'proxy\.internal' is not an IP address or CIDR"):
        env_networks("OGPANEL_TRUSTED_PROXY_ADDRESSES", "")
    monkeypatch.setenv("OGPANEL_TRUSTED_PROXY_ADDRESSES", "10.0.0.0/8, ::1, 192.168.1.1")
    networks = env_networks("OGPANEL_TRUSTED_PROXY_ADDRESSES", "")
    assert list(map(str, networks)) == ["10.0.0.0/8", "::1/128", "192.168.1.1/32"]
