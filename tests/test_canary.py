"""A canary private key, loaded into the panel, never comes back out.

The canary is a fresh RSA key, loaded through the credential form and used for every exchange
call. Every page, htmx partial and error path (failed upstream calls, refusals, 403s and 404s,
and a real crash while a key is being saved) is crawled as every role, with the exchange
healthy and with each kind of fault, and once more with DEBUG on (what `make demo` runs), whose
error pages show a request's form, headers and variables. No piece of the key in any spelling (tests/leaks.py) may
appear in a response body or header, a log record at DEBUG from any logger, an error report
mailed to the admins, or any field of any audit event. Nor may the encryption keys, or the
stored ciphertext of the key.
"""

import logging

import pytest
from cryptography.hazmat.primitives import serialization
from django.test import Client

from ogpanel import exchange
from ogpanel.models import AuditEvent, Credential
from tests.leaks import key_pieces, leaks, pieces
from tests.panel_fixtures import ENCRYPTION_KEYS
from tests.test_resilience import CONNECT_TIMEOUT, FAULTS, HANG_SECONDS

CANARY_KEY_ID = "canary-key"
HTMX = {"HX-Request": "true"}


@pytest.fixture
def everything_logged(caplog, monkeypatch):
    """caplog at DEBUG on every logger, including those that do not propagate to the root."""
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
        logger = logging.getLogger(name)
        if not logger.propagate:
            monkeypatch.setattr(logger, "propagate", True)
    return caplog


def password_of(user) -> str:
    return f"{user.username}-password-1"


