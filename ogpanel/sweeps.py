"""The kill switch: trigger (or reset) every group on some subaccounts, durably, verified at the exchange.

`sweep_start` records a sweep (Sweep and one SweepTarget per subaccount) inside the append of its
audit attempt event, so the two exist together or not at all. `sweep_run` then does the work for
whoever holds the sweep's lease (jobs.py). Running it is idempotent, so a run that died is simply
run again by another process:

- each subaccount is listed, fresh. Every "outcome unknown" attempt of this sweep on it (a run
  that died mid-call) gets a result reconciled from what the listing shows; the groups not yet in
  the wanted state get their attempts (committed in one batch) and then their calls, as fast as
  the rate limiter lets them go;
- once all its calls are answered the subaccount is listed again: that listing verifies the groups
  it shows in the wanted state, and whatever is still wrong is sent again, up to MAX_TRIES calls
  per group;
- when every subaccount is finished, the sweep's own result is recorded, with the sweep marked
  done in the same transaction.

A second kill switch for subaccounts an open sweep of the same kind already covers joins it: the
database allows one open SweepTarget per kind and subaccount, so that is decided there, across
processes. Groups already in the wanted state are left alone: re-triggering costs write budget for
nothing, and resetting an active group would zero its counter, loosening a control nobody asked to
loosen. Only the running thread touches the database; pool threads talk HTTP (and the cache).
"""

import logging
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Protocol

from django.db.models import F
from django.utils import timezone

from ogpanel import audit, checkpoints, exchange, metrics, selectors, sweep_progress
from ogpanel.audit import Actor
from ogpanel.kalshi import KalshiError
from ogpanel.models import AuditEvent, OpenAttempt, Subaccount, Sweep, SweepGroup, SweepTarget

TRIGGER = "kill_switch_trigger"
RESET = "kill_switch_reset"
JOIN = "kill_switch_join"
NOTE = "kill_switch_note"
MAX_TRIES = 3  # calls per group: the first, then up to two more for a group a listing shows unchanged
WRITERS = 16  # the rate limiter, not this, sets the pace; this bounds open sockets
HEARTBEAT = 0.25  # seconds between looks at the lease (and the progress counters) while calls are out

logger = logging.getLogger(__name__)


class Lease(Protocol):
    def keep(self) -> bool:
        """True while this run may go on: the lease is still ours (renewed when due) and no stop was asked."""


class NotDone(KalshiError):
    """A call whose outcome was unknown, reconciled: the exchange shows it did not take effect."""


class NotSent(KalshiError):
    """An attempt recorded, then withdrawn before its call went out (the run was stopped)."""


@dataclass(frozen=True)
class Started:
    sweep: Sweep | None  # None when open sweeps already covered every subaccount asked for
    joined: tuple[Sweep, ...]  # the open sweeps that cover some of them


class _Covered(Exception):
    """Every subaccount asked for is covered by an open sweep: nothing to record."""


class _AlreadyDone(Exception):
    """Another process recorded the sweep's result first."""


def _per_group(action: str) -> str:
    return "trigger" if action == TRIGGER else "reset"


def sweep_start(
    *, actor: Actor, subaccounts: list[Subaccount], reason: str, action: str, lease_owner: str, lease_seconds: float
) -> Started:
    """Record a sweep of `action` over the subaccounts no open sweep of that kind covers yet.

    With `lease_owner` the sweep is leased to it from the start (the caller runs it at once);
    without, it waits for a worker.
    """
    numbers = sorted(sub.number for sub in subaccounts)
    now = timezone.now()
    created: list[Sweep] = []

    def claim(event: AuditEvent) -> None:
        sweep = Sweep.objects.create(
            action=action,
            created_at=now,
            actor=asdict(actor),
            reason=reason,
            audit_seq=event.seq,
            lease_owner=lease_owner,
            lease_until=now + timedelta(seconds=lease_seconds) if lease_owner else None,
        )
        SweepTarget.objects.bulk_create(
            [SweepTarget(sweep=sweep, subaccount=number, action=action) for number in numbers], ignore_conflicts=True
        )
        if not sweep.targets.exists():
            raise _Covered
        created.append(sweep)

    try:
        audit.append(
            actor,
            action=action,
            outcome=AuditEvent.Outcome.ATTEMPTED,
            reason=reason,
            params={"subaccounts": numbers},
            within=claim,
        )
    except _Covered:
        pass
    sweep = created[0] if created else None
    mine = set(sweep.targets.values_list("subaccount", flat=True)) if sweep else set()
    joined = tuple(
        Sweep.objects.filter(
            targets__open=True, targets__action=action, targets__subaccount__in=set(numbers) - mine
        ).distinct()
    )
    if sweep is None:
        audit.append(
            actor,
            action=JOIN,
            outcome=AuditEvent.Outcome.SUCCEEDED,
            reason=reason,
            params={"subaccounts": numbers, "kind": action, "sweeps": [other.pk for other in joined]},
        )
    return Started(sweep, joined)


