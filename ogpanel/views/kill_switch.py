"""The kill switch: a fresh preview of what it will hit, one press to trigger, a live view of the sweep.

Tightening risk is fast and loosening is guarded. A trigger is the button on the preview (which
names its scope) and nothing else: no typed word, no reason required (it can be added afterwards
as a note), and no password even when the re-authentication window has passed (README: "Kill
switch"). A reset still wants a reason, the word RESET and, outside the window, the password.
Posting answers at once: the sweep runs in the background (jobs.py) and its page follows it.
"""

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import push_url, trigger_client_event

from ogpanel import jobs, permissions, selectors, sweep_progress, sweeps
from ogpanel.forms import KillSwitchForm, SweepNoteForm
from ogpanel.models import Subaccount, Sweep
from ogpanel.permissions import Action
from ogpanel.views import accounts, common, four_eyes
from ogpanel.views.groups import GROUPS_CHANGED

TEMPLATE = "ogpanel/kill_switch.html"
SWEEP_TEMPLATE = "ogpanel/kill_switch_sweep.html"
PREVIEW_WAIT_SECONDS = 2.0  # the preview waits this long for the exchange, then shows what it has


@dataclass(frozen=True)
class Preview:
    """What a trigger would hit, read fresh from the exchange."""

    listings: list[selectors.Listing]

    @property
    def groups(self) -> int:
        return sum(len(listing.groups) for listing in self.listings)

    @property
    def triggered(self) -> int:
        return sum(listing.triggered_count for listing in self.listings)

    @property
    def active(self) -> int:
        return self.groups - self.triggered

    @property
    def lines(self) -> list[tuple[selectors.Listing, int]]:
        return [(listing, len(listing.groups) - listing.triggered_count) for listing in self.listings]

    @property
    def unreadable(self) -> list[selectors.Listing]:
        return [listing for listing in self.listings if not listing.ok]

    @property
    def button(self) -> str:
        if self.unreadable:  # what it will hit is not known: name the scope only
            where = (
                f"subaccount {self.listings[0].subaccount}"
                if len(self.listings) == 1
                else (f"{len(self.listings)} subaccounts")
            )
            return f"Trigger every group on {where}"
        count = f"{self.groups} group{'s' if self.groups != 1 else ''}"
        if len(self.listings) == 1:
            return f"Trigger all {count} on subaccount {self.listings[0].subaccount}"
        return f"Trigger all {count} on {len(self.listings)} subaccounts"


def _scope(request: HttpRequest, subaccounts: list[Subaccount]) -> Subaccount | HttpResponse | None:
    """The one subaccount asked for in ?subaccount=, None for all, or the refusal (no upstream call)."""
    raw = request.GET.get("subaccount", "")
    if not raw:
        return None
    if refused := permissions.refuse_out_of_scope(request, Action.KILL_SWITCH, raw):
        return refused
    form = KillSwitchForm({"operation": KillSwitchForm.TRIGGER_ONE, "subaccount": raw}, subaccounts=subaccounts)
    if not form.is_valid():
        return common.error_response(
            request, " ".join(map(str, form.errors.get("subaccount", ["Bad subaccount."]))), status=400
        )
    return form.cleaned_data["targets"][0]


def _context(request: HttpRequest, subaccounts: list[Subaccount], form: KillSwitchForm, **extra: Any) -> dict:
    numbers = [sub.number for sub in subaccounts]
    return {
        "form": form,
        "subaccounts": subaccounts,
        "sweeps": sweep_progress.sweeps_for(numbers),
        "reauth_needed": accounts.reauth_needed(request),
        "preview": None,
        "scope": None,
        **extra,
    }


@sensitive_post_parameters("reauth_password", "reauth_otp")
@login_required
@require_http_methods(["GET", "POST"])
@permissions.require(Action.KILL_SWITCH)
def kill_switch(request: HttpRequest) -> HttpResponse:
    subaccounts = selectors.subaccounts_for(request.user)
    if request.method == "POST":
        return _start(request, subaccounts)
    scope = _scope(request, subaccounts)
    if isinstance(scope, HttpResponse):
        return scope
    targets = [scope] if scope else subaccounts
    # Read fresh, but never held up by a hanging exchange: the kill switch works without its preview.
    preview = Preview(selectors.listings(targets, fresh=True, wait=PREVIEW_WAIT_SECONDS)) if targets else None
    form = KillSwitchForm(subaccounts=subaccounts)
    context = _context(request, subaccounts, form, preview=preview, scope=scope)
    return common.render_page(request, TEMPLATE, context, fragment="console")


