"""Reads of kill switch sweeps: progress per subaccount and group, the rate budget it waits on, an estimate.

Everything comes from the sweep's rows, so any panel process shows the same progress, whoever runs
the sweep. The pace it waits on is the write budget of each Kalshi account involved (budgets.py:
what the exchange says, else the configured tier; shared between processes); the estimate uses the
pace actually observed once a few calls are answered.
"""

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from ogpanel import budgets
from ogpanel.models import AuditEvent, Subaccount, Sweep, SweepGroup, SweepTarget

State = SweepGroup.State
MIN_CALLS_FOR_PACE = 5  # answered calls before the observed pace is trusted over the configured one


@dataclass(frozen=True)
class GroupLine:
    subaccount: int
    order_group_id: str
    state: str
    verified: bool
    tries: int
    message: str
    outcome: str  # the report's words: "triggered, verified at the exchange", or why not
    failed: bool  # not in the wanted state at the exchange, as far as the sweep knows (yet)


@dataclass(frozen=True)
class TargetLine:
    subaccount: int
    label: str
    groups: int
    changed: int
    already: int
    to_go: int
    failed: int
    verified: int
    done: bool
    error: str
    listed: bool


@dataclass(frozen=True)
class Progress:
    sweep: Sweep
    targets: tuple[TargetLine, ...]
    groups: tuple[GroupLine, ...]
    calls_per_second: float  # the write budget, summed over the accounts involved
    accounts: int
    tier: str  # the accounts' tier ("basic", ...; several: "mixed")
    pace: float | None  # calls answered per second so far
    eta_seconds: float | None
    stalled_for: float | None  # seconds since the lease lapsed, when nobody runs an unfinished sweep

    @property
    def done(self) -> bool:
        return self.sweep.finished_at is not None

    @property
    def verb(self) -> str:
        return "triggered" if self.sweep.triggering else "reset"

    @property
    def totals(self) -> dict[str, int]:
        names = ("groups", "changed", "already", "to_go", "failed", "verified")
        return {name: sum(getattr(line, name) for line in self.targets) for name in names}


def _outcome(row: SweepGroup, target: SweepTarget, verb: str, finished: bool) -> str:
    if row.state == State.ALREADY:
        return f"already {verb}, verified at the exchange"
    if row.state == State.CHANGED and row.verified:
        return f"{verb}, verified at the exchange"
    if row.state == State.CHANGED:
        if target.error:
            return f"{verb}; not verified: {target.error}"
        return f"{verb}; verifying" if not finished else f"{verb}; not verified"
    if row.state == State.FAILED:
        return f"failed: {row.message}"
    if row.state == State.GONE:
        return row.message
    if row.state == State.SENT:
        return "sent, awaiting the answer" if not finished else f"outcome unknown: {target.error or row.message}"
    return "to go"


def _target_line(target: SweepTarget, label: str, rows: list[SweepGroup]) -> TargetLine:
    states = Counter(row.state for row in rows)
    return TargetLine(
        subaccount=target.subaccount,
        label=label,
        groups=len(rows) if target.listings else (target.groups_at_start or 0),
        changed=states[State.CHANGED],
        already=states[State.ALREADY],
        to_go=states[State.TO_GO] + states[State.SENT],
        failed=states[State.FAILED] + states[State.GONE] + (1 if target.done and target.error else 0),
        verified=sum(row.verified for row in rows),
        done=target.done,
        error=target.error,
        listed=target.groups_at_start is not None,
    )


def _budget(numbers: list[int]) -> tuple[float, int, str]:
    """Writes per second over the accounts the subaccounts trade through, how many accounts, their tier."""
    credentials = {
        sub.credential_id: sub.credential
        for sub in Subaccount.objects.filter(number__in=numbers).select_related("credential")
    }.values()
    by_account = {budgets.account_of(credential): credential for credential in credentials}
    states = [budgets.budget_state(credential) for credential in by_account.values()]
    tiers = {state.tier for state in states}
    tier = tiers.pop() if len(tiers) == 1 else ("mixed" if tiers else settings.OGPANEL_KALSHI_TIER)
    return sum(state.requests_per_second for state in states), len(states), tier


