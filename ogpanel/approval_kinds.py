"""What each kind of request for a second person runs once approved, and how it reads in words.

Each runner calls the service that does the action directly, as the approver (whose Actor
carries both names into the audit events), after checking what may have changed since the
request was filed: the subaccount still configured, the credential still there, the ceiling.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.views.decorators.debug import sensitive_variables

from ogpanel import jobs, policy, selectors, services, sweeps, vault
from ogpanel.audit import Actor
from ogpanel.kalshi import KalshiError, NotFound
from ogpanel.models import ApprovalRequest, Credential, Subaccount
from ogpanel.permissions import Action


class Refused(Exception):
    """The request cannot go on (no longer pending, expired, the world changed): `message` says why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _subaccount(req: ApprovalRequest) -> Subaccount:
    number = req.subaccount
    sub = None if number is None else Subaccount.objects.filter(number=number).select_related("credential").first()
    if sub is None:
        raise Refused(f"Subaccount {req.subaccount} is no longer configured.")
    return sub


def _credential(req: ApprovalRequest) -> Credential:
    credential = Credential.objects.filter(pk=req.params.get("credential")).first()
    if credential is None:
        raise Refused(f"Credential \u201c{req.params.get('label')}\u201d no longer exists.")
    return credential


def _check_ceiling(sub: Subaccount, limit: int, previous: int | None) -> None:
    """At the time of running: a ceiling lowered (or made strict) since the request was filed still holds."""
    rules = policy.rules_for(sub.number)
    if policy.ceiling_verdict(rules, limit, previous) == "refuse":
        raise Refused(policy.ceiling_message(sub.number, rules, limit))


def _run_reset(req: ApprovalRequest, actor: Actor) -> str:
    services.ordergroup_reset(
        actor=actor, subaccount=_subaccount(req), order_group_id=req.order_group_id, reason=req.reason
    )
    return f"Reset order group {req.order_group_id} on subaccount {req.subaccount}."


def _run_delete(req: ApprovalRequest, actor: Actor) -> str:
    services.ordergroup_delete(
        actor=actor, subaccount=_subaccount(req), order_group_id=req.order_group_id, reason=req.reason
    )
    return f"Deleted order group {req.order_group_id} on subaccount {req.subaccount}."


def _run_update_limit(req: ApprovalRequest, actor: Actor) -> str:
    sub, limit = _subaccount(req), req.params["contracts_limit"]
    try:
        previous = selectors.order_group_detail(sub, req.order_group_id).contracts_limit
    except NotFound:
        raise
    except KalshiError:  # as the direct path: a limit stays settable while reads fail
        previous = None
    _check_ceiling(sub, limit, previous)
    services.ordergroup_update_limit(
        actor=actor,
        subaccount=sub,
        order_group_id=req.order_group_id,
        contracts_limit=limit,
        previous_limit=previous,
        reason=req.reason,
    )
    return f"Set the limit of order group {req.order_group_id} on subaccount {req.subaccount} to {limit}."


def _run_create(req: ApprovalRequest, actor: Actor) -> str:
    sub, limit = _subaccount(req), req.params["contracts_limit"]
    _check_ceiling(sub, limit, None)
    created = services.ordergroup_create(
        actor=actor,
        subaccount=sub,
        contracts_limit=limit,
        exchange_index=req.params.get("exchange_index", 0),
        reason=req.reason,
    )
    return f"Created order group {created.order_group_id} on subaccount {sub.number} with a limit of {limit}."


def _run_kill_switch_reset(req: ApprovalRequest, actor: Actor) -> str:
    targets = list(Subaccount.objects.filter(number__in=req.subaccounts).select_related("credential"))
    if not targets:
        raise Refused("None of these subaccounts is configured any more.")
    # The approved reset runs as the kill switch's own job does: recorded, then swept in the background.
    started = jobs.kill_switch(actor=actor, subaccounts=targets, reason=req.reason, action=sweeps.RESET)
    numbers = ", ".join(str(sweep.pk) for sweep in (started.sweep, *started.joined) if sweep is not None)
    return f"Kill switch reset started (sweep {numbers}); its page follows it to the end."


@sensitive_variables()
def _run_credential_create(req: ApprovalRequest, actor: Actor) -> str:
    params = req.params
    if Credential.objects.filter(label__iexact=params["label"]).exists():
        raise Refused(f"A credential labelled \u201c{params['label']}\u201d exists now.")
    credential = services.credential_create(
        actor=actor,
        label=params["label"],
        environment=params["environment"],
        key_id=params["key_id"],
        private_key_pem=vault.decrypt(req.secret, bound_to=str(req.uuid)),
        custom_base_url=params.get("custom_base_url", ""),
        account=params.get("account", ""),
        tier=params.get("tier", ""),
    )
    return f"Added credential \u201c{credential.label}\u201d (key {credential.fingerprint})."


@sensitive_variables()
def _run_credential_rotate(req: ApprovalRequest, actor: Actor) -> str:
    credential = services.credential_rotate(
        actor=actor,
        credential=_credential(req),
        key_id=req.params["key_id"],
        private_key_pem=vault.decrypt(req.secret, bound_to=str(req.uuid)),
    )
    return f"Rotated \u201c{credential.label}\u201d: now key {credential.fingerprint}."


