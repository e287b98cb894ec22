"""Optional error reports to Sentry (SENTRY_DSN), sent without key material, cookies or auth headers.

Off unless SENTRY_DSN is set; the panel, the watcher and every management command start it from
OgpanelConfig.ready(). What an event could carry, and what keeps each out:

- Local variables of every frame (the PEM while a client parses it, a form's cleaned data):
  not collected at all. Django's @sensitive_variables only hides them from Django's own error
  pages, not from Sentry.
- The request body (a credential form holds the private key): never sent.
- Cookies and the user: not sent (send_default_pii off; `data_collection` says it per category).
  Authorization, CSRF, signing and forwarded-address headers are replaced by name, and so is
  the value of any secret-sounding name at any depth of the event (before_send).
- Key material inside any text (an exception message, a log line in the breadcrumbs): every
  string is searched; PEM armour removes the whole string, and a long run of base64, hex or
  digits (a key body, DER in hex, a private number) becomes "[Filtered]".
"""

from __future__ import annotations

import re
from typing import Any

import sentry_sdk
from sentry_sdk.transport import Transport

FILTERED = "[Filtered]"
# Header and query parameter names (in part) whose values are replaced, on top of the SDK's own list
# (auth, token, key, csrf, session, ...): the exchange's signing headers and the client's addresses.
HEADER_TERMS = ["kalshi", "signature", "cookie", "forwarded", "-ip", "remote-", "via", "-user"]
# Names anywhere in an event (extra data, contexts, breadcrumb data) whose values never leave.
_SECRET_NAME = re.compile(
    r"pem|private|secret|passw|token|authorization|cookie|csrf|session|signature|encryption_key", re.IGNORECASE
)
_ARMOUR = re.compile(r"-----BEGIN|PRIVATE KEY|ENCRYPTED KEY")
# 40 characters: longer than any id the panel shows (uuid hex is 32), shorter than one line of a PEM body.
_KEYLIKE_RUN = re.compile(r"[A-Za-z0-9+/=]{40,}")


def scrub_text(text: str) -> str:
    if _ARMOUR.search(text):
        return FILTERED
    return _KEYLIKE_RUN.sub(FILTERED, text)


def scrub_values(value: Any) -> Any:
    """Every string in a JSON-like structure through scrub_text; the value of a secret-sounding name, whole."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {
            key: FILTERED if isinstance(key, str) and _SECRET_NAME.search(key) else scrub_values(item)
            for key, item in value.items()
        }
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
        # send_default_pii stays off (its default; this SDK replaces the flag with data_collection):
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "denylist", "terms": HEADER_TERMS}},
            "http_bodies": [],
            "url_query_params": {"mode": "denylist", "terms": HEADER_TERMS},
            "database_query_data": False,
            "queues": False,
            "gen_ai": {"inputs": False, "outputs": False},
            "stack_frame_variables": False,
        },
        max_request_body_size="never",
        before_send=before_send,
        before_send_transaction=before_send,
        before_breadcrumb=lambda crumb, hint: scrub_values(crumb),
        **options,
    )
