"""The rate budget is the account's: credentials of one account share it, and the exchange's word on it wins.

Against simulators that enforce the budget per account (reference §11), as Kalshi's docs describe it.
"""

import html
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ogpanel import budgets, exchange
from ogpanel.kalshi import KalshiClient, KalshiError
from ogpanel.models import AuditEvent, Credential
from ogpanel.simulator import start
from tests.conftest import SIM_KEY_ID
from tests.panel_fixtures import make_credential
from tests.panel_process import PanelProcess, panel_environment, prepare_database, wait_for

OTHER_KEY_ID = "second-key-of-the-account"


@pytest.fixture
def basic_sim(rsa_public_pem):
    """Basic tier for the account "member", which both keys belong to."""
    server = start(tier="basic")
    server.add_key(SIM_KEY_ID, rsa_public_pem)
    server.add_key(OTHER_KEY_ID, rsa_public_pem)
    yield server
    server.stop()


# --- two credentials, one account, one budget ------------------------------------------------------


def test_two_credentials_of_one_account_running_kill_switches_at_once_draw_no_429(tmp_path, basic_sim, rsa_pem):
    sim = basic_sim
    env = panel_environment(tmp_path / "panel.sqlite3", OGPANEL_READ_ACCOUNT_LIMITS="1")
    prepare_database(
        env,
        sim.base_url,
        rsa_pem,
        [
            {"label": "desk a", "key_id": SIM_KEY_ID, "account": "firm", "subaccounts": [0, 1, 2]},
            {"label": "desk b", "key_id": OTHER_KEY_ID, "account": "firm", "subaccounts": [3, 4, 5]},
        ],
        users=[("otto", "ops", [0, 1, 2]), ("sam", "ops", [3, 4, 5])],
    )
    groups = [sim.create_group(number, 10) for number in range(6) for _ in range(8)]  # 48 writes, 20 of burst
    panels = [PanelProcess(env, tmp_path / "panel.log")]
    try:
        otto, sam = panels[0], PanelProcess.__new__(PanelProcess)
        sam.url, sam.session = otto.url, type(otto.session)()
        otto.log_in("otto")
        sam.log_in("sam")
        drill = {"operation": "trigger_all", "confirm": "TRIGGER", "reason": "drill"}
        start_together = threading.Barrier(2)

        def sweep(panel: PanelProcess, user: str) -> tuple[int, str]:
            token = panel.csrf_token("/kill-switch/")
            start_together.wait()
            response = panel.session.post(
                panel.url + "/kill-switch/",
                {**drill, "reauth_password": f"{user}-password-1", "csrfmiddlewaretoken": token},
                timeout=60,
                allow_redirects=False,
            )
            return response.status_code, response.headers.get("Location", "")

        with ThreadPoolExecutor(max_workers=2) as pool:
            started = list(pool.map(sweep, [otto, sam], ["otto", "sam"]))
        assert [status for status, _ in started] == [302, 302]
        for panel, (_, progress) in zip((otto, sam), started, strict=True):
            # The POST answers at once; the sweep runs on in the panel process: follow its page to the end.
            wait_for(lambda p=panel, u=progress: 'data-phase="done"' in p.get(u).text, timeout=120, what="the sweep")
            assert "Failed: <strong>0</strong>" in html.unescape(panel.get(progress).text)
        sam.session.close()
    finally:
        panels[0].stop()
    assert all(sim.group(group)["triggered"] for group in groups)
    assert sim.rate_limited_count == 0  # 48 writes of one account, two keys, one budget between them
    triggers = [r for r in sim.requests if r.path.endswith("/trigger")]
    assert {r.key_id for r in triggers} == {SIM_KEY_ID, OTHER_KEY_ID} and len(triggers) == 48


def test_credentials_named_as_different_accounts_get_budgets_of_their_own(db, basic_sim, rsa_pem, settings):
    """The contrast: told they are two accounts, the panel lets both bursts out, and the exchange,
    which knows they are one, answers 429 (so the test above would see a shared budget broken)."""
    settings.OGPANEL_KALSHI_TIER = "basic"
    first = make_credential(basic_sim.base_url, rsa_pem, label="a", key_id=SIM_KEY_ID)
    second = make_credential(basic_sim.base_url, rsa_pem, label="b", key_id=OTHER_KEY_ID)
    second.account = "told apart"
    second.save()
    assert budgets.limiter_for(first) is not budgets.limiter_for(second)
    group_id = basic_sim.create_group(0, 10)

    def trigger(credential) -> None:
        client = exchange.client_for(credential)
        client.retries = 0
        for _ in range(30):  # 7 at once, then 10 a second: 2.3 s, in which the account allows 43, not 60
            try:
                client.trigger_order_group(group_id)
            except KalshiError:
                pass

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(trigger, [first, second]))
    assert basic_sim.rate_limited_count > 0

    second.account = ""
    second.save()
    assert budgets.limiter_for(first) is budgets.limiter_for(Credential.objects.get(pk=second.pk))


