"""/metrics for Prometheus: from the addresses in OGPANEL_METRICS_ALLOWED_ADDRESSES, or with the bearer token."""

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from ogpanel import metrics as series

logger = logging.getLogger(__name__)


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    # The client address as RequestIdMiddleware worked it out: past trusted proxies only.
    address = getattr(request, "client_ip", request.META.get("REMOTE_ADDR", ""))
    if not series.access_allowed(
        address,
        request.headers.get("Authorization", ""),
        allowed=settings.OGPANEL_METRICS_ALLOWED_ADDRESSES,
        token=settings.OGPANEL_METRICS_TOKEN,
    ):
        logger.warning("metrics: refused a scrape from %s", address)
        return HttpResponse("metrics: not allowed from this address\n", status=403, content_type="text/plain")
    return HttpResponse(series.render(database=True), content_type=CONTENT_TYPE_LATEST)
