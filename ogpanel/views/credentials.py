"""Credentials (Kalshi API keys) and which subaccount uses which. Admin only.

Unscoped admins change them; a scoped admin sees and tests only the credentials that serve
their subaccounts alone, and is refused the rest like a credential that does not exist (404,
audited); changes are refused to them with a 403 (permissions.may_change_credentials).

A private key comes in on create and rotate and never goes back out: pages show the key id
and the public-key fingerprint, a form with errors comes back with the key field empty, and
the views that receive a key hide it from error reports (sensitive_post_parameters for the
request, sensitive_variables for the frames holding it).
"""

import time
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from ogpanel import budgets, exchange, permissions, services, vault
from ogpanel.credential_forms import (
    DUPLICATE_LABEL,
    CredentialForm,
    KeyForm,
    RemoveForm,
    SubaccountForm,
    subaccounts_phrase,
)
from ogpanel.kalshi import InvalidInput, KalshiError
from ogpanel.models import Credential, Subaccount
from ogpanel.permissions import Action, require
from ogpanel.views import accounts, four_eyes
from ogpanel.views.common import actor, done, error_response, render_page, wants_fragment


def _key_problem(credential: Credential) -> str:
    """Why the stored private key cannot be decrypted here (moved row, missing encryption key), or ""."""
    problem = vault.check(credential.private_key_encrypted, bound_to=str(credential.uuid))
    return _unusable(problem) if problem else ""


def _unusable(problem: str) -> str:
    return (
        f"This credential's stored private key cannot be used. {problem}. Restore the missing encryption key, "
        "or rotate this credential (upload the private key again)."
    )


def _serves(credential: Credential) -> list[int]:
    return [sub.number for sub in credential.subaccounts.all()]


def _credential(request: HttpRequest, pk: int, *, change: bool) -> Credential | HttpResponse:
    """The credential, or the refusal: 404 when the user may not see it (exactly as for one that does
    not exist), 403 when they may see it but `change` it only an unscoped admin may."""
    credential = Credential.objects.prefetch_related("subaccounts").filter(pk=pk).first()
    if credential is None:
        return error_response(request, "Not found.", status=404)
    if not permissions.credential_visible(request.user, _serves(credential)):
        return permissions.deny(request, Action.MANAGE_CREDENTIALS, {"credential": pk}, status=404)
    if change and not permissions.may_change_credentials(request.user):
        return permissions.deny(request, Action.MANAGE_CREDENTIALS, {"credential": pk})
    return credential


def _refuse_change(request: HttpRequest, detail: dict | None = None) -> HttpResponse | None:
    """A 403, audited, for a scoped admin asking to change credentials or the mapping; None otherwise."""
    if permissions.may_change_credentials(request.user):
        return None
    return permissions.deny(request, Action.MANAGE_CREDENTIALS, detail)


@login_required
@require_safe
@require(Action.MANAGE_CREDENTIALS)
def credential_list(request: HttpRequest) -> HttpResponse:
    credentials = Credential.objects.prefetch_related("subaccounts")
    visible = [c for c in credentials if permissions.credential_visible(request.user, _serves(c))]
    rows = [(credential, _key_problem(credential), budgets.account_budget(credential)) for credential in visible]
    context = {"rows": rows, "may_change": permissions.may_change_credentials(request.user)}
    return render(request, "ogpanel/credentials.html", context)


# The private key passes through these frames (the form, then services): hide every local.
@sensitive_post_parameters("private_key", "reauth_password", "reauth_otp")
@login_required
@require_http_methods(["GET", "POST"])
@require(Action.MANAGE_CREDENTIALS)
@sensitive_variables()
def credential_create(request: HttpRequest) -> HttpResponse:
    if refused := _refuse_change(request):
        return refused
    if request.method == "POST":
        form = CredentialForm(request.POST, request.FILES)
        if form.is_valid() and accounts.confirm_identity(request, form):
            data = form.cleaned_data
            if (held := four_eyes.hold_credential_create(request, data)) is not None:
                return held
            try:
                credential = services.credential_create(
                    actor=actor(request),
                    label=data["label"],
                    environment=data["environment"],
                    key_id=data["key_id"],
                    private_key_pem=data["private_key_pem"],
                    custom_base_url=data["custom_base_url"],
                    account=data["account"],
                    tier=data["tier"],
                )
            except IntegrityError:  # the same label, saved by a concurrent request since the form checked it
                form.refuse(DUPLICATE_LABEL, field="label")
            else:
                return done(
                    request,
                    None,
                    f"Added credential \u201c{credential.label}\u201d (key {credential.fingerprint}).",
                    next_url=reverse("credential_detail", args=[credential.pk]),
                )
        return _refused(request, "ogpanel/credential_form.html", {"form": form, "credential": None})
    return render(
        request,
        "ogpanel/credential_form.html",
        {"form": CredentialForm(), "credential": None, "reauth_needed": accounts.reauth_needed(request)},
    )