# --- what the exchange says wins over the configured tier -----------------------------------------


@pytest.fixture
def reads_limits(settings):
    settings.OGPANEL_READ_ACCOUNT_LIMITS = True


def test_limits_read_from_the_exchange_override_the_configured_tier(db, basic_sim, rsa_pem, reads_limits, as_admin):
    basic_sim.set_tier("member", "premier")
    credential = make_credential(basic_sim.base_url, rsa_pem)
    credential.tier = "basic"
    credential.save()
    assert budgets.limiter_for(credential).budget.tier == "basic"

    exchange.client_for(credential)  # a process's first use of the account asks in the background
    limiter = budgets.limiter_for(credential)
    wait_for(lambda: limiter.budget.source == "exchange", what="the budget read at start-up")
    assert (limiter.budget.tier, limiter.budget.write.rate, limiter.budget.write.capacity) == ("premier", 1000, 2000)
    state = budgets.budget_state(credential)
    assert (state.tier, state.rate, state.shared) == ("premier", 1000, True)

    page = html.unescape(as_admin.get("/credentials/").content.decode())
    assert (
        "default: Premier: 100 reads and 100 writes a second (bursts of 200 writes), as the exchange reported" in page
    )

    basic_sim.set_tier("member", "advanced")  # the account was moved: the next credential test sees it
    response = as_admin.post(f"/credentials/{credential.pk}/test/", {"subaccount": "0"})
    assert response.status_code == 200
    [result] = AuditEvent.objects.filter(action="credential_test", attempt_seq__isnull=False)
    assert (result.outcome, result.params["usage_tier"]) == ("succeeded", "advanced")
    assert budgets.limiter_for(credential).budget.tier == "advanced"
    detail = html.unescape(as_admin.get(f"/credentials/{credential.pk}/").content.decode())
    assert "Advanced: 30 reads and 30 writes a second (bursts of 60 writes), as the exchange reported" in detail
    assert [r.path for r in basic_sim.requests].count("/trade-api/v2/account/limits") == 2


def test_an_exchange_reporting_a_lower_tier_is_believed_and_its_budget_kept(db, basic_sim, rsa_pem, reads_limits):
    credential = make_credential(basic_sim.base_url, rsa_pem)
    credential.tier = "premier"  # configured too high: at this pace the exchange would answer 429s
    credential.save()
    client = exchange.client_for(credential)
    wait_for(lambda: budgets.limiter_for(credential).budget.source == "exchange", what="the budget read")
    client.retries = 0
    group_id = basic_sim.create_group(0, 10)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: client.trigger_order_group(group_id), range(30)))

    assert budgets.limiter_for(credential).budget.tier == "basic"
    assert basic_sim.rate_limited_count == 0


def test_a_failed_read_of_the_limits_keeps_the_configured_tier_and_says_why(db, rsa_pem, reads_limits, as_admin, sim):
    credential = make_credential(sim.base_url, rsa_pem)  # the shared simulator enforces no tier: 404
    exchange.client_for(credential)
    wait_for(lambda: budgets.account_budget(credential).problem, what="the failed read", timeout=10)
    budget = budgets.account_budget(credential)
    assert (budget.budget.source, budget.budget.tier) == ("configured", "basic")
    page = html.unescape(as_admin.get("/credentials/").content.decode())
    assert "as configured; the exchange does not report account budgets (no GET /account/limits)" in page


def test_budget_state_tells_a_progress_view_what_a_sweep_waits_on(db, basic_sim, rsa_pem):
    credential = make_credential(basic_sim.base_url, rsa_pem)
    client = KalshiClient(basic_sim.base_url, SIM_KEY_ID, rsa_pem, limiter=budgets.limiter_for(credential))
    group_id = basic_sim.create_group(0, 10)
    began = time.monotonic()
    for _ in range(7):
        client.trigger_order_group(group_id)  # configured Basic: 100 tokens, 25 of them kept back
    state = budgets.budget_state(credential)
    refilled = (time.monotonic() - began) * 100
    client.close()
    assert (state.tier, state.source, state.requests_per_second, state.shared) == ("basic", "configured", 10, True)
    assert state.available <= 75 - 70 + refilled + 1e-6
    assert state.next_free_in == pytest.approx(max(10 - state.available, 0) / 100)
