"""The four-eyes gate in the panel's views: each view asks one `hold_*` function before it acts.

A `hold_*` function answers None when the action may run now: the policy does not name it, or it
only tightens (trigger, kill switch trigger, lowering a limit never wait). Otherwise it answers
for the view: the request filed (a redirect to its page, HX-Redirect for htmx), a limit above
the subaccount's ceiling refused with the ceiling named (400, nothing sent), or — when nobody
else could approve — a 409 saying so, rather than a request nobody can decide.

    if (held := four_eyes.hold_group_action(request, action, target, group_id, reason)) is not None:
        return held
"""

from collections.abc import Iterable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.debug import sensitive_variables
from django_htmx.http import HttpResponseClientRedirect

from ogpanel import approvals, policy
from ogpanel.kalshi import load_private_key, public_key_fingerprint
from ogpanel.models import ApprovalRequest, Credential, Subaccount
from ogpanel.permissions import MIN_ROLE, Action
from ogpanel.views import common

REASON_NEEDED = "Give a reason: the second person reads it before approving."
GROUP_KINDS = {Action.RESET: "reset", Action.DELETE: "delete"}  # trigger is not here: tightening never waits


def _phrase(subaccounts: list[int]) -> str:
    if len(subaccounts) > settings.OGPANEL_MAX_SUBACCOUNT:
        return "every subaccount"
    return f"subaccount{'s' if len(subaccounts) > 1 else ''} {', '.join(map(str, subaccounts))}"


def nobody_message(kind: str, subaccounts: list[int]) -> str:
    """What the panel says instead of offering a request that nobody could approve."""
    role = MIN_ROLE[approvals.KINDS[kind].action].label
    scope = f" with {_phrase(subaccounts)} in scope" if subaccounts else ""
    return (
        "This needs a second person's approval under the policy, and nobody else may give it: it takes "
        f"another active user with the {role} role or higher{scope}. Ask an admin to add one."
    )


def _filed(request: HttpRequest, req: ApprovalRequest) -> HttpResponse:
    url = reverse("request_detail", args=[req.pk])
    messages.success(
        request,
        f"Filed request #{req.pk}: {approvals.what(req)}. It runs when a second person approves it "
        f"(before {req.expires_at:%H:%M} UTC).",
    )
    return HttpResponseClientRedirect(url) if common.wants_fragment(request) else redirect(url)


@sensitive_variables("secret")
def _hold(
    request: HttpRequest,
    kind: str,
    *,
    subaccount: int | None = None,
    subaccounts: Iterable[int] | None = None,
    order_group_id: str = "",
    params: dict | None = None,
    reason: str | None = None,
    secret: bytes = b"",
    required: bool | None = None,
) -> HttpResponse | None:
    """File a request for `kind` if a second person must approve it: `required`, or (None) as the policy says."""
    numbers = sorted(set(subaccounts if subaccounts is not None else [] if subaccount is None else [subaccount]))
    if required is None:
        required = policy.needs_second_person(approvals.KINDS[kind].four_eyes, numbers)
    if not required:
        return None
    user = request.user
    if not user.is_authenticated:  # (never: the views asking are behind permissions.require)
        return redirect_to_login(request.get_full_path())
    if not approvals.approvers(kind, numbers, user):
        return common.error_response(request, nobody_message(kind, numbers), status=409)
    reason = (request.POST.get("reason", "") if reason is None else reason).strip()
    if not reason:
        return common.error_response(request, REASON_NEEDED, status=400)
    req = approvals.request_file(
        actor=common.actor(request),
        user=user,
        kind=kind,
        reason=reason[:500],
        subaccount=subaccount,
        subaccounts=numbers,
        order_group_id=order_group_id,
        params=params,
        secret=secret,
    )
    return _filed(request, req)


def hold_group_action(
    request: HttpRequest, action: Action, subaccount: Subaccount, order_group_id: str, reason: str
) -> HttpResponse | None:
    """Reset and delete of one group; a trigger always runs at once."""
    kind = GROUP_KINDS.get(action)
    if kind is None:
        return None
    return _hold(request, kind, subaccount=subaccount.number, order_group_id=order_group_id, reason=reason)


