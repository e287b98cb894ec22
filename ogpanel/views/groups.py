"""Order groups: the dashboard across subaccounts, one group's page, its operations (the kill switch: kill_switch.py).

Every operation works twice: as an htmx request (the confirmation or form opens in the page's
#action-panel, and success answers with an empty panel plus HX-Trigger events that flash a
message and make the table or group panel reload itself) and as a plain form post that
redirects. Input is validated before anything is sent; exchange failures come back in place.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect, trigger_client_event

from ogpanel import alerts, budgets, live, permissions, selectors, services
from ogpanel import dashboard as dashboard_parts
from ogpanel.exchange import CredentialUnusable
from ogpanel.forms import DashboardFilterForm, GroupActionForm, GroupCreateForm, GroupLimitForm
from ogpanel.kalshi import (
    BadRequest,
    InvalidInput,
    KalshiError,
    NotFound,
    OrderGroup,
    RateLimited,
    validate_order_group_id,
)
from ogpanel.kalshi.deadline import deadline, remaining
from ogpanel.middleware import current_path
from ogpanel.models import Subaccount
from ogpanel.permissions import Action
from ogpanel.views import common, four_eyes
from ogpanel.watch_health import watch_health

# Sent with every successful change; the dashboard table and the group panel reload on it.
GROUPS_CHANGED = "ogpanel:groups-changed"

# What a failed subaccount listing is called on the dashboard, by the client's error class.
ERROR_WORDS = {
    "Unauthorized": "unauthorized",
    "ClockSkew": "clock skew",
    "Forbidden": "forbidden",
    "Unreachable": "unreachable",
    "Timeout": "unreachable (timed out)",
    "RateLimited": "rate limited",
    "ServerError": "exchange error",
    "MalformedResponse": "unexpected answer",
    "BadRequest": "refused",
    "NotFound": "not found",
    "CredentialUnusable": "API key unusable",
    "Rejected": "refused",
    "Pending": "still being read",
}


def _status_for(exc: KalshiError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, (BadRequest, InvalidInput)):
        return 400
    if isinstance(exc, RateLimited):
        return 429
    if isinstance(exc, CredentialUnusable):
        return 409
    return 502


def _target(request: HttpRequest, action: Action, subaccount: int, group_id: str) -> Subaccount | HttpResponse:
    """The group's subaccount, or a 404 before any upstream call (bad id, not configured, out of scope)."""
    try:
        validate_order_group_id(group_id)
    except InvalidInput:
        return common.error_response(request, "Not found: that is not an order group id.", status=404)
    sub = selectors.subaccount_for(request.user, subaccount)
    if sub is None:
        return permissions.deny(request, action, {"subaccount": subaccount, "order_group_id": group_id}, status=404)
    return sub


def _changed(request: HttpRequest, message: str, *, next_url: str) -> HttpResponse:
    """Success: htmx gets an empty action panel and the change events; a plain post redirects."""
    return common.done(request, trigger_client_event(HttpResponse(""), GROUPS_CHANGED), message, next_url=next_url)


# --- dashboard and detail ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    listing: selectors.Listing
    group: OrderGroup
    can_reset: bool
    can_trigger: bool

    @property
    def html(self) -> str:
        return _row_html(self.listing.subaccount, self.listing.label, self.group, self.can_reset, self.can_trigger)


@lru_cache(maxsize=4096)
def _row_html(subaccount: int, label: str, group: OrderGroup, can_reset: bool, can_trigger: bool) -> str:
    """One dashboard row, rendered once per process for as long as the group stays as it is.

    Every poll sends every row again, and through the template engine 330 rows cost ~35 ms of CPU,
    most of a poll; the rows themselves rarely change between polls.
    """
    context = {
        "row": {"listing": {"subaccount": subaccount, "label": label}, "group": group},
        "can": {"reset": can_reset, "trigger": can_trigger},
    }
    return render_to_string("ogpanel/dashboard.html#group_row", context)


