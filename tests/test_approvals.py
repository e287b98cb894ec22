"""Maker-checker through the panel's own pages, against the simulator over HTTP.

A loosening action the policy names is filed as a request instead of running; a second person
(never the requester, with the role the action needs and its subaccounts in scope) approves it
and it runs once, with both names on its audit events; or it is rejected, withdrawn or expires.
Tightening actions never wait. `sim.requests` shows what reached the exchange.
"""

from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import RequestFactory
from django.urls import reverse

from ogpanel import approvals, audit, notices
from ogpanel.models import ApprovalRequest, AuditEvent, Credential, Notice, Subaccount
from ogpanel.permissions import Action
from ogpanel.views import four_eyes
from tests.leaks import assert_no_key_material
from tests.panel_fixtures import make_user
from tests.policy_fixtures import *  # noqa: F403  (fixtures)
from tests.policy_fixtures import events_after, last_seq, only_request, set_policy, signed_in, writes
from tests.sweeps import run_sweeps

Status = ApprovalRequest.Status
HTMX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def _no_listing_cache(settings):
    settings.OGPANEL_LIST_CACHE_SECONDS = 0


def tripped(sim, number: int = 1) -> str:
    group = sim.create_group(number, 1)
    sim.fill(sim.place_order(number, group, count=2), 2)
    assert sim.group(group)["triggered"] is True
    return group


def resets(sim, group: str) -> int:
    return sum(r.method == "PUT" and r.path.endswith(f"/{group}/reset") for r in sim.requests)


def file_reset(client, sim, group: str, number: int = 1):
    return client.post(reverse("group_reset", args=[number, group]), {"reason": "fills done, reopen"})


# --- the whole path -------------------------------------------------------------------------------


def test_a_reset_filed_by_one_operator_and_approved_by_another_runs_once_with_both_names(
    sim, subaccounts, operator, second_operator, four_eyes_everywhere
):
    group = tripped(sim)
    requester, approver = signed_in(operator), signed_in(second_operator)
    sim.clear_requests()
    before = last_seq()

    filed = file_reset(requester, sim, group)

    req = only_request()
    assert filed.status_code == 302 and filed["Location"] == reverse("request_detail", args=[req.pk])
    assert writes(sim) == [] and sim.group(group)["triggered"] is True
    assert (req.status, req.kind, req.subaccount, req.order_group_id) == (Status.PENDING, "reset", 1, group)
    assert req.requested_by_username == "otto" and req.reason == "fills done, reopen"
    page = requester.get(filed["Location"]).content.decode()
    assert "Pending" in page and "olga" in page and "you cannot approve your own request" in page

    approved = approver.post(reverse("request_approve", args=[req.pk]))
    again = signed_in(second_operator).post(reverse("request_approve", args=[req.pk]))

    assert approved.status_code == 302
    assert sim.group(group)["triggered"] is False
    assert resets(sim, group) == 1
    assert again.status_code == 409 and "no longer pending" in again.content.decode()
    req.refresh_from_db()
    assert req.status == Status.EXECUTED and req.decided_by_username == "olga"
    assert req.result == f"Reset order group {group} on subaccount 1."
    ran = events_after(before, action="reset")
    assert [(e.outcome, e.actor_username) for e in ran] == [("attempted", "olga"), ("succeeded", "olga")]
    for event in ran:
        assert event.params["requested_by"] == "otto" and event.params["approved_by"] == "olga"
        assert event.params["approval_request"] == req.pk and event.reason == "fills done, reopen"
    trail = [(e.action, e.actor_username) for e in events_after(before) if e.action.startswith("request_")]
    assert trail == [("request_filed", "otto"), ("request_approved", "olga")]
    assert audit.verify().ok


def test_it_refuses_self_approval(sim, subaccounts, operator, second_operator, four_eyes_everywhere):
    group = tripped(sim)
    requester = signed_in(operator)
    file_reset(requester, sim, group)
    req = only_request()
    sim.clear_requests()
    before = last_seq()

    response = requester.post(reverse("request_approve", args=[req.pk]))
    rejected = requester.post(reverse("request_reject", args=[req.pk]))

    assert response.status_code == 403 and rejected.status_code == 403
    assert "cannot approve or reject your own request" in response.content.decode()
    assert sim.requests == [] and sim.group(group)["triggered"] is True
    assert only_request().status == Status.PENDING
    assert [(e.action, e.outcome) for e in events_after(before)] == [("approve", "denied"), ("approve", "denied")]


