"""What changed between the trip watch's recorded state and a listing, and whether the panel made it.

`changes_between` compares the recorded state (ObservedGroup) with one listing. Polling alone
sees only the difference: a group reset and tripped again between two reads looks unchanged.
The stream's updates received before the read fill that in: replayed from the recorded state,
they give every trip and reset in between; where they stop short of the listing (updates still
on their way, or lost in a gap), the difference does the rest.
"""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ogpanel.audit import AlreadyRecorded
from ogpanel.kalshi import OrderGroup
from ogpanel.models import AuditEvent, ObservedGroup

Outcome = AuditEvent.Outcome
# The panel's own audit action for each kind of change.
PANEL_ACTIONS = {
    "created": "create",
    "triggered": "trigger",
    "reset": "reset",
    "deleted": "delete",
    "limit_updated": "update_limit",
}
# A panel call whose attempt has had no result for this long died with its process ("outcome unknown").
PANEL_CALL_GRACE = timedelta(seconds=120)


@dataclass(frozen=True)
class Change:
    kind: str  # created, triggered, reset, deleted, limit_updated
    subaccount: int
    order_group_id: str
    contracts_limit: int | None  # the group's limit now (for deleted: the last one known)
    previous_limit: int | None = None

    @property
    def action(self) -> str:
        return f"exchange_{self.kind}"


def _trips_and_resets(subaccount: int, group: OrderGroup, was_triggered: bool, heard: Sequence[str]) -> list[Change]:
    """The trips and resets from the recorded state to the listed one: the stream's, then what is left."""
    replayed, state = [], was_triggered
    for kind in heard:
        if (kind == "triggered" and not state) or (kind == "reset" and state):
            replayed.append(kind)
            state = not state
    if state != group.triggered:  # the rest happened after the updates heard so far (or they were lost)
        replayed.append("triggered" if group.triggered else "reset")
    return [Change(kind, subaccount, group.id, group.contracts_limit) for kind in replayed]


def changes_between(
    subaccount: int,
    known: Mapping[str, ObservedGroup],
    groups: Collection[OrderGroup],
    heard: Mapping[str, Sequence[str]] | None = None,
) -> list[Change]:
    """What differs between the recorded state and a listing, group by group, in the order it happened.

    `heard`: per group id, the kinds of the stream's updates received before the listing was read.
    """
    heard = heard or {}
    changes = []
    for group in groups:
        before = known.get(group.id)
        if before is None:
            changes.append(Change("created", subaccount, group.id, group.contracts_limit))
            # Groups are created active: a triggered one tripped before we saw it.
            changes += _trips_and_resets(subaccount, group, False, heard.get(group.id, ()))
            continue
        if group.contracts_limit != before.contracts_limit:
            # First: a lower limit can trigger the group, never the other way round.
            changes.append(Change("limit_updated", subaccount, group.id, group.contracts_limit, before.contracts_limit))
        changes += _trips_and_resets(subaccount, group, before.triggered, heard.get(group.id, ()))
    listed = {group.id for group in groups}
    changes += [
        Change("deleted", subaccount, group_id, before.contracts_limit)
        for group_id, before in known.items()
        if group_id not in listed
    ]
    return changes


def move(change: Change, read_at: datetime) -> None:
    """Move the stored state by one change, or raise AlreadyRecorded (it already shows it)."""
    rows = ObservedGroup.objects.filter(subaccount=change.subaccount, order_group_id=change.order_group_id)
    if change.kind == "created":
        if rows.exists():
            raise AlreadyRecorded
        ObservedGroup.objects.create(
            subaccount=change.subaccount,
            order_group_id=change.order_group_id,
            contracts_limit=change.contracts_limit,
            triggered=False,
            first_seen=read_at,
            last_seen=read_at,
        )
        return
    if change.kind == "deleted":
        moved = rows.delete()[0]
    elif change.kind == "limit_updated":
        moved = rows.filter(contracts_limit=change.previous_limit).update(contracts_limit=change.contracts_limit)
    else:
        triggered = change.kind == "triggered"
        moved = rows.filter(triggered=not triggered).update(triggered=triggered)
    if not moved:
        raise AlreadyRecorded


def panel_made(change: Change, since: datetime | None, now: datetime) -> bool | None:
    """Did the panel make this change? None: a panel call that may have made it is still under way.

    `since` is when the read that last showed the old state started: a panel call that
    succeeded before then would already have shown in that read. None: no read showed the
    group before (it is new), so any panel call on it may explain the change.
    """
    events = AuditEvent.objects.filter(action=PANEL_ACTIONS[change.kind], subaccount=change.subaccount)
    if change.kind == "created":
        # The panel learns a new group's id only from the exchange's answer: its result names it.
        if events.filter(outcome=Outcome.SUCCEEDED, params__order_group_id=change.order_group_id).exists():
            return True
        attempts = events.filter(outcome=Outcome.ATTEMPTED, at__gte=now - PANEL_CALL_GRACE)
    else:
        attempts = events.filter(outcome=Outcome.ATTEMPTED, order_group_id=change.order_group_id)
        if since is not None:
            attempts = attempts.filter(at__gte=min(since, now) - PANEL_CALL_GRACE)
    began = dict(attempts.values_list("seq", "at"))
    if not began:
        return False
    results = {
        seq: (outcome, at)
        for seq, outcome, at in AuditEvent.objects.filter(attempt_seq__in=began).values_list(
            "attempt_seq", "outcome", "at"
        )
    }
    under_way = made = False
    for seq, at in began.items():
        outcome, finished = results.get(seq, (None, None))
        if outcome is None:
            under_way = under_way or at >= now - PANEL_CALL_GRACE
        elif (
            outcome == Outcome.SUCCEEDED
            and change.kind != "created"
            and (since is None or finished is None or finished >= since)
        ):
            made = True
    if made:
        return True
    return None if under_way else False
