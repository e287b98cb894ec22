"""The Policy page: each subaccount's rules and current breaches; editing a policy; the policy file.

Everyone who may see order groups sees the policy of their subaccounts. Admins edit it; a change
that loosens anything waits for a second person when the policy being changed says so
(four_eyes.hold_policy), a tightening one is written at once.
"""

from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_safe

from ogpanel import breaches, permissions, policy, policy_file, selectors
from ogpanel.models import PolicyBreach
from ogpanel.permissions import Action, require
from ogpanel.policy_forms import PolicyForm
from ogpanel.views import common, four_eyes


@dataclass(frozen=True)
class _Row:
    number: int
    label: str
    configured: bool
    effective: policy.Effective
    found: list[breaches.Breach]  # what the groups as listed now break
    recorded: dict[tuple[str, str], PolicyBreach]  # open breaches the trip watch recorded, by Breach.key
    problem: str = ""  # why the groups could not be read


def _rows(user: permissions.AnyUser) -> list[_Row]:
    configured = {sub.number: sub for sub in selectors.subaccounts_for(user)}
    effective = policy.effective_many(permissions.visible(user, range(settings.OGPANEL_MAX_SUBACCOUNT + 1)))
    numbers = sorted(set(configured) | {n for n, one in effective.items() if one.source == "own"})
    checked = [
        configured[n]
        for n in numbers
        if n in configured and (effective[n].rules.ceiling is not None or effective[n].rules.require_active_group)
    ]
    listings = {listing.subaccount: listing for listing in selectors.listings(checked, stale_ok=True)}
    recorded: dict[int, dict] = {}
    for row in PolicyBreach.objects.filter(subaccount__in=numbers, cleared_at__isnull=True):
        recorded.setdefault(row.subaccount, {})[(row.kind, row.order_group_id)] = row
    rows = []
    for n in numbers:
        listing = listings.get(n)
        found = breaches.breaches_in(n, listing.groups, effective[n].rules) if listing and listing.ok else []
        sub = configured.get(n)
        rows.append(
            _Row(
                n,
                sub.label if sub else "",
                sub is not None,
                effective[n],
                found,
                recorded.get(n, {}),
                listing.error if listing and not listing.ok else "",
            )
        )
    return rows


def _may_edit_default(user: permissions.AnyUser) -> bool:
    return permissions.can(user, Action.MANAGE_POLICY) and permissions.in_scope_all(
        user, range(settings.OGPANEL_MAX_SUBACCOUNT + 1)
    )


@login_required
@require_safe
@require(Action.VIEW_POLICY)
def policy_page(request: HttpRequest) -> HttpResponse:
    context = {
        "default": policy.effective(None),
        "rows": _rows(request.user),
        "four_eyes_names": policy.FOUR_EYES,
        "may_edit_default": _may_edit_default(request.user),
        "minutes": settings.OGPANEL_APPROVAL_MINUTES,
    }
    return render(request, "ogpanel/policy.html", context)


@login_required
@require_safe
@require(Action.VIEW_POLICY)
def policy_export(request: HttpRequest) -> HttpResponse:
    """The policy file: the default and the subaccounts the user may see (manage.py policy_export: all of them)."""
    scope = permissions.scope_of(request.user)
    text = policy_file.dumps(policy_file.current(), subaccounts=None if scope is None else set(scope))
    response = HttpResponse(text, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="ogpanel-policy.json"'
    return response


@login_required
@require_http_methods(["GET", "POST"])
@require(Action.MANAGE_POLICY)
def policy_edit(request: HttpRequest, subaccount: int | None = None) -> HttpResponse:
    if subaccount is None and not _may_edit_default(request.user):
        return permissions.deny(request, Action.MANAGE_POLICY, {"policy": "default"})
    if subaccount is not None and (
        subaccount > settings.OGPANEL_MAX_SUBACCOUNT or not permissions.in_scope(request.user, subaccount)
    ):
        return permissions.deny(request, Action.MANAGE_POLICY, {"subaccount": subaccount}, status=404)
    now = policy.effective(subaccount)
    own = policy.latest(subaccount)
    base = own.version if own else 0
    follows = subaccount is not None and now.source != "own"
    start = now.rules if now.source != "none" else policy.SUGGESTED
    initial = PolicyForm.initial_for(start, follows_default=follows, base_version=base)
    form = PolicyForm(request.POST if request.method == "POST" else None, initial=initial, default=subaccount is None)
    context = {"form": form, "subaccount": subaccount, "effective": now, "version": own}
    template = "ogpanel/policy_edit.html"
    if request.method == "GET":
        return render(request, template, context)
    if not form.is_valid():
        return render(request, template, context, status=400)
    data = form.cleaned_data
    rules, follows_default = form.rules(), data.get("follows_default", False)
    if data["base_version"] != base:
        form.add_error(None, "The policy changed since this page was loaded: look at it again.")
        return render(request, template, context, status=409)
    if follows_default == follows and (follows or rules == now.rules) and now.source != "none":
        messages.info(request, "Nothing changed.")
        return redirect("policy")
    held = four_eyes.hold_policy(
        request, subaccount, rules, follows_default=follows_default, base_version=base, reason=data["reason"]
    )
    if held is not None:
        return held
    try:
        version = policy.policy_set(
            actor=common.actor(request),
            subaccount=subaccount,
            rules=rules,
            follows_default=follows_default,
            reason=data["reason"],
            base_version=base,
        )
    except policy.PolicyChanged:
        form.add_error(None, "The policy changed since this page was loaded: look at it again.")
        return render(request, template, context, status=409)
    where = "The default policy" if subaccount is None else f"The policy of subaccount {subaccount}"
    messages.success(request, f"{where} is now version {version.version}.")
    return redirect("policy")
