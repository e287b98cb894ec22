"""Input validation, fixed-point amounts, private keys and request signing (reference §2)."""

from __future__ import annotations

import base64
import hashlib
import re
from decimal import Decimal, InvalidOperation
from typing import TypeGuard

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ogpanel.kalshi.errors import InvalidInput

ORDER_GROUP_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_CONTRACTS_LIMIT = 1_000_000
MIN_RSA_BITS = 2048


def validate_order_group_id(value: object) -> str:
    """The id goes into the URL path, so only a plain token may pass (no '/', '%', '..')."""
    if not isinstance(value, str) or not ORDER_GROUP_ID_RE.fullmatch(value):
        raise InvalidInput("Order group id must be 1 to 64 characters: letters, digits, '-' or '_'.")
    return value


def validate_subaccount(value: object, max_subaccount: int = 32) -> int:
    if not _is_int(value) or not 0 <= value <= max_subaccount:
        raise InvalidInput(f"Subaccount must be a whole number from 0 to {max_subaccount}.")
    return int(value)


def validate_contracts_limit(value: object) -> int:
    if not _is_int(value) or not 1 <= value <= MAX_CONTRACTS_LIMIT:
        raise InvalidInput("Contracts limit must be a whole number of contracts from 1 to 1,000,000.")
    return int(value)


def validate_exchange_index(value: object) -> int:
    if not _is_int(value) or value < 0:
        raise InvalidInput("Exchange index must be a whole number, 0 or more.")
    return int(value)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------- keys and signing


def load_private_key(pem: bytes | str) -> rsa.RSAPrivateKey:
    """Parse an unencrypted PKCS#1 or PKCS#8 PEM RSA key of at least 2048 bits.

    Errors never quote the input and never chain cryptography's exception, so no key
    material can reach a log or a page.
    """
    if isinstance(pem, str):
        pem = pem.encode("utf-8", errors="replace")
    if not isinstance(pem, bytes) or not pem.strip():
        raise InvalidInput("The private key is empty.")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise InvalidInput("The private key is encrypted; provide it without a passphrase.") from None
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidInput("The private key is not a readable PEM private key (PKCS#1 or PKCS#8).") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidInput("The private key is not an RSA key; Kalshi API keys are RSA.")
    if key.key_size < MIN_RSA_BITS:
        raise InvalidInput(f"The RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are required.")
    return key


def public_key_fingerprint(private_key: rsa.RSAPrivateKey) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, written like ssh: 'SHA256:' + unpadded base64."""
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode("ascii").rstrip("=")


def sign(private_key: rsa.RSAPrivateKey, timestamp_ms: str, method: str, path: str) -> str:
    """Signature for KALSHI-ACCESS-SIGNATURE over timestamp + METHOD + path (§2).

    `path` is the full URL path including /trade-api/v2, without the query string.
    """
    message = f"{timestamp_ms}{method.upper()}{path}".encode()
    signature = private_key.sign(
        message,
        # Salt length = digest length (32 bytes): what every Kalshi client uses.
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
        hashes.SHA256(),
    )
    return base64.b64encode(signature).decode("ascii")


def whole_contracts(fp: str) -> int | None:
    """Whole contracts from a fixed-point string like "50.00"; None for a fractional amount.

    ValueError for a string that is not a finite number.
    """
    try:
        amount = Decimal(fp)
    except InvalidOperation:
        raise ValueError(f"not a number: {fp!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a number: {fp!r}")
    return int(amount) if amount == amount.to_integral_value() else None
