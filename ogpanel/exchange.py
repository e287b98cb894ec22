"""One long-lived KalshiClient per credential and process.

Parsing a private key costs ~40 ms and a TLS handshake more, so a client (its parsed key and
its pooled session) is built once and reused until the credential's key, key id, base URL,
account or tier changes. Only this cache lives in process memory; the rate budget it draws on
is its account's (budgets.py), shared by every credential of the account and every process.
Every call a client makes is reported to the metrics (metrics.exchange_call, its observer).
"""

import threading

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from ogpanel import budgets, metrics, vault
from ogpanel.kalshi import KalshiClient, KalshiError, OrderGroupStream
from ogpanel.models import Credential

_clients: dict[int, tuple[tuple, KalshiClient]] = {}
_lock = threading.Lock()


class CredentialUnusable(KalshiError):
    """The stored private key cannot be decrypted here (moved row, missing encryption key). Nothing was sent."""

    def __init__(self, credential: Credential, problem: vault.VaultError):
        super().__init__(
            str(problem),
            code="credential_unusable",
            operator_message=(
                f"The API key of credential \u201c{credential.label}\u201d cannot be used here: {problem}. "
                "An admin must rotate it."
            ),
        )


def _version(credential: Credential) -> tuple:
    """What a client is built from. Compared as it is, not hashed: the fan-out asks 33 times a dashboard.

    The settings a client is built with are part of it, so overriding them (tests do) takes effect.
    """
    return (
        credential.private_key_encrypted,
        credential.key_id,
        credential.base_url,
        credential.account,
        credential.tier,
        settings.OGPANEL_CONNECT_TIMEOUT,
        settings.OGPANEL_READ_TIMEOUT,
        settings.OGPANEL_MAX_SUBACCOUNT,
    )


# All locals, here and in the frames below (KalshiClient.__init__ holds the PEM too), are hidden
# from error reports.
@sensitive_variables()
def client_for(credential: Credential) -> KalshiClient:
    version = _version(credential)
    with _lock:
        cached = _clients.get(credential.pk)
        if cached and cached[0] == version:
            return cached[1]
    try:
        pem = vault.decrypt(credential.private_key_encrypted, bound_to=str(credential.uuid))
    except vault.VaultError as exc:
        raise CredentialUnusable(credential, exc) from None
    client = KalshiClient(
        credential.base_url,
        credential.key_id,
        pem,
        timeout=(settings.OGPANEL_CONNECT_TIMEOUT, settings.OGPANEL_READ_TIMEOUT),
        max_subaccount=settings.OGPANEL_MAX_SUBACCOUNT,
        limiter=budgets.limiter_for(credential),
        observer=metrics.exchange_call,
    )
    with _lock:
        previous = _clients.get(credential.pk)
        _clients[credential.pk] = (version, client)
    if previous and previous[1] is not client:
        previous[1].close()
    budgets.ask_exchange_once(credential, client)
    return client


def stream_for(credential: Credential) -> OrderGroupStream:
    """The credential's order_group_updates stream, signing with its cached client's parsed key."""
    return client_for(credential).stream()


def forget(credential_pk: int) -> None:
    with _lock:
        cached = _clients.pop(credential_pk, None)
    if cached:
        cached[1].close()
