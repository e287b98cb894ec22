"""While the exchange hangs, polling dashboards must not hold every worker thread of the panel.

The panel runs under gunicorn as in production (one worker with 4 threads here, the Dockerfile's
threads per worker), the exchange hangs on every call, and 24 signed-in dashboards poll it. The
pages that need no exchange (the audit log, the kill switch form) must answer at once: not after
a hanging read gives up. The structural property asserted is exactly that: each answers well
before the read timeout, which is when a thread held by a hanging read would come free. The
issue's own figure is under 1 s; the times are printed (run with -s) rather than asserted.
"""

import statistics
import threading
import time

import requests

from ogpanel.simulator import start
from tests.conftest import SIM_KEY_ID
from tests.panel_process import PanelProcess, panel_environment, prepare_database, wait_for

CONNECT, READ = 1.0, 6.0
POLLERS = 24
POLL = {"HX-Request": "true", "HX-Trigger": "groups"}  # what the dashboard's self-refresh sends


def test_the_panels_own_pages_answer_at_once_while_24_dashboards_poll_a_hanging_exchange(
    tmp_path, rsa_public_pem, rsa_pem
):
    sim = start()
    sim.add_key(SIM_KEY_ID, rsa_public_pem)
    sim.set_fault("hang", seconds=60)  # every exchange call, from the start: no listing to show
    env = panel_environment(
        tmp_path / "panel.sqlite3",
        OGPANEL_CONNECT_TIMEOUT=str(CONNECT),
        OGPANEL_READ_TIMEOUT=str(READ),
        OGPANEL_SESSION_IDLE_SECONDS="600",
    )
    prepare_database(
        env, sim.base_url, rsa_pem, [{"label": "sim", "key_id": SIM_KEY_ID, "subaccounts": list(range(6))}]
    )
    panel = PanelProcess(env, tmp_path / "panel.log", threads=4)
    stop = threading.Event()
    polls: list[tuple[float, int, str]] = []
    started = []

    def poll(cookies) -> None:
        with requests.Session() as session:
            session.cookies.update(cookies)
            while not stop.is_set():
                started.append(1)
                began = time.monotonic()
                try:
                    answer = session.get(panel.url + "/", headers=POLL, timeout=30)
                    polls.append((time.monotonic() - began, answer.status_code, answer.text))
                except requests.RequestException as exc:
                    polls.append((time.monotonic() - began, 0, str(exc)))
                stop.wait(0.25)

    try:
        panel.log_in("otto")
        pollers = [threading.Thread(target=poll, args=(panel.session.cookies,)) for _ in range(POLLERS)]
        for poller in pollers:
            poller.start()
        # Every dashboard has asked, and the exchange holds the reads: no listing has come back yet, so
        # this is when, before the fix, every thread sat waiting on a read (or on another's read).
        wait_for(lambda: len(started) >= POLLERS, what="every dashboard to poll")
        wait_for(lambda: any(r.status is None for r in sim.requests), what="a read hanging at the exchange")

        own_pages = {}
        for path in ["/audit/", "/kill-switch/"] * 3:
            began = time.monotonic()
            answer = panel.get(path)
            own_pages.setdefault(path, []).append(time.monotonic() - began)
            assert answer.status_code == 200
        hanging = [r for r in sim.requests if r.status is None]
        stop.set()
        for poller in pollers:
            poller.join(timeout=READ + 10)
    finally:
        stop.set()
        panel.stop()
        sim.stop()

    print(
        "\n"
        + "; ".join(f"{path} {', '.join(f'{s * 1000:.0f} ms' for s in times)}" for path, times in own_pages.items())
        + f"; dashboard polls: {len(polls)}, median {statistics.median(p[0] for p in polls) * 1000:.0f} ms"
    )
    # Nothing waited behind the hanging reads: each answered long before the first could time out.
    assert max(max(times) for times in own_pages.values()) < READ / 2
    assert hanging, "the exchange was not hanging while the pages were read"
    # The dashboards answered too, and said in words why a subaccount is missing, at once.
    assert {status for _, status, _ in polls} == {200}
    quick = [text for seconds, _, text in polls if seconds < READ / 2]
    assert len(quick) >= len(polls) - POLLERS  # at most one wait per dashboard before it is shown as pending
    assert any("still being read" in text for text in quick)
