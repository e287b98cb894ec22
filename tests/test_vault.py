"""vault.py and the encryption-key commands: round trip, binding to the row, key rotation."""

import base64
import io

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from ogpanel import vault
from ogpanel.models import AuditEvent, Credential
from tests.panel_fixtures import ENCRYPTION_KEYS, make_credential

NEW_ENTRY = vault.new_key_entry("k3")


def read(credential: Credential) -> bytes:
    credential.refresh_from_db()
    return vault.decrypt(credential.private_key_encrypted, bound_to=str(credential.uuid))


def test_it_round_trips_a_key_under_the_newest_key_id():
    stored = vault.encrypt(b"secret bytes", bound_to="row-a")

    assert stored.startswith("v1:k2:")  # k2 is first (newest) in the test keys
    assert b"secret bytes" not in base64.b64decode(stored.split(":", 2)[2])
    assert vault.decrypt(stored, bound_to="row-a") == b"secret bytes"


def test_it_uses_a_fresh_nonce_for_every_encryption():
    assert vault.encrypt(b"same", bound_to="row-a") != vault.encrypt(b"same", bound_to="row-a")


def test_it_refuses_a_ciphertext_moved_to_another_credential(db, rsa_pem):
    first = make_credential("http://127.0.0.1:1/trade-api/v2", rsa_pem, label="first")
    second = make_credential("http://127.0.0.1:1/trade-api/v2", rsa_pem, label="second")
    Credential.objects.filter(pk=second.pk).update(private_key_encrypted=first.private_key_encrypted)

    assert read(first) == rsa_pem
    with pytest.raises(vault.VaultError, match="does not decrypt for this credential"):
        read(second)


def test_it_refuses_a_tampered_ciphertext():
    version, key_id, payload = vault.encrypt(b"secret", bound_to="row-a").split(":", 2)
    blob = bytearray(base64.b64decode(payload))
    blob[-1] ^= 1

    with pytest.raises(vault.VaultError, match="moved or tampered"):
        vault.decrypt(f"{version}:{key_id}:{base64.b64encode(bytes(blob)).decode()}", bound_to="row-a")


def test_it_names_the_key_id_that_is_not_configured(settings):
    stored = vault.encrypt(b"secret", bound_to="row-a")
    settings.OGPANEL_ENCRYPTION_KEYS = NEW_ENTRY

    with pytest.raises(vault.VaultError, match="key id 'k2', which is not configured"):
        vault.decrypt(stored, bound_to="row-a")
    assert "k2" in vault.check(stored, bound_to="row-a")


def test_it_reads_rows_written_under_an_older_key_that_is_still_configured(settings):
    settings.OGPANEL_ENCRYPTION_KEYS = ENCRYPTION_KEYS.split(",")[1]  # k1 only
    stored = vault.encrypt(b"secret", bound_to="row-a")
    settings.OGPANEL_ENCRYPTION_KEYS = ",".join([NEW_ENTRY, ENCRYPTION_KEYS])

    assert vault.key_id_of(stored) == "k1"
    assert vault.decrypt(stored, bound_to="row-a") == b"secret"
    assert vault.check(stored, bound_to="row-a") == ""


def test_it_reads_keys_from_a_key_file(settings, tmp_path):
    key_file = tmp_path / "keys"
    key_file.write_text(f"# newest first\n{NEW_ENTRY}\n")
    settings.OGPANEL_ENCRYPTION_KEYS = ""
    settings.OGPANEL_ENCRYPTION_KEY_FILE = str(key_file)

    assert vault.newest_key_id() == "k3"
    assert vault.decrypt(vault.encrypt(b"secret", bound_to="row-a"), bound_to="row-a") == b"secret"


def test_it_refuses_to_run_without_an_encryption_key(settings):
    settings.OGPANEL_ENCRYPTION_KEYS = ""
    settings.OGPANEL_ENCRYPTION_KEY_FILE = ""

    with pytest.raises(ImproperlyConfigured, match="make_encryption_key"):
        vault.encrypt(b"secret", bound_to="row-a")


