"""Credential pages and the subaccount mapping: admin only, keys validated, never shown back."""

import logging
import re
import socket
import sys
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.signals import got_request_exception
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.views.debug import ExceptionReporter

from ogpanel import budgets, exchange, vault
from ogpanel.kalshi import public_key_fingerprint
from ogpanel.models import AuditEvent, Credential, Subaccount
from tests.leaks import assert_no_key_material
from tests.panel_fixtures import make_credential
from tests.pem import fake_pem

HTMX = {"HTTP_HX_REQUEST": "true"}
NEW_KEY_ID = "key-2"


def private_pem(key, fmt=serialization.PrivateFormat.PKCS8) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


@pytest.fixture(scope="session")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def other_pem(other_key) -> bytes:
    return private_pem(other_key, serialization.PrivateFormat.TraditionalOpenSSL)  # PKCS#1, as Kalshi issues


@pytest.fixture
def sim_with_other_key(sim, other_key):
    sim.add_key(
        NEW_KEY_ID,
        other_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return sim


@pytest.fixture
def as_admin(administrator):
    """An admin signed in through the login form, which also counts as confirming who they are."""
    from django.test import Client

    client = Client()
    assert client.post(reverse("login"), {"username": "ada", "password": "ada-password-1"}).status_code == 302
    return client


def create_form(sim, pem: bytes, **fields) -> dict:
    return {
        "label": "Desk A",
        "environment": "custom",
        "custom_base_url": sim.base_url,
        "key_id": "test-key",
        "private_key": pem.decode(),
        **fields,
    }


# --- create ------------------------------------------------------------------------------------


def test_admin_adds_a_credential_from_a_pasted_pkcs8_key(as_admin, sim, rsa_pem, rsa_key):
    response = as_admin.post(reverse("credential_create"), create_form(sim, rsa_pem))

    credential = Credential.objects.get(label="Desk A")
    assert response.status_code == 302
    assert response["Location"] == reverse("credential_detail", args=[credential.pk])
    assert credential.fingerprint == public_key_fingerprint(rsa_key)
    assert credential.base_url == sim.base_url
    assert rsa_pem not in credential.private_key_encrypted.encode()
    event = AuditEvent.objects.filter(action="credential_create").first()
    assert event.outcome == "succeeded" and event.params["fingerprint"] == credential.fingerprint


@pytest.mark.django_db
def test_the_database_refuses_a_label_that_differs_only_in_case(sim, rsa_pem):
    """The form's check can be raced by a second post: the database holds the rule too."""
    make_credential(sim.base_url, rsa_pem, label="Desk A")

    with pytest.raises(IntegrityError), transaction.atomic():
        make_credential(sim.base_url, rsa_pem, label="desk a", key_id="other-key")

    assert list(Credential.objects.values_list("label", flat=True)) == ["Desk A"]


def test_admin_names_the_kalshi_account_and_tier_a_credential_draws_its_budget_from(as_admin, sim, rsa_pem):
    as_admin.post(reverse("credential_create"), create_form(sim, rsa_pem, account=" firm ", tier="advanced"))
    as_admin.post(reverse("credential_create"), create_form(sim, rsa_pem, label="Desk B", account="firm"))
    refused = as_admin.post(reverse("credential_create"), create_form(sim, rsa_pem, label="Desk C", tier="gold"))

    desk_a, desk_b = Credential.objects.get(label="Desk A"), Credential.objects.get(label="Desk B")
    assert (desk_a.account, desk_a.tier, desk_b.account, desk_b.tier) == ("firm", "advanced", "firm", "")
    assert budgets.account_of(desk_a) == budgets.account_of(desk_b)  # one account: one budget between them
    assert budgets.limiter_for(desk_a) is budgets.limiter_for(desk_b)
    assert refused.status_code == 400 and "gold is not one of the available choices" in refused.content.decode()
    assert not Credential.objects.filter(label="Desk C").exists()
    event = AuditEvent.objects.get(action="credential_create", outcome="succeeded", params__label="Desk A")
    assert event.params["account"] == "firm" and event.params["tier"] == "advanced"


def test_admin_adds_a_credential_from_an_uploaded_pkcs1_file_with_crlf_line_ends(as_admin, sim, other_pem, other_key):
    form = create_form(sim, b"", private_key="")
    form["private_key_file"] = SimpleUploadedFile("kalshi.pem", other_pem.replace(b"\n", b"\r\n"))

    response = as_admin.post(reverse("credential_create"), form)

    assert response.status_code == 302
    assert Credential.objects.get(label="Desk A").fingerprint == public_key_fingerprint(other_key)


def test_admin_adds_a_credential_for_a_named_environment(as_admin, settings, rsa_pem):
    response = as_admin.post(
        reverse("credential_create"),
        {
            "label": "Demo",
            "environment": "demo",
            "custom_base_url": "",
            "key_id": "0b8e4c1e-5a7a-4c7e-9d8f-1a2b3c4d5e6f",
            "private_key": rsa_pem.decode(),
        },
    )

    assert response.status_code == 302
    assert Credential.objects.get(label="Demo").base_url == settings.OGPANEL_BASE_URLS["demo"]


def _refused_keys() -> dict[str, bytes]:
    return {
        "not a PEM": fake_pem(b"this is not base64 at all"),
        "Ed25519": private_pem(ed25519.Ed25519PrivateKey.generate()),
        "EC P-256": private_pem(ec.generate_private_key(ec.SECP256R1())),
        "RSA 1024": private_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
    }


REFUSED = _refused_keys()


@pytest.mark.parametrize(
    "kind, message",
    [
        ("not a PEM", "not a readable PEM private key"),
        ("Ed25519", "not an RSA key"),
        ("EC P-256", "not an RSA key"),
        ("RSA 1024", "has 1024 bits; at least 2048 are required"),
    ],
)
def test_it_refuses_an_unusable_key_and_comes_back_with_the_key_field_empty(as_admin, sim, kind, message):
    pem = REFUSED[kind]

    response = as_admin.post(reverse("credential_create"), create_form(sim, pem))

    page = response.content.decode()
    assert response.status_code == 400
    assert message in page
    assert "paste the key again" in page
    assert re.search(r'<textarea name="private_key"[^>]*>\s*</textarea>', page)  # empty
    assert 'value="Desk A"' in page  # the other fields are kept
    assert_no_key_material([pem], page)
    assert not Credential.objects.exists()
    assert sim.requests == []


def test_it_drops_a_valid_key_when_another_field_is_wrong(as_admin, sim, rsa_pem, credential):
    response = as_admin.post(reverse("credential_create"), create_form(sim, rsa_pem, label=credential.label.upper()))

    page = response.content.decode()
    assert response.status_code == 400
    assert "A credential with this label already exists." in page
    assert "paste the key again" in page
    assert_no_key_material([rsa_pem], page)
    assert Credential.objects.count() == 1


def test_it_refuses_a_key_both_pasted_and_uploaded(as_admin, sim, rsa_pem):
    form = create_form(sim, rsa_pem, private_key_file=SimpleUploadedFile("k.pem", rsa_pem))

    response = as_admin.post(reverse("credential_create"), form)

    assert response.status_code == 400
    assert "Paste the key or upload the file, not both." in response.content.decode()


def test_it_refuses_a_file_too_large_to_be_a_key_without_reading_it(as_admin, sim):
    form = create_form(sim, b"", private_key_file=SimpleUploadedFile("big.pem", b"A" * 100_000))

    response = as_admin.post(reverse("credential_create"), form)

    assert response.status_code == 400
    assert "This file is too large to be a private key." in response.content.decode()


def test_it_asks_for_a_key_when_none_is_given(as_admin, sim):
    response = as_admin.post(reverse("credential_create"), create_form(sim, b""))

    page = response.content.decode()
    assert response.status_code == 400
    assert "Paste the private key or upload its PEM file." in page
    assert "paste the key again" not in page  # nothing was dropped


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://exchange.example.com/trade-api/v2", "plain http:// is allowed only for a simulator on this machine"),
        ("https://exchange.example.com/v1", "must end in /trade-api/v2"),
        ("ftp://127.0.0.1/trade-api/v2", "Enter a URL starting with https://"),
        ("", "Enter the base URL for the custom environment"),
    ],
)
def test_it_refuses_a_custom_base_url_it_would_not_sign_for(as_admin, sim, rsa_pem, url, message):
    response = as_admin.post(reverse("credential_create"), create_form(sim, rsa_pem, custom_base_url=url))

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Credential.objects.exists()


