"""/live: the change stamp an open dashboard checks every OGPANEL_LIVE_SECONDS (ogpanel/live.py).

A few bytes of JSON from a few small queries; the page fetches its table only when the stamp
changed. Scoped like the dashboard: the stamp covers only the subaccounts the user may see.
"""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from ogpanel import live as live_parts
from ogpanel import permissions
from ogpanel.models import Subaccount
from ogpanel.permissions import Action


@login_required
@require_GET
@permissions.require(Action.VIEW)
def live(request: HttpRequest) -> JsonResponse:
    numbers = permissions.visible(request.user, Subaccount.objects.values_list("number", flat=True))
    response = JsonResponse({"stamp": live_parts.stamp(numbers)})
    response["Cache-Control"] = "no-store"
    return response
