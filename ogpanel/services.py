"""Writes: one function per operator action, each recorded by audit.py around its exchange call.

Callers (views, commands) have already checked permissions and validated input; these
functions trust their arguments and raise KalshiError (or InvalidInput) on failure, after the
failure is in the audit log.
"""

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from ogpanel import audit, budgets, exchange, selectors, vault
from ogpanel.audit import Actor
from ogpanel.kalshi import CreatedOrderGroup, KalshiError, deadline, load_private_key, public_key_fingerprint
from ogpanel.models import Credential, Subaccount

KILL_SWITCH_WORKERS = 16  # the rate limiter, not this, sets the pace; this bounds open sockets


def _group_fields(subaccount: Subaccount, order_group_id: str = "", **fields) -> dict:
    return {
        "credential": subaccount.credential,
        "subaccount": subaccount.number,
        "order_group_id": order_group_id,
        **fields,
    }


def ordergroup_create(
    *, actor: Actor, subaccount: Subaccount, contracts_limit: int, exchange_index: int = 0
) -> CreatedOrderGroup:
    """POST /portfolio/order_groups/create. Never retried: on doubt, list the subaccount to reconcile."""
    params = {"contracts_limit": contracts_limit, "exchange_index": exchange_index}
    try:
        with audit.attempt(actor, "create", **_group_fields(subaccount, params=params)) as pending:
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


# --- kill switch -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepRow:
    subaccount: int
    order_group_id: str
    outcome: str  # "triggered", "already triggered", "reset", "not triggered", "failed"
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome == "failed"


@dataclass(frozen=True)
class SweepReport:
    action: str
    rows: tuple[SweepRow, ...]

    @property
    def failures(self) -> int:
        return sum(row.failed for row in self.rows)

    def count(self, outcome: str) -> int:
        return sum(row.outcome == outcome for row in self.rows)


def _timed(call, *args, **kwargs) -> tuple[BaseException | None, float]:
    began = time.monotonic()
    try:
        call(*args, **kwargs)
    except KalshiError as exc:
        return exc, time.monotonic() - began
    return None, time.monotonic() - began


def _to_change(sub: Subaccount, listing: selectors.Listing, triggering: bool, rows: list[SweepRow]) -> list[str]:
    """The ids of the listed groups not yet in the wanted state; the others (or the failed listing) go to `rows`."""
    if not listing.ok:
        rows.append(SweepRow(sub.number, "", "failed", f"Could not list order groups: {listing.error}"))
        return []
    todo = []
    for group in listing.groups:
        if group.triggered == triggering:
            rows.append(SweepRow(sub.number, group.id, "already triggered" if triggering else "not triggered"))
        else:
            todo.append(group.id)
    return todo


def _sweep(*, actor: Actor, subaccounts: list[Subaccount], reason: str, action: str) -> SweepReport:
    """Trigger (or reset) every group on the given subaccounts, concurrently within the rate budget.

    Groups already in the wanted state are left alone and reported as such: re-triggering costs
    write budget for nothing, and resetting an active group would zero its counter, loosening a
    risk control nobody asked to loosen.
    """
    triggering = action == "kill_switch_trigger"
    per_group = "trigger" if triggering else "reset"
    names = [sub.number for sub in subaccounts]
    with audit.attempt(actor, action, reason=reason, params={"subaccounts": names}) as sweep:
        rows: list[SweepRow] = []

        calls: dict[Future, tuple[Subaccount, str, audit.Pending]] = {}

        def call(sub: Subaccount, group_id: str) -> tuple[BaseException | None, float]:
            client = exchange.client_for(sub.credential)
            method = client.trigger_order_group if triggering else client.reset_order_group
            return _timed(method, group_id, subaccount=sub.number)

        def send(sub: Subaccount, listing: selectors.Listing) -> set[Future]:
            todo = _to_change(sub, listing, triggering, rows)
            if not todo:
                return set()
            # Committed, in one transaction, before any of these calls goes out.
            pendings = audit.Pending.many(
                actor,
                per_group,
                [
                    {"reason": reason, "params": {"kill_switch": sweep.event.seq}, **_group_fields(sub, group_id)}
                    for group_id in todo
                ],
            )
            sent = set()
            for group_id, pending in zip(todo, pendings, strict=True):
                future = writers.submit(call, sub, group_id)
                calls[future] = (sub, group_id, pending)
                sent.add(future)
            return sent

        def record(
            sub: Subaccount, group_id: str, pending: audit.Pending, error: BaseException | None, latency: float
        ) -> None:
            if error is None:
                pending.succeeded(latency=latency)
                rows.append(SweepRow(sub.number, group_id, "triggered" if triggering else "reset"))
            else:
                pending.failed(error, latency=latency)
                rows.append(SweepRow(sub.number, group_id, "failed", getattr(error, "operator_message", str(error))))

        # A subaccount's groups go out as soon as its listing is in: writes draw on their own budget
        # and need not wait for the slowest listing. Each result is recorded as its call returns.
        # Only this thread touches the database; worker threads talk to the exchange.
        with (
            ThreadPoolExecutor(max_workers=selectors.FAN_OUT_WORKERS) as readers,
            ThreadPoolExecutor(max_workers=KILL_SWITCH_WORKERS) as writers,
        ):
            reads = {readers.submit(selectors.listing, sub, fresh=True): sub for sub in subaccounts}
            waiting = set(reads)
            while waiting:
                finished, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                for future in finished:
                    if future in reads:
                        waiting |= send(reads[future], future.result())
                    else:
                        record(*calls[future], *future.result())
        for sub in subaccounts:
            selectors.forget_listing(sub)
        rows.sort(key=lambda row: (not row.failed, row.subaccount, row.order_group_id))
        report = SweepReport(action, tuple(rows))
        sweep.result_params.update(
            groups=len(rows), failed=report.failures, changed=report.count("triggered" if triggering else "reset")
        )
    return report


def killswitch_trigger(*, actor: Actor, subaccounts: list[Subaccount], reason: str) -> SweepReport:
    return _sweep(actor=actor, subaccounts=subaccounts, reason=reason, action="kill_switch_trigger")


def killswitch_reset(*, actor: Actor, subaccounts: list[Subaccount], reason: str) -> SweepReport:
    return _sweep(actor=actor, subaccounts=subaccounts, reason=reason, action="kill_switch_reset")


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
) -> Credential:
    credential = Credential(label=label, environment=environment, key_id=key_id, custom_base_url=custom_base_url)
    _seal(credential, private_key_pem)
    with audit.attempt(actor, "credential_create", credential=credential, params={"label": label}) as pending:
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
