"""Two real `manage.py watch_order_groups` processes: the leader is SIGKILLed, the standby takes over.

A file database, the simulator of this test's own on a loopback port, a webhook receiver in the
test; the test reads the database with sqlite3 and drives the exchange over HTTP.
"""

import signal
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from tests.panel_process import ROOT, panel_environment, prepare_database, wait_for
from tests.test_resilience import own_simulator  # noqa: F401  (a fixture: a simulator of this test's own)
from tests.test_watcher import Receiver, trip

INTERVAL = 2.0


class WatcherProcess:
    def __init__(self, env: dict, log: Path) -> None:
        self.log_path = log
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "watch_order_groups", "--interval", str(INTERVAL)],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def holder(self) -> str:
        text = self.log_path.read_text()
        return text.split(" as ", 1)[1].split(";", 1)[0] if " as " in text else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.log.close()


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db, timeout=10) as connection:
        return connection.execute(sql).fetchall()


def lease(db: Path) -> tuple:
    found = rows(db, "SELECT holder, since, taken_from, taken_from_renewed_at FROM ogpanel_watchlease")
    return found[0] if found else ("", None, "", None)


def test_a_standby_leads_within_two_intervals_of_a_sigkill_and_a_trip_then_is_reported_and_alerted_once(
    tmp_path, request, rsa_pem
):
    sim = request.getfixturevalue("own_simulator")
    receiver = Receiver()
    db = tmp_path / "watch.sqlite3"
    env = panel_environment(
        db,
        OGPANEL_LIST_CACHE_SECONDS="0",
        OGPANEL_WATCH_WEBSOCKET="0",
        OGPANEL_ALERT_WEBHOOK_URL=receiver.url,
        OGPANEL_WATCH_DOWN_SECONDS="60",
    )
    prepare_database(env, sim.base_url, rsa_pem, [{"label": "sim", "key_id": "test-key", "subaccounts": [1, 2]}], [])
    group_id = sim.create_group(2, 5)
    first = WatcherProcess(env, tmp_path / "first.log")
    second = None
    try:
        wait_for(lambda: first.holder and lease(db)[0] == first.holder, what="the first watcher to lead")
        wait_for(lambda: rows(db, "SELECT count(*) FROM ogpanel_observedgroup") == [(1,)], what="the first baseline")
        second = WatcherProcess(env, tmp_path / "second.log")
        wait_for(lambda: "stands by" in second.log_path.read_text(), what="the second watcher to stand by")

        first.stop()  # SIGKILL: no goodbye, the lease simply stops being renewed
        trip(sim, 2, group_id)  # during the hand-over

        wait_for(lambda: lease(db)[0] == second.holder, what="the standby to lead")
        holder, since, taken_from, taken_from_renewed_at = lease(db)
        assert holder == second.holder
        assert taken_from == first.holder
        handover = datetime.fromisoformat(since) - datetime.fromisoformat(taken_from_renewed_at)
        assert handover.total_seconds() <= 2 * INTERVAL, handover

        wait_for(lambda: len(receiver.delivered) == 1, what="the trip's alert", timeout=30)
        beats = rows(db, "SELECT beat_at FROM ogpanel_watcherheartbeat")
        wait_for(  # two more rounds of the new leader, in which a duplicate would show
            lambda: (
                rows(db, "SELECT beat_at FROM ogpanel_watcherheartbeat") != beats
                and len(rows(db, "SELECT seq FROM ogpanel_auditevent WHERE action = 'exchange_baseline'")) == 2
            ),
            what="the new leader's next rounds",
        )
        beats = rows(db, "SELECT beat_at FROM ogpanel_watcherheartbeat")
        wait_for(lambda: rows(db, "SELECT beat_at FROM ogpanel_watcherheartbeat") != beats, what="one more round")
    finally:
        first.stop()
        if second is not None:
            second.stop()
        receiver.stop()

    assert rows(
        db,
        "SELECT action, order_group_id FROM ogpanel_auditevent WHERE action LIKE 'exchange_%'"
        " AND action != 'exchange_baseline'",
    ) == [("exchange_triggered", group_id)]
    assert rows(db, "SELECT order_group_id FROM ogpanel_tripalert") == [(group_id,)]
    assert [body["order_group_id"] for body in receiver.delivered] == [group_id] and len(receiver.posts) == 1
    assert rows(db, "SELECT count(*) FROM ogpanel_auditevent WHERE action LIKE 'trip_watch_%'") == [(0,)]
