"""The Requests page: actions waiting for a second person, and those already decided.

A request is visible to ops and admins with every subaccount it touches in scope (and to its
requester); out of scope it is not found. Approve and reject follow permissions.may_approve;
the requester may withdraw a pending request. Pages expire what is past its time first.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST, require_safe

from ogpanel import approvals, audit, permissions
from ogpanel.models import ApprovalRequest
from ogpanel.permissions import Action, require
from ogpanel.views import accounts, common

Status = ApprovalRequest.Status
SHOWN_DECIDED = 100  # decided requests on the page, newest first; the audit log holds them all
OWN_REQUEST = "You cannot approve or reject your own request: it needs a second person."


def _visible(user: permissions.AnyUser, req: ApprovalRequest) -> bool:
    return req.requested_by_id == user.pk or permissions.in_scope_all(user, req.subaccounts)


def _find(request: HttpRequest, pk: int, action: Action) -> ApprovalRequest | HttpResponse:
    req = ApprovalRequest.objects.filter(pk=pk).first()
    if req is None or not _visible(request.user, req):
        return permissions.deny(request, action, {"request": pk}, status=404)
    return req


def _item(user: permissions.AnyUser, req: ApprovalRequest) -> dict:
    return {
        "req": req,
        "what": approvals.what(req),
        "may_decide": req.status == Status.PENDING and approvals.may_decide(user, req),
        "own": req.requested_by_id == user.pk,
    }


@login_required
@require_safe
@require(Action.APPROVE)
def request_list(request: HttpRequest) -> HttpResponse:
    approvals.expire_due()
    user = request.user
    pending = [
        _item(user, req)
        for req in ApprovalRequest.objects.filter(status=Status.PENDING).order_by("expires_at")
        if _visible(user, req)
    ]
    decided = ApprovalRequest.objects.exclude(status=Status.PENDING).order_by("-decided_at", "-pk")
    # Scope is checked in Python (subaccounts is a JSON list), so read a few more than are shown.
    shown = [_item(user, req) for req in decided[: SHOWN_DECIDED * 3] if _visible(user, req)][:SHOWN_DECIDED]
    groups = {status: [item for item in shown if item["req"].status == status] for status in Status.values}
    context = {
        "pending": pending,
        "approved": groups[Status.EXECUTED] + groups[Status.FAILED] + groups[Status.APPROVED],
        "rejected": groups[Status.REJECTED] + groups[Status.CANCELLED],
        "expired": groups[Status.EXPIRED],
    }
    return render(request, "ogpanel/requests.html", context)


def _detail(request: HttpRequest, req: ApprovalRequest, *, status: int = 200) -> HttpResponse:
    kind = approvals.KINDS[req.kind]
    item = _item(request.user, req)
    context = {
        **item,
        "approvers": [user.get_username() for user in approvals.approvers(req.kind, req.subaccounts, req.requested_by)]
        if req.status == Status.PENDING and req.requested_by is not None
        else [],
        "reauth_needed": kind.reauth and item["may_decide"] and accounts.reauth_needed(request),
    }
    return common.render_page(request, "ogpanel/requests_detail.html", context, fragment="request", status=status)


@login_required
@require_safe
@require(Action.APPROVE)
def request_detail(request: HttpRequest, pk: int) -> HttpResponse:
    approvals.expire_due()
    req = _find(request, pk, Action.APPROVE)
    if isinstance(req, HttpResponse):
        return req
    return _detail(request, req)


def _decision(request: HttpRequest, pk: int) -> ApprovalRequest | HttpResponse:
    """The request, if this user may decide it; otherwise the refusal, audited."""
    req = _find(request, pk, Action.APPROVE)
    if isinstance(req, HttpResponse):
        return req
    if req.requested_by_id == request.user.pk:
        audit.record_denial(request, Action.APPROVE, {"request": pk}, error="permission denied: own request")
        return common.error_response(request, OWN_REQUEST, status=403)
    if not approvals.may_decide(request.user, req):
        return permissions.deny(request, Action.APPROVE, {"request": pk, "kind": req.kind})
    return req


def _answered(request: HttpRequest, req: ApprovalRequest, message: str, level: str = "success") -> HttpResponse:
    if common.wants_fragment(request):
        return common.flash(_detail(request, req), message, level)
    getattr(messages, level)(request, message)
    return redirect(reverse("request_detail", args=[req.pk]))


@sensitive_post_parameters("reauth_password", "reauth_otp")
@login_required
@require_POST
@require(Action.APPROVE)
def request_approve(request: common.SignedInRequest, pk: int) -> HttpResponse:
    req = _decision(request, pk)
    if isinstance(req, HttpResponse):
        return req
    if approvals.KINDS[req.kind].reauth and not accounts.reauth_ok(
        request, password=request.POST.get("reauth_password", ""), otp=request.POST.get("reauth_otp", "")
    ):
        if not request.user.is_authenticated:  # signed out after too many wrong answers
            return redirect_to_login(reverse("request_detail", args=[pk]))
        return common.error_response(request, accounts.REAUTH_REFUSED, status=403)
    try:
        result = approvals.request_approve(
            req=req, user=request.user, actor=common.actor(request), note=request.POST.get("note", "")[:500]
        )
    except approvals.Refused as exc:
        return common.error_response(request, exc.message, status=409)
    executed = req.status == Status.EXECUTED
    return _answered(request, req, f"Approved request #{req.pk}. {result}", "success" if executed else "warning")


@login_required
@require_POST
@require(Action.APPROVE)
def request_reject(request: common.SignedInRequest, pk: int) -> HttpResponse:
    req = _decision(request, pk)
    if isinstance(req, HttpResponse):
        return req
    try:
        approvals.request_reject(
            req=req, user=request.user, actor=common.actor(request), note=request.POST.get("note", "")[:500]
        )
    except approvals.Refused as exc:
        return common.error_response(request, exc.message, status=409)
    return _answered(request, req, f"Rejected request #{req.pk}.")


@login_required
@require_POST
@require(Action.APPROVE)
def request_cancel(request: common.SignedInRequest, pk: int) -> HttpResponse:
    req = _find(request, pk, Action.APPROVE)
    if isinstance(req, HttpResponse):
        return req
    if req.requested_by_id != request.user.pk:
        return permissions.deny(request, Action.APPROVE, {"request": pk, "op": "cancel"})
    try:
        approvals.request_cancel(req=req, user=request.user, actor=common.actor(request))
    except approvals.Refused as exc:
        return common.error_response(request, exc.message, status=409)
    return _answered(request, req, f"Withdrew request #{req.pk}.")
