"""Log records that say which request, and whose, they came from; JSON lines with OGPANEL_LOG_FORMAT=json.

RequestLogMiddleware (right after RequestIdMiddleware) keeps the request in a context variable
for as long as it is handled; RequestContextFilter, on the console handler, copies its id (the
one its audit events carry) and user name onto every record logged meanwhile, whichever logger
wrote it. Outside a request (the watcher, a management command) both are empty.

A worker thread started by a request does not inherit the variable: submit work with
`contextvars.copy_context().run` where its log lines should carry the request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.functional import SimpleLazyObject, empty

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

logger = logging.getLogger("ogpanel.request")

_request: ContextVar[HttpRequest | None] = ContextVar("ogpanel_request", default=None)

# The formatter for OGPANEL_LOG_FORMAT=json (python-json-logger): one object a line, with
# whatever a call passes in `extra` as fields of their own.
JSON_FORMATTER: dict[str, Any] = {
    "()": "pythonjsonlogger.json.JsonFormatter",
    "fmt": "%(levelname)s %(name)s %(message)s %(request_id)s %(user)s",
    "rename_fields": {"levelname": "level", "name": "logger"},
    "timestamp": "time",  # ISO 8601, UTC
    "json_ensure_ascii": False,
}


def _username(request: HttpRequest) -> str:
    """The signed-in user's name, if this request has already looked the user up.

    Never looks it up itself: that is a database query, and a log call must not make one (or
    fail when the database does).
    """
    user = request.__dict__.get("user")
    if user is None or (isinstance(user, SimpleLazyObject) and user._wrapped is empty):
        return ""
    return str(user.get_username()) if user.is_authenticated else ""


class RequestContextFilter(logging.Filter):
    """Adds `request_id` and `user` to every record (empty outside a request); lets every record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = _request.get()
        if not hasattr(record, "request_id"):
            record.request_id = getattr(request, "request_id", "") if request is not None else ""
        if not hasattr(record, "user"):
            record.user = _username(request) if request is not None else ""
        return True


class RequestLogMiddleware:
    """Makes the request known to RequestContextFilter; with OGPANEL_LOG_REQUESTS, one line per request.

    That line names the method, path (no query string: searches are the user's business), status,
    view and milliseconds taken.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _request.set(request)
        began = time.perf_counter()
        try:
            response = self.get_response(request)
            if settings.OGPANEL_LOG_REQUESTS:
                match = request.resolver_match
                logger.info(
                    "%s %s %s",
                    request.method,
                    request.path,
                    response.status_code,
                    extra={
                        "method": request.method,
                        "path": request.path,
                        "status": response.status_code,
                        "view": match.view_name if match is not None else "",
                        "duration_ms": round((time.perf_counter() - began) * 1000, 1),
                    },
                )
            return response
        finally:
            _request.reset(token)
