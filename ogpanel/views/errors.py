"""What the panel answers when a request fails in a way no view handles: above all, the database gone.

Django calls `server_error` (urls.handler500) for any exception that reached it, from a view or a
middleware. An unreachable or failing database is an outage to be told in words (503), not a
bug: no traceback page, nothing that needs the database to render (no session, no user), and a
compact fragment for htmx so the message lands in the page's flash area.
"""

import logging
import sys

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)

DATABASE_DOWN = (
    "The panel's database is unavailable or not answering, so this page cannot be shown. "
    "Nothing was changed. Try again in a moment; if it persists, check the database."
)
INTERNAL_ERROR = "The panel had an internal error; it has been logged. Try again, or tell whoever runs the panel."


def server_error(request: HttpRequest) -> HttpResponse:
    problem = sys.exc_info()[1]
    if isinstance(problem, DatabaseError):
        # The error's text can name hosts and users; its class says enough here.
        logger.error("database unavailable while serving %s (%s)", request.path, type(problem).__name__)
        _leave_session_unread(request)
        return _page(request, 503, "Database unavailable", DATABASE_DOWN)
    return _page(request, 500, "Internal error", INTERNAL_ERROR)


def _leave_session_unread(request: HttpRequest) -> None:
    """Django's SessionMiddleware reads a session it could not load once more, to decide on its cookie
    (a second wait on the dead database), though it saves nothing for a 5xx: give it an empty one to
    read. The browser's cookie is left as it is, so the operator is still signed in afterwards."""
    session = getattr(request, "session", None)
    if session is not None and not hasattr(session, "_session_cache"):
        session._session_cache = {}


def _page(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    context = {"title": title, "message": message}
    if request.headers.get("HX-Request") == "true":
        response = HttpResponse(render_to_string("ogpanel/unavailable.html#message", context), status=status)
        response["HX-Retarget"] = "#flash"
        response["HX-Reswap"] = "innerHTML"
    else:
        response = HttpResponse(render_to_string("ogpanel/unavailable.html", context), status=status)
    if status == 503:
        response["Retry-After"] = "5"
    return response