def _start(request: HttpRequest, subaccounts: list[Subaccount]) -> HttpResponse:
    form = KillSwitchForm(request.POST, subaccounts=subaccounts)
    context = _context(request, subaccounts, form)
    if refused := permissions.refuse_out_of_scope(request, Action.KILL_SWITCH, request.POST.get("subaccount")):
        return refused
    if not form.is_valid():
        return common.render_page(request, TEMPLATE, context, fragment="console", status=400)
    if not form.triggering and not accounts.confirm_identity(request, form):
        if not request.user.is_authenticated:  # signed out after too many wrong answers
            return redirect_to_login(request.get_full_path())
        context["reauth_needed"] = True
        return common.render_page(request, TEMPLATE, context, fragment="console", status=403)
    if not form.triggering:  # a reset loosens risk: the policy may make it wait for a second person
        held = four_eyes.hold_kill_switch_reset(request, form.cleaned_data["targets"], form.cleaned_data["reason"])
        if held is not None:
            return held
    started = jobs.kill_switch(
        actor=common.actor(request),
        subaccounts=form.cleaned_data["targets"],
        reason=form.cleaned_data["reason"],
        action=sweeps.TRIGGER if form.triggering else sweeps.RESET,
    )
    sweep = started.sweep or started.joined[0]
    message = f"Kill switch started (sweep {sweep.pk})."
    if started.joined:
        covered = ", ".join(str(other.pk) for other in started.joined)
        message = (
            f"Kill switch started (sweep {sweep.pk}); sweep {covered} already running covers the rest."
            if started.sweep
            else f"Joined the kill switch already running on these subaccounts (sweep {covered})."
        )
    url = reverse("kill_switch_sweep", args=[sweep.pk])
    if not common.wants_fragment(request):
        messages.success(request, message)
        return redirect(url)
    response = _progress_page(request, sweep, fragment="sweep")
    return common.flash(trigger_client_event(push_url(response, url), GROUPS_CHANGED), message)


def _visible_sweep(request: HttpRequest, pk: int, action: Action) -> tuple[Sweep, list[int]] | HttpResponse:
    """The sweep and the subaccounts of it this user may see; 404 if none (or no such sweep)."""
    sweep = Sweep.objects.filter(pk=pk).first()
    numbers = list(sweep.targets.values_list("subaccount", flat=True)) if sweep else []
    visible = permissions.visible(request.user, numbers)
    if sweep is None or not visible:
        return permissions.deny(request, action, {"sweep": pk}, status=404)
    return sweep, visible


def _progress_page(
    request: HttpRequest, sweep: Sweep, *, fragment: str, status: int = 200, **extra: Any
) -> HttpResponse:
    visible = permissions.visible(request.user, sweep.targets.values_list("subaccount", flat=True))
    context = {
        "progress": sweep_progress.sweep_progress(sweep, visible),
        "notes": sweep_progress.notes(sweep),
        "note_form": SweepNoteForm(),
        "refresh_ms": 1000,
        **extra,
    }
    return common.render_page(request, SWEEP_TEMPLATE, context, fragment=fragment, status=status)


@login_required
@require_GET
@permissions.require(Action.VIEW)
def kill_switch_sweep(request: HttpRequest, pk: int) -> HttpResponse:
    found = _visible_sweep(request, pk, Action.VIEW)
    if isinstance(found, HttpResponse):
        return found
    return _progress_page(request, found[0], fragment="progress")


@login_required
@require_POST
@permissions.require(Action.KILL_SWITCH)
def kill_switch_note(request: HttpRequest, pk: int) -> HttpResponse:
    found = _visible_sweep(request, pk, Action.KILL_SWITCH)
    if isinstance(found, HttpResponse):
        return found
    sweep = found[0]
    form = SweepNoteForm(request.POST)
    if not form.is_valid():
        return _progress_page(request, sweep, fragment="sweep", status=400, note_form=form)
    sweeps.sweep_annotate(actor=common.actor(request), sweep=sweep, note=form.cleaned_data["note"])
    message = f"Reason added to sweep {sweep.pk}."
    if not common.wants_fragment(request):
        messages.success(request, message)
        return redirect("kill_switch_sweep", pk=sweep.pk)
    return common.flash(_progress_page(request, sweep, fragment="sweep"), message)