def _test_subaccounts(user: permissions.AnyUser, credential: Credential) -> list[int]:
    """What the test form offers: the credential's subaccounts the user may see, else the first they may."""
    mapped = permissions.visible(user, credential.subaccounts.values_list("number", flat=True))
    if mapped:
        return mapped
    scope = permissions.scope_of(user)
    return [0] if scope is None else sorted(scope)[:1]


def _detail_context(request: HttpRequest, credential: Credential, **extra: Any) -> dict:
    return {
        "credential": credential,
        "subaccounts": credential.subaccounts.all(),
        "test_subaccounts": _test_subaccounts(request.user, credential),
        "key_problem": _key_problem(credential),
        "may_change": permissions.may_change_credentials(request.user),
        "budget": budgets.account_budget(credential),
        **extra,
    }


@login_required
@require_safe
@require(Action.MANAGE_CREDENTIALS)
def credential_detail(request: HttpRequest, pk: int) -> HttpResponse:
    credential = _credential(request, pk, change=False)
    if isinstance(credential, HttpResponse):
        return credential
    return render(request, "ogpanel/credential_detail.html", _detail_context(request, credential))


@sensitive_post_parameters("private_key", "reauth_password", "reauth_otp")
@login_required
@require_http_methods(["GET", "POST"])
@require(Action.MANAGE_CREDENTIALS)
@sensitive_variables()
def credential_rotate(request: HttpRequest, pk: int) -> HttpResponse:
    credential = _credential(request, pk, change=True)
    if isinstance(credential, HttpResponse):
        return credential
    if request.method == "POST":
        form = KeyForm(request.POST, request.FILES)
        if form.is_valid() and accounts.confirm_identity(request, form):
            held = four_eyes.hold_credential_rotate(
                request, credential, form.cleaned_data["key_id"], form.cleaned_data["private_key_pem"]
            )
            if held is not None:
                return held
            services.credential_rotate(
                actor=actor(request),
                credential=credential,
                key_id=form.cleaned_data["key_id"],
                private_key_pem=form.cleaned_data["private_key_pem"],
            )
            return done(
                request,
                None,
                f"Rotated \u201c{credential.label}\u201d: now key {credential.fingerprint}.",
                next_url=reverse("credential_detail", args=[credential.pk]),
            )
        return _refused(request, "ogpanel/credential_form.html", {"form": form, "credential": credential})
    form = KeyForm(initial={"key_id": credential.key_id})
    return render(
        request,
        "ogpanel/credential_form.html",
        {"form": form, "credential": credential, "reauth_needed": accounts.reauth_needed(request)},
    )


@sensitive_post_parameters("reauth_password", "reauth_otp")
@login_required
@require_http_methods(["GET", "POST"])
@require(Action.MANAGE_CREDENTIALS)
def credential_remove(request: HttpRequest, pk: int) -> HttpResponse:
    credential = _credential(request, pk, change=True)
    if isinstance(credential, HttpResponse):
        return credential
    in_use = list(credential.subaccounts.values_list("number", flat=True))
    context = {"credential": credential, "in_use": subaccounts_phrase(in_use)}
    if request.method == "POST":
        form = RemoveForm(request.POST, in_use=in_use)
        if form.is_valid() and accounts.confirm_identity(request, form):
            if (held := four_eyes.hold_credential_remove(request, credential)) is not None:
                return held
            label = credential.label
            services.credential_remove(actor=actor(request), credential=credential)
            unmapped = f"; unmapped {subaccounts_phrase(in_use)}" if in_use else ""
            return done(
                request, None, f"Removed credential \u201c{label}\u201d{unmapped}.", next_url=reverse("credentials")
            )
        return _refused(request, "ogpanel/credential_remove.html", {**context, "form": form})
    context.update(form=RemoveForm(in_use=in_use), reauth_needed=accounts.reauth_needed(request))
    return render(request, "ogpanel/credential_remove.html", context)