def test_it_refuses_approval_by_a_user_without_the_subaccount_in_scope(
    sim, subaccounts, operator, second_operator, scoped_operator, four_eyes_everywhere
):
    group = tripped(sim, number=2)
    file_reset(signed_in(operator), sim, group, number=2)
    req = only_request()
    sim.clear_requests()

    outsider = signed_in(scoped_operator)  # ops, limited to subaccount 1
    response = outsider.post(reverse("request_approve", args=[req.pk]))

    assert response.status_code == 404 and group.encode() not in response.content
    assert outsider.get(reverse("request_detail", args=[req.pk])).status_code == 404
    assert f"request-{req.pk}" not in outsider.get(reverse("requests")).content.decode()
    assert sim.requests == [] and only_request().status == Status.PENDING


def test_it_refuses_approval_by_a_role_below_what_the_action_needs(
    sim, subaccounts, administrator, operator, second_admin, viewer, four_eyes_everywhere
):
    group = sim.create_group(1, 10)
    signed_in(administrator).post(reverse("group_delete", args=[1, group]), {"reason": "retire it"})
    req = only_request()
    assert req.kind == "delete"
    sim.clear_requests()

    by_ops = signed_in(operator).post(reverse("request_approve", args=[req.pk]))  # delete needs an admin
    by_viewer = signed_in(viewer).post(reverse("request_approve", args=[req.pk]))
    ops_page = signed_in(operator).get(reverse("request_detail", args=[req.pk])).content.decode()

    assert by_ops.status_code == 403 and by_viewer.status_code == 403
    assert sim.requests == [] and only_request().status == Status.PENDING
    assert "Approve and run it" not in ops_page

    by_admin = signed_in(second_admin).post(reverse("request_approve", args=[req.pk]))
    assert by_admin.status_code == 302
    assert [r.method for r in writes(sim)] == ["DELETE"]
    assert only_request().status == Status.EXECUTED


def test_an_expired_request_is_never_run(sim, subaccounts, operator, second_operator, four_eyes_everywhere, settings):
    assert settings.OGPANEL_APPROVAL_MINUTES == 15
    group = tripped(sim)
    file_reset(signed_in(operator), sim, group)
    req = only_request()
    assert req.expires_at - req.requested_at == timedelta(minutes=15)
    # Fifteen minutes pass.
    ApprovalRequest.objects.filter(pk=req.pk).update(expires_at=req.requested_at - timedelta(seconds=1))
    sim.clear_requests()
    before = last_seq()

    response = signed_in(second_operator).post(reverse("request_approve", args=[req.pk]))

    assert response.status_code == 409 and "expired" in response.content.decode()
    assert sim.requests == [] and sim.group(group)["triggered"] is True
    assert only_request().status == Status.EXPIRED
    assert [(e.action, e.actor_username) for e in events_after(before)] == [("request_expired", "approvals")]


def test_the_expire_command_expires_what_is_past_its_time_once(
    sim, subaccounts, operator, second_operator, four_eyes_everywhere, capsys
):
    old, fresh = tripped(sim), tripped(sim)
    client = signed_in(operator)
    file_reset(client, sim, old)
    file_reset(client, sim, fresh)
    stale = ApprovalRequest.objects.get(order_group_id=old)
    ApprovalRequest.objects.filter(pk=stale.pk).update(expires_at=stale.requested_at)

    call_command("expire_requests")
    call_command("expire_requests")

    assert capsys.readouterr().out.splitlines() == ["Expired 1 request(s).", "Expired 0 request(s)."]
    assert dict(ApprovalRequest.objects.values_list("order_group_id", "status")) == {
        old: Status.EXPIRED,
        fresh: Status.PENDING,
    }
    assert AuditEvent.objects.filter(action="request_expired").count() == 1


def test_a_rejected_or_withdrawn_request_never_runs(sim, subaccounts, operator, second_operator, four_eyes_everywhere):
    first, second = tripped(sim), tripped(sim)
    requester, other = signed_in(operator), signed_in(second_operator)
    file_reset(requester, sim, first)
    file_reset(requester, sim, second)
    rejected, withdrawn = (ApprovalRequest.objects.get(order_group_id=g) for g in (first, second))
    sim.clear_requests()

    assert other.post(reverse("request_reject", args=[rejected.pk]), {"note": "not yet"}).status_code == 302
    assert other.post(reverse("request_cancel", args=[withdrawn.pk])).status_code == 403  # only the requester
    assert requester.post(reverse("request_cancel", args=[withdrawn.pk])).status_code == 302
    late = other.post(reverse("request_approve", args=[rejected.pk]))

    assert late.status_code == 409 and writes(sim) == []
    rejected.refresh_from_db()
    withdrawn.refresh_from_db()
    assert (rejected.status, rejected.note, rejected.decided_by_username) == (Status.REJECTED, "not yet", "olga")
    assert withdrawn.status == Status.CANCELLED
    listing = requester.get(reverse("requests")).content.decode()
    assert f"request-{rejected.pk}" in listing and f"request-{withdrawn.pk}" in listing