@login_required
@require_GET
@permissions.require(Action.VIEW)
def dashboard(request: HttpRequest) -> HttpResponse:
    subaccounts = selectors.subaccounts_for(request.user)
    numbers = [sub.number for sub in subaccounts]
    filters = DashboardFilterForm(request.GET, subaccounts=subaccounts)
    watch = watch_health()
    context = {
        # Taken before anything is read: a change while this renders shows in the next check.
        "stamp": live.stamp(numbers, watch=watch),
        "live_seconds": settings.OGPANEL_LIVE_SECONDS,
        "filters": filters,
        "updated_at": datetime.now(UTC),
        "oob": common.wants_fragment(request),
        "watch": watch,
        "trip_minutes": settings.OGPANEL_TRIP_BANNER_MINUTES,
        "can_act": permissions.can(request.user, Action.RESET) or permissions.can(request.user, Action.TRIGGER),
    }
    if not filters.is_valid():
        context.update(listings=[], rows=[], refresh_url=reverse("dashboard"))
        return common.render_page(request, "ogpanel/dashboard.html", context, fragment="table", status=400)
    number, state = filters.cleaned_data["subaccount"], filters.cleaned_data["state"]
    # Every subaccount is listed, filtered or not: the tiles show the whole book (the reads are shared).
    # A poll never waits on a re-read, except of a listing older than a change recorded since.
    floors = live.listing_floors(numbers)
    listings = selectors.listings(subaccounts, stale_ok=True, newer_than=floors)
    can_reset, can_trigger = (permissions.can(request.user, action) for action in (Action.RESET, Action.TRIGGER))
    shown = [listing for listing in listings if number is None or listing.subaccount == number]
    rows = dashboard_parts.rows_in_order(
        (
            _Row(listing, group, can_reset, can_trigger)
            for listing in shown
            for group in listing.groups
            if not state or group.triggered == (state == "triggered")
        ),
        key=lambda row: (row.listing.subaccount, row.group),
    )
    query = urlencode({k: v for k, v in request.GET.items() if k in filters.fields and v})
    statuses = [
        (listing, ERROR_WORDS.get(listing.error_kind, "error"), watch.subaccounts.get(listing.subaccount))
        for listing in shown
    ]
    context.update(
        listings=shown,
        book_triggered=sum(listing.triggered_count for listing in listings),
        rows=rows,
        statuses=[(*status, dashboard_parts.watch_is_stale(status[2])) for status in statuses],
        failing=[(listing, words) for listing, words, _ in statuses if not listing.ok],
        groups_total=sum(len(listing.groups) for listing in shown),
        triggered_total=sum(listing.triggered_count for listing in shown),
        tiles=dashboard_parts.tiles(request.user, listings, watch, current=number),
        trips=dashboard_parts.shown_trips(alerts.recent_trips(numbers), listings),
        chart=dashboard_parts.trip_chart(numbers),
        filtered=bool(query),
        refresh_url=reverse("dashboard") + (f"?{query}" if query else ""),
        cache_degraded=budgets.degraded(),  # after the listings: they are what finds the cache down
    )
    return common.render_page(request, "ogpanel/dashboard.html", context, fragment="table")


@login_required
@require_GET
@permissions.require(Action.VIEW)
def group_detail(request: HttpRequest, subaccount: int, group_id: str) -> HttpResponse:
    target = _target(request, Action.VIEW, subaccount, group_id)
    if isinstance(target, HttpResponse):
        return target
    try:
        group = selectors.order_group_detail(target, group_id)
    except KalshiError as exc:
        return common.error_response(request, exc.operator_message, status=_status_for(exc))
    context = {"subaccount": target, "group": group}
    return common.render_page(request, "ogpanel/group_detail.html", context, fragment="facts")


