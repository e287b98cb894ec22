"""Each 500 that outside testing found, and the key on a debug error page, as regression tests.

From the panel's own process (Django's test client, real simulator): a form declaring another
charset than UTF-8, a malformed multipart body, a slash-less POST in DEBUG and production, an
audit search up to 9999-12-31, a subaccount of thousands of digits, an htmx delete with a
malformed HX-Current-URL, two creates of one label racing, and a real crash with key material
in every part of the request. tests/test_security_outside.py sends the same from outside, to
running panel processes, with a fuzz over every form, path, header and method.
"""

import io
import logging
import sys
from urllib.parse import quote

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core import mail
from django.core.signals import got_request_exception
from django.test import Client, RequestFactory
from django.urls import reverse
from django.views.debug import get_default_exception_reporter_filter

from ogpanel import audit, credential_forms
from ogpanel.models import AuditEvent, Credential
from ogpanel.redaction import REDACTED, KeyRedactingReporter, redact
from tests.leaks import assert_no_key_material, body_pieces

HTMX = {"HX-Request": "true"}
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def console(monkeypatch) -> io.StringIO:
    """What the configured console handler (and its filter) writes, as the panel's log would hold it."""
    [handler] = [h for h in logging.getLogger().handlers if getattr(h, "name", "") == "console"]
    stream = io.StringIO()
    monkeypatch.setattr(handler, "stream", stream)
    return stream


@pytest.fixture
def admin_client(administrator) -> Client:
    """Signed in through the form, CSRF checks on, as a browser is."""
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    client.get(reverse("login"))
    token = client.cookies["csrftoken"].value
    response = client.post(
        reverse("login"), {"username": "ada", "password": "ada-password-1", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    return client


def csrf(client: Client) -> dict:
    return {"X-CSRFToken": client.cookies["csrftoken"].value}


def create_form(sim, pem: bytes, **changes) -> dict:
    return {
        "label": "Desk A",
        "environment": Credential.Environment.CUSTOM,
        "custom_base_url": sim.base_url,
        "key_id": "test-key",
        "private_key": pem.decode(),
        **changes,
    }


# --- bodies the panel cannot read ----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("charset", ["utf-16", "utf-32", "cp500", "latin-1"])
@pytest.mark.parametrize("url", ["/accounts/login/", "/kill-switch/", "/credentials/new/", "/no-such-page/"])
def test_a_form_in_another_charset_is_a_400_with_its_security_headers_on_any_post_url(charset, url, console):
    client = Client(enforce_csrf_checks=True)  # anonymous: refused before the CSRF check reads the body
    body = "username=ada&password=x".encode(charset)

    response = client.generic("POST", url, body, content_type=f"{FORM}; charset={charset}")

    assert response.status_code == 400
    assert "The form must be sent as UTF-8" in response.content.decode()
    assert response["X-Content-Type-Options"] == "nosniff" and "Content-Security-Policy" in response
    [line] = console.getvalue().splitlines()
    assert "Bad Request (The form must be sent as UTF-8" in line and url in line


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nb',  # no closing boundary
        b"--x\r\nContent-Disposition: form-data\r\n\r\n--x--",  # a part without a name
        b"\xff" * 100,
        b'--x\r\nContent-Disposition: form-data; name="f"; filename="k.pem"\r\nContent-Type: text/plain\r\n',
    ],
)
def test_a_malformed_multipart_body_is_a_400_logged_in_one_line_without_a_traceback(admin_client, body, console):
    response = admin_client.generic(
        "POST", "/credentials/new/", body, content_type="multipart/form-data; boundary=x", headers=csrf(admin_client)
    )

    assert response.status_code == 400
    lines = console.getvalue().splitlines()
    assert len(lines) == 1 and "Traceback" not in console.getvalue()


@pytest.mark.django_db
def test_a_multipart_body_without_a_boundary_is_a_400_that_says_so(admin_client, console):
    response = admin_client.generic("POST", "/kill-switch/", b"garbage", content_type="multipart/form-data")

    assert response.status_code == 400
    assert "multipart body could not be read" in response.content.decode()
    assert len(console.getvalue().splitlines()) == 1


@pytest.mark.django_db
def test_a_refusal_without_a_body_gets_a_message(as_operator):
    response = as_operator.put("/kill-switch/")

    assert response.status_code == 405 and response["Allow"] == "GET, POST"
    assert "This address does not take PUT requests." in response.content.decode()
    assert response["Content-Length"] == str(len(response.content))


