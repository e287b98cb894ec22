"""Writes: one function per operator action, each recorded by audit.py around its exchange call.

The kill switch, a durable job rather than one call, lives in sweeps.py (and jobs.py).

Callers (views, commands) have already checked permissions and validated input; these
functions trust their arguments and raise KalshiError (or InvalidInput) on failure, after the
failure is in the audit log.
"""

from typing import Any

from django.conf import settings
from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from ogpanel import audit, budgets, exchange, selectors, vault
from ogpanel.audit import Actor
from ogpanel.kalshi import CreatedOrderGroup, deadline, load_private_key, public_key_fingerprint
from ogpanel.models import Credential, Subaccount


def _group_fields(subaccount: Subaccount, order_group_id: str = "", **fields: Any) -> dict:
    return {
        "credential": subaccount.credential,
        "subaccount": subaccount.number,
        "order_group_id": order_group_id,
        **fields,
    }


def ordergroup_create(
    *, actor: Actor, subaccount: Subaccount, contracts_limit: int, exchange_index: int = 0, reason: str = ""
) -> CreatedOrderGroup:
    """POST /portfolio/order_groups/create. Never retried: on doubt, list the subaccount to reconcile."""
    params = {"contracts_limit": contracts_limit, "exchange_index": exchange_index}
    try:
        with audit.attempt(actor, "create", reason=reason, **_group_fields(subaccount, params=params)) as pending:
            created = exchange.client_for(subaccount.credential).create_order_group(
                contracts_limit, subaccount=subaccount.number, exchange_index=exchange_index
            )
            pending.result_params["order_group_id"] = created.order_group_id
    finally:
        selectors.forget_listing(subaccount)
    return created


def ordergroup_delete(*, actor: Actor, subaccount: Subaccount, order_group_id: str, reason: str) -> None:
    """DELETE /portfolio/order_groups/{id}: cancels the group's orders and removes it."""
    try:
        with audit.attempt(actor, "delete", reason=reason, **_group_fields(subaccount, order_group_id)):
            exchange.client_for(subaccount.credential).delete_order_group(order_group_id, subaccount=subaccount.number)
    finally:
        selectors.forget_listing(subaccount)


def ordergroup_reset(*, actor: Actor, subaccount: Subaccount, order_group_id: str, reason: str) -> None:
    """PUT /portfolio/order_groups/{id}/reset: clears the trigger and the rolling counter."""
    try:
        with audit.attempt(actor, "reset", reason=reason, **_group_fields(subaccount, order_group_id)):
            exchange.client_for(subaccount.credential).reset_order_group(order_group_id, subaccount=subaccount.number)
    finally:
        selectors.forget_listing(subaccount)


def ordergroup_trigger(*, actor: Actor, subaccount: Subaccount, order_group_id: str, reason: str) -> None:
    """PUT /portfolio/order_groups/{id}/trigger: cancels the group's orders and blocks new ones."""
    try:
        with audit.attempt(actor, "trigger", reason=reason, **_group_fields(subaccount, order_group_id)):
            exchange.client_for(subaccount.credential).trigger_order_group(order_group_id, subaccount=subaccount.number)
    finally:
        selectors.forget_listing(subaccount)


def ordergroup_update_limit(
    *,
    actor: Actor,
    subaccount: Subaccount,
    order_group_id: str,
    contracts_limit: int,
    previous_limit: int | None = None,
    reason: str = "",
) -> None:
    """PUT /portfolio/order_groups/{id}/limit. A limit below current volume triggers the group."""
    params = {"contracts_limit": contracts_limit, "previous_limit": previous_limit}
    try:
        with audit.attempt(
            actor, "update_limit", reason=reason, **_group_fields(subaccount, order_group_id, params=params)
        ):
            exchange.client_for(subaccount.credential).update_order_group_limit(
                order_group_id, contracts_limit, subaccount=subaccount.number
            )
    finally:
        selectors.forget_listing(subaccount)


