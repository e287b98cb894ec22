"""Key material never reaches an error page, an error report or a log line, in DEBUG or not.

Django filters error reports only with DEBUG off, and only what a view marked
(sensitive_post_parameters, sensitive_variables): an error raised before any view ran (the
APPEND_SLASH check of a POST, a middleware), or any error with OGPANEL_DEBUG=1 (`make demo`),
showed a posted PEM whole. Here, whatever the mode:

- `KeyFilter` (DEFAULT_EXCEPTION_REPORTER_FILTER) hides fields and variables named like secrets
  (private_key*, passwords, re-authentication answers, codes, tokens) and every value that looks
  like a key: in the POST, META, cookies, settings and each frame's variables;
- `KeyRedactingReporter` (DEFAULT_EXCEPTION_REPORTER) cuts whatever still looks like a key out
  of the finished page or report (a query string, an exception's message);
- `LogFilter` (on the console handler) does the same for log lines, and keeps a refused request
  (4xx) to one line: its traceback tells a reader nothing the line does not.

"Looks like a key": a PEM block however it is quoted (real line breaks, "\\n" in a repr, "%0A" in a URL), with
its body even where the END line was cut off; or a run of 64 base64 characters mixing upper and
lower case and digits, which is what a PEM body line is and what no hash, id or word is. Written
here rather than taken from a library: the scrubbers that exist (Sentry's, structlog processors)
match field names, not values, and none plugs into Django's reporter.
"""

import logging
import re
from collections.abc import ItemsView
from typing import Any, overload

from django.http import HttpRequest, QueryDict
from django.utils.safestring import SafeString, mark_safe
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

REDACTED = "[key material removed]"
SENSITIVE_NAME = re.compile(r"private_key|passw|secret|token|reauth|otp", re.IGNORECASE)
# The body runs on through "\n" escapes (a repr) and "%0A"-style ones (a URL).
_PEM = re.compile(
    r"-----BEGIN[^-\r\n]{0,60}-----(?:\\[rn]|[A-Za-z0-9+/=%\s])*(?:-----END[^-\r\n]{0,60}-----(?:\\[rn])*)?"
)
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{64,}")


def _keylike(run: str) -> bool:
    return any(c.isupper() for c in run) and any(c.islower() for c in run) and any(c.isdigit() for c in run)


def redact(text: str) -> str:
    """`text` with every PEM block and key-like base64 run replaced by REDACTED."""
    text = _PEM.sub(REDACTED, text)
    return _BASE64_RUN.sub(lambda run: REDACTED if _keylike(run[0]) else run[0], text)


def looks_like_key(value: object) -> bool:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return isinstance(value, str) and redact(value) != value


class KeyFilter(SafeExceptionReporterFilter):
    """Django's filter, always on, that also hides by name and by value (see the module docstring)."""

    hidden_settings = re.compile("API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|PRIVATE|PEM", re.IGNORECASE)

    def is_active(self, request: HttpRequest | None) -> bool:
        return True

    def cleanse_setting(self, key: int | str, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)  # recurses into containers through this method
        return REDACTED if isinstance(cleansed, str | bytes) and looks_like_key(cleansed) else cleansed

    def get_post_parameters(self, request: HttpRequest | None) -> dict[str, Any]:
        try:
            return self.cleanse_fields(super().get_post_parameters(request))
        except Exception:  # a body that cannot be parsed (the error being reported, maybe) shows as nothing
            return {}

    def get_cleansed_multivaluedict(self, request: HttpRequest, multivaluedict: QueryDict) -> QueryDict:
        return self.cleanse_fields(super().get_cleansed_multivaluedict(request, multivaluedict))

    @overload
    def cleanse_fields(self, fields: QueryDict) -> QueryDict: ...
    @overload
    def cleanse_fields(self, fields: dict[str, Any]) -> dict[str, Any]: ...
    def cleanse_fields(self, fields: dict[str, Any]) -> dict[str, Any]:
        """A copy of a QueryDict (or dict) with sensitive or key-like values replaced."""
        if not fields:
            return fields
        cleansed = fields.copy()
        for name in fields:
            values = fields.getlist(name) if hasattr(fields, "getlist") else [fields[name]]
            if SENSITIVE_NAME.search(str(name)) or any(looks_like_key(value) for value in values):
                cleansed[name] = self.cleansed_substitute
        return cleansed

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> ItemsView[str, Any]:
        return {
            name: self._frame_value(name, value)
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        }.items()

    def _frame_value(self, name: str, value: Any) -> Any:
        if SENSITIVE_NAME.search(name):
            return self.cleansed_substitute
        try:
            text = repr(value)
        except Exception:  # the report shows the failing repr as Django would
            return value
        # The whole value: a list of a key's lines, say, holds short lines that look like nothing.
        return REDACTED if looks_like_key(text) else value


class KeyRedactingReporter(ExceptionReporter):
    """Django's reporter, with the query string filtered like the form, and whatever it produced passed
    through `redact` once more (pprint cuts a long value into one literal per line, which `redact` alone
    could not piece together again)."""

    def get_traceback_data(self) -> dict[str, Any]:
        data = super().get_traceback_data()
        if self.request is not None and isinstance(self.filter, KeyFilter):
            data["request_GET_items"] = self.filter.cleanse_fields(self.request.GET).items()
        return data

    # Still safe: `redact` only swaps runs of PEM and base64 characters for plain text.
    def get_traceback_html(self) -> SafeString:
        return mark_safe(redact(super().get_traceback_html()))  # noqa: S308

    def get_traceback_text(self) -> SafeString:
        return mark_safe(redact(super().get_traceback_text()))  # noqa: S308


class LogFilter(logging.Filter):
    """No key material in a log line; a refused request (4xx) in one line, without its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            message = record.getMessage()
        except Exception:  # the handler reports a broken format string itself
            return True
        if (clean := redact(message)) != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        # Extras too (django.db.backends' sql and params, with DEBUG on): a JSON formatter writes them out.
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and isinstance(value, str | list | tuple):
                setattr(record, name, _redacted(value))
        return True


_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _redacted(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return (list if isinstance(value, list) else tuple)(_redacted(item) for item in value)
    return value
