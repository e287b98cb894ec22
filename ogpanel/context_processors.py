from typing import Any

from django.conf import settings
from django.http import HttpRequest

from ogpanel import permissions


def panel(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"can": {}, "role": ""}
    return {
        "can": permissions.allowed_actions(user),
        "role": permissions.role_of(user).label,
        "refresh_seconds": settings.OGPANEL_REFRESH_SECONDS,
    }
