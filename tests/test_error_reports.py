"""Sentry error reports (error_reports.py): what an event would carry never holds key material or credentials.

A view made for the worst case fails while the key is in a local variable, in the exception's
message, in a log line before it and in the request body, with session, CSRF, Authorization and
signing headers on the request, served by a real WSGI server (live_server). The event goes through
the real SDK and its Django integration to a transport that keeps it here instead of sending it.
"""

import logging
import os
import subprocess
import sys

import pytest
import requests
import sentry_sdk
from cryptography.hazmat.primitives import serialization
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from ogpanel import error_reports
from tests.leaks import key_pieces, leaks

logger = logging.getLogger(__name__)
SESSION = "sessioncookievalue0123456789abcd"
CSRF = "csrfcookievalue0123456789abcdefgh"
BEARER = "bearertokenvalue0123456789abcdef"
SIGNATURE = "c2lnbmF0dXJlLXZhbHVlLTAxMjM0NTY3ODk="


@csrf_exempt  # the session and CSRF cookies are sent to be seen scrubbed, not to be checked
def worst_case(request: HttpRequest) -> HttpResponse:
    pem = request.POST["private_key"]
    der_hex = bytes.fromhex(request.POST["der_hex"]).hex()
    body_line = pem.splitlines()[1]
    logger.warning("could not parse a key line %s (DER %s)", body_line, der_hex[:200])
    raise ValueError(f"cannot use this key: {pem!r} d={request.POST['d']}")


urlpatterns = [path("worst-case/", worst_case)]


class KeepingTransport(Transport):
    envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        KeepingTransport.envelopes.append(envelope)


@pytest.fixture
def reports(settings):
    settings.ROOT_URLCONF = __name__
    KeepingTransport.envelopes = []
    error_reports.init("https://public@errors.invalid/1", environment="test", transport=KeepingTransport)
    yield KeepingTransport.envelopes
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # no DSN: nothing is reported from here on


def test_a_reported_error_holds_no_key_material_cookies_or_auth_headers(reports, live_server, rsa_key, rsa_pem):
    der = rsa_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Over real HTTP: the SDK reads the request where a WSGI server hands it to Django.
    response = requests.post(
        f"{live_server.url}/worst-case/",
        data={"private_key": rsa_pem.decode(), "der_hex": der.hex(), "d": str(rsa_key.private_numbers().d)},
        cookies={"sessionid": SESSION, "csrftoken": CSRF},
        headers={"Authorization": f"Bearer {BEARER}", "KALSHI-ACCESS-SIGNATURE": SIGNATURE, "X-CSRFToken": CSRF},
        timeout=10,
    )
    assert response.status_code == 500
    sentry_sdk.flush()

    events = [item.payload.json for envelope in reports for item in envelope.items if item.type == "event"]
    (event,) = [event for event in events if event.get("exception")]
    assert event["exception"]["values"][-1]["type"] == "ValueError"
    assert event["request"]["url"].endswith("/worst-case/")  # the request is described, its secrets are not
    assert any("could not parse a key line" in crumb.get("message", "") for crumb in event["breadcrumbs"]["values"])

    sent = "\n".join(envelope.serialize().decode() for envelope in reports)
    assert not leaks(key_pieces(rsa_key), {"envelope": sent})
    for secret in (SESSION, CSRF, BEARER, SIGNATURE):
        assert secret not in sent


def test_the_scrubber_keeps_ordinary_text_and_ids_and_hides_a_key(rsa_pem):
    text = "group 0f8e6a52-31a2-4d0e-9f3b-6c1d2e3f4a5b on subaccount 3: request 5d41402abc4b2a76b9719d911017c592"
    assert error_reports.scrub_text(text) == text
    assert error_reports.scrub_text(rsa_pem.decode()) == error_reports.FILTERED
    assert error_reports.scrub_text(rsa_pem.decode()[:80]) == error_reports.FILTERED  # its first line and a bit


@pytest.mark.parametrize("dsn, active", [("", False), ("https://public@errors.invalid/1", True)])
def test_reports_are_on_only_with_a_dsn(dsn, active):
    check = "import django, sentry_sdk; django.setup(); print(sentry_sdk.get_client().is_active())"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "SENTRY_DSN": dsn}
    done = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(active)