def sweep_progress(sweep: Sweep, visible: list[int] | None = None, *, now: datetime | None = None) -> Progress:
    """The sweep as far as it got; only the subaccounts in `visible` (None: all)."""
    now = now or timezone.now()
    targets = list(sweep.targets.all())
    if visible is not None:
        targets = [target for target in targets if target.subaccount in set(visible)]
    labels = dict(Subaccount.objects.filter(number__in=[t.subaccount for t in targets]).values_list("number", "label"))
    rows: dict[int, list[SweepGroup]] = {target.pk: [] for target in targets}
    for row in SweepGroup.objects.filter(target__in=targets).order_by("order_group_id"):
        rows[row.target_id].append(row)
    finished = sweep.finished_at is not None
    verb = "triggered" if sweep.triggering else "reset"
    lines = tuple(_target_line(target, labels.get(target.subaccount, ""), rows[target.pk]) for target in targets)
    groups = [
        GroupLine(
            subaccount=target.subaccount,
            order_group_id=row.order_group_id,
            state=row.state,
            verified=row.verified,
            tries=row.tries,
            message=row.message,
            outcome=_outcome(row, target, verb, finished),
            failed=not row.verified and (finished or row.state in (State.FAILED, State.GONE)),
        )
        for target in targets
        for row in rows[target.pk]
    ]
    groups.sort(key=lambda line: (not line.failed, line.subaccount, line.order_group_id))
    rate, accounts, tier = _budget([target.subaccount for target in targets])
    pace = None
    if sweep.first_call_at and sweep.calls_done >= MIN_CALLS_FOR_PACE:
        elapsed = ((sweep.finished_at or now) - sweep.first_call_at).total_seconds()
        pace = sweep.calls_done / elapsed if elapsed > 0 else None
    to_go = sum(line.to_go for line in lines) + sum(1 for line in lines if not line.listed)
    eta = None if finished else to_go / (pace or rate)
    stalled = None
    if not finished and (sweep.lease_until is None or sweep.lease_until < now):
        stalled = (now - (sweep.lease_until or sweep.created_at)).total_seconds()
    return Progress(sweep, lines, tuple(groups), rate, accounts, tier, pace, eta, stalled)


# A group's outcome in a finished sweep, in one word each (the metrics' labels).
_WORDS = {
    State.CHANGED: "changed",
    State.ALREADY: "already",
    State.FAILED: "failed",
    State.GONE: "gone",
    State.SENT: "unknown",  # its call's answer never came, and no listing settled it
    State.TO_GO: "not_sent",
}


def group_outcomes(sweep: Sweep) -> Counter[str]:
    """How many of the sweep's groups ended which way; "changed" only when a listing verified it."""
    outcomes: Counter[str] = Counter()
    for state, verified in SweepGroup.objects.filter(target__sweep=sweep).values_list("state", "verified"):
        outcomes["unverified" if state == State.CHANGED and not verified else _WORDS[State(state)]] += 1
    return outcomes


def sweeps_for(visible: list[int] | None, *, limit: int = 10) -> list[Sweep]:
    """Unfinished sweeps, then the latest finished ones, touching any of the `visible` subaccounts."""
    found = Sweep.objects.all()
    if visible is not None:
        found = found.filter(targets__subaccount__in=visible).distinct()
    running = list(found.filter(finished_at__isnull=True).order_by("created_at"))
    return running + list(
        found.filter(finished_at__isnull=False).order_by("-finished_at")[: max(0, limit - len(running))]
    )


def notes(sweep: Sweep) -> list[AuditEvent]:
    """Reasons added to the sweep after it started, oldest first."""
    return list(AuditEvent.objects.filter(action="kill_switch_note", params__sweep=sweep.pk).order_by("seq"))
