"""Maker-checker: an action the policy names waits for a second person, then runs with both names.

`request_file` records the request ("request_filed") and announces it on the alert channels; an
eligible second person (permissions.may_approve: never the requester, the role the action needs,
every subaccount it touches in scope) approves or rejects it; the requester may withdraw it; it
expires after OGPANEL_APPROVAL_MINUTES. Each decision is a conditional update of a pending,
unexpired row inside its audit event's append, so two approvers clicking at once run it once.

An approved action runs through services.py as the approver, with an Actor whose `approval`
puts "approval_request", "requested_by" and "approved_by" into the params of every audit event
it writes. What the action needs travels in the request's params; a private key (a credential
change) is kept encrypted with vault.py until the request is decided, then erased.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.urls import reverse
from django.views.decorators.debug import sensitive_variables

from ogpanel import audit, notices, policy, selectors, services, vault
from ogpanel.audit import Actor
from ogpanel.kalshi import KalshiError, NotFound
from ogpanel.models import ApprovalRequest, AuditEvent, Credential, Subaccount
from ogpanel.permissions import ROLE_NAMES, Action, may_approve

logger = logging.getLogger(__name__)

SYSTEM = Actor.system("approvals")
Outcome = AuditEvent.Outcome
Status = ApprovalRequest.Status
DECIDED = (Status.EXECUTED, Status.FAILED, Status.REJECTED, Status.EXPIRED, Status.CANCELLED)


class Refused(Exception):
    """The request cannot go on (no longer pending, expired, the world changed): `message` says why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _now() -> datetime:
    return datetime.now(UTC)


def _subaccount(req: ApprovalRequest) -> Subaccount:
    sub = Subaccount.objects.filter(number=req.subaccount).select_related("credential").first()
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


# --- what each kind of request runs --------------------------------------------------------------


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
        actor=actor, subaccount=sub, contracts_limit=limit, exchange_index=req.params.get("exchange_index", 0)
    )
    return f"Created order group {created.order_group_id} on subaccount {sub.number} with a limit of {limit}."


def _run_kill_switch_reset(req: ApprovalRequest, actor: Actor) -> str:
    targets = list(Subaccount.objects.filter(number__in=req.subaccounts).select_related("credential"))
    if not targets:
        raise Refused("None of these subaccounts is configured any more.")
    report = services.killswitch_reset(actor=actor, subaccounts=targets, reason=req.reason)
    return (
        f"Kill switch reset: {report.count('reset')} reset, {report.count('not triggered')} not triggered, "
        f"{report.failures} failed."
    )


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


# --- who may approve -------------------------------------------------------------------------------


def may_decide(user, req: ApprovalRequest) -> bool:
    """May this user approve (or reject) the request? The rule is permissions.may_approve."""
    return may_approve(
        user, requester_id=req.requested_by_id, action=KINDS[req.kind].action, subaccounts=req.subaccounts
    )


def approvers(kind: str, subaccounts: list[int], requester) -> list:
    """The active users who could approve such a request from `requester`: none means nobody could."""
    users = (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(groups__name__in=ROLE_NAMES))
        .exclude(pk=requester.pk)
        .distinct()
        .order_by("username")
    )
    action = KINDS[kind].action
    return [
        user for user in users if may_approve(user, requester_id=requester.pk, action=action, subaccounts=subaccounts)
    ]


# --- the life of a request ---------------------------------------------------------------------------


def _request_url(req: ApprovalRequest) -> str:
    public = settings.OGPANEL_PUBLIC_URL.rstrip("/")
    return public + reverse("request_detail", args=[req.pk]) if public else ""


def _announce(event: AuditEvent, req: ApprovalRequest) -> None:
    described = what(req)
    url = _request_url(req)
    lines = [
        f"{req.requested_by_username} asks a second person to approve: {described}.",
        f"Reason: {req.reason}",
        f"Expires {req.expires_at:%Y-%m-%d %H:%M:%S} UTC. Audit event #{event.seq}.",
    ]
    notices.enqueue(
        event,
        kind="request_pending",
        subaccount=req.subaccount,
        title=f"Request #{req.pk} waits for approval: {described}",
        text="\n".join([*lines, url] if url else lines),
        payload={
            "event": "approval_requested",
            "request": req.pk,
            "kind": req.kind,
            "what": described,
            "subaccounts": req.subaccounts,
            "requested_by": req.requested_by_username,
            "reason": req.reason,
            "expires_at": req.expires_at.isoformat(),
            "url": url or None,
        },
    )


