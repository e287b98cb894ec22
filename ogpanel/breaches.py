"""Breaches of the policy made outside the panel: found in a listing, recorded once, cleared when fixed.

`breaches_in` (pure) compares one subaccount's groups, as listed, with its rules: a group whose
limit is above the ceiling, or no active group where one is required. `record_breaches` turns
each new breach into one "policy_breach" audit event and one notice (notices.py), clears those a
later listing no longer shows ("policy_breach_cleared"), and runs the subaccount's remediation,
if it has one, as the system's own audited action through services.py. The trip watch calls it
after each successful listing of a subaccount:

    breaches.record_breaches(sub, listing)

A second watcher recording the same breach is harmless: the check for an open breach runs
inside the audit log's serialized append, and a partial unique index backs it.
"""

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.urls import reverse

from ogpanel import audit, notices, services
from ogpanel.audit import Actor, AlreadyRecorded
from ogpanel.kalshi import KalshiError, OrderGroup
from ogpanel.models import AuditEvent, PolicyBreach, Subaccount
from ogpanel.policy import Remediation, Rules, rules_for
from ogpanel.selectors import Listing

logger = logging.getLogger(__name__)

SYSTEM = Actor.system("policy")
Outcome = AuditEvent.Outcome
# A remediation that failed (the exchange refused, a timeout) is tried again after this long, not at every poll.
REMEDIATION_RETRY = timedelta(seconds=60)


@dataclass(frozen=True)
class Breach:
    kind: str  # PolicyBreach.Kind
    subaccount: int
    order_group_id: str = ""
    contracts_limit: int | None = None
    ceiling: int | None = None
    triggered: bool = field(default=False, compare=False)  # the group's state when seen, for the remediation

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.order_group_id

    @property
    def text(self) -> str:
        if self.kind == PolicyBreach.Kind.ABOVE_CEILING:
            return (
                f"Order group {self.order_group_id} on subaccount {self.subaccount} has a limit of "
                f"{self.contracts_limit:,} contracts, above the ceiling of {self.ceiling:,}."
            )
        return f"Subaccount {self.subaccount} has no active order group; its policy requires at least one."


def breaches_in(subaccount: int, groups: Collection[OrderGroup], rules: Rules) -> list[Breach]:
    """How one subaccount's groups, as listed, break its rules."""
    found = []
    if rules.ceiling is not None:
        found += [
            Breach(
                PolicyBreach.Kind.ABOVE_CEILING,
                subaccount,
                group.id,
                group.contracts_limit,
                rules.ceiling,
                group.triggered,
            )
            for group in groups
            if group.contracts_limit is not None and group.contracts_limit > rules.ceiling
        ]
    if rules.require_active_group and all(group.triggered for group in groups):
        found.append(Breach(PolicyBreach.Kind.NO_ACTIVE_GROUP, subaccount))
    return found


@dataclass
class BreachReport:
    """What one call of record_breaches did."""

    opened: list[Breach] = field(default_factory=list)
    cleared: list[PolicyBreach] = field(default_factory=list)
    remediated: list[str] = field(default_factory=list)  # what each remediation did, in words


def record_breaches(subaccount: Subaccount, listing: Listing, *, now: datetime | None = None) -> BreachReport:
    """Compare one subaccount's listing with its policy and record what changed.

    Each new breach is one "policy_breach" event and one notice; a breach the listing no longer
    shows is cleared ("policy_breach_cleared"); an open breach above the ceiling gets the
    subaccount's remediation, if it has one. A failed listing tells nothing and changes nothing.
    """
    report = BreachReport()
    if not listing.ok:
        return report
    now = now or datetime.now(UTC)
    rules = rules_for(subaccount.number)
    found = {breach.key: breach for breach in breaches_in(subaccount.number, listing.groups, rules)}
    open_rows = {
        (row.kind, row.order_group_id): row
        for row in PolicyBreach.objects.filter(subaccount=subaccount.number, cleared_at__isnull=True)
    }
    for key, breach in found.items():
        if key not in open_rows and _open(subaccount, breach, listing.fetched_at):
            report.opened.append(breach)
    for key, row in open_rows.items():
        if key not in found and _clear(subaccount, row, listing.fetched_at):
            report.cleared.append(row)
    if rules.remediation != Remediation.OFF:
        for breach in found.values():
            if breach.kind == PolicyBreach.Kind.ABOVE_CEILING:
                done = _remediate(subaccount, breach, rules, now)
                if done:
                    report.remediated.append(done)
    return report


def _policy_url() -> str:
    public = settings.OGPANEL_PUBLIC_URL.rstrip("/")
    return public + reverse("policy") if public else ""


def _observed(
    subaccount: Subaccount, action: str, order_group_id: str, params: dict, within: Callable[[AuditEvent], None]
) -> bool:
    """Append what the policy saw, with `within`'s rows; False when another recorder was first."""
    return audit.observe(SYSTEM, subaccount, action=action, order_group_id=order_group_id, params=params, within=within)