def _run_credential_remove(req: ApprovalRequest, actor: Actor) -> str:
    credential = _credential(req)
    if sorted(credential.subaccounts.values_list("number", flat=True)) != req.subaccounts:
        raise Refused("The subaccounts using this credential changed since the request was filed.")
    services.credential_remove(actor=actor, credential=credential)
    return f"Removed credential \u201c{req.params['label']}\u201d."


def _run_subaccount_assign(req: ApprovalRequest, actor: Actor) -> str:
    credential = _credential(req)
    if req.subaccount is None:  # views.credentials files it with the subaccount to map
        raise Refused("The request names no subaccount to map.")
    services.subaccount_assign(actor=actor, number=req.subaccount, credential=credential, label=req.params["label"])
    return f"Subaccount {req.subaccount} now uses \u201c{credential.label}\u201d."


def _run_subaccount_unassign(req: ApprovalRequest, actor: Actor) -> str:
    services.subaccount_unassign(actor=actor, subaccount=_subaccount(req))
    return f"Subaccount {req.subaccount} is no longer mapped."


def _run_policy_change(req: ApprovalRequest, actor: Actor) -> str:
    try:
        version = policy.policy_set(
            actor=actor,
            subaccount=req.subaccount,
            rules=policy.Rules.from_dict(req.params["rules"]),
            follows_default=req.params["follows_default"],
            reason=req.reason,
            base_version=req.params["base_version"],
        )
    except policy.PolicyChanged:
        raise Refused("The policy changed since this request was filed; file the change again.") from None
    return f"Set {_policy_name(req.subaccount)} to version {version.version}."


def _policy_name(subaccount: int | None) -> str:
    return "the default policy" if subaccount is None else f"the policy of subaccount {subaccount}"


def _group_what(verb: str) -> Callable[[ApprovalRequest], str]:
    return lambda req: f"{verb} order group {req.order_group_id} on subaccount {req.subaccount}"


def _limit_what(req: ApprovalRequest) -> str:
    was = req.params.get("previous_limit")
    return (
        f"Raise the limit of order group {req.order_group_id} on subaccount {req.subaccount}"
        f"{'' if was is None else f' from {was:,}'} to {req.params['contracts_limit']:,}"
    )


def _subaccounts_phrase(numbers: list[int]) -> str:
    return f"subaccount{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}"


@dataclass(frozen=True)
class Kind:
    action: Action  # what the requester's role allowed, and what an approver's must allow
    four_eyes: str  # the policy's name for it (policy.FOUR_EYES)
    what: Callable[[ApprovalRequest], str]  # the action in words, for pages and alerts
    run: Callable[[ApprovalRequest, Actor], str]
    reauth: bool = False  # approving asks for the approver's password again, as doing it directly would


KINDS: dict[str, Kind] = {
    "reset": Kind(Action.RESET, "reset", _group_what("Reset"), _run_reset),
    "delete": Kind(Action.DELETE, "delete", _group_what("Delete"), _run_delete),
    "update_limit": Kind(Action.UPDATE_LIMIT, "raise_limit", _limit_what, _run_update_limit),
    "create": Kind(
        Action.CREATE,
        "",  # filed only for a limit above the ceiling, where the policy allows that with approval
        lambda req: (
            f"Create an order group on subaccount {req.subaccount} with a limit of "
            f"{req.params['contracts_limit']:,}, above the ceiling"
        ),
        _run_create,
    ),
    "kill_switch_reset": Kind(
        Action.KILL_SWITCH,
        "kill_switch_reset",
        lambda req: f"Reset every triggered order group on {_subaccounts_phrase(req.subaccounts)} (kill switch)",
        _run_kill_switch_reset,
        reauth=True,
    ),
    "credential_create": Kind(
        Action.MANAGE_CREDENTIALS,
        "credentials",
        lambda req: f"Add credential \u201c{req.params['label']}\u201d (key {req.params['fingerprint']})",
        _run_credential_create,
        reauth=True,
    ),
    "credential_rotate": Kind(
        Action.MANAGE_CREDENTIALS,
        "credentials",
        lambda req: f"Rotate credential \u201c{req.params['label']}\u201d to key {req.params['fingerprint']}",
        _run_credential_rotate,
        reauth=True,
    ),
    "credential_remove": Kind(
        Action.MANAGE_CREDENTIALS,
        "credentials",
        lambda req: (
            f"Remove credential \u201c{req.params['label']}\u201d"
            + (f" and unmap {_subaccounts_phrase(req.subaccounts)}" if req.subaccounts else "")
        ),
        _run_credential_remove,
        reauth=True,
    ),
    "subaccount_assign": Kind(
        Action.MANAGE_CREDENTIALS,
        "mapping",
        lambda req: f"Map subaccount {req.subaccount} to credential \u201c{req.params['credential_label']}\u201d",
        _run_subaccount_assign,
        reauth=True,
    ),
    "subaccount_unassign": Kind(
        Action.MANAGE_CREDENTIALS,
        "mapping",
        lambda req: f"Unmap subaccount {req.subaccount}",
        _run_subaccount_unassign,
        reauth=True,
    ),
    "policy_change": Kind(
        Action.MANAGE_POLICY,
        "policy",
        lambda req: f"Change {_policy_name(req.subaccount)}: " + "; ".join(req.params["loosens"]),
        _run_policy_change,
    ),
}


def what(req: ApprovalRequest) -> str:
    return KINDS[req.kind].what(req)
