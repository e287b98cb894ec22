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
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import Q
from django.urls import reverse
from django.views.decorators.debug import sensitive_variables

from ogpanel import audit, notices, vault

# Re-exported: views and templates know the kinds and the refusal as approvals'.
from ogpanel.approval_kinds import KINDS as KINDS
from ogpanel.approval_kinds import Refused as Refused
from ogpanel.approval_kinds import what as what
from ogpanel.audit import Actor
from ogpanel.kalshi import KalshiError
from ogpanel.models import ApprovalRequest, AuditEvent
from ogpanel.permissions import ROLE_NAMES, AnyUser, may_approve

logger = logging.getLogger(__name__)

SYSTEM = Actor.system("approvals")
Outcome = AuditEvent.Outcome
Status = ApprovalRequest.Status


def _now() -> datetime:
    return datetime.now(UTC)


# --- who may approve -------------------------------------------------------------------------------


def may_decide(user: AnyUser, req: ApprovalRequest) -> bool:
    """May this user approve (or reject) the request? The rule is permissions.may_approve."""
    return may_approve(
        user, requester_id=req.requested_by_id, action=KINDS[req.kind].action, subaccounts=req.subaccounts
    )


def approvers(kind: str, subaccounts: list[int], requester: User) -> list[User]:
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
    user: User,
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
    req: ApprovalRequest,
    actor: Actor,
    action: str,
    status: str,
    *,
    user: User | None = None,
    note: str = "",
    now: datetime,
) -> None:
    """Move a pending request to `status`, with its audit event, or raise Refused saying why it is not pending."""
    changes: dict[str, object] = {"status": status, "decided_at": now}
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


def request_approve(
    *, req: ApprovalRequest, user: User, actor: Actor, note: str = "", now: datetime | None = None
) -> str:
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


def request_reject(
    *, req: ApprovalRequest, user: User, actor: Actor, note: str = "", now: datetime | None = None
) -> None:
    _decide(req, actor, "request_rejected", Status.REJECTED, user=user, note=note, now=now or _now())


def request_cancel(*, req: ApprovalRequest, user: User, actor: Actor, now: datetime | None = None) -> None:
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
