"""Encryption at rest for credentials' private keys.

AES-256-GCM with the credential's UUID as associated data: a ciphertext only opens in the
row it was written for. Keys come from OGPANEL_ENCRYPTION_KEYS or OGPANEL_ENCRYPTION_KEY_FILE
("id:base64key" entries, newest first), never from the database. Several keys may be active
at once so they can be rotated: new writes use the newest, reads use whichever key id the
ciphertext names, and `manage.py rotate_encryption_keys` rewrites every row under the newest.

Stored form: "v1:<key id>:<base64(nonce || ciphertext+tag)>".
"""

import base64
import os
import secrets
from functools import cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables

VERSION = "v1"


class VaultError(Exception):
    """A stored key cannot be decrypted here (wrong row, unknown key id, or tampered)."""


# Error reports must show neither private keys nor the encryption keys themselves.
@sensitive_variables()
def parse_keys(text: str) -> dict[str, bytes]:
    """Parse "id:base64key" entries separated by commas or newlines, newest first."""
    keys: dict[str, bytes] = {}
    for entry in text.replace("\n", ",").split(","):
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        key_id, sep, material = entry.partition(":")
        if not sep or not key_id.isalnum():
            raise ImproperlyConfigured("Encryption keys must be 'id:base64key' entries with an alphanumeric id")
        try:
            raw = base64.b64decode(material, validate=True)
        except ValueError:
            raise ImproperlyConfigured(f"Encryption key {key_id!r} is not valid base64") from None
        if len(raw) != 32:
            raise ImproperlyConfigured(f"Encryption key {key_id!r} must be 32 bytes (AES-256)")
        if key_id in keys:
            raise ImproperlyConfigured(f"Encryption key id {key_id!r} appears twice")
        keys[key_id] = raw
    return keys


@sensitive_variables()
def read_keys(configured: str, key_file: str, *, file_setting: str) -> dict[str, bytes]:
    """The entries of `configured`, else of the file `key_file` (the setting `file_setting` names it); {} if neither."""
    text = configured
    if not text and key_file:
        try:
            text = Path(key_file).read_text()
        except OSError as exc:
            raise ImproperlyConfigured(f"Cannot read {file_setting}: {exc.strerror}") from None
    return parse_keys(text)


@cache
@sensitive_variables()
def _keys(configured: str, key_file: str) -> dict[str, bytes]:
    keys = read_keys(configured, key_file, file_setting="OGPANEL_ENCRYPTION_KEY_FILE")
    if not keys:
        raise ImproperlyConfigured(
            "No encryption key configured: set OGPANEL_ENCRYPTION_KEYS or OGPANEL_ENCRYPTION_KEY_FILE "
            "(make a key with `python manage.py make_encryption_key`)."
        )
    return keys


def keys() -> dict[str, bytes]:
    return _keys(settings.OGPANEL_ENCRYPTION_KEYS, settings.OGPANEL_ENCRYPTION_KEY_FILE)


def newest_key_id() -> str:
    return next(iter(keys()))


def new_key_entry(key_id: str = "") -> str:
    """A fresh "id:base64key" entry for the environment or a key file."""
    key_id = key_id or secrets.token_hex(4)
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


@sensitive_variables("plaintext")
def encrypt(plaintext: bytes, *, bound_to: str) -> str:
    key_id = newest_key_id()
    nonce = os.urandom(12)
    sealed = AESGCM(keys()[key_id]).encrypt(nonce, plaintext, bound_to.encode())
    return f"{VERSION}:{key_id}:{base64.b64encode(nonce + sealed).decode()}"


@sensitive_variables("key")
def decrypt(stored: str, *, bound_to: str) -> bytes:
    try:
        version, key_id, payload = stored.split(":", 2)
        blob = base64.b64decode(payload, validate=True)
    except ValueError:
        raise VaultError("The stored key is not in a format this panel knows") from None
    if version != VERSION:
        raise VaultError(f"Unknown storage version {version!r}")
    key = keys().get(key_id)
    if key is None:
        raise VaultError(f"The stored key was encrypted with key id {key_id!r}, which is not configured")
    try:
        return AESGCM(key).decrypt(blob[:12], blob[12:], bound_to.encode())
    except InvalidTag:
        raise VaultError("The stored key does not decrypt for this credential (moved or tampered with)") from None


def check(stored: str, *, bound_to: str) -> str:
    """Why a stored key would not decrypt here, or "" if it would. The plaintext is discarded."""
    try:
        decrypt(stored, bound_to=bound_to)
    except VaultError as exc:
        return str(exc)
    return ""


def key_id_of(stored: str) -> str:
    return stored.split(":", 2)[1]