def crawl(
    client: Client, password: str, *, credential: int, group: str, other: str, doomed: str, canary_pem: str
) -> list[tuple[str, str, dict, dict]]:
    """Every page, partial and form of the panel, as (method, url, data, headers)."""
    kill = {"reason": "canary", "reauth_password": password}
    return [
        ("get", "/", {}, {}),
        ("get", "/", {}, HTMX),
        ("get", "/?subaccount=1&state=active", {}, HTMX),
        ("get", "/?subaccount=99", {}, {}),
        ("get", f"/groups/1/{group}/", {}, {}),
        ("get", f"/groups/1/{group}/", {}, HTMX),
        ("get", f"/groups/2/{other}/", {}, {}),  # out of the scoped operator's scope
        ("get", "/groups/1/og_missing/", {}, {}),  # the exchange says 404
        ("get", "/groups/1/not%20an%20id/", {}, HTMX),  # refused before the exchange
        ("get", "/groups/9/og_1/", {}, {}),  # no such subaccount configured
        ("get", f"/groups/1/{group}/trigger/", {}, HTMX),
        ("get", f"/groups/1/{group}/reset/", {}, {}),
        ("get", f"/groups/1/{group}/delete/", {}, HTMX),
        ("get", f"/groups/1/{group}/limit/", {}, {}),
        ("get", "/groups/new/", {}, HTMX),
        ("post", f"/groups/1/{group}/trigger/", {"reason": "canary"}, HTMX),
        ("post", f"/groups/1/{group}/reset/", {"reason": "canary"}, {}),
        ("post", f"/groups/1/{group}/limit/", {"contracts_limit": "7", "reason": "canary"}, HTMX),
        ("post", f"/groups/1/{group}/limit/", {"contracts_limit": "0"}, HTMX),  # refused by the form
        ("post", f"/groups/2/{other}/trigger/", {"reason": "canary"}, {}),
        ("post", "/groups/1/og_missing/delete/", {"reason": "canary"}, HTMX),
        ("post", "/groups/new/", {"subaccount": "1", "contracts_limit": "5", "exchange_index": "0"}, HTMX),
        ("post", "/groups/new/", {"subaccount": "2", "contracts_limit": "5", "exchange_index": "0"}, {}),
        ("post", f"/groups/1/{doomed}/delete/", {"reason": "canary"}, {}),
        ("get", "/kill-switch/", {}, {}),
        ("post", "/kill-switch/", {**kill, "operation": "trigger_one", "subaccount": "1", "confirm": "TRIGGER"}, HTMX),
        ("post", "/kill-switch/", {**kill, "operation": "reset_one", "subaccount": "1", "confirm": "RESET"}, {}),
        ("get", "/kill-switch/", {}, {}),  # the report of the plain post
        ("post", "/kill-switch/", {**kill, "operation": "trigger_all", "confirm": "TRIGGER"}, HTMX),
        (
            "post",
            "/kill-switch/",
            {"operation": "trigger_all", "confirm": "TRIGGER", "reason": "x", "reauth_password": "wrong"},
            HTMX,
        ),
        ("get", "/audit/", {}, {}),
        ("get", "/audit/?outcome=failed", {}, HTMX),
        ("get", "/audit/?outcome=unknown&q=canary", {}, {}),
        ("get", "/audit/1/", {}, {}),
        ("get", "/audit/999999/", {}, {}),
        ("get", "/audit/export.csv", {}, {}),
        ("get", "/audit/export.jsonl", {}, {}),
        ("get", "/audit/export.xml", {}, {}),
        ("get", "/credentials/", {}, {}),
        ("get", f"/credentials/{credential}/", {}, {}),
        ("get", f"/credentials/{credential}/rotate/", {}, {}),
        ("get", f"/credentials/{credential}/remove/", {}, {}),
        ("get", "/credentials/999/", {}, {}),
        ("get", "/credentials/new/", {}, {}),
        ("post", f"/credentials/{credential}/test/", {"subaccount": "1"}, HTMX),
        ("post", f"/credentials/{credential}/test/", {}, {}),
        ("post", f"/credentials/{credential}/test/", {"subaccount": "2"}, HTMX),
        # Forms that carry the key and are refused: the key must not come back with the form.
        (
            "post",
            f"/credentials/{credential}/rotate/",
            {"key_id": CANARY_KEY_ID, "private_key": canary_pem, "reauth_password": "wrong"},
            {},
        ),
        ("post", f"/credentials/{credential}/rotate/", {"key_id": "not a key id", "private_key": canary_pem}, {}),
        (
            "post",
            "/credentials/new/",
            {
                "label": "canary",
                "environment": "custom",
                "key_id": CANARY_KEY_ID,
                "custom_base_url": "http://127.0.0.1:1/trade-api/v2",
                "private_key": canary_pem,
                "reauth_password": password,
            },
            {},
        ),
        ("post", f"/credentials/{credential}/remove/", {"seen": "", "reauth_password": password}, {}),
        ("get", "/subaccounts/", {}, {}),
        (
            "post",
            "/subaccounts/",
            {
                "number": "1",
                "op": "assign",
                "credential": str(credential),
                "label": "desk 1",
                "reauth_password": password,
            },
            HTMX,
        ),
        ("get", "/accounts/reauth/", {}, {}),
        ("get", "/accounts/login/", {}, {}),
        ("post", "/accounts/login/", {"username": "ada", "password": canary_pem}, {}),  # a key pasted as a password
        ("get", "/healthz", {}, {}),
        ("get", "/admin/", {}, {}),
        ("get", "/admin/ogpanel/credential/", {}, {}),
        ("get", f"/admin/ogpanel/credential/{credential}/change/", {}, {}),
        ("get", "/admin/ogpanel/auditevent/", {}, {}),
        ("get", "/no-such-page/", {}, {}),
    ]


def body(response) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


