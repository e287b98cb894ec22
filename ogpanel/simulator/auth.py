"""Request signature checks, written independently of the panel's client (reference §2).

The panel signs; this module verifies with its own code so that a signing
bug cannot hide by being present on both sides.
"""

import base64
import binascii
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ogpanel.simulator.exchange import ExchangeError
from ogpanel.simulator.ratelimit import DEFAULT_ACCOUNT

KEY_HEADER = "KALSHI-ACCESS-KEY"
TIMESTAMP_HEADER = "KALSHI-ACCESS-TIMESTAMP"
SIGNATURE_HEADER = "KALSHI-ACCESS-SIGNATURE"

# A fixed salt length (not AUTO) so signatures made with another salt length
# are refused: every source says Kalshi's clients use the digest length.
SIGNATURE_PADDING = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def _unauthorized(message: str, details: str | None = None) -> ExchangeError:
    return ExchangeError(401, "authentication_error", message, details)


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    public_key: rsa.RSAPublicKey
    subaccounts: frozenset[int] | None  # None: every subaccount
    account: str = DEFAULT_ACCOUNT  # the member whose rate budget the key draws on

    def allows(self, subaccount: int) -> bool:
        return self.subaccounts is None or subaccount in self.subaccounts

    def default_subaccount(self) -> int:
        """The subaccount a mutation means when it names none.

        The exchange treats an omitted subaccount as 0, except that a key locked
        to a single subaccount means that one (SYNC: "Subaccount-restricted API
        keys must omit this field or pass their locked subaccount").
        """
        if self.subaccounts is not None and len(self.subaccounts) == 1:
            return next(iter(self.subaccounts))
        return 0


class HeaderLookup(Protocol):
    """Request headers as http.server parses them (an email Message) or a plain dict."""

    def get(self, name: str, /) -> str | None: ...


class KeyRing:
    """Registered public keys, each parsed once when added."""

    def __init__(self) -> None:
        self._keys: dict[str, ApiKey] = {}
        self._lock = threading.Lock()

    def add(
        self,
        key_id: str,
        public_key_pem: bytes | str,
        subaccounts: Iterable[int] | None = None,
        account: str = DEFAULT_ACCOUNT,
    ) -> None:
        """Register (or replace) a key; raises ValueError for anything but an RSA public key PEM."""
        if not key_id:
            raise ValueError("key_id must not be empty")
        if not isinstance(account, str) or not account:
            raise ValueError("account must be a non-empty string")
        pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
        try:
            public_key = serialization.load_pem_public_key(pem)
        except ValueError as error:
            raise ValueError(f"not a PEM public key: {error}") from None
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise ValueError("only RSA public keys are supported")
        allowed = None if subaccounts is None else frozenset(subaccounts)
        if allowed is not None and any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in allowed):
            raise ValueError("subaccounts must be whole numbers >= 0")
        with self._lock:
            self._keys[key_id] = ApiKey(key_id, public_key, allowed, account)

    def authenticate(
        self,
        headers: HeaderLookup,
        method: str,
        path: str,
        *,
        now: float,
        window: float,
    ) -> ApiKey:
        """Check the three KALSHI-ACCESS-* headers of a request; raises a 401 ExchangeError.

        `path` is the URL path as sent, with `/trade-api/v2` and without the
        query string, which is what clients sign. `now` is wall-clock seconds.
        """
        key_id = headers.get(KEY_HEADER)
        timestamp = headers.get(TIMESTAMP_HEADER)
        signature_b64 = headers.get(SIGNATURE_HEADER)
        if not key_id or not timestamp or not signature_b64:
            raise _unauthorized(
                f"{KEY_HEADER}, {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are required",
                "MISSING_AUTHENTICATION_HEADERS",
            )
        with self._lock:
            key = self._keys.get(key_id)
        if key is None:
            raise _unauthorized("unknown API key", "INVALID_API_KEY")
        if not (timestamp.isascii() and timestamp.isdigit()):
            raise _unauthorized(f"{TIMESTAMP_HEADER} must be Unix time in milliseconds")
        if abs(now * 1000 - int(timestamp)) > window * 1000:
            raise ExchangeError(
                401, "header_timestamp_expired", f"{TIMESTAMP_HEADER} is more than {window:g} s from now"
            )
        try:
            signature = base64.b64decode(signature_b64, validate=True)
            key.public_key.verify(
                signature, f"{timestamp}{method.upper()}{path}".encode(), SIGNATURE_PADDING, hashes.SHA256()
            )
        except (binascii.Error, InvalidSignature):
            raise _unauthorized("signature does not verify", "INCORRECT_API_KEY_SIGNATURE") from None
        return key
