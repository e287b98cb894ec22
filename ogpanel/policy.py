"""The risk policy: what a subaccount's order groups may be, and which actions need a second person.

Per subaccount (or firm-wide, as the default for subaccounts without their own): a ceiling on a
group's contracts limit and what happens above it, whether the subaccount must hold at least one
active group, which actions need a second person (FOUR_EYES), and an optional remediation of a
breach. Versions are appended and never changed (PolicyVersion); `policy_set` is the one writer,
audited as "policy_change". With no version at all there is no policy and the panel behaves as
before: four eyes start when an admin sets a policy.

Breaches made outside the panel: `breaches_in` (pure) compares one subaccount's listing with its
rules; `record_breaches` turns each new breach into one "policy_breach" audit event and one
notice, clears those a later listing shows fixed, and runs the remediation as the system's own
audited action. The trip watch calls it after each successful listing of a subaccount.
"""

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.urls import reverse

from ogpanel import audit, notices, services
from ogpanel.audit import Actor
from ogpanel.kalshi import KalshiError, OrderGroup
from ogpanel.models import AuditEvent, PolicyBreach, PolicyVersion, Subaccount

logger = logging.getLogger(__name__)

SYSTEM = Actor.system("policy")
Outcome = AuditEvent.Outcome
AboveCeiling = PolicyVersion.AboveCeiling
Remediation = PolicyVersion.Remediation
# What each four-eyes name covers. Tightening actions (trigger, kill switch, lowering a limit) have none:
# they never wait.
FOUR_EYES = {
    "reset": "reset an order group",
    "kill_switch_reset": "reset every group on a subaccount (kill switch)",
    "raise_limit": "raise a group's limit",
    "delete": "delete an order group",
    "credentials": "add, rotate or remove a credential",
    "mapping": "map or unmap a subaccount",
    "policy": "loosen the policy",
}
# Stronger remediations come later: moving down this list loosens the policy.
REMEDIATION_ORDER = (Remediation.OFF, Remediation.LOWER_LIMIT, Remediation.TRIGGER)
# A remediation that failed (the exchange refused, a timeout) is tried again after this long, not at every poll.
REMEDIATION_RETRY = timedelta(seconds=60)


@dataclass(frozen=True)
class Rules:
    """One policy's content, as the panel applies it and as the policy file holds it."""

    ceiling: int | None = None
    above_ceiling: str = AboveCeiling.REFUSE.value  # plain strings, as the database gives them back
    require_active_group: bool = False
    four_eyes: frozenset[str] = frozenset()
    remediation: str = Remediation.OFF.value

    @classmethod
    def of(cls, row: PolicyVersion) -> "Rules":
        return cls(
            row.contracts_limit_ceiling,
            row.above_ceiling,
            row.require_active_group,
            frozenset(row.four_eyes),
            row.remediation,
        )

    def as_dict(self) -> dict:
        return {
            "contracts_limit_ceiling": self.ceiling,
            "above_ceiling": str(self.above_ceiling),
            "require_active_group": self.require_active_group,
            "four_eyes": sorted(self.four_eyes),
            "remediation": str(self.remediation),
        }

    @classmethod
    def from_dict(cls, values: dict) -> "Rules":
        """The inverse of as_dict() for values already checked (policy_file.py, a request's params)."""
        return cls(
            values["contracts_limit_ceiling"],
            values["above_ceiling"],
            values["require_active_group"],
            frozenset(values["four_eyes"]),
            values["remediation"],
        )


NO_POLICY = Rules()
# What a new policy starts from on the edit page: every loosening action needs a second person.
SUGGESTED = Rules(four_eyes=frozenset(FOUR_EYES))


@dataclass(frozen=True)
class Effective:
    """The rules that apply to a subaccount, and where they come from: "own", "default" or "none"."""

    rules: Rules
    source: str
    version: PolicyVersion | None = None  # the row the rules come from


