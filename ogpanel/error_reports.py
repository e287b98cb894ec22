"""Optional error reports to Sentry (SENTRY_DSN), sent without key material, cookies or auth headers.

Off unless SENTRY_DSN is set; the panel, the watcher and every management command start it from
OgpanelConfig.ready(). What an event could carry, and what keeps each out:

- Local variables of every frame (the PEM while a client parses it, a form's cleaned data):
  not collected at all (include_local_variables=False). Django's @sensitive_variables only
  hides them from Django's own error pages, not from Sentry.
- The request body (a credential form holds the private key): never sent (max_request_body_size).
- Cookies, the user and client addresses: not sent (send_default_pii=False), and the scrubber
  below removes session, CSRF, Authorization and signing headers by name, at any depth.
- Key material inside any text (an exception message, a log line in the breadcrumbs): every
  string is searched; PEM armour removes the whole string, and a long run of base64, hex or
  digits (a key body, DER in hex, a private number) becomes "[Filtered]".
"""

from __future__ import annotations

import re
from typing import Any

import sentry_sdk
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber
from sentry_sdk.transport import Transport

FILTERED = "[Filtered]"
# Names (of headers, cookies, form fields, extra data) whose values never leave, on top of Sentry's defaults.
DENYLIST = [
    *DEFAULT_DENYLIST,
    "pem",
    "private_key_pem",
    "private_key_encrypted",
    "ogpanel_encryption_keys",
    "encryption_keys",
    "kalshi-access-signature",
    "kalshi_access_signature",
    "kalshi-access-key",
    "kalshi_access_key",
    "x-csrftoken",
    "csrfmiddlewaretoken",
    "http_authorization",
    "http_cookie",
    "otp_token",
]
_ARMOUR = re.compile(r"-----BEGIN|PRIVATE KEY|ENCRYPTED KEY")
# 40 characters: longer than any id the panel shows (uuid hex is 32), shorter than one line of a PEM body.
_KEYLIKE_RUN = re.compile(r"[A-Za-z0-9+/=]{40,}")


def scrub_text(text: str) -> str:
    if _ARMOUR.search(text):
        return FILTERED
    return _KEYLIKE_RUN.sub(FILTERED, text)


def scrub_values(value: Any) -> Any:
    """Every string in a JSON-like structure, keys included, through scrub_text."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {scrub_values(key): scrub_values(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_values(item) for item in value]
    return value


def before_send(event: Any, hint: Any) -> Any:
    return scrub_values(event)


def init(dsn: str, *, environment: str = "", transport: type[Transport] | None = None) -> None:
    """Start reporting to `dsn`. `transport` replaces the network (tests)."""
    options: dict[str, Any] = {}
    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(
        dsn=dsn,
        environment=environment or None,
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        event_scrubber=EventScrubber(denylist=DENYLIST, recursive=True),
        before_send=before_send,
        before_send_transaction=before_send,
        before_breadcrumb=lambda crumb, hint: scrub_values(crumb),
        **options,
    )
