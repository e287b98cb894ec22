"""The exchange saying no in disguise, or not answering: soft rejections, and one deadline per request.

A 2xx whose body is an error (reference §11) is a failure for every mutation: shown to the
operator in words, audited as failed with the exchange's code, never as a success. A limit change
reads the group and then changes it within one deadline, not one timeout each.
"""

import html
import time

import pytest

from ogpanel.models import AuditEvent
from tests.sweeps import run_sweeps
from tests.test_resilience import HTMX, assert_no_audit_event_lost

REFUSED = "The exchange refused the request (HTTP 200 with an error in its answer): injected soft rejection."

# mutation -> (method the fault matches, url, form data)
MUTATIONS = {
    "create": ("POST", "/groups/new/", {"subaccount": "1", "contracts_limit": "10", "exchange_index": "0"}),
    "update_limit": ("PUT", "/groups/1/{group}/limit/", {"contracts_limit": "5", "reason": "drill"}),
    "trigger": ("PUT", "/groups/1/{group}/trigger/", {"reason": "drill"}),
    "reset": ("PUT", "/groups/1/{group}/reset/", {"reason": "drill"}),
    "delete": ("DELETE", "/groups/1/{group}/delete/", {"reason": "drill"}),
}


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "form post"])
@pytest.mark.parametrize("action", MUTATIONS)
def test_a_soft_rejection_is_recorded_as_failed_for_each_mutation(action, htmx, sim, subaccounts, as_admin):
    group = sim.create_group(1, 10)
    if action == "reset":
        sim.exchange.trigger_group(group, 1)
    before = sim.exchange.state()["groups"]
    method, url, data = MUTATIONS[action]
    sim.set_fault("soft_error", method=method)

    response = as_admin.post(url.format(group=group), data, headers=HTMX if htmx else {})

    assert response.status_code == 502
    page = html.unescape(response.content.decode())
    assert REFUSED in page and "Traceback" not in page
    assert sim.exchange.state()["groups"] == before  # nothing changed upstream
    [result] = AuditEvent.objects.filter(action=action, attempt_seq__isnull=False)
    assert (result.outcome, result.upstream_status, result.error_code) == ("failed", 200, "request_rejected")
    assert result.error == REFUSED
    assert not AuditEvent.objects.filter(outcome=AuditEvent.Outcome.SUCCEEDED, action=action).exists()
    assert_no_audit_event_lost()


def test_a_kill_switch_whose_triggers_are_soft_rejected_reports_them_failed(sim, subaccounts, as_admin):
    groups = [sim.create_group(number, 10) for number in range(4)]
    sim.set_fault("soft_error", method="PUT", path="/trigger")
    data = {"operation": "trigger_all", "confirm": "TRIGGER", "reason": "drill", "reauth_password": "ada-password-1"}

    response = as_admin.post("/kill-switch/", data)
    [sweep] = run_sweeps()  # as the panel's sweep thread would

    page = html.unescape(as_admin.get(response["Location"]).content.decode())
    assert response.status_code == 302 and sweep.finished_at is not None
    assert "Failed: <strong>4</strong>" in page and page.count(REFUSED) == 4  # one line per group
    failed = AuditEvent.objects.filter(action="trigger", attempt_seq__isnull=False)
    assert {event.order_group_id for event in failed} == set(groups)  # each tried (and retried), none a success
    assert {(event.outcome, event.error_code) for event in failed} == {("failed", "request_rejected")}
    assert all(sim.group(group)["triggered"] is False for group in groups)


# --- one deadline per request ---------------------------------------------------------------------

CONNECT, READ = 0.5, 3.0  # the read timeout well past the 2 s of slack a page is allowed


@pytest.fixture
def patient_timeouts(settings):
    settings.OGPANEL_CONNECT_TIMEOUT, settings.OGPANEL_READ_TIMEOUT = CONNECT, READ


def test_a_limit_change_against_a_hanging_exchange_spends_one_deadline(sim, subaccounts, as_admin, patient_timeouts):
    group = sim.create_group(1, 10)
    sim.set_fault("hang", seconds=30)

    began = time.monotonic()
    response = as_admin.post(f"/groups/1/{group}/limit/", {"contracts_limit": "5", "reason": "drill"}, headers=HTMX)
    elapsed = time.monotonic() - began

    # One timeout each would be 2 x 3.5 s; the page may take connect + read + 2 s at most.
    assert elapsed < CONNECT + READ + 2
    assert response.status_code == 502
    # The read of the current limit got half the budget, so the change itself still went out.
    assert [(r.method, r.status) for r in sim.requests] == [("GET", None), ("PUT", None)]
    [result] = AuditEvent.objects.filter(action="update_limit", attempt_seq__isnull=False)
    assert (result.outcome, result.error_code) == ("failed", "timeout")
    assert result.params["previous_limit"] is None
    assert "did not answer within 1." in result.error  # about half of 3.5 s, not the 3 s read timeout
    assert result.error in html.unescape(response.content.decode())


def test_a_limit_change_whose_read_hangs_still_changes_the_limit_in_time(sim, subaccounts, as_admin, patient_timeouts):
    group = sim.create_group(1, 10)
    sim.set_fault("hang", seconds=30, method="GET")  # reads hang; the exchange takes writes

    began = time.monotonic()
    response = as_admin.post(f"/groups/1/{group}/limit/", {"contracts_limit": "5", "reason": "drill"})
    elapsed = time.monotonic() - began

    assert response.status_code == 302 and elapsed < CONNECT + READ + 2
    assert sim.group(group)["contracts_limit"] == 5
    [result] = AuditEvent.objects.filter(action="update_limit", attempt_seq__isnull=False)
    assert (result.outcome, result.params["previous_limit"]) == ("succeeded", None)


def test_a_credential_test_reads_the_list_and_the_budget_within_one_deadline(
    sim, credential, as_admin, patient_timeouts, settings
):
    settings.OGPANEL_READ_ACCOUNT_LIMITS = True
    sim.set_fault("latency", seconds=READ - 0.5, path="/portfolio/order_groups")  # the list takes most of it
    sim.set_fault("hang", seconds=30, path="/account/")

    began = time.monotonic()
    response = as_admin.post(f"/credentials/{credential.pk}/test/", {"subaccount": "0"})
    elapsed = time.monotonic() - began

    assert response.status_code == 200 and "Connected: 0 order groups" in response.content.decode()
    assert elapsed < CONNECT + READ + 2
    [result] = AuditEvent.objects.filter(action="credential_test", attempt_seq__isnull=False)
    assert result.outcome == "succeeded" and result.params["usage_tier"] == "basic"  # unread: as configured