def test_the_same_request_filed_twice_is_one_request(sim, subaccounts, operator, second_operator, four_eyes_everywhere):
    group = tripped(sim)
    client = signed_in(operator)
    file_reset(client, sim, group)
    file_reset(client, sim, group)
    assert ApprovalRequest.objects.count() == 1 and AuditEvent.objects.filter(action="request_filed").count() == 1


# --- what waits and what does not ------------------------------------------------------------------------


def test_tightening_actions_never_wait(sim, subaccounts, operator, administrator, second_operator, second_admin):
    set_policy(ceiling=1000)  # every four-eyes action named, a ceiling too
    trigger_me, sweep_me, lower_me = sim.create_group(1, 10), sim.create_group(2, 10), sim.create_group(1, 500)
    ops, admin = signed_in(operator), signed_in(administrator)
    form = ops.get(reverse("group_trigger", args=[1, trigger_me])).content.decode()
    assert "second person" not in form and "ceiling" not in form  # nothing to warn about

    triggered = ops.post(reverse("group_trigger", args=[1, trigger_me]), {"reason": "stop"})
    swept = ops.post(
        reverse("kill_switch"),
        {
            "operation": "trigger_one",
            "subaccount": "2",
            "reason": "stop all",
            "confirm": "TRIGGER",
            "reauth_password": "otto-password-1",
        },
    )
    lowered = admin.post(reverse("group_limit", args=[1, lower_me]), {"contracts_limit": "50", "reason": ""})

    assert [triggered.status_code, swept.status_code, lowered.status_code] == [302, 302, 302]
    run_sweeps()  # the kill switch answers at once; its sweep runs as its panel thread would
    assert sim.group(trigger_me)["triggered"] is True and sim.group(sweep_me)["triggered"] is True
    assert sim.group(lower_me)["contracts_limit"] == 50
    assert ApprovalRequest.objects.count() == 0


def test_raising_a_limit_waits_but_lowering_it_does_not(sim, subaccounts, administrator, second_admin):
    set_policy()
    group = sim.create_group(1, 100)
    admin = signed_in(administrator)

    no_reason = admin.post(reverse("group_limit", args=[1, group]), {"contracts_limit": "200", "reason": ""})
    raised = admin.post(reverse("group_limit", args=[1, group]), {"contracts_limit": "200", "reason": "busy day"})

    assert no_reason.status_code == 400 and four_eyes.REASON_NEEDED in no_reason.content.decode()
    req = only_request()
    assert raised.status_code == 302 and req.kind == "update_limit"
    assert req.params == {"contracts_limit": 200, "previous_limit": 100}
    assert sim.group(group)["contracts_limit"] == 100
    assert "Raise the limit of order group" in approvals.what(req) and "from 100 to 200" in approvals.what(req)

    signed_in(second_admin).post(reverse("request_approve", args=[req.pk]))
    assert sim.group(group)["contracts_limit"] == 200


def test_without_a_policy_nothing_waits(sim, subaccounts, operator, second_operator):
    group = tripped(sim)
    response = file_reset(signed_in(operator), sim, group)
    assert response.status_code == 302 and sim.group(group)["triggered"] is False
    assert ApprovalRequest.objects.count() == 0


def test_with_no_second_eligible_user_the_panel_says_so_instead_of_filing(sim, subaccounts, operator, viewer):
    set_policy()
    make_user("desk2", "ops", subaccounts=[2])  # another ops user, but not for subaccount 1
    group = tripped(sim)
    client = signed_in(operator)
    sim.clear_requests()

    form = client.get(reverse("group_reset", args=[1, group]), headers=HTMX).content.decode()
    response = client.post(reverse("group_reset", args=[1, group]), {"reason": "reopen"})

    words = four_eyes.nobody_message("reset", [1])
    assert "nobody else may give it" in words and "ops role or higher with subaccount 1 in scope" in words
    assert words in form.replace("&#x27;", "'")
    assert response.status_code == 409 and words in response.content.decode().replace("&#x27;", "'")
    assert ApprovalRequest.objects.count() == 0 and writes(sim) == []
    assert sim.group(group)["triggered"] is True


def test_the_form_names_who_may_approve(sim, subaccounts, operator, second_operator, administrator):
    set_policy()
    group = tripped(sim)
    page = signed_in(operator).get(reverse("group_reset", args=[1, group])).content.decode()
    assert "needs a second person" in page and "ada, olga may approve" in page