def latest(subaccount: int | None) -> PolicyVersion | None:
    """The newest version of a subaccount's own policy (None: the default's)."""
    rows = PolicyVersion.objects.filter(subaccount=subaccount) if subaccount is not None else _defaults()
    return rows.order_by("-version").first()


def _defaults():
    return PolicyVersion.objects.filter(subaccount__isnull=True)


def effective_many(numbers: Iterable[int]) -> dict[int, Effective]:
    """The rules of each subaccount, in one query."""
    numbers = list(numbers)
    newest: dict[int | None, PolicyVersion] = {}
    rows = PolicyVersion.objects.filter(Q(subaccount__in=numbers) | Q(subaccount__isnull=True))
    for row in rows.order_by("-version"):
        newest.setdefault(row.subaccount, row)
    default = newest.get(None)
    fallback = Effective(Rules.of(default), "default", default) if default else Effective(NO_POLICY, "none")
    result = {}
    for number in numbers:
        own = newest.get(number)
        result[number] = Effective(Rules.of(own), "own", own) if own and not own.follows_default else fallback
    return result


def effective(subaccount: int | None) -> Effective:
    """A subaccount's rules (None: the default's, which actions touching no subaccount follow)."""
    if subaccount is not None:
        return effective_many([subaccount])[subaccount]
    default = latest(None)
    return Effective(Rules.of(default), "default", default) if default else Effective(NO_POLICY, "none")


def rules_for(subaccount: int | None) -> Rules:
    return effective(subaccount).rules


def needs_second_person(name: str, subaccounts: Collection[int]) -> bool:
    """Does the policy of any of these subaccounts (of the default, for none) name this action?"""
    if not subaccounts:
        return name in rules_for(None).four_eyes
    return any(name in one.rules.four_eyes for one in effective_many(subaccounts).values())


def loosenings(old: Rules, new: Rules) -> list[str]:
    """What a change from `old` to `new` loosens, in words; empty when it only tightens (or changes nothing)."""
    found = []
    if old.ceiling is not None and (new.ceiling is None or new.ceiling > old.ceiling):
        found.append("raises the ceiling" if new.ceiling else "removes the ceiling")
    if new.above_ceiling == AboveCeiling.APPROVE and old.above_ceiling == AboveCeiling.REFUSE:
        found.append("allows limits above the ceiling with approval")
    if old.require_active_group and not new.require_active_group:
        found.append("no longer requires an active group")
    dropped = old.four_eyes - new.four_eyes
    if dropped:
        found.append("no longer needs a second person to " + ", ".join(FOUR_EYES[n] for n in FOUR_EYES if n in dropped))
    if REMEDIATION_ORDER.index(new.remediation) < REMEDIATION_ORDER.index(old.remediation):
        found.append("weakens the remediation")
    return found


def ceiling_verdict(rules: Rules, limit: int, previous: int | None) -> str:
    """ "ok", "approve" (the policy lets a second person allow it) or "refuse", for setting a group's limit.

    `previous` is the group's limit now (None for a new group, or when it could not be read): a
    limit above the ceiling but below the current one still tightens, and tightening never waits.
    """
    if rules.ceiling is None or limit <= rules.ceiling or (previous is not None and limit <= previous):
        return "ok"
    return "approve" if rules.above_ceiling == AboveCeiling.APPROVE else "refuse"


def ceiling_message(subaccount: int, rules: Rules, limit: int) -> str:
    return (
        f"The ceiling for an order group's limit on subaccount {subaccount} is {rules.ceiling:,} contracts; "
        f"{limit:,} is above it."
    )


class PolicyChanged(Exception):
    """The policy moved on since the change was prepared (another change, or an approved request, came first)."""