def sweep_annotate(*, actor: Actor, sweep: Sweep, note: str) -> AuditEvent:
    """A reason given after the fact: an event of its own, pointing at the sweep's attempt."""
    return audit.append(
        actor,
        action=NOTE,
        outcome=AuditEvent.Outcome.SUCCEEDED,
        reason=note,
        params={"sweep": sweep.pk, "kill_switch": sweep.audit_seq},
    )


def _timed(sub: Subaccount, group_id: str, triggering: bool) -> tuple[KalshiError | None, float]:
    began = time.monotonic()
    try:
        client = exchange.client_for(sub.credential)
        method = client.trigger_order_group if triggering else client.reset_order_group
        method(group_id, subaccount=sub.number)
    except KalshiError as exc:
        return exc, time.monotonic() - began
    return None, time.monotonic() - began


def _fields_of(event: AuditEvent) -> dict:
    names = ("environment", "subaccount", "order_group_id", "api_key_id", "reason", "params")
    return {name: getattr(event, name) for name in names}


class _Run:
    """One process's run of one sweep, from the state the database holds."""

    def __init__(self, sweep: Sweep, lease: Lease, readers: ThreadPoolExecutor, writers: ThreadPoolExecutor):
        self.sweep, self.lease, self.readers, self.writers = sweep, lease, readers, writers
        self.actor = Actor(**sweep.actor)
        self.resumed = sweep.runs > 1  # only a run after another can find that one's attempts unanswered
        self.per_group = _per_group(sweep.action)
        self.wanted = sweep.triggering  # a group is done when group.triggered == wanted
        self.targets = {target.subaccount: target for target in sweep.targets.filter(done=False)}
        self.subs = {
            sub.number: sub for sub in Subaccount.objects.filter(number__in=self.targets).select_related("credential")
        }
        self.rows = {
            (row.target.subaccount, row.order_group_id): row
            for row in SweepGroup.objects.filter(target__in=self.targets.values()).select_related("target")
        }
        self.reads: dict[Future, SweepTarget] = {}
        self.calls: dict[Future, tuple[SweepTarget, SweepGroup, audit.Pending]] = {}
        self.outstanding: Counter[int] = Counter()
        self.failed_listings: Counter[int] = Counter()
        self.stopping = False
        self.calls_done = 0
        self.first_call_at: datetime | None = None

    @property
    def futures(self) -> set[Future]:
        return set(self.reads) | set(self.calls)

    def begin(self) -> None:
        for target in self.targets.values():
            self.list_again(target)
        self.save_phase()

    def list_again(self, target: SweepTarget) -> None:
        sub = self.subs.get(target.subaccount)
        if sub is None:
            target.error = "This subaccount is no longer configured in the panel."
            self.finish_target(target)
            return
        self.reads[self.readers.submit(selectors.listing, sub, fresh=True)] = target

    def finish_target(self, target: SweepTarget) -> None:
        target.done = True
        target.save(update_fields=["done", "error", "listings", "groups_at_start"])

    # --- a listing came in ----------------------------------------------------------------------

    def listed(self, target: SweepTarget, listing: selectors.Listing) -> None:
        target.listings += 1
        if not listing.ok:
            target.error = f"Could not list order groups: {listing.error}"
            self.failed_listings[target.subaccount] += 1
            if self.failed_listings[target.subaccount] >= MAX_TRIES:
                self.finish_target(target)
            else:
                target.save(update_fields=["listings", "error"])
                self.list_again(target)
            return
        target.error = ""
        if target.groups_at_start is None:
            target.groups_at_start = len(listing.groups)
        if self.resumed:
            self.reconcile(target, listing)
        todo, changed, new = self.compare(target, listing)
        if todo:
            self.send(target, todo)  # first: the calls go out before the bookkeeping below
        SweepGroup.objects.bulk_create(new)
        SweepGroup.objects.bulk_update(changed, ["state", "verified", "tries", "message"])
        if todo:
            target.save(update_fields=["listings", "error", "groups_at_start"])
        else:
            self.finish_target(target)
        self.save_phase()

    def reconcile(self, target: SweepTarget, listing: selectors.Listing) -> None:
        """Give each attempt of this sweep on the subaccount that has no result one, from what the exchange shows.

        Only attempts of runs that died are open here: this run lists a subaccount only while none
        of its own calls on it are out.
        """
        unknown = AuditEvent.objects.filter(
            seq__in=OpenAttempt.objects.values("seq"),
            action=self.per_group,
            subaccount=target.subaccount,
            params__kill_switch=self.sweep.audit_seq,
        ).order_by("seq")
        for event in unknown:
            group = selectors.find_group(listing, event.order_group_id)
            pending = audit.Pending(self.actor, self.per_group, recorded=event, **_fields_of(event))
            if group is None:
                words = "the group is no longer listed at the exchange"
                pending.failed(
                    NotDone(words, code="reconciled_gone", operator_message=f"Reconciled: {words}."),
                    latency=0.0,
                    reconciled=True,
                    exchange_state="gone",
                )
            elif group.triggered == self.wanted:
                pending.succeeded(latency=0.0, reconciled=True, exchange_state=_state(group.triggered))
            else:
                words = (
                    f"the exchange shows the group still {_state(group.triggered)}, so this call did not take effect"
                )
                pending.failed(
                    NotDone(words, code="reconciled_not_done", operator_message=f"Reconciled: {words}."),
                    latency=0.0,
                    reconciled=True,
                    exchange_state=_state(group.triggered),
                )

    def compare(
        self, target: SweepTarget, listing: selectors.Listing
    ) -> tuple[list[SweepGroup], list[SweepGroup], list[SweepGroup]]:
        """Bring the groups' rows in line with the listing: (to send, changed, new)."""
        todo, changed, new = [], [], []
        seen = set()
        for group in listing.groups:
            seen.add(group.id)
            row = self.rows.get((target.subaccount, group.id))
            if row is None:
                row = SweepGroup(target=target, order_group_id=group.id)
                self.rows[(target.subaccount, group.id)] = row
                new.append(row)
            elif row.pk is not None:
                changed.append(row)
            if group.triggered == self.wanted:
                row.state = SweepGroup.State.CHANGED if row.tries else SweepGroup.State.ALREADY
                row.verified, row.message = True, ""
            elif row.tries >= MAX_TRIES:
                last = f" The last answer: {row.message}" if row.state == SweepGroup.State.FAILED else ""
                row.state, row.verified = SweepGroup.State.FAILED, False
                row.message = (
                    f"Still {_state(group.triggered)} at the exchange after {row.tries} {self.per_group} calls.{last}"
                )
            else:
                row.verified = False
                todo.append(row)
        for (number, group_id), row in self.rows.items():
            if number == target.subaccount and group_id not in seen and row.state != SweepGroup.State.GONE:
                row.state, row.verified = SweepGroup.State.GONE, False
                row.message = "No longer listed at the exchange (deleted?)."
                if row.pk is not None:
                    changed.append(row)
        return todo, changed, new

    def send(self, target: SweepTarget, todo: list[SweepGroup]) -> None:
        sub = self.subs[target.subaccount]
        # Committed, in one transaction, before any of these calls goes out.
        pendings = audit.Pending.many(
            self.actor,
            self.per_group,
            [
                {
                    "credential": sub.credential,
                    "subaccount": sub.number,
                    "order_group_id": row.order_group_id,
                    "reason": self.sweep.reason,
                    "params": {"kill_switch": self.sweep.audit_seq},
                }
                for row in todo
            ],
        )
        if self.first_call_at is None:
            self.first_call_at = timezone.now()
        for row, pending in zip(todo, pendings, strict=True):
            row.state, row.tries, row.message = SweepGroup.State.SENT, row.tries + 1, ""
            self.calls[self.writers.submit(_timed, sub, row.order_group_id, self.wanted)] = (target, row, pending)
            self.outstanding[target.subaccount] += 1

    # --- a call came back -------------------------------------------------------------------------

    def answered(self, future: Future) -> None:
        target, row, pending = self.calls.pop(future)
        if future.cancelled():
            pending.failed(NotSent("not sent", code="not_sent", operator_message="Not sent: the run was stopped."))
            row.state, row.message = SweepGroup.State.TO_GO, ""
        else:
            error, latency = future.result()
            if error is None:
                pending.succeeded(latency=latency)
                row.state, row.message = SweepGroup.State.CHANGED, ""
            else:
                pending.failed(error, latency=latency)
                row.state, row.message = SweepGroup.State.FAILED, error.operator_message
            self.calls_done += 1
        row.save(update_fields=["state", "message"])
        self.outstanding[target.subaccount] -= 1
        if not self.outstanding[target.subaccount] and not self.stopping:
            self.list_again(target)  # verify

    # --- the run as a whole -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop sending: calls not yet started are withdrawn (and recorded so); those out are awaited."""
        self.stopping = True
        for future in [*self.calls, *self.reads]:
            future.cancel()

    def save_counters(self) -> None:
        if self.calls_done or self.first_call_at:
            Sweep.objects.filter(pk=self.sweep.pk).update(
                calls_done=F("calls_done") + self.calls_done,
                first_call_at=self.sweep.first_call_at or self.first_call_at,
            )
            self.sweep.first_call_at = self.sweep.first_call_at or self.first_call_at
            self.calls_done = 0

    def save_phase(self) -> None:
        left = [target for target in self.targets.values() if not target.done]
        if not left:
            return  # done is recorded with the sweep's result
        if any(target.listings == 0 for target in left):
            phase = Sweep.Phase.LISTING
        elif any(target.listings == 1 for target in left):
            phase = Sweep.Phase.TRIGGERING
        else:
            phase = Sweep.Phase.VERIFYING
        if phase != self.sweep.phase:
            self.sweep.phase = phase
            Sweep.objects.filter(pk=self.sweep.pk).update(phase=phase)


