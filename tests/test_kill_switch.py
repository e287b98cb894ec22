"""The kill switch as a job: preview, one press, progress over HTTP, read-back, joining, friction, bad input.

Tests marked `transactional_db` let the sweep run as it does in production, in a thread of the
panel process started once the POST's rows are committed; the others run it in the test's own
thread (jobs.run), which sees the test's uncommitted rows.
"""

import html
import json
import re
import threading
from collections import Counter

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from ogpanel import audit, jobs, sweeps
from ogpanel.models import AuditEvent, OpenAttempt, Sweep
from tests.panel_process import wait_for
from tests.sweeps import run_sweeps

HTMX = {"HX-Request": "true"}
HELD = 3.0  # seconds one call is held by the simulator, so that a test can watch the sweep mid-run


@pytest.fixture(autouse=True)
def _kill_switch_settings(settings):
    settings.OGPANEL_LIST_CACHE_SECONDS = 0  # tests change the simulator directly between requests
    yield
    assert jobs.wait_idle(timeout=60), "a sweep thread outlived its test"


def text(response) -> str:
    return response.content.decode()


def words(response) -> str:
    """The response as a person reads it: tags dropped, entities decoded, runs of white space as one space."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text(response))).split())


def triggers(sim) -> Counter:
    """PUT .../trigger calls the simulator received, per group id."""
    return Counter(r.path.split("/")[-2] for r in sim.requests if r.method == "PUT" and r.path.endswith("/trigger"))


def writes(sim) -> list:
    return [r for r in sim.requests if r.method != "GET"]


def password_of(client: Client) -> str:
    user = User.objects.get(pk=client.session["_auth_user_id"])
    return f"{user.username}-password-1"


def kill(client, operation: str = "trigger_all", *, headers: dict | None = None, **fields):
    return client.post("/kill-switch/", {"operation": operation, **fields}, headers=headers or {})


def latest_sweep() -> Sweep:
    return Sweep.objects.order_by("-pk").first()


def assert_every_attempt_answered() -> None:
    attempts = Counter(AuditEvent.objects.filter(outcome="attempted").values_list("seq", flat=True))
    answered = Counter(AuditEvent.objects.filter(attempt_seq__isnull=False).values_list("attempt_seq", flat=True))
    assert answered == attempts and not OpenAttempt.objects.exists()
    assert audit.verify().ok


# --- the job: an answer at once, the work in the background, progress over HTTP ------------------


@pytest.mark.django_db(transaction=True)
def test_the_post_answers_at_once_and_the_sweep_finishes_in_the_background_with_progress_over_http(
    sim, subaccounts, as_operator, as_viewer
):
    groups = [sim.create_group(number, 10) for number in range(4) for _ in range(3)]
    # One call held for long enough to look at the sweep while it runs (the pages take milliseconds).
    sim.set_fault("latency", path=f"/{groups[-1]}/trigger", method="PUT", seconds=HELD, times=1)

    response = kill(as_operator)

    assert response.status_code == 302
    sweep = latest_sweep()
    assert sweep.finished_at is None  # the answer did not wait for the sweep (one call alone takes HELD s)
    assert response["Location"] == f"/kill-switch/sweeps/{sweep.pk}/"
    # While the held call is out: the progress shows over HTTP, plainly and as the htmx fragment, to anyone.
    # (The held call may wait its turn at the rate limiter, past the exchange's burst, before it goes.)
    wait_for(lambda: sum(triggers(sim).values()) == len(groups), what="every trigger to reach the exchange")
    page = wait_for(
        lambda: (found := text(as_viewer.get(response["Location"]))) and "To go: <strong>1</strong>" in found and found,
        what="the page to show every call answered but the held one",
    )
    fragment = as_operator.get(response["Location"], headers=HTMX)
    assert "<html" in page and "Sending" in page and f"Triggered: <strong>{len(groups) - 1}</strong>" in page
    assert sweep.finished_at is None and sum(triggers(sim).values()) == len(groups)
    assert text(fragment).lstrip().startswith('<section class="sweep-progress"')
    assert 'hx-trigger="every' in text(fragment) and "HX-Request" in fragment["Vary"]
    assert "Paced by the exchange's write budget: 10 calls/s (basic tier, 1 account)" in words(fragment)
    wait_for(lambda: Sweep.objects.get(pk=sweep.pk).finished_at, timeout=60, what="the sweep to finish")

    done = as_viewer.get(response["Location"], headers=HTMX)
    assert "hx-trigger" not in text(done)  # a finished sweep stops refreshing itself
    assert "Done" in text(done) and f"Verified at the exchange: <strong>{len(groups)}</strong>" in text(done)
    assert text(done).count("Triggered, verified at the exchange") == len(groups)
    assert all(sim.group(group)["triggered"] for group in groups)
    assert_every_attempt_answered()


# --- preview, one press, the report --------------------------------------------------------------


def test_the_preview_names_its_scope_on_the_button_and_its_numbers_are_what_the_sweep_hits(
    sim, subaccounts, as_operator
):
    for number, count in ((0, 3), (1, 1), (2, 0), (3, 2)):
        for _ in range(count):
            sim.create_group(number, 10)
    tripped = sim.create_group(3, 1)
    sim.fill(sim.place_order(3, tripped, count=2), 2)

    preview = as_operator.get("/kill-switch/")

    assert preview.status_code == 200 and not writes(sim)
    assert "Trigger all 7 groups on 4 subaccounts" in words(preview)
    shown = {listing.subaccount: (len(listing.groups), active) for listing, active in preview.context["preview"].lines}
    assert shown == {0: (3, 3), 1: (1, 1), 2: (0, 0), 3: (3, 2)}

    assert kill(as_operator, reason="").status_code == 302  # one press; no reason, no typed word
    sweep = latest_sweep()
    run_sweeps()

    hit = {target.subaccount: target.groups_at_start for target in sweep.targets.all()}
    assert hit == {number: groups for number, (groups, _) in shown.items()}
    triggered = Counter(t.subaccount for t in sweep.targets.all() for g in t.groups.all() if g.state == "changed")
    assert {number: triggered[number] for number in shown} == {number: active for number, (_, active) in shown.items()}
    assert sum(triggers(sim).values()) == 6 and tripped not in triggers(sim)


def test_kill_this_subaccount_previews_and_triggers_that_subaccount_only(sim, subaccounts, as_operator):
    target = sim.create_group(1, 10)
    bystander = sim.create_group(2, 10)

    preview = as_operator.get("/kill-switch/?subaccount=1")
    response = kill(as_operator, "trigger_one", subaccount="1")
    run_sweeps()

    assert "Trigger all 1 group on subaccount 1" in words(preview)
    assert {r.query.get("subaccount") for r in sim.requests if r.method == "GET"} == {"1"}
    assert response.status_code == 302
    assert sim.group(target)["triggered"] is True and sim.group(bystander)["triggered"] is False
    report = words(as_operator.get(response["Location"]))
    assert "Done" in report and f"1 {target} Triggered, verified at the exchange" in report


def test_the_kill_switch_is_one_press_from_every_page_and_from_each_subaccount_row(
    sim, subaccounts, as_operator, as_viewer
):
    for url in ("/", "/audit/", f"/groups/1/{sim.create_group(1, 10)}/"):
        assert '<a class="kill-control" href="/kill-switch/">Kill switch</a>' in text(as_operator.get(url)), url
        assert "kill-control" not in text(as_viewer.get(url))
    dashboard = text(as_operator.get("/"))
    for number in range(4):
        assert f'href="/kill-switch/?subaccount={number}">Kill this subaccount…</a>' in dashboard
    assert "Kill this subaccount" not in text(as_viewer.get("/"))


def test_a_trigger_asks_no_password_even_outside_the_window_but_a_reset_does(sim, subaccounts, as_operator):
    group = sim.create_group(1, 10)
    assert 'name="reauth_password"' in text(as_operator.get("/kill-switch/"))  # the window is closed: the reset asks

    assert kill(as_operator, "trigger_one", subaccount="1").status_code == 302
    run_sweeps()
    assert sim.group(group)["triggered"] is True

    reset = {"subaccount": "1", "reason": "all clear", "confirm": "RESET"}
    refused = kill(as_operator, "reset_one", headers=HTMX, **reset)
    assert refused.status_code == 403 and "Confirm it's you" in words(refused)
    assert sim.group(group)["triggered"] is True and Sweep.objects.count() == 1
    assert kill(as_operator, "reset_one", **reset, reauth_password=password_of(as_operator)).status_code == 302
    run_sweeps()
    assert sim.group(group)["triggered"] is False


def test_a_reset_resets_only_the_triggered_groups_and_verifies_them(sim, subaccounts, as_operator):
    tripped = sim.create_group(1, 1)
    sim.fill(sim.place_order(1, tripped, count=2), 2)
    calm = sim.create_group(1, 10)

    response = kill(
        as_operator,
        "reset_one",
        subaccount="1",
        reason="drill over",
        confirm="RESET",
        reauth_password="otto-password-1",
    )
    run_sweeps()

    assert sim.group(tripped)["triggered"] is False
    assert not [r for r in writes(sim) if calm in r.path]  # the active group's counter was left alone
    report = words(as_operator.get(response["Location"]))
    assert f"{tripped} Reset, verified at the exchange" in report
    assert f"{calm} Already reset, verified at the exchange" in report


def test_the_reason_may_be_added_afterwards_as_a_note_on_the_sweep(sim, subaccounts, as_operator, as_viewer):
    sim.create_group(1, 10)
    kill(as_operator, "trigger_one", subaccount="1")
    sweep = latest_sweep()
    url = f"/kill-switch/sweeps/{sweep.pk}/note/"

    empty = as_operator.post(url, {"note": ""}, headers=HTMX)
    added = as_operator.post(url, {"note": "runaway algo on desk 1"}, headers=HTMX)

    assert empty.status_code == 400 and "Write the reason first." in words(empty)
    assert added.status_code == 200 and "“runaway algo on desk 1” — otto" in words(added)
    assert json.loads(added["HX-Trigger"])["ogpanel:flash"]["message"] == f"Reason added to sweep {sweep.pk}."
    note = AuditEvent.objects.get(action="kill_switch_note")
    assert (note.reason, note.actor_username, note.params) == (
        "runaway algo on desk 1",
        "otto",
        {"sweep": sweep.pk, "kill_switch": sweep.audit_seq},
    )
    assert as_viewer.post(url, {"note": "x"}).status_code == 403
    assert "runaway algo on desk 1" in words(as_viewer.get(f"/kill-switch/sweeps/{sweep.pk}/"))


# --- verified: read back, trigger again what is still active ----------------------------------------


def test_the_read_back_triggers_again_a_group_the_exchange_left_active_once(sim, subaccounts, as_operator):
    lost = sim.create_group(1, 10)
    fine = sim.create_group(1, 10)
    sim.set_fault("ignore", path=f"/{lost}/trigger", method="PUT", times=1)  # the exchange says yes and does nothing

    response = kill(as_operator, "trigger_one", subaccount="1")
    run_sweeps()

    assert triggers(sim) == {lost: 2, fine: 1}
    assert sim.group(lost)["triggered"] is True
    report = words(as_operator.get(response["Location"]))
    assert f"{lost} Triggered, verified at the exchange (2 calls)" in report
    assert f"{fine} Triggered, verified at the exchange" in report
    assert_every_attempt_answered()


def test_a_group_that_stays_active_is_tried_a_bounded_number_of_times_and_reported(sim, subaccounts, as_operator):
    stubborn = sim.create_group(2, 10)
    sim.set_fault("ignore", path=f"/{stubborn}/trigger", method="PUT")

    response = kill(as_operator, "trigger_one", subaccount="2", headers=HTMX)
    run_sweeps()

    assert response.status_code == 200 and "Kill switch started" in response["HX-Trigger"]
    assert triggers(sim) == {stubborn: sweeps.MAX_TRIES}
    report = words(as_operator.get(f"/kill-switch/sweeps/{latest_sweep().pk}/"))
    assert f"Failed: Still active at the exchange after {sweeps.MAX_TRIES} trigger calls." in report
    assert "Failed: <strong>1</strong>" in text(as_operator.get(f"/kill-switch/sweeps/{latest_sweep().pk}/"))
    result = AuditEvent.objects.get(action="kill_switch_trigger", outcome="succeeded")
    assert (result.params["failed"], result.params["verified"]) == (1, 0)
    assert_every_attempt_answered()


def test_a_failing_trigger_and_an_unreadable_subaccount_are_reported_in_words(sim, subaccounts, as_operator):
    stuck = sim.create_group(0, 10)
    fine = sim.create_group(1, 10)
    sim.set_fault("error", path=f"/{stuck}/trigger", method="PUT", status=500)
    sim.set_fault("error", path="/portfolio/order_groups", method="GET", subaccount=3, status=500)

    kill(as_operator)
    run_sweeps()

    page = words(as_operator.get(f"/kill-switch/sweeps/{latest_sweep().pk}/"))
    refused = "The last answer: The exchange had an internal error (HTTP 500)"
    assert f"{stuck} Failed: Still active at the exchange after 3 trigger calls. {refused}" in page
    assert "Could not list order groups: The exchange had an internal error (HTTP 500)" in page
    assert f"{fine} Triggered, verified at the exchange" in page
    assert sim.group(fine)["triggered"] is True and sim.group(stuck)["triggered"] is False
    result = AuditEvent.objects.get(action="kill_switch_trigger", outcome="succeeded")
    assert result.params["failed"] == 2  # the group, and the subaccount that could not be read
    assert_every_attempt_answered()


# --- resume and reconcile -------------------------------------------------------------------------------


def test_a_resumed_sweep_reconciles_the_dead_runs_unknown_attempts_from_what_the_exchange_shows(
    sim, subaccounts, as_operator
):
    done_upstream, not_done, never_tried = (sim.create_group(1, 10) for _ in range(3))
    kill(as_operator, "trigger_one", subaccount="1")
    sweep = latest_sweep()
    # A run that died mid-sweep (runs counts it): two attempts committed, one call done at the exchange, no result.
    actor = audit.Actor(**sweep.actor)
    credential = subaccounts[1].credential
    fields = {"credential": credential, "subaccount": 1, "reason": "", "params": {"kill_switch": sweep.audit_seq}}
    dead = audit.Pending.many(actor, "trigger", [{**fields, "order_group_id": g} for g in (done_upstream, not_done)])
    sim.exchange.trigger_group(done_upstream, 1)
    Sweep.objects.filter(pk=sweep.pk).update(runs=1, lease_until="2000-01-01T00:00:00Z")  # it ran; its lease lapsed

    assert jobs.claim(sweep.pk, "worker:test")
    assert jobs.run(sweep.pk, "worker:test", threading.Event())

    reconciled = {e.order_group_id: e for e in AuditEvent.objects.filter(attempt_seq__in=[p.event.seq for p in dead])}
    assert reconciled[done_upstream].outcome == "succeeded"
    assert reconciled[done_upstream].params == {
        "kill_switch": sweep.audit_seq,
        "reconciled": True,
        "exchange_state": "triggered",
    }
    assert (reconciled[not_done].outcome, reconciled[not_done].error_code) == ("failed", "reconciled_not_done")
    assert reconciled[not_done].params["exchange_state"] == "active"
    assert triggers(sim) == {not_done: 1, never_tried: 1}  # what was already done is not sent again
    assert all(sim.group(group)["triggered"] for group in (done_upstream, not_done, never_tried))
    assert_every_attempt_answered()


# --- one sweep per subaccount: a second kill switch joins ----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_kill_switches_at_once_on_overlapping_scope_do_not_double_the_calls(sim, subaccounts, operator):
    groups = [sim.create_group(number, 10) for number in range(4) for _ in range(2)]
    sim.set_fault(
        "latency", path="/trigger", method="PUT", seconds=0.2
    )  # both sweeps are still open when the other posts
    clients = [Client(), Client()]
    for client in clients:
        client.force_login(operator)
    start = threading.Barrier(2)
    answers: dict[str, object] = {}

    def post(name: str, client: Client, data: dict) -> None:
        start.wait()
        try:
            answers[name] = kill(client, headers=HTMX, **data)
        finally:
            connection.close()  # this thread's own

    posts = [
        threading.Thread(target=post, args=("all", clients[0], {"operation": "trigger_all"})),
        threading.Thread(target=post, args=("one", clients[1], {"operation": "trigger_one", "subaccount": "2"})),
    ]
    for thread in posts:
        thread.start()
    for thread in posts:
        thread.join(timeout=30)
    assert jobs.wait_idle(timeout=60)

    assert triggers(sim) == dict.fromkeys(groups, 1)
    flashes = [json.loads(answers[name]["HX-Trigger"])["ogpanel:flash"]["message"] for name in ("all", "one")]
    assert any("Joined" in flash or "already running covers the rest" in flash for flash in flashes), flashes
    covering = Counter(Sweep.objects.values_list("targets__subaccount", flat=True))
    assert covering == {0: 1, 1: 1, 2: 1, 3: 1}  # each subaccount swept once, by one sweep or the other
    assert_every_attempt_answered()


def test_a_kill_switch_after_the_first_finished_sweeps_again(sim, subaccounts, as_operator):
    group = sim.create_group(1, 10)
    kill(as_operator, "trigger_one", subaccount="1")
    first = latest_sweep()
    joined = kill(as_operator, "trigger_one", subaccount="1", headers=HTMX)  # the first is still open: joined
    run_sweeps()
    kill(as_operator, "trigger_one", subaccount="1")

    assert "Joined the kill switch already running on these subaccounts" in joined["HX-Trigger"]
    assert AuditEvent.objects.filter(action="kill_switch_join").count() == 1
    assert Sweep.objects.count() == 2 and latest_sweep().pk != first.pk
    assert sim.group(group)["triggered"] is True


# --- scope, roles and bad input ----------------------------------------------------------------------


def test_a_scoped_operator_sweeps_and_sees_only_their_subaccount(sim, subaccounts, as_scoped_operator, as_operator):
    mine = sim.create_group(1, 10)
    theirs = sim.create_group(2, 10)

    assert kill(as_scoped_operator, "trigger_one", subaccount="2").status_code == 404
    assert as_scoped_operator.get("/kill-switch/?subaccount=2").status_code == 404
    assert not sim.requests
    refusal = AuditEvent.objects.latest("seq")
    assert (refusal.action, refusal.outcome, refusal.subaccount) == ("kill_switch", "denied", 2)

    kill(as_scoped_operator)
    run_sweeps()
    assert sim.group(mine)["triggered"] is True and sim.group(theirs)["triggered"] is False

    kill(as_operator, "trigger_one", subaccount="2")
    others = latest_sweep()
    assert as_scoped_operator.get(f"/kill-switch/sweeps/{others.pk}/").status_code == 404
    run_sweeps()
    kill(as_operator)
    everything = latest_sweep()
    page = words(as_scoped_operator.get(f"/kill-switch/sweeps/{everything.pk}/"))
    assert "of every group on 1 subaccount" in page and theirs not in page


def test_a_viewer_may_watch_a_sweep_but_not_start_one(sim, subaccounts, as_viewer, as_operator):
    group = sim.create_group(1, 10)
    kill(as_operator, "trigger_one", subaccount="1")

    assert as_viewer.get("/kill-switch/").status_code == 403
    assert kill(as_viewer).status_code == 403
    assert as_viewer.get(f"/kill-switch/sweeps/{latest_sweep().pk}/").status_code == 200
    assert not writes(sim) and sim.group(group)["triggered"] is False


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"operation": "trigger_one", "subaccount": ""}, "Choose the subaccount."),
        ({"operation": "trigger_one", "subaccount": "7"}, "Subaccount 7 is not configured"),
        ({"operation": "trigger_one", "subaccount": "40"}, "from 0 to 32"),
        ({"operation": "trigger_one", "subaccount": "1.5"}, "whole number"),
        ({"operation": "explode"}, "Select a valid choice"),
        ({"operation": "trigger_all", "reason": "x" * 501}, "at most 500 characters"),
        ({"operation": "reset_one", "subaccount": "1", "confirm": "TRIGGER", "reason": "x"}, "Type RESET to confirm."),
        ({"operation": "reset_one", "subaccount": "1", "confirm": "RESET", "reason": ""}, "Give a reason"),
    ],
)
def test_bad_input_gets_a_clear_error_and_no_upstream_call(sim, subaccounts, as_operator, data, message):
    group = sim.create_group(1, 10)

    response = as_operator.post("/kill-switch/", data, headers=HTMX)

    assert response.status_code == 400 and message in words(response)
    assert not sim.requests and not Sweep.objects.exists()
    assert sim.group(group)["triggered"] is False


@pytest.mark.parametrize(("query", "status"), [("abc", 400), ("7", 400), ("99", 400), ("-1", 400)])
def test_a_bad_preview_scope_gets_a_clear_error_and_no_upstream_call(sim, subaccounts, as_operator, query, status):
    response = as_operator.get(f"/kill-switch/?subaccount={query}", headers=HTMX)

    assert response.status_code == status and response["HX-Retarget"] == "#flash"
    assert not sim.requests


def test_an_unknown_sweep_is_not_found(sim, subaccounts, as_operator):
    assert as_operator.get("/kill-switch/sweeps/999/").status_code == 404
    assert as_operator.post("/kill-switch/sweeps/999/note/", {"note": "x"}).status_code == 404


# --- as fast as the exchange allows, never faster -------------------------------------------------------


@pytest.fixture
def basic_tier_simulator(rsa_public_pem):
    """A simulator of its own enforcing Kalshi's Basic tier, its write bucket full (2 s of budget)."""
    from ogpanel.simulator import start
    from tests.conftest import SIM_KEY_ID

    server = start(host="127.0.0.1", port=0, tier="basic")
    server.add_key(SIM_KEY_ID, rsa_public_pem)
    yield server
    server.stop()


def test_a_sweep_past_the_write_burst_never_draws_a_429(basic_tier_simulator, rsa_pem, operator, settings):
    from ogpanel.models import Subaccount
    from tests.panel_fixtures import make_credential

    settings.OGPANEL_KALSHI_TIER = "basic"
    sim = basic_tier_simulator
    credential = make_credential(sim.base_url, rsa_pem)
    subs = [Subaccount.objects.create(number=n, credential=credential) for n in range(3)]
    groups = [sim.create_group(number, 10) for number in range(3) for _ in range(10)]  # 30 writes > a burst of 20
    client = Client()
    client.force_login(operator)

    kill(client)
    run_sweeps()

    assert sim.rate_limited_count == 0
    assert all(sim.group(group)["triggered"] for group in groups) and len(subs) == 3
    assert_every_attempt_answered()