@pytest.mark.parametrize(
    ("kind", "debug"),
    [(None, False), (None, True), *((kind, False) for kind in FAULTS)],
    ids=["healthy", "debug", *FAULTS],
)
def test_no_piece_of_a_canary_key_leaves_the_panel(
    kind,
    debug,
    settings,
    sim,
    canary_key,
    canary_pem,
    viewer,
    operator,
    administrator,
    scoped_operator,
    everything_logged,
    mailoutbox,
    monkeypatch,
):
    settings.ADMINS = ["ops@example.com"]
    settings.DEBUG = debug
    # A hung exchange is waited on briefly: the crawl makes about a hundred calls that each time out.
    settings.OGPANEL_CONNECT_TIMEOUT, settings.OGPANEL_READ_TIMEOUT = CONNECT_TIMEOUT, 0.1 if kind == "hang" else 1.0
    settings.OGPANEL_LIST_CACHE_SECONDS = 0
    administrator.is_staff = administrator.is_superuser = True  # the Django admin's pages are crawled too
    administrator.save()
    public_pem = canary_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    sim.add_key(CANARY_KEY_ID, public_pem)

    # Load the canary the way an admin does: the credential form, then the subaccount mapping.
    admin = Client(raise_request_exception=False)
    admin.force_login(administrator)
    password = password_of(administrator)
    created = admin.post(
        "/credentials/new/",
        {
            "label": "canary",
            "environment": "custom",
            "custom_base_url": sim.base_url,
            "key_id": CANARY_KEY_ID,
            "private_key": canary_pem,
            "reauth_password": password,
        },
    )
    assert created.status_code == 302
    credential = Credential.objects.get(label="canary")
    for number in range(4):
        assigned = admin.post(
            "/subaccounts/",
            {
                "number": str(number),
                "op": "assign",
                "credential": credential.pk,
                "label": f"desk {number}",
                "reauth_password": password,
            },
        )
        assert assigned.status_code == 302
    # The crawl is about what comes back, not pacing: the canary's client retries at once and draws
    # on the largest tier's budget, or retried faults would make the crawl wait for minutes.
    settings.OGPANEL_KALSHI_TIER = "prime"
    exchange.client_for(credential).backoff = 0
    group, other, doomed = sim.create_group(1, 10), sim.create_group(2, 10), sim.create_group(1, 10)
    if kind:
        sim.set_fault(kind, seconds=HANG_SECONDS if kind == "hang" else None)

    texts: dict[str, str] = {}
    statuses = {}
    anonymous = Client(raise_request_exception=False)
    for role, user in [
        ("anonymous", None),
        ("viewer", viewer),
        ("operator", operator),
        ("scoped operator", scoped_operator),
        ("admin", administrator),
    ]:
        client = (
            anonymous if user is None else admin if user == administrator else Client(raise_request_exception=False)
        )
        if user is not None and client is not admin:
            client.force_login(user)
        pages = crawl(
            client,
            password_of(user) if user else "",
            credential=credential.pk,
            group=group,
            other=other,
            doomed=doomed,
            canary_pem=canary_pem,
        )
        for n, (method, url, data, headers) in enumerate(pages):
            response = getattr(client, method)(url, data, headers=headers)
            where = f"{role} {method.upper()} {url} #{n}"
            statuses[where] = response.status_code
            texts[where] = body(response)
            texts[where + " headers"] = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
            texts[where + " cookies"] = response.cookies.output()

    # A real crash while a key is being saved (no encryption key configured): a 500 and its mailed report.
    settings.OGPANEL_ENCRYPTION_KEYS = ""
    crash = admin.post(
        "/credentials/new/",
        {
            "label": "crash",
            "environment": "custom",
            "custom_base_url": sim.base_url,
            "key_id": CANARY_KEY_ID,
            "private_key": canary_pem,
            "reauth_password": password,
        },
    )
    assert crash.status_code == 500
    texts["crash"] = body(crash)
    if debug:  # the error page itself tells all there is to know, the key aside
        assert "ImproperlyConfigured" in texts["crash"] and "private_key" in texts["crash"]

    for n, message in enumerate(mailoutbox):
        texts[f"mail {n}"] = "\n".join(
            [message.subject, message.body, *(str(content) for content, _ in getattr(message, "alternatives", []))]
        )
    texts["log"] = everything_logged.text
    texts["log records"] = "\n".join(repr(vars(record)) for record in everything_logged.records)
    texts["audit"] = "\n".join(repr(event) for event in AuditEvent.objects.values())

    # The crawl really ran: the canary signed calls, errors were mailed, and only the crash was a 500.
    assert any(record.key_id == CANARY_KEY_ID for record in sim.requests)
    assert any(credential.fingerprint in text for text in texts.values())
    # The crash, with its frames, mailed to the admins (with DEBUG on it is on the page instead).
    assert debug or any("ImproperlyConfigured" in message.body for message in mailoutbox)
    assert [where for where, status in statuses.items() if status == 500] == []
    if kind:  # exchange failures answered, and the 502s among them mailed as error reports
        assert any(status in (429, 502) for status in statuses.values())
        assert kind == "rate_limit" or any("Bad Gateway" in message.subject for message in mailoutbox)

    secrets = key_pieces(canary_key) + pieces(credential.private_key_encrypted)
    secrets += [piece for entry in ENCRYPTION_KEYS.split(",") for piece in pieces(entry.split(":", 1)[1])]
    assert leaks(secrets, texts) == []