def _with_current_state(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    """A confirmation or form shows the group as it is now; if that read fails it says so and still offers the form."""
    try:
        context["group"] = selectors.order_group_detail(context["subaccount"], context["group_id"])
    except NotFound as exc:
        return common.error_response(request, exc.operator_message, status=404)
    except KalshiError as exc:
        context["problem"] = exc.operator_message
    return common.render_page(request, template, context, fragment="panel")


# --- reset, trigger, delete: a confirmation with a reason, then the change -----------------------


@dataclass(frozen=True)
class _Operation:
    title: str
    effect: str
    button: str
    done: str
    run: Callable[..., None]


OPERATIONS: dict[Action, _Operation] = {
    Action.TRIGGER: _Operation(
        title="Trigger",
        effect="The exchange cancels every resting order in this group at once and rejects new orders "
        "naming it until someone resets the group.",
        button="Trigger group — cancels all its orders",
        done="Triggered",
        run=services.ordergroup_trigger,
    ),
    Action.RESET: _Operation(
        title="Reset",
        effect="The exchange clears the trigger and zeroes the group's rolling 15-second volume, so "
        "orders naming the group are accepted again.",
        button="Reset group — accepts new orders again",
        done="Reset",
        run=services.ordergroup_reset,
    ),
    Action.DELETE: _Operation(
        title="Delete",
        effect="The exchange cancels every resting order in this group and removes the group. This "
        "cannot be undone: no order can name this group again.",
        button="Delete group — cancels its orders and removes it",
        done="Deleted",
        run=services.ordergroup_delete,
    ),
}


def _confirmed(request: HttpRequest, action: Action, subaccount: int, group_id: str) -> HttpResponse:
    target = _target(request, action, subaccount, group_id)
    if isinstance(target, HttpResponse):
        return target
    operation = OPERATIONS[action]
    detail_url = reverse("group_detail", args=[subaccount, group_id])
    form = GroupActionForm(request.POST if request.method == "POST" else None)
    context = {
        "operation": operation,
        "subaccount": target,
        "group_id": group_id,
        "form": form,
        "in_place": common.wants_fragment(request),
        "back_url": detail_url,
    }
    template = "ogpanel/group_confirm.html"
    if request.method == "GET":
        return _with_current_state(request, template, context)
    if not form.is_valid():
        return common.render_page(request, template, context, fragment="panel", status=400)
    held = four_eyes.hold_group_action(request, action, target, group_id, form.cleaned_data["reason"])
    if held is not None:
        return held
    try:
        operation.run(
            actor=common.actor(request), subaccount=target, order_group_id=group_id, reason=form.cleaned_data["reason"]
        )
    except KalshiError as exc:
        form.add_error(None, exc.operator_message)
        return common.render_page(request, template, context, fragment="panel", status=_status_for(exc))
    message = f"{operation.done} order group {group_id} on subaccount {subaccount}."
    if action is Action.DELETE:
        current = current_path(request) if common.wants_fragment(request) else None  # None if malformed
        if current and current.startswith(detail_url):
            # Deleted from its own page, which no longer exists: go to the dashboard.
            messages.success(request, message)
            return HttpResponseClientRedirect(reverse("dashboard"))
        return _changed(request, message, next_url=reverse("dashboard"))
    return _changed(request, message, next_url=detail_url)


@login_required
@require_http_methods(["GET", "POST"])
@permissions.require(Action.TRIGGER)
def group_trigger(request: HttpRequest, subaccount: int, group_id: str) -> HttpResponse:
    return _confirmed(request, Action.TRIGGER, subaccount, group_id)


@login_required
@require_http_methods(["GET", "POST"])
@permissions.require(Action.RESET)
def group_reset(request: HttpRequest, subaccount: int, group_id: str) -> HttpResponse:
    return _confirmed(request, Action.RESET, subaccount, group_id)


@login_required
@require_http_methods(["GET", "POST"])
@permissions.require(Action.DELETE)
def group_delete(request: HttpRequest, subaccount: int, group_id: str) -> HttpResponse:
    return _confirmed(request, Action.DELETE, subaccount, group_id)


# --- create and limit ----------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
@permissions.require(Action.CREATE)
def group_create(request: HttpRequest) -> HttpResponse:
    form = GroupCreateForm(
        request.POST if request.method == "POST" else None, subaccounts=selectors.subaccounts_for(request.user)
    )
    context = {"form": form, "in_place": common.wants_fragment(request)}
    template = "ogpanel/group_create.html"
    if request.method == "GET":
        return common.render_page(request, template, context, fragment="panel")
    if refused := permissions.refuse_out_of_scope(request, Action.CREATE, request.POST.get("subaccount")):
        return refused
    if not form.is_valid():
        return common.render_page(request, template, context, fragment="panel", status=400)
    target, limit = form.cleaned_data["subaccount"], form.cleaned_data["contracts_limit"]
    held = four_eyes.hold_create(
        request, target, limit, form.cleaned_data["exchange_index"], form.cleaned_data["reason"]
    )
    if held is not None:
        return held
    try:
        created = services.ordergroup_create(
            actor=common.actor(request),
            subaccount=target,
            contracts_limit=limit,
            exchange_index=form.cleaned_data["exchange_index"],
            reason=form.cleaned_data["reason"],
        )
    except KalshiError as exc:
        form.add_error(None, exc.operator_message)
        return common.render_page(request, template, context, fragment="panel", status=_status_for(exc))
    message = f"Created order group {created.order_group_id} on subaccount {target.number} with a limit of {limit}."
    return _changed(request, message, next_url=reverse("group_detail", args=[target.number, created.order_group_id]))


def _previous_limit(subaccount: Subaccount, group_id: str) -> int | None:
    """The limit just before a change, for the audit record; None when that read fails.

    A failed read does not stop the change: a risk limit must stay settable while reads fail,
    and the change's attempt and result are recorded either way. A missing group stops it. The
    read may take half of what the request has left, so the change still goes out while reads hang.
    """
    left = remaining()
    try:
        with deadline((settings.OGPANEL_CONNECT_TIMEOUT + settings.OGPANEL_READ_TIMEOUT if left is None else left) / 2):
            return selectors.order_group_detail(subaccount, group_id).contracts_limit
    except NotFound:
        raise
    except KalshiError:
        return None


@login_required
@require_http_methods(["GET", "POST"])
@permissions.require(Action.UPDATE_LIMIT)
def group_limit(request: HttpRequest, subaccount: int, group_id: str) -> HttpResponse:
    target = _target(request, Action.UPDATE_LIMIT, subaccount, group_id)
    if isinstance(target, HttpResponse):
        return target
    detail_url = reverse("group_detail", args=[subaccount, group_id])
    form = GroupLimitForm(request.POST if request.method == "POST" else None)
    context = {
        "subaccount": target,
        "group_id": group_id,
        "form": form,
        "in_place": common.wants_fragment(request),
        "back_url": detail_url,
    }
    template = "ogpanel/group_limit.html"
    if request.method == "GET":
        return _with_current_state(request, template, context)
    if not form.is_valid():
        return common.render_page(request, template, context, fragment="panel", status=400)
    limit = form.cleaned_data["contracts_limit"]
    try:
        # The read of the current limit and the change share one budget, not one timeout each.
        with deadline(settings.OGPANEL_CONNECT_TIMEOUT + settings.OGPANEL_READ_TIMEOUT):
            previous = _previous_limit(target, group_id)
            held = four_eyes.hold_limit(request, target, group_id, limit, previous, form.cleaned_data["reason"])
            if held is not None:
                return held
            services.ordergroup_update_limit(
                actor=common.actor(request),
                subaccount=target,
                order_group_id=group_id,
                contracts_limit=limit,
                previous_limit=previous,
                reason=form.cleaned_data["reason"],
            )
    except KalshiError as exc:
        form.add_error(None, exc.operator_message)
        return common.render_page(request, template, context, fragment="panel", status=_status_for(exc))
    was = "" if previous is None else f" (was {previous})"
    message = f"Set the limit of order group {group_id} on subaccount {subaccount} to {limit}{was}."
    return _changed(request, message, next_url=detail_url)