# --- the slash-less POST -------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [True, False], ids=["debug", "production"])
def test_a_slash_less_post_of_a_key_is_a_404_that_shows_none_of_it(settings, admin_client, sim, rsa_pem, debug):
    settings.DEBUG = debug
    caught = []

    def crashed(sender, **kwargs) -> None:
        caught.append(sender)

    got_request_exception.connect(crashed)
    try:
        response = admin_client.post("/credentials/new", create_form(sim, rsa_pem), headers=csrf(admin_client))
    finally:
        got_request_exception.disconnect(crashed)

    assert response.status_code == 404 and caught == []
    assert not Credential.objects.exists()
    assert_no_key_material([rsa_pem], response.content.decode(), str(response.headers))
    # A GET is still sent on to the address with the slash.
    assert admin_client.get("/credentials/new")["Location"] == "/credentials/new/"


# --- numbers and dates -----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("until", ["9999-12-31", "9999-12-30"])
def test_the_audit_log_searches_up_to_the_last_day_there_is(as_admin, operator, until):
    sign_in = Client().post(reverse("login"), {"username": "otto", "password": "otto-password-1"})
    assert sign_in.status_code == 302
    query = {"since": "0001-01-01", "until": until}

    page = as_admin.get(reverse("audit_log"), query)
    csv = as_admin.get(reverse("audit_export", args=["csv"]), query)
    jsonl = as_admin.get(reverse("audit_export", args=["jsonl"]), query)

    assert page.status_code == 200 and "<td>otto <span" in page.content.decode()
    assert csv.status_code == jsonl.status_code == 200
    assert "otto" in b"".join(csv.streaming_content).decode()
    assert "otto" in b"".join(jsonl.streaming_content).decode()


HUGE = "7" * 4400  # past int()'s 4,300-digit limit for strings


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("/kill-switch/", {"operation": "trigger_one", "subaccount": HUGE, "reason": "x", "confirm": "TRIGGER"}),
        ("/kill-switch/", {"operation": "reset_one", "subaccount": "1" * 25, "reason": "x", "confirm": "RESET"}),
        ("/groups/new/", {"subaccount": HUGE, "contracts_limit": HUGE, "exchange_index": HUGE}),
        ("credential_test", {"subaccount": HUGE}),
        ("/subaccounts/", {"number": HUGE, "op": "assign", "credential": HUGE}),
    ],
)
def test_a_number_of_thousands_of_digits_is_refused_in_words(as_admin, sim, subaccounts, credential, url, data):
    if url == "credential_test":
        url = reverse(url, args=[credential.pk])
    sim.clear_requests()

    response = as_admin.post(url, data)

    assert response.status_code == 400
    assert "must be a" in response.content.decode()  # "Subaccount must be a (whole) number from 0 to 32."
    assert sim.requests == []


# --- htmx --------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("current", ["http://[", "http://[::1", "https://exa mple/%zz", "\x7f", "//"])
def test_an_htmx_delete_with_a_malformed_current_url_answers_the_deletion(as_admin, sim, subaccounts, current):
    group = sim.create_group(1, 10)

    response = as_admin.post(
        reverse("group_delete", args=[1, group]), {"reason": "x"}, headers={**HTMX, "HX-Current-URL": current}
    )

    assert response.status_code == 200 and "ogpanel:groups-changed" in response["HX-Trigger"]
    assert [e.outcome for e in AuditEvent.objects.filter(action="delete").order_by("seq")] == [
        "attempted",
        "succeeded",
    ]


@pytest.mark.django_db
def test_an_htmx_request_owing_a_code_with_a_malformed_current_url_is_sent_to_the_code_page(settings, as_operator):
    settings.OGPANEL_REQUIRE_2FA = True

    response = as_operator.get("/", headers={**HTMX, "HX-Current-URL": "http://["})

    assert response.status_code == 200 and response["HX-Redirect"].startswith(reverse("otp_setup") + "?next=%2F")


# --- two creates of one label at once ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # as in production: no transaction around the request
def test_a_create_that_loses_the_race_for_its_label_is_a_form_error(
    as_admin, administrator, sim, rsa_pem, monkeypatch, console
):
    """The label was free when the form checked it; a concurrent request saved it before this one did."""
    checked = credential_forms.CredentialForm.clean_label

    def clean_label_then_lose_the_race(form) -> str:
        label = checked(form)
        rival = Client()
        rival.force_login(administrator)
        monkeypatch.setattr(credential_forms.CredentialForm, "clean_label", checked)
        created = rival.post(reverse("credential_create"), create_form(sim, rsa_pem, reauth_password="ada-password-1"))
        assert created.status_code == 302
        return label

    monkeypatch.setattr(credential_forms.CredentialForm, "clean_label", clean_label_then_lose_the_race)

    response = as_admin.post(reverse("credential_create"), create_form(sim, rsa_pem, reauth_password="ada-password-1"))

    assert response.status_code == 400
    page = response.content.decode()
    assert "A credential with this label already exists." in page
    assert Credential.objects.filter(label="Desk A").count() == 1
    results = AuditEvent.objects.filter(action="credential_create").exclude(outcome="attempted")
    assert sorted(results.values_list("outcome", flat=True)) == ["failed", "succeeded"]
    assert_no_key_material([rsa_pem], page, console.getvalue())