def hold_limit(
    request: HttpRequest, subaccount: Subaccount, order_group_id: str, limit: int, previous: int | None, reason: str
) -> HttpResponse | None:
    """A new limit: above the ceiling refused (or held, if the policy allows it with approval); raising held
    when the policy says so; lowering never. `previous` None (the read failed) counts as raising."""
    rules = policy.rules_for(subaccount.number)
    verdict = policy.ceiling_verdict(rules, limit, previous)
    if verdict == "refuse":
        return common.error_response(request, policy.ceiling_message(subaccount.number, rules, limit), status=400)
    if previous is not None and limit <= previous:
        return None
    return _hold(
        request,
        "update_limit",
        subaccount=subaccount.number,
        order_group_id=order_group_id,
        params={"contracts_limit": limit, "previous_limit": previous},
        reason=reason,
        required=True if verdict == "approve" else None,
    )


def hold_create(
    request: HttpRequest, subaccount: Subaccount, limit: int, exchange_index: int, reason: str | None = None
) -> HttpResponse | None:
    """A new group's limit above the ceiling: refused, or held when the policy allows it with approval."""
    rules = policy.rules_for(subaccount.number)
    verdict = policy.ceiling_verdict(rules, limit, None)
    if verdict == "refuse":
        return common.error_response(request, policy.ceiling_message(subaccount.number, rules, limit), status=400)
    if verdict == "ok":
        return None
    params = {"contracts_limit": limit, "exchange_index": exchange_index}
    return _hold(request, "create", subaccount=subaccount.number, params=params, reason=reason, required=True)


def hold_kill_switch_reset(request: HttpRequest, subaccounts: list[Subaccount], reason: str) -> HttpResponse | None:
    """The kill switch's reset sweep (its trigger never waits)."""
    numbers = [sub.number for sub in subaccounts]
    one = numbers[0] if len(numbers) == 1 else None
    return _hold(request, "kill_switch_reset", subaccount=one, subaccounts=numbers, reason=reason)


@sensitive_variables()
def hold_credential_create(request: HttpRequest, data: dict) -> HttpResponse | None:
    """A new credential (`data`: the form's cleaned_data); it touches no subaccount yet: the default policy."""
    pem = data["private_key_pem"]
    params = {
        "label": data["label"],
        "environment": data["environment"],
        "key_id": data["key_id"],
        "custom_base_url": data["custom_base_url"],
        "account": data.get("account", ""),
        "tier": data.get("tier", ""),
        "fingerprint": public_key_fingerprint(load_private_key(pem)),
    }
    return _hold(request, "credential_create", subaccounts=[], params=params, secret=pem)


def _mapped(credential: Credential) -> list[int]:
    return sorted(credential.subaccounts.values_list("number", flat=True))


@sensitive_variables()
def hold_credential_rotate(
    request: HttpRequest, credential: Credential, key_id: str, private_key_pem: bytes
) -> HttpResponse | None:
    params = {
        "credential": credential.pk,
        "label": credential.label,
        "key_id": key_id,
        "fingerprint": public_key_fingerprint(load_private_key(private_key_pem)),
    }
    return _hold(request, "credential_rotate", subaccounts=_mapped(credential), params=params, secret=private_key_pem)


def hold_credential_remove(request: HttpRequest, credential: Credential) -> HttpResponse | None:
    params = {"credential": credential.pk, "label": credential.label}
    return _hold(request, "credential_remove", subaccounts=_mapped(credential), params=params)


def hold_mapping(request: HttpRequest, data: dict) -> HttpResponse | None:
    """One row of the mapping page (`data`: SubaccountForm's cleaned_data)."""
    if data["op"] == "assign":
        params = {"credential": data["credential"].pk, "credential_label": data["credential"].label}
        params["label"] = data["label"]
        return _hold(request, "subaccount_assign", subaccount=data["number"], params=params)
    return _hold(request, "subaccount_unassign", subaccount=data["number"])


def hold_policy(
    request: HttpRequest,
    subaccount: int | None,
    rules: policy.Rules,
    *,
    follows_default: bool,
    base_version: int,
    reason: str,
) -> HttpResponse | None:
    """A policy change that loosens anything, where the policy being changed names "policy"; tightening never waits.

    The default policy touches every subaccount: only someone with all of them in scope may approve it.
    """
    before = policy.rules_for(subaccount)
    after = policy.rules_for(None) if follows_default else rules
    loosens = policy.loosenings(before, after)
    if not loosens:
        return None
    everything = list(range(settings.OGPANEL_MAX_SUBACCOUNT + 1))
    params = {
        "rules": rules.as_dict(),
        "follows_default": follows_default,
        "base_version": base_version,
        "loosens": loosens,
    }
    return _hold(
        request,
        "policy_change",
        subaccount=subaccount,
        subaccounts=everything if subaccount is None else [subaccount],
        params=params,
        reason=reason,
        required="policy" in before.four_eyes,
    )