def _state(triggered: bool) -> str:
    return "triggered" if triggered else "active"


def sweep_run(sweep_id: int, lease: Lease) -> bool:
    """Run (or go on with) the sweep while `lease` holds; True once it is done."""
    sweep = Sweep.objects.get(pk=sweep_id)
    if sweep.finished_at is not None:
        return True
    Sweep.objects.filter(pk=sweep_id).update(runs=F("runs") + 1)
    sweep.runs += 1
    with (
        metrics.sweep(_per_group(sweep.action)),
        ThreadPoolExecutor(max_workers=selectors.FAN_OUT_WORKERS, thread_name_prefix="ogpanel-sweep-read") as readers,
        ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="ogpanel-sweep-write") as writers,
    ):
        run = _Run(sweep, lease, readers, writers)
        run.begin()
        while run.futures:
            finished, _ = wait(run.futures, timeout=HEARTBEAT, return_when=FIRST_COMPLETED)
            if not run.stopping and not lease.keep():
                run.stop()
            for future in finished:
                if future in run.reads:
                    target = run.reads.pop(future)
                    if not run.stopping:
                        run.listed(target, future.result())
                else:
                    run.answered(future)
            run.save_counters()
    for sub in run.subs.values():
        selectors.forget_listing(sub)
    if run.stopping or any(not target.done for target in run.targets.values()):
        return False
    return _complete(sweep)