def _refused(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    """A credential form that did not go through: 400 for its errors, 403 when re-authentication failed."""
    if not request.user.is_authenticated:  # too many wrong re-authentication answers signed them out
        return redirect_to_login(request.get_full_path())
    refused = accounts.REAUTH_REFUSED in context["form"].non_field_errors()
    context["reauth_needed"] = accounts.reauth_needed(request)
    return render(request, template, context, status=403 if refused else 400)


@login_required
@require_POST
@require(Action.MANAGE_CREDENTIALS)
def credential_test(request: HttpRequest, pk: int) -> HttpResponse:
    """A signed list call with the credential; the outcome is shown in place."""
    credential = _credential(request, pk, change=False)
    if isinstance(credential, HttpResponse):
        return credential
    raw = request.POST.get("subaccount", "").strip()
    if raw:
        subaccount = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= permissions.MAX_DIGITS else None
    else:
        subaccount = next(iter(_test_subaccounts(request.user, credential)), None)
    if refused := permissions.refuse_out_of_scope(request, Action.MANAGE_CREDENTIALS, subaccount):
        return refused
    if subaccount is None or subaccount > settings.OGPANEL_MAX_SUBACCOUNT:
        result, status = (
            _test_result(False, f"Subaccount must be a number from 0 to {settings.OGPANEL_MAX_SUBACCOUNT}."),
            400,
        )
    else:
        began = time.monotonic()
        try:
            count = services.credential_test(actor=actor(request), credential=credential, subaccount=subaccount)
        except exchange.CredentialUnusable as exc:  # raised before anything is signed or sent
            result, status = _test_result(False, _unusable(exc.message)), 409
        except KalshiError as exc:
            result = _test_result(False, f"Test failed: {exc.operator_message}")
            status = 400 if isinstance(exc, InvalidInput) else 502
        else:
            elapsed = round((time.monotonic() - began) * 1000)
            groups = f"{count} order group{'' if count == 1 else 's'}"
            result, status = _test_result(True, f"Connected: {groups} on subaccount {subaccount}, {elapsed} ms."), 200
    context = _detail_context(request, credential, test_result=result)
    return render_page(request, "ogpanel/credential_detail.html", context, fragment="test_result", status=status)


def _test_result(ok: bool, message: str) -> dict:
    return {"ok": ok, "message": message}


# --- subaccount mapping ------------------------------------------------------------------------

REAUTH_FIRST = "Confirm your identity (the link above the table) before changing which credential a subaccount uses."


def _mapping_row(number: int, subaccount: Subaccount | None, form: SubaccountForm | None = None) -> dict:
    """What one row of the mapping page shows; a refused form shows what was posted and why."""
    row: dict[str, Any] = {
        "number": number,
        "subaccount": subaccount,
        "errors": [],
        "credential_pk": subaccount.credential_id if subaccount else None,
        "label": subaccount.label if subaccount else "",
    }
    if form is not None:
        row["errors"] = [error for errors in form.errors.values() for error in errors]
        row["label"] = form.data.get("label", "")
        row["credential_pk"] = int(form.data["credential"]) if form.data.get("credential", "").isdigit() else None
    return row


def _mapping_context(
    request: HttpRequest, refused: SubaccountForm | None = None, refused_number: int | None = None
) -> dict:
    mapped = {sub.number: sub for sub in Subaccount.objects.select_related("credential")}
    rows = [
        _mapping_row(n, mapped.get(n), refused if n == refused_number else None)
        for n in permissions.visible(request.user, range(settings.OGPANEL_MAX_SUBACCOUNT + 1))
    ]
    return {
        "rows": rows,
        "credentials": list(Credential.objects.all()),
        "reauth_needed": accounts.reauth_needed(request),
    }


@sensitive_post_parameters("reauth_password", "reauth_otp")
@login_required
@require_http_methods(["GET", "POST"])
@require(Action.MANAGE_CREDENTIALS)
def subaccount_list(request: HttpRequest) -> HttpResponse:
    """The mapping page: each row assigns a subaccount to a credential (with a label) or unmaps it."""
    if request.method == "GET":
        return _refuse_change(request) or render(request, "ogpanel/subaccounts.html", _mapping_context(request))
    form = SubaccountForm(request.POST)
    valid = form.is_valid()
    number = form.cleaned_data.get("number")
    if number is None:
        return error_response(
            request, f"Subaccount must be a number from 0 to {settings.OGPANEL_MAX_SUBACCOUNT}.", status=400
        )
    if refused := permissions.refuse_out_of_scope(request, Action.MANAGE_CREDENTIALS, number):
        return refused
    if refused := _refuse_change(request, {"subaccount": number}):
        return refused
    # Which key a subaccount is traded with is a credential change: it needs a fresh identity check.
    if not accounts.reauth_ok(
        request, password=request.POST.get("reauth_password", ""), otp=request.POST.get("reauth_otp", "")
    ):
        if not request.user.is_authenticated:  # signed out after too many wrong answers
            return redirect_to_login(request.get_full_path())
        return error_response(request, REAUTH_FIRST, status=403)
    if not valid:
        context = _mapping_context(request, form, number)
        context["row"] = next(row for row in context["rows"] if row["number"] == number)
        return render_page(request, "ogpanel/subaccounts.html", context, fragment="row", status=400)
    data = form.cleaned_data
    if (held := four_eyes.hold_mapping(request, data)) is not None:
        return held
    if data["op"] == "assign":
        subaccount = services.subaccount_assign(
            actor=actor(request), number=number, credential=data["credential"], label=data["label"]
        )
        message = f"Subaccount {number} now uses \u201c{data['credential'].label}\u201d."
    else:
        services.subaccount_unassign(actor=actor(request), subaccount=data["subaccount"])
        subaccount, message = None, f"Subaccount {number} is no longer mapped."
    fragment = None
    if wants_fragment(request):
        context = {"row": _mapping_row(number, subaccount), "credentials": list(Credential.objects.all())}
        fragment = render_page(request, "ogpanel/subaccounts.html", context, fragment="row")
    return done(request, fragment, message, next_url=reverse("subaccounts"))