def test_it_refuses_a_key_id_that_cannot_go_in_a_header(as_admin, sim, rsa_pem):
    response = as_admin.post(reverse("credential_create"), create_form(sim, rsa_pem, key_id="key id\r\nX-Evil: 1"))

    assert response.status_code == 400
    assert "may contain only letters, digits" in response.content.decode()


# --- list and detail ---------------------------------------------------------------------------


def test_list_and_detail_show_the_key_id_and_fingerprint_only(as_admin, credential, subaccounts, rsa_pem):
    listing = as_admin.get(reverse("credentials")).content.decode()
    detail = as_admin.get(reverse("credential_detail", args=[credential.pk])).content.decode()

    for page in (listing, detail):
        assert credential.label in page and credential.key_id in page and credential.fingerprint in page
        assert "PRIVATE KEY" not in page
        assert_no_key_material([rsa_pem], page)
    assert "0, 1, 2, 3" in listing
    assert "Subaccount 2 (desk 2)" in detail
    assert "Readable" in listing


def test_detail_explains_a_key_moved_from_another_row_instead_of_failing(as_admin, sim, credential, rsa_pem):
    other = make_credential(sim.base_url, rsa_pem, label="other")
    Credential.objects.filter(pk=other.pk).update(private_key_encrypted=credential.private_key_encrypted)

    response = as_admin.get(reverse("credential_detail", args=[other.pk]))
    listing = as_admin.get(reverse("credentials")).content.decode()

    assert response.status_code == 200
    assert (
        "stored private key cannot be used. The stored key does not decrypt for this credential"
        in response.content.decode()
    )
    assert "Cannot be decrypted" in listing


