"""The risk policy: what a subaccount's order groups may be, and which actions need a second person.

Per subaccount (or firm-wide, as the default for subaccounts without their own): a ceiling on a
group's contracts limit and what happens above it, whether the subaccount must hold at least one
active group, which actions need a second person (FOUR_EYES), and an optional remediation of a
breach. Versions are appended and never changed (PolicyVersion); `policy_set` is the one writer,
audited as "policy_change". With no version at all there is no policy and the panel behaves as
before: four eyes start when an admin sets a policy.

Breaches seen at the exchange (and their remediation) are breaches.py's.
"""

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from ogpanel import audit
from ogpanel.audit import Actor
from ogpanel.models import AuditEvent, PolicyVersion

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
# Weakest first: changing to an earlier remediation loosens the policy.
REMEDIATION_ORDER = (Remediation.OFF, Remediation.LOWER_LIMIT, Remediation.TRIGGER)


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


def _defaults() -> QuerySet[PolicyVersion]:
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