# --- error reports -----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [True, False], ids=["debug", "production"])
def test_a_crash_with_a_key_in_every_part_of_the_request_shows_none_of_it(
    settings, admin_client, sim, rsa_pem, console, debug
):
    """A header, a cookie, a setting, the form and the frames: the debug page and the mailed report keep
    their facts and lose every piece of the key."""
    settings.DEBUG = debug
    settings.ADMINS = ["ops@example.com"]
    settings.OGPANEL_ENCRYPTION_KEYS = ""  # a broken deployment: saving the key crashes in the vault
    settings.OGPANEL_NOTE = rsa_pem.decode()
    pem = rsa_pem.decode()
    admin_client.cookies["note"] = pem.replace("\n", "")[30:200]
    response = admin_client.post(
        reverse("credential_create"),
        create_form(sim, rsa_pem, note=pem),
        headers={**csrf(admin_client), "X-Note": pem.replace("\n", " ")},
    )

    assert response.status_code == 500
    page = response.content.decode()
    reports = [message.body for message in mail.outbox]
    if debug:
        assert "ImproperlyConfigured" in page and "No encryption key configured" in page
        assert REDACTED in page or "********************" in page
    else:
        assert "ImproperlyConfigured" in reports[0] and "********************" in reports[0]
    assert_no_key_material([rsa_pem], page, *reports, console.getvalue())
    assert "Traceback" in console.getvalue()  # a crash keeps its traceback; only refusals lose theirs


def test_the_filter_is_on_in_debug_and_hides_by_name_and_by_value(settings, rsa_pem):
    settings.DEBUG = True
    reporter_filter = get_default_exception_reporter_filter()
    pem = rsa_pem.decode()
    armourless = "".join(pem.splitlines()[1:-1])

    assert reporter_filter.is_active(None)
    assert reporter_filter.cleanse_setting("NOTE", pem).strip() == REDACTED
    assert reporter_filter.cleanse_setting("NOTE", {"deep": [("x", armourless)]}) == {"deep": [("x", REDACTED)]}
    assert reporter_filter.cleanse_setting("NOTE", "a plain value") == "a plain value"
    hashes = "0f" * 32 + " " + "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert redact(hashes) == hashes  # hex digests and words are not key material
    assert redact(f"before {pem!r} after") == f"before '{REDACTED}' after"
    assert redact(pem[:300]) == REDACTED  # cut off before its END line
    assert body_pieces(rsa_pem)[0] not in redact(repr(rsa_pem))


def test_the_reporter_redacts_what_no_filter_saw(rsa_pem):
    """An exception's message, and the query string (which HostileInputMiddleware refuses first anyway)."""
    request = RequestFactory().get("/credentials/new/", {"note": rsa_pem.decode()})
    try:
        raise ValueError(f"cannot use {rsa_pem.decode()}")
    except ValueError:
        reporter = KeyRedactingReporter(request, *sys.exc_info())
    text, html = reporter.get_traceback_text(), reporter.get_traceback_html()

    assert "ValueError" in text and "cannot use" in text and "note" in text
    assert_no_key_material([rsa_pem], text, html)


@pytest.mark.django_db
@pytest.mark.parametrize("where", ["query", "path"])
def test_an_address_carrying_a_key_is_refused_before_anything_can_send_it_back(as_admin, rsa_pem, console, where):
    """Else the sign-in redirect's next=, the slash redirect and DEBUG's 404 page would echo it."""
    pem = quote(rsa_pem.decode(), safe="")
    url = f"/credentials/new?note={pem}" if where == "query" else f"/audit/{pem}"

    response = Client().get(url)  # anonymous: it would be sent to sign in, with the address in next=
    signed_in = as_admin.get(url)

    assert response.status_code == signed_in.status_code == 400
    assert "The address carries what looks like a private key." in response.content.decode()
    assert_no_key_material([rsa_pem], response.content.decode(), str(response.headers), console.getvalue())


@pytest.mark.django_db
def test_a_key_pasted_where_the_audit_log_records_what_was_typed_is_recorded_without_it(as_operator, sim, rsa_pem):
    """A failed sign-in's name and a kill switch's reason are recorded as typed, except key material."""
    pem = rsa_pem.decode()
    Client().post(reverse("login"), {"username": pem, "password": "x"})
    audit.append(audit.Actor.system("test"), action="trigger", outcome="observed", reason=f"pasted {pem}")
    refused = RequestFactory().post("/kill-switch/")
    refused.user = AnonymousUser()
    audit.record_denial(refused, "kill_switch", {"subaccount": pem, "note": {"deep": [pem]}})

    events = list(AuditEvent.objects.values())
    assert events and audit.verify().ok
    assert_no_key_material([rsa_pem], repr(events), as_operator.get(reverse("audit_log")).content.decode())
    assert REDACTED in repr(events)