def test_detail_names_an_encryption_key_id_that_is_no_longer_configured(as_admin, settings, credential):
    settings.OGPANEL_ENCRYPTION_KEYS = vault.new_key_entry("k9")

    response = as_admin.get(reverse("credential_detail", args=[credential.pk]))

    assert response.status_code == 200
    assert "encrypted with key id &#x27;k2&#x27;, which is not configured" in response.content.decode()


# --- rotate ------------------------------------------------------------------------------------


def test_rotate_replaces_key_and_key_id_and_keeps_the_subaccounts(
    as_admin,
    sim_with_other_key,
    credential,
    subaccounts,
    other_pem,
    other_key,
):
    sim = sim_with_other_key
    as_admin.post(reverse("credential_test", args=[credential.pk]))  # the old key is in use (and cached)

    response = as_admin.post(
        reverse("credential_rotate", args=[credential.pk]), {"key_id": NEW_KEY_ID, "private_key": other_pem.decode()}
    )

    credential.refresh_from_db()
    assert response.status_code == 302
    assert credential.key_id == NEW_KEY_ID
    assert credential.fingerprint == public_key_fingerprint(other_key)
    assert list(credential.subaccounts.values_list("number", flat=True)) == [0, 1, 2, 3]
    sim.clear_requests()
    tested = as_admin.post(reverse("credential_test", args=[credential.pk]))
    assert tested.status_code == 200
    assert [request.key_id for request in sim.requests] == [NEW_KEY_ID]  # signed with the new key, not a cached client
    event = AuditEvent.objects.filter(action="credential_rotate").first()
    assert event.params["before"]["key_id"] == "test-key"


