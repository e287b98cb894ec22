"""Redis (the shared cache) stopped mid-test, for real: every exchange operation and the kill switch still work.

The panel runs under gunicorn in its own process with a redis-server of this test's own as its
cache, against a simulator that enforces the Basic tier's account budget. Redis is SIGKILLed half
way: every operation goes on, on this process's local share of the budget, without a 429; sign-in
throttling keeps counting in process memory; /healthz and the dashboard say the cache is down.
Then Redis is started again on the same port, and the budgets are shared in it again without a
restart of the panel.
"""

import html
import time

import pytest

from ogpanel.simulator import start
from tests.conftest import SIM_KEY_ID
from tests.panel_process import PanelProcess, RedisServer, panel_environment, prepare_database, wait_for

CACHE_DOWN = "Shared cache down: local budgets."
REASON = {"reason": "drill with the cache down"}


@pytest.fixture
def basic_sim(rsa_public_pem):
    server = start(tier="basic")
    server.add_key(SIM_KEY_ID, rsa_public_pem)
    yield server
    server.stop()


def healthz(panel: PanelProcess) -> dict:
    return panel.get("/healthz").json()["cache"]


def test_every_exchange_operation_and_the_kill_switch_work_with_redis_stopped_then_share_again(
    tmp_path, basic_sim, rsa_pem
):
    sim = basic_sim
    redis = RedisServer(tmp_path)
    env = panel_environment(
        tmp_path / "panel.sqlite3",
        REDIS_URL=redis.url,
        OGPANEL_PROCESSES="2",  # with the cache down, this process keeps to half the account's budget
        OGPANEL_LOGIN_MAX_FAILURES="3",
        OGPANEL_READ_ACCOUNT_LIMITS="1",
    )
    prepare_database(env, sim.base_url, rsa_pem, [{"label": "sim", "key_id": SIM_KEY_ID, "subaccounts": [0, 1, 2]}])
    groups = {number: [sim.create_group(number, 10) for _ in range(8)] for number in range(3)}
    panel = PanelProcess(env, tmp_path / "panel.log")
    try:
        panel.log_in("ada")
        assert "groups on 3 subaccounts" in panel.get("/").text
        assert healthz(panel) == {"status": "ok", "budgets": "shared"}
        wait_for(lambda: redis.keys("kalshi-rl:*"), what="the budget to be kept in Redis")

        redis.kill()

        # Every exchange operation, each after its page (which reads the group from the exchange too).
        dashboard = html.unescape(panel.get("/").text)
        assert "24 groups on 3 subaccounts" in dashboard and CACHE_DOWN in dashboard
        target = groups[1][0]
        assert panel.get(f"/groups/1/{target}/").status_code == 200
        created = panel.post("/groups/new/", {"subaccount": "1", "contracts_limit": "10", "exchange_index": "0"})
        assert created.status_code == 302 and len(sim.exchange.list_groups({1})) == 9
        limited = panel.post(f"/groups/1/{target}/limit/", {"contracts_limit": "5", **REASON})
        assert limited.status_code == 302 and sim.group(target)["contracts_limit"] == 5
        assert panel.post(f"/groups/1/{target}/trigger/", REASON).status_code == 302
        assert sim.group(target)["triggered"] is True
        assert panel.post(f"/groups/1/{target}/reset/", REASON).status_code == 302
        assert sim.group(target)["triggered"] is False
        assert panel.post(f"/groups/1/{target}/delete/", REASON).status_code == 302
        assert target not in {group.id for group in sim.exchange.list_groups({1})}

        began = time.monotonic()
        swept = panel.post(
            "/kill-switch/",
            {"operation": "trigger_all", "confirm": "TRIGGER", "reauth_password": "ada-password-1", **REASON},
        )
        assert swept.status_code == 302
        # The POST answers at once; the sweep runs on in the panel process: follow its page to the end.
        progress = swept.headers["Location"]
        wait_for(lambda: 'data-phase="done"' in panel.get(progress).text, timeout=120, what="the sweep to end")
        sweep_seconds = time.monotonic() - began
        assert all(group.triggered for group in sim.exchange.list_groups(None))
        report = html.unescape(panel.get(progress).text)
        assert "Triggered: <strong>24</strong>" in report and "Failed: <strong>0</strong>" in report
        assert sim.rate_limited_count == 0  # the local share kept within the account's budget
        # 24 writes at half of Basic's 10 a second, from an empty bucket: the local pace, not the shared one.
        assert sweep_seconds >= 24 / 5 * 0.8

        assert healthz(panel)["status"] == "unavailable"
        assert healthz(panel)["budgets"].startswith("local: 1/2")
        assert redis.process is None  # nothing brought it back behind the test's back

        # Sign-in throttling goes on in process memory: three wrong passwords lock the username.
        stranger = PanelProcess.__new__(PanelProcess)
        stranger.url, stranger.session = panel.url, type(panel.session)()
        answers = [
            stranger.post("/accounts/login/", {"username": "otto", "password": "wrong-password-1"}) for _ in range(3)
        ]
        assert [answer.status_code for answer in answers] == [400, 400, 429]
        locked = stranger.post("/accounts/login/", {"username": "otto", "password": "otto-password-1"})
        assert locked.status_code == 429 and "Too many failed sign-in attempts" in html.unescape(locked.text)
        stranger.session.close()

        redis.start()  # the same port, empty, as after a crash

        wait_for(lambda: healthz(panel) == {"status": "ok", "budgets": "shared"}, what="the cache to be used again")
        survivor = groups[2][0]
        assert (
            panel.post(
                "/kill-switch/",
                {
                    "operation": "reset_one",
                    "subaccount": "2",
                    "confirm": "RESET",
                    "reauth_password": "ada-password-1",
                    **REASON,
                },
            ).status_code
            == 302
        )
        # The budget is back in Redis, charged with what the process spent on its own meanwhile: the
        # sweep's write draws on the shared bucket (whose key lives until the bucket is full again, ~1 s).
        bucket = "kalshi-rl:default@" + sim.base_url + ":write"
        wait_for(lambda: bucket in redis.keys("kalshi-rl:*"), interval=0.02, what="the sweep to spend from Redis")
        wait_for(lambda: sim.group(survivor)["triggered"] is False, timeout=60, what="the reset sweep")
        assert CACHE_DOWN not in html.unescape(panel.get("/").text)
        assert sim.rate_limited_count == 0
    finally:
        panel.stop()
        redis.kill()
    log = (tmp_path / "panel.log").read_text()
    assert log.count("the shared store is unavailable") == 1  # logged once, not per call
    assert log.count("the shared cache is unavailable") == 1
    assert "Traceback" not in log
