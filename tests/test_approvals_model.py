"""The life of requests for a second person, model-based: generated histories against a plain model.

Six people (two unscoped ops, an ops user limited to subaccount 1, a viewer, an admin and an
admin limited to subaccount 2) file
resets and deletes on subaccounts 1 and 2, approve, reject and withdraw them in any order,
while time passes and requests expire. After every step the database must agree with the model:
each request's status; an action run exactly once for each executed request and never for any
other; nobody ever deciding their own request. Approvals go through permissions.may_approve as
the views do and run the real action against the simulator.

CI runs a fixed seed and a bounded number of histories; for a longer local run:
HYPOTHESIS_MAX_EXAMPLES=500 pytest tests/test_approvals_model.py.
"""

import os
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from ogpanel import approvals
from ogpanel.audit import Actor
from ogpanel.models import ApprovalRequest, AuditEvent
from ogpanel.permissions import Role, role_of, scope_of
from tests.panel_fixtures import make_user
from tests.policy_fixtures import set_policy

Status = ApprovalRequest.Status
NEEDS = {"reset": Role.OPS, "delete": Role.ADMIN}
PEOPLE = {
    "otto": ("ops", None),
    "olga": ("ops", None),
    "sam": ("ops", [1]),
    "vera": ("viewer", None),
    "ada": ("admin", None),
    "bea": ("admin", [2]),
}
MAX_EXAMPLES = int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "30"))


def actor(user) -> Actor:
    return Actor(user_id=user.pk, username=user.username, role=role_of(user).label)