def test_rotate_refuses_a_bad_key_and_keeps_the_old_one(as_admin, credential, rsa_pem):
    before = credential.private_key_encrypted

    response = as_admin.post(
        reverse("credential_rotate", args=[credential.pk]),
        {"key_id": "new-id", "private_key": REFUSED["RSA 1024"].decode()},
    )

    credential.refresh_from_db()
    page = response.content.decode()
    assert response.status_code == 400
    assert "at least 2048 are required" in page and "paste the key again" in page
    assert_no_key_material([REFUSED["RSA 1024"], rsa_pem], page)
    assert (credential.key_id, credential.private_key_encrypted) == ("test-key", before)


def test_rotate_fixes_a_key_that_no_longer_decrypts(as_admin, sim, credential, rsa_pem):
    other = make_credential(sim.base_url, rsa_pem, label="other")
    Credential.objects.filter(pk=other.pk).update(private_key_encrypted=credential.private_key_encrypted)

    as_admin.post(
        reverse("credential_rotate", args=[other.pk]), {"key_id": "test-key", "private_key": rsa_pem.decode()}
    )

    assert as_admin.post(reverse("credential_test", args=[other.pk])).status_code == 200


# --- remove ------------------------------------------------------------------------------------


def test_remove_confirmation_lists_the_subaccounts_that_use_the_credential(as_admin, credential, subaccounts):
    page = as_admin.get(reverse("credential_remove", args=[credential.pk])).content.decode()

    assert "used by subaccounts 0, 1, 2, 3" in page
    assert "Also unmap subaccounts 0, 1, 2, 3" in page


def test_remove_is_refused_while_subaccounts_use_the_credential(as_admin, credential, subaccounts):
    response = as_admin.post(reverse("credential_remove", args=[credential.pk]), {"seen": "0,1,2,3"})

    assert response.status_code == 400
    assert "still used by subaccounts 0, 1, 2, 3" in response.content.decode()
    assert Subaccount.objects.count() == 4 and Credential.objects.filter(pk=credential.pk).exists()


def test_remove_with_the_unmap_box_ticked_removes_and_unmaps(as_admin, credential, subaccounts):
    response = as_admin.post(
        reverse("credential_remove", args=[credential.pk]), {"seen": "0,1,2,3", "unmap": "on"}, follow=True
    )

    assert response.redirect_chain[-1][0] == reverse("credentials")
    assert "Removed credential \u201csim\u201d; unmapped subaccounts 0, 1, 2, 3." in response.content.decode()
    assert not Credential.objects.exists() and not Subaccount.objects.exists()
    assert AuditEvent.objects.filter(action="credential_remove").first().params["unmapped_subaccounts"] == [0, 1, 2, 3]


def test_remove_is_refused_when_a_subaccount_was_mapped_after_the_confirmation(as_admin, credential, subaccounts):
    Subaccount.objects.create(number=7, credential=credential)

    response = as_admin.post(reverse("credential_remove", args=[credential.pk]), {"seen": "0,1,2,3", "unmap": "on"})

    assert response.status_code == 400
    assert "changed since the page was loaded" in response.content.decode()
    assert Subaccount.objects.filter(number=7).exists()


def test_an_unused_credential_is_removed_without_the_unmap_box(as_admin, credential):
    response = as_admin.post(reverse("credential_remove", args=[credential.pk]), {"seen": ""})

    assert response.status_code == 302
    assert not Credential.objects.exists()


# --- test connection ---------------------------------------------------------------------------


def test_test_connection_reports_the_groups_seen_and_the_latency(as_admin, sim, credential, subaccounts):
    sim.create_group(0, 5)
    sim.create_group(0, 7)
    sim.create_group(1, 9)

    response = as_admin.post(reverse("credential_test", args=[credential.pk]), {"subaccount": "0"}, **HTMX)

    page = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in page  # the fragment only, swapped in place
    assert "Connected: 2 order groups on subaccount 0, " in page and " ms." in page
    assert [(r.method, r.path, r.query.get("subaccount")) for r in sim.requests] == [
        ("GET", "/trade-api/v2/portfolio/order_groups", "0")
    ]
    assert AuditEvent.objects.filter(action="credential_test").first().outcome == "succeeded"


