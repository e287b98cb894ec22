"""What every view shares: rendering a page or its htmx fragment, and compact error answers."""

from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django_htmx.http import trigger_client_event
from django_htmx.middleware import HtmxDetails

from ogpanel.audit import Actor


class SignedInRequest(HttpRequest):
    """The request of a view behind @login_required (django-stubs' way to say its user is signed in)."""

    user: User


def wants_fragment(request: HttpRequest) -> bool:
    """A fragment for htmx's own requests; the full page for boosts, history restores and plain requests."""
    htmx: HtmxDetails | None = getattr(request, "htmx", None)
    return bool(htmx and not htmx.boosted and not htmx.history_restore_request)


def render_page(
    request: HttpRequest, template: str, context: dict, *, fragment: str, status: int = 200
) -> HttpResponse:
    """Render `template`, or only its `{% partialdef fragment %}` for an htmx request."""
    name = f"{template}#{fragment}" if wants_fragment(request) else template
    response = render(request, name, context, status=status)
    response["Vary"] = "HX-Request"
    return response


def flash(response: HttpResponse, message: str, level: str = "success") -> HttpResponse:
    """Tell the page's flash area (base.html) to show a message after an htmx swap."""
    return trigger_client_event(response, "ogpanel:flash", {"message": message, "level": level})


def error_response(request: HttpRequest, message: str, *, status: int) -> HttpResponse:
    """A compact message: in place for htmx (base.html lets 4xx/5xx swap), a small page otherwise."""
    template = "ogpanel/error.html"
    if not wants_fragment(request):
        return render(request, template, {"message": message, "status": status}, status=status)
    response = render(request, f"{template}#message", {"message": message, "status": status}, status=status)
    response["HX-Retarget"] = "#flash"
    response["HX-Reswap"] = "innerHTML"
    return response


def done(request: HttpRequest, response: HttpResponse | None, message: str, *, next_url: str) -> HttpResponse:
    """After a successful change: htmx gets the updated fragment plus a flash; a plain post redirects."""
    if wants_fragment(request) and response is not None:
        return flash(response, message)
    from django.contrib import messages

    messages.success(request, message)
    return redirect(next_url)


def actor(request: HttpRequest) -> Actor:
    return Actor.from_request(request)