# --- ceilings ---------------------------------------------------------------------------------------


def test_a_limit_above_the_ceiling_is_refused_and_nothing_is_sent(sim, subaccounts, administrator, second_admin):
    set_policy(1, ceiling=100, four_eyes=frozenset())
    group = sim.create_group(1, 50)
    admin = signed_in(administrator)
    sim.clear_requests()

    created = admin.post(reverse("group_create"), {"subaccount": "1", "contracts_limit": "500", "exchange_index": "0"})
    assert created.status_code == 400 and sim.requests == []
    raised = admin.post(reverse("group_limit", args=[1, group]), {"contracts_limit": "101", "reason": "more"})

    message = "The ceiling for an order group's limit on subaccount 1 is 100 contracts; 500 is above it."
    assert message in created.content.decode().replace("&#x27;", "'")
    assert raised.status_code == 400 and "is 100 contracts; 101 is above it" in raised.content.decode()
    assert writes(sim) == []  # only the read of the group's current limit went out
    assert sim.group(group)["contracts_limit"] == 50 and ApprovalRequest.objects.count() == 0
    assert admin.post(reverse("group_limit", args=[1, group]), {"contracts_limit": "100"}).status_code == 302
    assert sim.group(group)["contracts_limit"] == 100


def test_a_limit_above_the_ceiling_waits_for_approval_where_the_policy_allows_it(
    sim, subaccounts, administrator, second_admin
):
    set_policy(1, ceiling=100, above_ceiling="approve", four_eyes=frozenset())
    admin = signed_in(administrator)

    filed = admin.post(
        reverse("group_create"),
        {"subaccount": "1", "contracts_limit": "500", "exchange_index": "0", "reason": "auction"},
    )

    req = only_request()
    assert filed.status_code == 302 and req.kind == "create" and sim.exchange.state()["groups"] == []
    signed_in(second_admin).post(reverse("request_approve", args=[req.pk]))
    req.refresh_from_db()
    assert req.status == Status.EXECUTED
    (made,) = sim.exchange.state()["groups"]
    assert made["contracts_limit"] == 500 and made["subaccount"] == 1


def test_an_approved_raise_is_refused_if_the_ceiling_became_strict_meanwhile(
    sim, subaccounts, administrator, second_admin
):
    set_policy(1, ceiling=100, above_ceiling="approve", four_eyes=frozenset())
    group = sim.create_group(1, 50)
    signed_in(administrator).post(reverse("group_limit", args=[1, group]), {"contracts_limit": "500", "reason": "x"})
    set_policy(1, ceiling=100, four_eyes=frozenset())  # above the ceiling: refused from now on
    sim.clear_requests()

    response = signed_in(second_admin).post(reverse("request_approve", args=[only_request().pk]))

    req = only_request()
    assert response.status_code == 302 and req.status == Status.FAILED and "100 contracts" in req.result
    assert writes(sim) == [] and sim.group(group)["contracts_limit"] == 50
    failed = AuditEvent.objects.get(action="update_limit", outcome="failed")
    assert failed.params["approved_by"] == "ben" and failed.error_code == "refused"


# --- credentials and mapping --------------------------------------------------------------------------


def test_a_credential_rotation_waits_with_the_key_encrypted_and_runs_on_approval(
    sim, subaccounts, credential, administrator, second_admin, rsa_pem
):
    set_policy()
    admin = signed_in(administrator)
    filed = admin.post(
        reverse("credential_rotate", args=[credential.pk]),
        {
            "key_id": "next-key",
            "private_key": rsa_pem.decode(),
            "reauth_password": "ada-password-1",
            "reason": "yearly",
        },
    )

    req = only_request()
    assert filed.status_code == 302 and req.kind == "credential_rotate" and req.subaccounts == [0, 1, 2, 3]
    assert Credential.objects.get(pk=credential.pk).key_id == "test-key"
    approver = signed_in(second_admin)
    page = approver.get(reverse("request_detail", args=[req.pk])).content.decode()
    assert "Confirm it's you" in page  # approving a credential change asks for the password, as doing it would
    assert_no_key_material([rsa_pem], req.secret, str(req.params), page)
    wrong = approver.post(reverse("request_approve", args=[req.pk]), {"reauth_password": "nope"})
    assert wrong.status_code == 403 and only_request().status == Status.PENDING

    approver.post(reverse("request_approve", args=[req.pk]), {"reauth_password": "ben-password-1"})

    req.refresh_from_db()
    assert req.status == Status.EXECUTED and req.secret == ""
    assert Credential.objects.get(pk=credential.pk).key_id == "next-key"
    rotated = AuditEvent.objects.get(action="credential_rotate", outcome="succeeded")
    assert (rotated.params["requested_by"], rotated.params["approved_by"]) == ("ada", "ben")
    texts = [str(e.params) for e in AuditEvent.objects.all()]
    assert_no_key_material([rsa_pem], *texts, str(list(Notice.objects.values_list("text", "payload"))))