def policy_set(
    *,
    actor: Actor,
    subaccount: int | None,
    rules: Rules,
    reason: str,
    follows_default: bool = False,
    base_version: int | None = None,
) -> PolicyVersion:
    """Append a version of a subaccount's (None: the default's) policy, audited as "policy_change".

    `base_version` (0 for none yet): raise PolicyChanged unless that is still the newest version.
    The permission, and whether a second person must approve, were settled by the caller.
    """
    current = latest(subaccount)
    number = current.version if current else 0
    if base_version is not None and number != base_version:
        raise PolicyChanged
    before = effective(subaccount).rules
    after = rules_for(None) if follows_default else rules
    approval = actor.approval or {}
    created: list[PolicyVersion] = []

    def within(event: AuditEvent) -> None:
        # Inside the audit log's serialized append: nobody else can write a version between check and insert.
        now_latest = latest(subaccount)
        if (now_latest.version if now_latest else 0) != number:
            raise PolicyChanged
        created.append(
            PolicyVersion.objects.create(
                subaccount=subaccount,
                version=number + 1,
                follows_default=follows_default,
                contracts_limit_ceiling=rules.ceiling,
                above_ceiling=rules.above_ceiling,
                require_active_group=rules.require_active_group,
                four_eyes=sorted(rules.four_eyes),
                remediation=rules.remediation,
                set_at=event.at,
                set_by=approval.get("requested_by", actor.username),
                approved_by=approval.get("approved_by", ""),
                reason=reason,
            )
        )

    params = {
        "policy": "default" if subaccount is None else subaccount,
        "version": number + 1,
        "follows_default": follows_default,
        "rules": rules.as_dict(),
        "loosens": loosenings(before, after),
    }
    audit.append(
        actor,
        action="policy_change",
        outcome=Outcome.SUCCEEDED,
        subaccount=subaccount,
        params=params,
        reason=reason,
        within=within,
    )
    return created[0]


# --- breaches made outside the panel -----------------------------------------------------------------


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


class _AlreadyRecorded(Exception):
    """Another recorder (a second watcher) was first: roll this event back."""


def record_breaches(subaccount: Subaccount, listing, *, now: datetime | None = None) -> BreachReport:
    """Compare one subaccount's listing (selectors.Listing) with its policy and record what changed.

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


def _open(subaccount: Subaccount, breach: Breach, observed_at: datetime) -> bool:
    def within(event: AuditEvent) -> None:
        if PolicyBreach.objects.filter(
            subaccount=breach.subaccount, kind=breach.kind, order_group_id=breach.order_group_id, cleared_at=None
        ).exists():
            raise _AlreadyRecorded
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

    params = {"breach": breach.kind, "observed_at": observed_at.isoformat(), "text": breach.text}
    if breach.ceiling is not None:
        params.update(contracts_limit=breach.contracts_limit, ceiling=breach.ceiling)
    try:
        audit.append(
            SYSTEM,
            action="policy_breach",
            outcome=Outcome.OBSERVED,
            subaccount=breach.subaccount,
            order_group_id=breach.order_group_id,
            environment=subaccount.credential.environment,
            api_key_id=subaccount.credential.key_id,
            params=params,
            within=within,
        )
    except _AlreadyRecorded:
        return False
    logger.warning("policy: %s", breach.text)
    return True


def _clear(subaccount: Subaccount, row: PolicyBreach, observed_at: datetime) -> bool:
    def within(event: AuditEvent) -> None:
        cleared = PolicyBreach.objects.filter(pk=row.pk, cleared_at__isnull=True)
        if not cleared.update(cleared_at=observed_at, cleared_seq=event.seq):
            raise _AlreadyRecorded

    try:
        audit.append(
            SYSTEM,
            action="policy_breach_cleared",
            outcome=Outcome.OBSERVED,
            subaccount=row.subaccount,
            order_group_id=row.order_group_id,
            environment=subaccount.credential.environment,
            api_key_id=subaccount.credential.key_id,
            params={"breach": row.kind, "observed_at": observed_at.isoformat(), "opened_seq": row.opened_seq},
            within=within,
        )
    except _AlreadyRecorded:
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
    if row is None:
        return ""
    lowering = rules.remediation == Remediation.LOWER_LIMIT
    if row.remediation_ok is False and now - row.remediation_tried_at < REMEDIATION_RETRY:
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