@pytest.mark.parametrize(
    "text, problem",
    [
        ("k1", "'id:base64key' entries"),
        ("k1:not base64!", "not valid base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "32 bytes"),
        (f"{NEW_ENTRY},{NEW_ENTRY}", "appears twice"),
    ],
)
def test_it_refuses_malformed_key_entries_without_echoing_them(text, problem):
    with pytest.raises(ImproperlyConfigured, match=problem) as caught:
        vault.parse_keys(text)
    assert NEW_ENTRY.split(":")[1] not in str(caught.value)


def test_make_encryption_key_prints_a_fresh_usable_entry():
    first, second = io.StringIO(), io.StringIO()
    call_command("make_encryption_key", "--id", "k9", stdout=first, stderr=io.StringIO())
    call_command("make_encryption_key", stdout=second, stderr=io.StringIO())

    entry = first.getvalue().strip()
    assert entry.startswith("k9:")
    assert len(vault.parse_keys(entry)["k9"]) == 32
    assert vault.parse_keys(second.getvalue().strip())  # a random id, also valid
    assert entry.split(":")[1] != second.getvalue().strip().split(":")[1]


def test_make_encryption_key_refuses_an_id_the_vault_could_not_parse():
    with pytest.raises(CommandError, match="letters and digits"):
        call_command("make_encryption_key", "--id", "k:9", stdout=io.StringIO(), stderr=io.StringIO())


def test_rotate_encryption_keys_makes_every_row_readable_with_only_the_newest_key(db, settings, rsa_pem, rsa_pem_pkcs1):
    settings.OGPANEL_ENCRYPTION_KEYS = ENCRYPTION_KEYS.split(",")[1]  # rows written under k1 ...
    old = make_credential("http://127.0.0.1:1/trade-api/v2", rsa_pem, label="old")
    settings.OGPANEL_ENCRYPTION_KEYS = ENCRYPTION_KEYS  # ... and under k2
    newer = make_credential("http://127.0.0.1:1/trade-api/v2", rsa_pem_pkcs1, label="newer")
    updated_before = Credential.objects.get(pk=old.pk).updated
    settings.OGPANEL_ENCRYPTION_KEYS = ",".join([NEW_ENTRY, ENCRYPTION_KEYS])
    out = io.StringIO()

    call_command("rotate_encryption_keys", stdout=out)

    assert "Re-encrypted 2 credentials under key k3 (before: 1 under k1, 1 under k2)" in out.getvalue()
    settings.OGPANEL_ENCRYPTION_KEYS = NEW_ENTRY  # the old keys are gone
    assert read(old) == rsa_pem
    assert read(newer) == rsa_pem_pkcs1
    assert {vault.key_id_of(c.private_key_encrypted) for c in Credential.objects.all()} == {"k3"}
    assert Credential.objects.get(pk=old.pk).updated == updated_before  # not an edit of the credential
    event = AuditEvent.objects.filter(action="encryption_keys_rotate").first()
    assert event.outcome == "succeeded"
    assert event.params["rewritten"] == 2 and event.params["key_id"] == "k3"


def test_rows_are_unreadable_without_the_old_key_if_rotation_was_skipped(db, settings, rsa_pem):
    credential = make_credential("http://127.0.0.1:1/trade-api/v2", rsa_pem)
    settings.OGPANEL_ENCRYPTION_KEYS = NEW_ENTRY

    with pytest.raises(vault.VaultError, match="not configured"):
        read(credential)


def test_rotate_encryption_keys_changes_nothing_when_a_row_cannot_be_decrypted(db, settings, rsa_pem):
    good = make_credential("http://127.0.0.1:1/trade-api/v2", rsa_pem, label="good")
    moved = make_credential("http://127.0.0.1:1/trade-api/v2", rsa_pem, label="moved")
    Credential.objects.filter(pk=moved.pk).update(private_key_encrypted=good.private_key_encrypted)
    before = dict(Credential.objects.values_list("pk", "private_key_encrypted"))
    settings.OGPANEL_ENCRYPTION_KEYS = ",".join([NEW_ENTRY, ENCRYPTION_KEYS])

    with pytest.raises(CommandError, match=r"Nothing was changed.*'moved'"):
        call_command("rotate_encryption_keys", stdout=io.StringIO())

    assert dict(Credential.objects.values_list("pk", "private_key_encrypted")) == before
    assert AuditEvent.objects.filter(action="encryption_keys_rotate").first().outcome == "failed"


def test_rotate_encryption_keys_reports_an_empty_table(db):
    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    assert "Re-encrypted 0 credentials under key k2 (before: none stored)" in out.getvalue()