@sensitive_variables("secret")
def request_file(
    *,
    actor: Actor,
    user,
    kind: str,
    reason: str,
    subaccount: int | None = None,
    subaccounts: list[int] | None = None,
    order_group_id: str = "",
    params: dict | None = None,
    secret: bytes = b"",
    now: datetime | None = None,
) -> ApprovalRequest:
    """File a request for `kind` (the caller checked the requester may do it and someone may approve it).

    The same request still pending from the same person is returned as it is, not filed twice.
    """
    now = now or _now()
    if subaccounts is None:
        subaccounts = [] if subaccount is None else [subaccount]
    params = params or {}
    same = ApprovalRequest.objects.filter(
        status=Status.PENDING,
        expires_at__gt=now,
        kind=kind,
        requested_by=user,
        subaccount=subaccount,
        order_group_id=order_group_id,
    )
    for existing in same:
        if existing.params == params and existing.subaccounts == sorted(set(subaccounts)) and not secret:
            return existing
    req = ApprovalRequest(
        kind=kind,
        subaccount=subaccount,
        subaccounts=sorted(set(subaccounts)),
        order_group_id=order_group_id,
        params=params,
        reason=reason,
        requested_by=user,
        requested_by_username=actor.username,
        requested_at=now,
        expires_at=now + timedelta(minutes=settings.OGPANEL_APPROVAL_MINUTES),
    )
    if secret:
        req.secret = vault.encrypt(secret, bound_to=str(req.uuid))

    def within(event: AuditEvent) -> None:
        req.filed_seq = event.seq
        req.save()
        _announce(event, req)

    audit.append(
        actor,
        action="request_filed",
        outcome=Outcome.SUCCEEDED,
        subaccount=subaccount,
        order_group_id=order_group_id,
        params={"request_uuid": str(req.uuid), "kind": kind, "what": what(req), "expires_at": req.expires_at},
        reason=reason,
        within=within,
    )
    return req


class _NotPending(Exception):
    pass


def _decide(
    req: ApprovalRequest, actor: Actor, action: str, status: str, *, user=None, note: str = "", now: datetime
) -> None:
    """Move a pending request to `status`, with its audit event, or raise Refused saying why it is not pending."""
    changes = {"status": status, "decided_at": now}
    if user is not None:
        changes.update(decided_by=user, decided_by_username=actor.username, note=note)
    if status != Status.APPROVED:
        changes["secret"] = ""
    pending = ApprovalRequest.objects.filter(pk=req.pk, status=Status.PENDING)
    pending = pending.filter(expires_at__lte=now) if status == Status.EXPIRED else pending.filter(expires_at__gt=now)

    def within(event: AuditEvent) -> None:
        if not pending.update(**changes):
            raise _NotPending

    try:
        audit.append(
            actor,
            action=action,
            outcome=Outcome.SUCCEEDED,
            subaccount=req.subaccount,
            order_group_id=req.order_group_id,
            params={"request": req.pk, "request_uuid": str(req.uuid), "kind": req.kind, "what": what(req)},
            reason=note,
            within=within,
        )
    except _NotPending:
        req.refresh_from_db()
        if status != Status.EXPIRED and req.status == Status.PENDING and req.expires_at <= now:
            _decide(req, SYSTEM, "request_expired", Status.EXPIRED, now=now)
            req.refresh_from_db()
            raise Refused(f"Request #{req.pk} expired at {req.expires_at:%H:%M:%S} UTC.") from None
        raise Refused(f"Request #{req.pk} is no longer pending: {req.get_status_display().lower()}.") from None
    req.refresh_from_db()


def request_approve(*, req: ApprovalRequest, user, actor: Actor, note: str = "", now: datetime | None = None) -> str:
    """Approve and run the request as `actor` (the caller checked may_decide); returns what happened, in words.

    Raises Refused when the request is no longer pending (decided, expired). Once approved,
    the action's own failure does not raise: the request is marked failed with the reason.
    """
    now = now or _now()
    _decide(req, actor, "request_approved", Status.APPROVED, user=user, note=note, now=now)
    approval = {"approval_request": req.pk, "requested_by": req.requested_by_username, "approved_by": actor.username}
    try:
        result, status = KINDS[req.kind].run(req, replace(actor, approval=approval)), Status.EXECUTED
    except Refused as exc:  # nothing was sent: say so in the log, as the services do for their calls
        result, status = exc.message, Status.FAILED
        audit.append(
            replace(actor, approval=approval),
            action=req.kind,
            outcome=Outcome.FAILED,
            subaccount=req.subaccount,
            order_group_id=req.order_group_id,
            error_code="refused",
            error=exc.message,
        )
    except KalshiError as exc:  # recorded by the service as failed already
        result, status = f"The action failed: {exc.operator_message}", Status.FAILED
    except Exception as exc:  # the request must not stay "running" for ever
        logger.exception("approved request #%s failed", req.pk)
        result, status = f"The action failed: internal error ({type(exc).__name__}).", Status.FAILED
    ApprovalRequest.objects.filter(pk=req.pk).update(status=status, result=result, secret="")
    req.refresh_from_db()
    return result


def request_reject(*, req: ApprovalRequest, user, actor: Actor, note: str = "", now: datetime | None = None) -> None:
    _decide(req, actor, "request_rejected", Status.REJECTED, user=user, note=note, now=now or _now())


def request_cancel(*, req: ApprovalRequest, user, actor: Actor, now: datetime | None = None) -> None:
    """The requester withdraws their own request."""
    _decide(req, actor, "request_cancelled", Status.CANCELLED, user=user, now=now or _now())


def expire_due(*, now: datetime | None = None) -> int:
    """Expire every pending request past its time (each with its "request_expired" event); returns how many."""
    now = now or _now()
    expired = 0
    for req in ApprovalRequest.objects.filter(status=Status.PENDING, expires_at__lte=now):
        try:
            _decide(req, SYSTEM, "request_expired", Status.EXPIRED, now=now)
        except Refused:  # decided meanwhile, or another process expired it first
            continue
        expired += 1
    return expired