class Requests(RuleBasedStateMachine):
    """The model: per request, its requester, kind, subaccount, expiry and status."""

    users: dict = {}
    sim = None
    filed = Bundle("filed")

    def __init__(self) -> None:
        super().__init__()
        self.now = datetime.now(UTC)
        self.model: dict[int, dict] = {}
        # Histories share the test's database: an earlier history's requests are out of this one's way.
        ApprovalRequest.objects.filter(status=Status.PENDING).update(status=Status.EXPIRED)

    def _may(self, name: str, kind: str, subaccount: int) -> bool:
        user = self.users[name]
        scope = scope_of(user)
        return role_of(user) >= NEEDS[kind] and (scope is None or subaccount in scope)

    @rule(target=filed, kind=st.sampled_from(sorted(NEEDS)), subaccount=st.sampled_from([1, 2]), data=st.data())
    def file(self, kind, subaccount, data):
        # Only someone who may do it files it: the view refuses anyone else before anything is filed.
        name = data.draw(st.sampled_from([n for n in sorted(PEOPLE) if self._may(n, kind, subaccount)]))
        group = self.sim.create_group(subaccount, 1)
        if kind == "reset":
            self.sim.fill(self.sim.place_order(subaccount, group, count=2), 2)
        user = self.users[name]
        req = approvals.request_file(
            actor=actor(user),
            user=user,
            kind=kind,
            reason="model",
            subaccount=subaccount,
            order_group_id=group,
            now=self.now,
        )
        self.model[req.pk] = {
            "by": name,
            "kind": kind,
            "subaccount": subaccount,
            "expires": self.now + timedelta(minutes=15),
            "status": Status.PENDING,
            "group": group,
        }
        return req.pk

    def _live(self, pk: int) -> bool:
        one = self.model[pk]
        return one["status"] == Status.PENDING and self.now < one["expires"]

    def _eligible(self, pk: int, name: str) -> bool:
        one = self.model[pk]
        return name != one["by"] and self._may(name, one["kind"], one["subaccount"])

    def _settle_expired(self, pk: int) -> None:
        if self.model[pk]["status"] == Status.PENDING and self.now >= self.model[pk]["expires"]:
            self.model[pk]["status"] = Status.EXPIRED

    def _someone(self, pk: int, data) -> str:
        """Anyone, or as often someone who may decide, so that decisions happen as well as refusals."""
        eligible = [name for name in sorted(PEOPLE) if self._eligible(pk, name)]
        return data.draw(st.sampled_from(sorted(PEOPLE)) | st.sampled_from(eligible or sorted(PEOPLE)))

    @rule(pk=filed, data=st.data())
    def approve(self, pk, data):
        self._decide(pk, self._someone(pk, data), approve=True)

    @rule(pk=filed, data=st.data())
    def reject(self, pk, data):
        self._decide(pk, self._someone(pk, data), approve=False)

    def _decide(self, pk: int, name: str, *, approve: bool) -> None:
        req, user = ApprovalRequest.objects.get(pk=pk), self.users[name]
        assert approvals.may_decide(user, req) == self._eligible(pk, name)
        if not self._eligible(pk, name):
            return
        decide = approvals.request_approve if approve else approvals.request_reject
        if not self._live(pk):
            with pytest.raises(approvals.Refused):
                decide(req=req, user=user, actor=actor(user), now=self.now)
            self._settle_expired(pk)
            return
        decide(req=req, user=user, actor=actor(user), now=self.now)
        self.model[pk]["status"] = Status.EXECUTED if approve else Status.REJECTED

    @rule(pk=filed)
    def withdraw(self, pk):
        user = self.users[self.model[pk]["by"]]  # the view lets only the requester withdraw
        req = ApprovalRequest.objects.get(pk=pk)
        if not self._live(pk):
            with pytest.raises(approvals.Refused):
                approvals.request_cancel(req=req, user=user, actor=actor(user), now=self.now)
            self._settle_expired(pk)
            return
        approvals.request_cancel(req=req, user=user, actor=actor(user), now=self.now)
        self.model[pk]["status"] = Status.CANCELLED

    @rule(minutes=st.sampled_from([1, 7, 16]))
    def time_passes(self, minutes):
        self.now += timedelta(minutes=minutes)

    @rule()
    def expire(self):
        expected = sum(
            1
            for pk in self.model
            if self.model[pk]["status"] == Status.PENDING and self.now >= self.model[pk]["expires"]
        )
        assert approvals.expire_due(now=self.now) == expected
        for pk in self.model:
            self._settle_expired(pk)

    @invariant()
    def the_database_agrees_with_the_model(self):
        statuses = dict(ApprovalRequest.objects.filter(pk__in=self.model).values_list("pk", "status"))
        assert statuses == {pk: one["status"] for pk, one in self.model.items()}

    @invariant()
    def each_executed_request_ran_once_and_no_other_ran(self):
        ran = AuditEvent.objects.filter(params__approval_request__in=list(self.model), outcome="succeeded")
        counted: dict[int, int] = {}
        for event in ran:
            counted[event.params["approval_request"]] = counted.get(event.params["approval_request"], 0) + 1
            assert event.params["requested_by"] != event.params["approved_by"]
        executed = {pk for pk, one in self.model.items() if one["status"] == Status.EXECUTED}
        assert counted == dict.fromkeys(executed, 1)
        for pk in executed:
            group = self.model[pk]["group"]
            if self.model[pk]["kind"] == "reset":
                assert self.sim.group(group)["triggered"] is False

    @invariant()
    def nobody_decides_their_own_request(self):
        decided = ApprovalRequest.objects.filter(pk__in=self.model).exclude(
            status__in=[Status.PENDING, Status.CANCELLED]
        )
        assert not [r.pk for r in decided if r.decided_by_id is not None and r.decided_by_id == r.requested_by_id]


@pytest.mark.django_db
def test_request_histories_agree_with_the_model(sim, subaccounts):
    set_policy()
    Requests.users = {name: make_user(name, role, subaccounts=scope) for name, (role, scope) in PEOPLE.items()}
    Requests.sim = sim
    run_state_machine_as_test(
        Requests,
        settings=settings(max_examples=MAX_EXAMPLES, stateful_step_count=20, deadline=None, derandomize=True),
    )
    # The histories went everywhere: every way a request can end happened at least once.
    ends = set(AuditEvent.objects.filter(action__startswith="request_").values_list("action", flat=True))
    assert ends >= {"request_approved", "request_rejected", "request_cancelled", "request_expired"}