# --- credentials -------------------------------------------------------------------------------


def _seal(credential: Credential, pem: bytes) -> None:
    """Validate the key (raises InvalidInput), then store it encrypted with its fingerprint."""
    key = load_private_key(pem)
    credential.fingerprint = public_key_fingerprint(key)
    credential.private_key_encrypted = vault.encrypt(pem, bound_to=str(credential.uuid))


# sensitive_variables(): an error report must not show the key held in these frames or below.
@sensitive_variables()
def credential_create(
    *,
    actor: Actor,
    label: str,
    environment: str,
    key_id: str,
    private_key_pem: bytes,
    custom_base_url: str = "",
    account: str = "",
    tier: str = "",
) -> Credential:
    credential = Credential(
        label=label, environment=environment, key_id=key_id, custom_base_url=custom_base_url, account=account, tier=tier
    )
    _seal(credential, private_key_pem)
    params = {"label": label, "account": account, "tier": tier}
    with audit.attempt(actor, "credential_create", credential=credential, params=params) as pending:
        credential.save()
        pending.result_params["fingerprint"] = credential.fingerprint
    return credential


@sensitive_variables()
def credential_rotate(*, actor: Actor, credential: Credential, key_id: str, private_key_pem: bytes) -> Credential:
    """Replace the key (and key id); the subaccounts that use this credential keep using it."""
    before = {"key_id": credential.key_id, "fingerprint": credential.fingerprint}
    _seal(credential, private_key_pem)
    credential.key_id = key_id
    with audit.attempt(
        actor, "credential_rotate", credential=credential, params={"label": credential.label, "before": before}
    ) as pending:
        credential.save()
        pending.result_params["fingerprint"] = credential.fingerprint
    exchange.forget(credential.pk)
    return credential


def credential_remove(*, actor: Actor, credential: Credential) -> None:
    """Remove the credential and unmap the subaccounts that used it (the caller confirmed that)."""
    numbers = list(credential.subaccounts.values_list("number", flat=True))
    with audit.attempt(
        actor,
        "credential_remove",
        credential=credential,
        params={"label": credential.label, "unmapped_subaccounts": numbers},
    ):
        with transaction.atomic():
            credential.subaccounts.all().delete()
            pk = credential.pk
            credential.delete()
    exchange.forget(pk)


def credential_test(*, actor: Actor, credential: Credential, subaccount: int = 0) -> int:
    """A signed list call with this credential; returns how many groups it saw (raises KalshiError).

    Then, within the same deadline, the account's budget as the exchange reports it (budgets.py).
    """
    with audit.attempt(
        actor, "credential_test", credential=credential, subaccount=subaccount, params={"label": credential.label}
    ) as pending:
        client = exchange.client_for(credential)
        with deadline(settings.OGPANEL_CONNECT_TIMEOUT + settings.OGPANEL_READ_TIMEOUT):
            groups = client.list_order_groups(subaccount=subaccount)
            pending.result_params["groups"] = len(groups)
            if settings.OGPANEL_READ_ACCOUNT_LIMITS:
                pending.result_params["usage_tier"] = budgets.ask_exchange(credential, client).budget.tier
    return len(groups)


def subaccount_assign(*, actor: Actor, number: int, credential: Credential, label: str = "") -> Subaccount:
    with audit.attempt(
        actor,
        "subaccount_assign",
        credential=credential,
        subaccount=number,
        params={"label": label, "credential": credential.label},
    ):
        subaccount, _ = Subaccount.objects.update_or_create(
            number=number, defaults={"credential": credential, "label": label}
        )
    selectors.forget_listing(subaccount)
    return subaccount


def subaccount_unassign(*, actor: Actor, subaccount: Subaccount) -> None:
    with audit.attempt(actor, "subaccount_unassign", credential=subaccount.credential, subaccount=subaccount.number):
        subaccount.delete()
