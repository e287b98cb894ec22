"""/healthz for load balancers and container probes: is the process up and its database reachable?

Once a watcher has run, it also reports the trip watch (watch_health): whether the watcher
polls, and per subaccount whether its last read worked, when one last did, and how many
recordings failed. /healthz/watcher is the trip watch's own probe: 503 unless it is running.
"""

import logging

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from ogpanel import budgets
from ogpanel.watch_health import watch_health

logger = logging.getLogger(__name__)


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        # The exception text can name hosts and users; the probe only needs to know it failed.
        logger.error("health check: database unavailable (%s)", type(exc).__name__)
        return JsonResponse({"status": "error", "database": "unavailable"}, status=503)
    answer: dict[str, object] = {"status": "ok", "database": "ok"}
    try:
        watch = watch_health()
    except DatabaseError as exc:
        logger.error("health check: trip watch state unreadable (%s)", type(exc).__name__)
        answer["watcher"] = {"status": "unknown"}
    else:
        if watch.last_poll_at is not None:  # a deployment that never ran a watcher has nothing to report
            answer["watcher"] = watch.as_json()
    answer["cache"] = _cache_section()
    # The watcher is a separate process: its trouble shows here but never fails the panel's own probe.
    return JsonResponse(answer)


@never_cache
@require_safe
def watcher(request: HttpRequest) -> JsonResponse:
    """200 while the trip watch polls; 503 when it is stale, stopped or never ran (for its container and monitors)."""
    try:
        watch = watch_health()
    except DatabaseError as exc:
        logger.error("watcher probe: trip watch state unreadable (%s)", type(exc).__name__)
        return JsonResponse({"status": "unknown"}, status=503)
    return JsonResponse(watch.as_json(), status=200 if watch.state == "running" else 503)


def _cache_section() -> dict:
    """The shared cache (Redis): down, the panel goes on with local budgets, so it reports but never fails the probe."""
    return budgets.cache_health()
