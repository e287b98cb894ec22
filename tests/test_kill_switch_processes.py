"""The kill switch from outside: real panel processes and real sweep workers, SIGKILLed mid-sweep.

A panel process starts the sweep and is killed; a worker takes it over and is killed too; a second
worker finishes it. A second panel process shows the progress all along. At the end every attempt
has a result (reconciled from the exchange where the dead processes never heard back) and
`manage.py verify_audit` passes.
"""

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.panel_fixtures import ENCRYPTION_KEYS
from tests.test_resilience import (
    ROOT,
    SETUP,
    Panel,
    audit_rows,
    own_simulator,  # noqa: F401  (a fixture: a simulator of this test's own)
    wait_for,
)

HTMX = {"HX-Request": "true"}
LEASE = 2  # seconds: a dead runner's sweep is taken over this long after its last renewal


class Worker:
    """`manage.py run_sweeps` in its own process."""

    def __init__(self, env: dict, log: Path):
        self.log_path = log
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "run_sweeps", "--poll", "0.2"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.log.close()


def sweep_row(db: Path) -> tuple:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT id, finished_at, lease_owner, runs FROM ogpanel_sweep").fetchone()


def open_attempts(db: Path) -> list[tuple]:
    return audit_rows(db, "seq IN (SELECT seq FROM ogpanel_openattempt)")


def reconciled(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT order_group_id, outcome, json_extract(params, '$.exchange_state') FROM ogpanel_auditevent"
            " WHERE json_extract(params, '$.reconciled') = 1 ORDER BY seq"
        ).fetchall()


def test_a_sweep_survives_its_panel_and_a_worker_being_killed_and_a_new_worker_finishes_it(tmp_path, request, rsa_pem):
    sim = request.getfixturevalue("own_simulator")
    db = tmp_path / "panel.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{db}",
        "OGPANEL_ENCRYPTION_KEYS": ENCRYPTION_KEYS,
        "OGPANEL_LIST_CACHE_SECONDS": "0",
        "OGPANEL_SWEEP_LEASE_SECONDS": str(LEASE),
        "OGPANEL_READ_TIMEOUT": "60",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)  # each process on its own: nothing here may depend on a shared cache
    subprocess.run(
        [sys.executable, "-c", SETUP, sim.base_url, "3"], cwd=ROOT, env=env, input=rsa_pem, check=True, timeout=120
    )
    groups = {number: [sim.create_group(number, 10), sim.create_group(number, 10)] for number in range(3)}
    # Subaccount 1's triggers arrive and are done 4 s later, after their panel is dead: outcome unknown, but done.
    sim.set_fault("latency", path="/trigger", method="PUT", subaccount=1, seconds=4, times=2)
    # Subaccount 2's triggers hang: never done, and whoever sent them waits.
    sim.set_fault("hang", path="/trigger", method="PUT", subaccount=2, seconds=120)
    log = tmp_path / "processes.log"

    def arrived(number: int) -> int:
        ids = set(groups[number])
        return sum(1 for r in sim.requests if r.path.endswith("/trigger") and r.path.split("/")[-2] in ids)

    runner = Panel(env, log)  # runs the sweep in a thread of its own
    watcher = Panel({**env, "OGPANEL_SWEEPS_IN_PANEL": "0"}, log)  # a second operator, watching
    workers: list[Worker] = []
    try:
        runner.log_in("otto")
        watcher.log_in("otto")
        answer = runner.kill_switch()
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/kill-switch/sweeps/")
        url = answer.headers["Location"]
        wait_for(lambda: arrived(0) == 2 and arrived(1) == 2 and arrived(2) == 2, what="every first trigger to go out")
        wait_for(lambda: "To go: <strong>4</strong>" in watcher.get(url).text, what="the progress page mid-sweep")
        fragment = watcher.session.get(watcher.url + url, headers=HTMX, timeout=30).text
        assert fragment.lstrip().startswith('<section class="sweep-progress"') and 'hx-trigger="every' in fragment

        runner.stop(signal.SIGKILL)
        wait_for(lambda: all(sim.group(g)["triggered"] for g in groups[1]), what="the late triggers to be done")
        assert len(open_attempts(db)) == 5  # 4 triggers and the sweep itself

        workers.append(Worker(env, log))  # takes the sweep over once the dead panel's lease lapses
        wait_for(lambda: arrived(2) == 4, timeout=60, what="the first worker to trigger subaccount 2 again")
        wait_for(lambda: len(reconciled(db)) == 4, what="the first worker to reconcile what the panel left unknown")
        assert sorted(reconciled(db)) == sorted(
            [(g, "succeeded", "triggered") for g in groups[1]] + [(g, "failed", "active") for g in groups[2]]
        )
        workers[0].kill()
        assert "worker:" in sweep_row(db)[2] and sweep_row(db)[1] is None

        sim.clear_faults()
        workers.append(Worker({**env, "OGPANEL_READ_TIMEOUT": "5"}, log))
        wait_for(lambda: sweep_row(db)[1] is not None, timeout=90, what="the second worker to finish the sweep")
        done = watcher.get(url).text
    finally:
        for worker in workers:
            worker.kill()
        runner.stop(signal.SIGKILL)
        watcher.stop()

    assert all(sim.group(g)["triggered"] for ids in groups.values() for g in ids)
    assert sweep_row(db)[3] == 3  # the panel's run, and each worker's
    assert open_attempts(db) == []  # every attempt ended with a result
    assert [state for _, outcome, state in reconciled(db) if outcome == "failed"] == ["active"] * 4
    assert "Done" in done and "Verified at the exchange: <strong>6</strong> of 6" in done
    assert "hx-trigger" not in done.split('<section class="sweep-progress"', 1)[1].split(">", 1)[0]
    verified = subprocess.run(
        [sys.executable, "manage.py", "verify_audit"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0 and verified.stdout.startswith("OK: ")