def _open(subaccount: Subaccount, breach: Breach, observed_at: datetime) -> bool:
    def within(event: AuditEvent) -> None:
        if PolicyBreach.objects.filter(
            subaccount=breach.subaccount, kind=breach.kind, order_group_id=breach.order_group_id, cleared_at=None
        ).exists():
            raise AlreadyRecorded
        PolicyBreach.objects.create(
            subaccount=breach.subaccount,
            kind=breach.kind,
            order_group_id=breach.order_group_id,
            contracts_limit=breach.contracts_limit,
            ceiling=breach.ceiling,
            opened_at=observed_at,
            opened_seq=event.seq,
        )
        where = f"subaccount {breach.subaccount}" + (f" ({subaccount.label})" if subaccount.label else "")
        url = _policy_url()
        notices.enqueue(
            event,
            kind="policy_breach",
            subaccount=breach.subaccount,
            title=f"Policy breach on {where}",
            text="\n".join(
                line
                for line in (
                    breach.text,
                    f"Observed {observed_at:%Y-%m-%d %H:%M:%S} UTC. Audit event #{event.seq}.",
                    url,
                )
                if line
            ),
            payload={
                "event": "policy_breach",
                "breach": breach.kind,
                "subaccount": breach.subaccount,
                "subaccount_label": subaccount.label,
                "order_group_id": breach.order_group_id or None,
                "contracts_limit": breach.contracts_limit,
                "ceiling": breach.ceiling,
                "observed_at": observed_at.astimezone(UTC).isoformat(),
                "environment": subaccount.credential.environment,
                "url": url or None,
            },
        )

    params: dict[str, object] = {"breach": breach.kind, "observed_at": observed_at.isoformat(), "text": breach.text}
    if breach.ceiling is not None:
        params.update(contracts_limit=breach.contracts_limit, ceiling=breach.ceiling)
    if not _observed(subaccount, "policy_breach", breach.order_group_id, params, within):
        return False
    logger.warning("policy: %s", breach.text)
    return True


def _clear(subaccount: Subaccount, row: PolicyBreach, observed_at: datetime) -> bool:
    def within(event: AuditEvent) -> None:
        cleared = PolicyBreach.objects.filter(pk=row.pk, cleared_at__isnull=True)
        if not cleared.update(cleared_at=observed_at, cleared_seq=event.seq):
            raise AlreadyRecorded

    params = {"breach": row.kind, "observed_at": observed_at.isoformat(), "opened_seq": row.opened_seq}
    if not _observed(subaccount, "policy_breach_cleared", row.order_group_id, params, within):
        return False
    logger.info("policy: breach %s on subaccount %s cleared", row.kind, row.subaccount)
    return True


def _remediate(subaccount: Subaccount, breach: Breach, rules: Rules, now: datetime) -> str:
    """Lower the group's limit to the ceiling, or trigger it, as the system; "" when there is nothing to do.

    Once per breach when it works (a trigger again only if someone reset the group meanwhile);
    after a failure, again REMEDIATION_RETRY later.
    """
    row = PolicyBreach.objects.filter(
        subaccount=breach.subaccount, kind=breach.kind, order_group_id=breach.order_group_id, cleared_at=None
    ).first()
    if row is None or breach.ceiling is None:  # (a breach of the ceiling always names it)
        return ""
    lowering = rules.remediation == Remediation.LOWER_LIMIT
    tried_at = row.remediation_tried_at  # set with remediation_ok
    if row.remediation_ok is False and tried_at is not None and now - tried_at < REMEDIATION_RETRY:
        return ""
    if (lowering and row.remediation_ok) or (not lowering and breach.triggered):
        return ""  # lowered already, or triggered already: nothing left to cancel
    reason = f"Policy remediation: {breach.text}"
    try:
        if lowering:
            services.ordergroup_update_limit(
                actor=SYSTEM,
                subaccount=subaccount,
                order_group_id=breach.order_group_id,
                contracts_limit=breach.ceiling,
                previous_limit=breach.contracts_limit,
                reason=reason,
            )
            done = (
                f"Lowered the limit of {breach.order_group_id} from {breach.contracts_limit:,} to {breach.ceiling:,}."
            )
        else:
            services.ordergroup_trigger(
                actor=SYSTEM, subaccount=subaccount, order_group_id=breach.order_group_id, reason=reason
            )
            done = f"Triggered {breach.order_group_id}."
        ok = True
    except KalshiError as exc:
        done, ok = f"Remediation failed: {exc.operator_message}", False
        logger.error("policy: remediation of %s failed: %s", breach.order_group_id, exc.operator_message)
    PolicyBreach.objects.filter(pk=row.pk).update(remediation_tried_at=now, remediation_ok=ok, remediation=done)
    return done