def test_a_mapping_change_waits_for_a_second_admin(sim, subaccounts, credential, administrator, second_admin):
    set_policy(2)
    admin = signed_in(administrator)
    data = {"op": "assign", "number": "2", "credential": str(credential.pk), "label": "renamed"}
    data["reauth_password"] = "ada-password-1"

    refused = admin.post(reverse("subaccounts"), data)
    filed = admin.post(reverse("subaccounts"), {**data, "reason": "desk moved"})

    assert refused.status_code == 400  # no reason given
    req = only_request()
    assert filed.status_code == 302 and req.kind == "subaccount_assign" and req.subaccount == 2
    assert Subaccount.objects.get(number=2).label == "desk 2"
    assert (
        signed_in(administrator).post(reverse("subaccounts"), {**data, "op": "assign", "number": "3"}).status_code
        == 302
    )
    assert Subaccount.objects.get(number=3).label == "renamed"  # no policy on subaccount 3, and no default

    signed_in(second_admin).post(reverse("request_approve", args=[req.pk]), {"reauth_password": "ben-password-1"})
    assert Subaccount.objects.get(number=2).label == "renamed"


# --- the kill switch's reset (wired by the kill switch's own code; tested here through the gate) ----------


def _gate_request(user, data: dict):
    from django.contrib.messages.storage.fallback import FallbackStorage

    request = RequestFactory().post("/kill-switch/", data)
    request.user, request.session = user, {}
    request._messages = FallbackStorage(request)
    request.htmx = False
    return request


def test_the_kill_switch_reset_is_held_and_runs_as_a_sweep_on_approval(
    sim, subaccounts, operator, second_operator, four_eyes_everywhere
):
    groups = [tripped(sim, 1), tripped(sim, 1)]
    request = _gate_request(operator, {"reason": "reopen desk 1"})

    held = four_eyes.hold_kill_switch_reset(request, [subaccounts[1]], "reopen desk 1")

    req = only_request()
    assert held.status_code == 302 and req.kind == "kill_switch_reset" and req.subaccounts == [1]
    assert all(sim.group(g)["triggered"] for g in groups)
    approver = signed_in(second_operator)
    approver.post(reverse("request_approve", args=[req.pk]), {"reauth_password": "olga-password-1"})
    req.refresh_from_db()
    assert req.status == Status.EXECUTED and req.result.startswith("Kill switch reset started (sweep")
    [run] = run_sweeps()  # the sweep the approval started, as its panel thread would run it
    assert run.finished_at is not None and run.actor["approval"]["approved_by"] == "olga"
    assert not any(sim.group(g)["triggered"] for g in groups)
    sweep = AuditEvent.objects.get(action="kill_switch_reset", outcome="succeeded")
    assert sweep.params["requested_by"] == "otto" and sweep.params["approved_by"] == "olga"


def test_the_kill_switch_trigger_is_never_held(sim, subaccounts, operator, second_operator, four_eyes_everywhere):
    assert four_eyes.hold_group_action(_gate_request(operator, {}), Action.TRIGGER, subaccounts[1], "x", "y") is None


# --- announcements ------------------------------------------------------------------------------------


def test_a_pending_request_is_announced_once_on_the_alert_channels(
    sim, subaccounts, operator, second_operator, four_eyes_everywhere, webhook, settings
):
    settings.OGPANEL_ALERT_EMAILS = ["desk@example.com"]
    settings.OGPANEL_PUBLIC_URL = "https://panel.example.com"
    group = tripped(sim)
    file_reset(signed_in(operator), sim, group)
    req = only_request()

    assert notices.deliver_due() == 1
    assert notices.deliver_due() == 0

    (body,) = webhook.bodies
    assert body["event"] == "approval_requested" and body["request"] == req.pk and body["requested_by"] == "otto"
    assert body["url"] == f"https://panel.example.com/requests/{req.pk}/" and body["audit_seq"] == req.filed_seq
    (email,) = mail.outbox
    assert email.subject == f"[ogpanel] Request #{req.pk} waits for approval: Reset order group {group} on subaccount 1"
    assert "fills done, reopen" in email.body