def test_test_connection_works_as_a_plain_post_on_the_first_mapped_subaccount(as_admin, sim, credential):
    Subaccount.objects.create(number=5, credential=credential)
    sim.create_group(5, 3)

    response = as_admin.post(reverse("credential_test", args=[credential.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert "<html" in page and "Connected: 1 order group on subaccount 5, " in page


@pytest.mark.parametrize("subaccount", ["33", "-1", "one"])
def test_test_connection_refuses_a_subaccount_out_of_range_without_calling(as_admin, sim, credential, subaccount):
    response = as_admin.post(reverse("credential_test", args=[credential.pk]), {"subaccount": subaccount}, **HTMX)

    assert response.status_code == 400
    assert "Subaccount must be a number from 0 to 32." in response.content.decode()
    assert sim.requests == []


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wrong_key(sim, credential, settings, rsa_pem):
    return make_credential(sim.base_url, rsa_pem, label="unregistered", key_id="nobody-registered-this")


def clock_skew(sim, credential, settings, rsa_pem):
    # The client's clock seam: this machine's clock two minutes slow, beyond the exchange's 30 s window.
    exchange.client_for(credential).clock = lambda: time.time() - 120
    return credential


def unreachable(sim, credential, settings, rsa_pem):
    return make_credential(f"http://127.0.0.1:{_closed_port()}/trade-api/v2", rsa_pem, label="closed port")


def rate_limited(sim, credential, settings, rsa_pem):
    sim.set_fault("rate_limit")
    return credential


def hangs(sim, credential, settings, rsa_pem):
    settings.OGPANEL_READ_TIMEOUT = 0.5
    sim.set_fault("hang", seconds=2)
    return credential


@pytest.mark.parametrize(
    "arrange, message",
    [
        (wrong_key, "Test failed: The exchange rejected the request signature: check the API key id and private key."),
        (
            clock_skew,
            "Test failed: The exchange says the request timestamp is stale: this machine&#x27;s clock is off.",
        ),
        (unreachable, "Test failed: The exchange could not be reached: connection refused."),
        (rate_limited, "Test failed: Rate limited by the exchange; try again shortly."),
        (hangs, "Test failed: The exchange did not answer within 0.5 s."),
    ],
)
def test_test_connection_reports_each_failure_precisely_in_place(
    as_admin, sim, credential, settings, rsa_pem, arrange, message
):
    tested = arrange(sim, credential, settings, rsa_pem)

    response = as_admin.post(reverse("credential_test", args=[tested.pk]), **HTMX)

    assert response.status_code == 502
    assert message in response.content.decode()
    assert "<html" not in response.content.decode()
    assert AuditEvent.objects.filter(action="credential_test").first().outcome == "failed"
    exchange.forget(tested.pk)


def test_test_connection_failure_as_a_plain_post_renders_the_page(as_admin, sim, credential):
    sim.set_fault("error", status=500)

    response = as_admin.post(reverse("credential_test", args=[credential.pk]))

    assert response.status_code == 502
    assert "<html" in response.content.decode()
    assert "Test failed: The exchange had an internal error (HTTP 500)" in response.content.decode()


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("ciphertext moved", "The stored key does not decrypt for this credential (moved or tampered with)"),
        ("key id gone", "The stored key was encrypted with key id &#x27;k2&#x27;, which is not configured"),
    ],
)
def test_test_connection_explains_an_undecryptable_key_without_calling(
    as_admin, settings, sim, credential, rsa_pem, breakage, message
):
    if breakage == "ciphertext moved":
        tested = make_credential(sim.base_url, rsa_pem, label="other")
        Credential.objects.filter(pk=tested.pk).update(private_key_encrypted=credential.private_key_encrypted)
    else:
        tested, settings.OGPANEL_ENCRYPTION_KEYS = credential, vault.new_key_entry("k9")

    response = as_admin.post(reverse("credential_test", args=[tested.pk]), **HTMX)

    assert response.status_code == 409
    assert f"stored private key cannot be used. {message}." in response.content.decode()
    assert sim.requests == []
    assert AuditEvent.objects.filter(action="credential_test").first().outcome == "failed"


# --- subaccount mapping ------------------------------------------------------------------------


def test_mapping_page_lists_every_subaccount(as_admin, settings, credential, subaccounts):
    page = as_admin.get(reverse("subaccounts")).content.decode()

    for number in range(settings.OGPANEL_MAX_SUBACCOUNT + 1):
        assert f'id="sub-{number}"' in page
    assert 'for="credential-5"' in page and 'for="label-5"' in page
    assert "Unmap subaccount 3" in page and "Unmap subaccount 4" not in page


def test_admin_maps_a_subaccount_in_place_with_htmx(as_admin, credential):
    response = as_admin.post(
        reverse("subaccounts"),
        {"number": "5", "credential": credential.pk, "label": "desk five", "op": "assign"},
        **HTMX,
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert page.lstrip().startswith('<tr id="sub-5">')
    assert "desk five" in page and "Subaccount 5 now uses" in response["HX-Trigger"]
    assert Subaccount.objects.get(number=5).credential == credential
    assert AuditEvent.objects.filter(action="subaccount_assign").first().subaccount == 5


def test_admin_moves_a_subaccount_to_another_credential_with_a_plain_post(
    as_admin, sim, credential, subaccounts, rsa_pem
):
    other = make_credential(sim.base_url, rsa_pem, label="other")

    response = as_admin.post(
        reverse("subaccounts"), {"number": "2", "credential": other.pk, "label": "", "op": "assign"}
    )

    assert response.status_code == 302 and response["Location"] == reverse("subaccounts")
    assert Subaccount.objects.get(number=2).credential == other
    assert Subaccount.objects.count() == 4


def test_admin_unmaps_a_subaccount(as_admin, credential, subaccounts):
    response = as_admin.post(reverse("subaccounts"), {"number": "3", "op": "unassign"}, **HTMX)

    assert response.status_code == 200
    assert "not mapped" in response.content.decode()
    assert not Subaccount.objects.filter(number=3).exists()


@pytest.mark.parametrize(
    "data, status, message",
    [
        ({"number": "9", "op": "unassign"}, 400, "Subaccount 9 is not mapped."),
        ({"number": "9", "op": "assign", "credential": ""}, 400, "Choose the credential this subaccount uses."),
        ({"number": "33", "op": "assign"}, 400, "Subaccount must be a number from 0 to 32."),
        ({"number": "x", "op": "assign"}, 400, "Subaccount must be a number from 0 to 32."),
    ],
)
def test_mapping_refuses_bad_input_with_a_clear_message(as_admin, credential, data, status, message):
    response = as_admin.post(reverse("subaccounts"), data, **HTMX)

    assert response.status_code == status
    assert message in response.content.decode()
    assert not Subaccount.objects.exists()


def test_mapping_error_as_a_plain_post_shows_the_page_with_the_row_error(as_admin, credential):
    response = as_admin.post(reverse("subaccounts"), {"number": "9", "op": "assign", "credential": "", "label": "kept"})

    page = response.content.decode()
    assert response.status_code == 400
    assert "<html" in page and "Choose the credential this subaccount uses." in page
    assert 'id="label-9" name="label" value="kept"' in page


# --- permissions -------------------------------------------------------------------------------


def _credential_requests(credential) -> list[tuple[str, str]]:
    pk = credential.pk
    return [
        ("get", reverse("credentials")),
        ("get", reverse("credential_create")),
        ("post", reverse("credential_create")),
        ("get", reverse("credential_detail", args=[pk])),
        ("get", reverse("credential_rotate", args=[pk])),
        ("post", reverse("credential_rotate", args=[pk])),
        ("get", reverse("credential_remove", args=[pk])),
        ("post", reverse("credential_remove", args=[pk])),
        ("post", reverse("credential_test", args=[pk])),
        ("get", reverse("subaccounts")),
        ("post", reverse("subaccounts")),
    ]


@pytest.mark.parametrize("persona", ["as_viewer", "as_operator"])
def test_non_admins_are_refused_every_credential_page_and_see_no_link(
    request, persona, sim, credential, subaccounts, rsa_pem
):
    client = request.getfixturevalue(persona)
    data = {
        "label": "x",
        "environment": "custom",
        "custom_base_url": sim.base_url,
        "key_id": "k",
        "private_key": rsa_pem.decode(),
        "unmap": "on",
        "seen": "0,1,2,3",
        "number": "1",
        "op": "unassign",
    }

    for method, url in _credential_requests(credential):
        response = getattr(client, method)(url, data if method == "post" else None)
        assert response.status_code == 403, (method, url)
        assert f'href="{reverse("credentials")}"' not in response.content.decode()

    assert sim.requests == []
    assert Credential.objects.count() == 1 and Subaccount.objects.count() == 4
    assert AuditEvent.objects.filter(outcome="denied", action="manage_credentials").count() == 11


def test_admin_sees_the_credentials_link(as_admin):
    assert f'href="{reverse("credentials")}"' in as_admin.get(reverse("credentials")).content.decode()


def test_anonymous_visitors_are_sent_to_log_in(client, credential):
    for method, url in _credential_requests(credential):
        response = getattr(client, method)(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), url


# --- the key never leaks -----------------------------------------------------------------------


def test_no_line_of_a_private_key_reaches_a_page_a_log_or_the_audit_log(
    as_admin,
    sim_with_other_key,
    rsa_pem,
    other_pem,
    caplog,
):
    sim = sim_with_other_key
    caplog.set_level(logging.DEBUG)
    pages = []

    def visit(method: str, url: str, data=None, **extra) -> None:
        response = getattr(as_admin, method)(url, data, follow=method == "post" and not extra, **extra)
        pages.append(response.content.decode())
        pages.extend(str(value) for value in response.headers.values())

    visit("post", reverse("credential_create"), create_form(sim, REFUSED["RSA 1024"]))  # error
    visit("post", reverse("credential_create"), create_form(sim, rsa_pem, environment="demo"))  # error: URL for demo
    visit("post", reverse("credential_create"), create_form(sim, rsa_pem))  # success, then the detail page
    credential = Credential.objects.get(label="Desk A")
    Subaccount.objects.create(number=0, credential=credential)
    sim.create_group(0, 5)
    visit("get", reverse("credentials"))
    visit("get", reverse("credential_detail", args=[credential.pk]))
    visit("post", reverse("credential_test", args=[credential.pk]), {}, **HTMX)
    visit("post", reverse("credential_test", args=[credential.pk]))
    visit("get", reverse("credential_rotate", args=[credential.pk]))
    visit("post", reverse("credential_rotate", args=[credential.pk]), {"key_id": "", "private_key": other_pem.decode()})
    visit(
        "post",
        reverse("credential_rotate", args=[credential.pk]),
        {"key_id": NEW_KEY_ID, "private_key": other_pem.decode()},
    )
    sim.set_fault("error", status=500)
    visit("post", reverse("credential_test", args=[credential.pk]), {}, **HTMX)
    visit("get", reverse("subaccounts"))
    visit("get", reverse("credential_remove", args=[credential.pk]))
    visit("post", reverse("credential_remove", args=[credential.pk]), {"seen": "0"})  # refused
    visit("post", reverse("credential_remove", args=[credential.pk]), {"seen": "0", "unmap": "on"})

    assert "Connected: 1 order group on subaccount 0" in "".join(pages)  # the flows really ran
    assert not Credential.objects.exists()
    audit_text = "".join(str(event) for event in AuditEvent.objects.values_list("params", "error", "reason"))
    assert_no_key_material([rsa_pem, other_pem, REFUSED["RSA 1024"]], caplog.text, audit_text, *pages)


@pytest.mark.parametrize("view", ["credential_create", "credential_rotate"])
def test_an_error_report_of_a_crash_while_saving_a_key_hides_it(
    as_admin, settings, sim, credential, rsa_pem, caplog, view
):
    """What AdminEmailHandler would mail: the posted key and the frames holding it are masked."""
    reports = []

    def report(sender, request, **kwargs):
        reporter = ExceptionReporter(request, *sys.exc_info(), is_email=True)
        reports.extend([reporter.get_traceback_text(), reporter.get_traceback_html()])

    settings.OGPANEL_ENCRYPTION_KEYS = ""  # a broken deployment: saving the key crashes in the vault
    as_admin.raise_request_exception = False
    got_request_exception.connect(report)
    try:
        args = [] if view == "credential_create" else [credential.pk]
        data = (
            create_form(sim, rsa_pem, label="crash")
            if view == "credential_create"
            else {"key_id": "k", "private_key": rsa_pem.decode()}
        )
        response = as_admin.post(reverse(view, args=args), data)
    finally:
        got_request_exception.disconnect(report)

    assert response.status_code == 500
    assert "ImproperlyConfigured" in reports[0] and "No encryption key configured" in reports[0]
    assert "private_key = '********************'" in reports[0]
    assert "pem" in reports[1] and "********************" in reports[1]  # the frames' variables, masked
    assert_no_key_material([rsa_pem], *reports, caplog.text, response.content.decode())


@pytest.mark.parametrize("password", ["", "wrong-password"])
def test_credential_changes_ask_for_the_password_again_once_the_window_has_passed(
    settings, sim, rsa_pem, credential, as_admin, password
):
    settings.OGPANEL_REAUTH_SECONDS = 0
    before = Credential.objects.count(), Credential.objects.get(pk=credential.pk).private_key_encrypted

    created = as_admin.post(
        reverse("credential_create"), {**create_form(sim, rsa_pem, label="second"), "reauth_password": password}
    )
    rotated = as_admin.post(
        reverse("credential_rotate", args=[credential.pk]),
        {"key_id": "test-key", "private_key": rsa_pem.decode(), "reauth_password": password},
    )
    removed = as_admin.post(
        reverse("credential_remove", args=[credential.pk]), {"seen": "", "reauth_password": password}
    )

    for response in (created, rotated, removed):
        assert response.status_code == 403
        assert 'name="reauth_password"' in response.content.decode()
    for response in (created, rotated):
        page = response.content.decode()
        assert "paste the key again" in page
        assert not any(line in page for line in rsa_pem.decode().splitlines()[1:-1])
    assert (Credential.objects.count(), Credential.objects.get(pk=credential.pk).private_key_encrypted) == before

    created = as_admin.post(
        reverse("credential_create"), {**create_form(sim, rsa_pem, label="second"), "reauth_password": "ada-password-1"}
    )
    assert created.status_code == 302 and Credential.objects.count() == before[0] + 1


@pytest.mark.parametrize("password", ["", "wrong-password"])
def test_a_mapping_change_asks_for_the_password_again_once_the_window_has_passed(
    settings, credential, subaccounts, as_admin, password
):
    settings.OGPANEL_REAUTH_SECONDS = 0
    change = {"number": "2", "credential": credential.pk, "label": "renamed", "op": "assign"}

    page = as_admin.get(reverse("subaccounts")).content.decode()
    refused = as_admin.post(reverse("subaccounts"), {**change, "reauth_password": password}, **HTMX)

    assert f'href="{reverse("reauth")}?next={reverse("subaccounts")}"' in page
    assert refused.status_code == 403 and "Confirm your identity" in refused.content.decode()
    assert Subaccount.objects.get(number=2).label != "renamed"
    assert not AuditEvent.objects.filter(action="subaccount_assign").exists()

    accepted = as_admin.post(reverse("subaccounts"), {**change, "reauth_password": "ada-password-1"})
    assert accepted.status_code == 302 and Subaccount.objects.get(number=2).label == "renamed"