def _complete(sweep: Sweep) -> bool:
    """Record the sweep's result and mark it done, in one transaction: one process does, once."""
    rows = SweepGroup.objects.filter(target__sweep=sweep)
    counts = Counter(rows.values_list("state", flat=True))
    finished_at = timezone.now()

    def mark_done(event: AuditEvent) -> None:
        if not Sweep.objects.filter(pk=sweep.pk, finished_at__isnull=True).update(
            phase=Sweep.Phase.DONE, finished_at=finished_at, lease_owner="", lease_until=None
        ):
            raise _AlreadyDone
        SweepTarget.objects.filter(sweep=sweep).update(open=False)

    attempt = AuditEvent.objects.get(seq=sweep.audit_seq)
    unreadable = sweep.targets.exclude(error="").count()
    try:
        audit.append(
            Actor(**sweep.actor),
            action=sweep.action,
            outcome=AuditEvent.Outcome.SUCCEEDED,
            attempt_seq=sweep.audit_seq,
            reason=sweep.reason,
            latency_ms=round((finished_at - sweep.created_at).total_seconds() * 1000),
            params={
                **attempt.params,
                "sweep": sweep.pk,
                "groups": sum(counts.values()),
                "changed": counts[SweepGroup.State.CHANGED],
                "failed": counts[SweepGroup.State.FAILED] + unreadable,
                "verified": rows.filter(verified=True).count(),
            },
            within=mark_done,
        )
    except _AlreadyDone:
        return True
    sweep.refresh_from_db()
    sweep_finished(sweep)
    return True


def sweep_finished(sweep: Sweep) -> None:
    """Called once per sweep, right after its result is recorded: what follows every sweep.

    A checkpoint seals the log's head with the sweep in it, outside the database (checkpoints.py);
    it never raises, and does nothing without a checkpoint key. The metrics hear how long it took
    and how its groups ended.
    """
    logger.info("kill switch sweep %s (%s) finished after %s run(s)", sweep.pk, sweep.action, sweep.runs)
    checkpoints.write(reason=sweep.action)
    if sweep.finished_at is not None:
        seconds = (sweep.finished_at - sweep.created_at).total_seconds()
        metrics.sweep_finished(_per_group(sweep.action), seconds, sweep_progress.group_outcomes(sweep))
