"""Resilience: the panel against an exchange that hangs, drops connections, or answers 500, 429 or garbage.

Every page and action must come back within its timeouts, say what went wrong in words, and leave
an audit log where each attempt has exactly one result. A panel process killed mid kill switch
leaves its attempts as "outcome unknown", and the next kill switch takes the sweep over, finishes it
and reconciles them (tests/test_kill_switch_processes.py does the same with sweep workers).

The time bounds here are ceilings derived from the configured timeouts, retries and rate budget,
not benchmarks: they only fail when a request waits on something it should have given up on.
"""

import html
import inspect
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import requests

from ogpanel import audit, sweeps
from ogpanel.kalshi import KalshiClient
from ogpanel.models import AuditEvent
from tests.conftest import SIM_KEY_ID
from tests.panel_fixtures import ENCRYPTION_KEYS
from tests.panel_process import wait_for
from tests.sweeps import run_sweeps

HTMX = {"HX-Request": "true"}
CONNECT_TIMEOUT = 0.3
READ_TIMEOUT = 0.3
HANG_SECONDS = 1.5  # well past the read timeout: the simulator would answer (nothing) much later
_CLIENT_DEFAULTS = inspect.signature(KalshiClient).parameters
RETRIES = _CLIENT_DEFAULTS["retries"].default
BACKOFF = _CLIENT_DEFAULTS["backoff"].default
# One exchange call at worst: every try times out, with the longest jittered backoff between tries.
PER_CALL = (CONNECT_TIMEOUT + READ_TIMEOUT) * (RETRIES + 1) + sum(BACKOFF * 2**n * 1.5 for n in range(RETRIES))
WRITES_PER_SECOND = 10  # the Basic tier's write budget at Kalshi's default cost, which the panel paces itself to
MARGIN = 3.0  # rendering, signing, SQLite and the test client, with room for a busy machine

# fault kind -> (words the operator sees, audit error_code, upstream status recorded, panel status of an action)
FAULTS = {
    "hang": (f"did not answer within {READ_TIMEOUT:g} s", "timeout", None, 502),
    "drop": ("the connection was dropped", "unreachable", None, 502),
    "error": ("had an internal error (HTTP 500)", "internal_server_error", 500, 502),
    "rate_limit": ("Rate limited by the exchange", "rate_limited", 429, 429),
    "garbage": ("not valid JSON", "malformed_response", 200, 502),
}


def set_fault(sim, kind: str, **match) -> None:
    sim.set_fault(kind, seconds=HANG_SECONDS if kind == "hang" else None, **match)


@pytest.fixture
def short_timeouts(settings):
    settings.OGPANEL_CONNECT_TIMEOUT = CONNECT_TIMEOUT
    settings.OGPANEL_READ_TIMEOUT = READ_TIMEOUT


def page_text(response) -> str:
    return html.unescape(response.content.decode())


def assert_no_audit_event_lost() -> None:
    """Every attempt has exactly one result pointing at it, every result an attempt, and the chain holds."""
    attempts = Counter(AuditEvent.objects.filter(outcome=AuditEvent.Outcome.ATTEMPTED).values_list("seq", flat=True))
    answered = Counter(AuditEvent.objects.filter(attempt_seq__isnull=False).values_list("attempt_seq", flat=True))
    assert answered == attempts
    assert audit.verify().ok


# --- every page and action, against every fault -------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    url: str  # may name {group} and {credential}
    data: dict
    htmx: bool = False
    action: str = ""  # the audited action; "" for reads, which are not audited
    depth: int = 1  # exchange calls made one after another (a fan-out counts once)
    writes: int = 0  # write requests paced by the rate budget, at most (each retry counts)


KILL = {"reason": "drill", "reauth_password": "ada-password-1"}
ENDPOINTS = {
    "dashboard": Endpoint("get", "/", {}),
    "dashboard partial": Endpoint("get", "/", {}, htmx=True),
    "group detail": Endpoint("get", "/groups/1/{group}/", {}),
    "create": Endpoint(
        "post",
        "/groups/new/",
        {"subaccount": "1", "contracts_limit": "10", "exchange_index": "0"},
        htmx=True,
        action="create",
    ),
    "delete": Endpoint("post", "/groups/1/{group}/delete/", {"reason": "drill"}, htmx=True, action="delete"),
    "reset": Endpoint("post", "/groups/1/{group}/reset/", {"reason": "drill"}, htmx=True, action="reset"),
    "trigger": Endpoint("post", "/groups/1/{group}/trigger/", {"reason": "drill"}, action="trigger"),
    "update limit": Endpoint(
        "post",
        "/groups/1/{group}/limit/",
        {"contracts_limit": "5", "reason": "drill"},
        htmx=True,
        action="update_limit",
        depth=2,
    ),
    "kill switch trigger all": Endpoint(
        "post",
        "/kill-switch/",
        {**KILL, "operation": "trigger_all", "confirm": "TRIGGER"},
        htmx=True,
        action="kill_switch_trigger",
        depth=sweeps.MAX_TRIES,  # a subaccount that cannot be listed is listed again, up to MAX_TRIES times
    ),
    "kill switch reset one": Endpoint(
        "post",
        "/kill-switch/",
        {**KILL, "operation": "reset_one", "subaccount": "1", "confirm": "RESET"},
        htmx=True,
        action="kill_switch_reset",
        depth=sweeps.MAX_TRIES,
    ),
    "credential test": Endpoint(
        "post", "/credentials/{credential}/test/", {"subaccount": "1"}, htmx=True, action="credential_test"
    ),
}


def bound(endpoint: Endpoint) -> float:
    return endpoint.depth * PER_CALL + endpoint.writes / WRITES_PER_SECOND + MARGIN


@pytest.mark.parametrize("kind", FAULTS)
@pytest.mark.parametrize("name", ENDPOINTS)
def test_every_page_and_action_answers_in_time_says_why_and_loses_no_audit_event(
    name,
    kind,
    sim,
    subaccounts,
    credential,
    as_admin,
    short_timeouts,
):
    endpoint = ENDPOINTS[name]
    group = sim.create_group(1, 10)
    if name == "kill switch reset one":  # give the reset something to do, were the exchange up
        sim.fill(sim.place_order(1, group, count=11), 11)
    before = sim.group(group)
    set_fault(sim, kind)  # the whole exchange misbehaves
    words, code, upstream_status, action_status = FAULTS[kind]
    url = endpoint.url.format(group=group, credential=credential.pk)

    began = time.monotonic()
    response = getattr(as_admin, endpoint.method)(url, endpoint.data, headers=HTMX if endpoint.htmx else {})
    if name.startswith("kill switch"):  # the POST answers at once; its sweep runs here, as the panel's thread would
        [sweep] = run_sweeps()
        response = as_admin.get(f"/kill-switch/sweeps/{sweep.pk}/")
    elapsed = time.monotonic() - began

    assert elapsed < bound(endpoint)
    page = page_text(response)
    assert "Traceback" not in page
    if name.startswith("dashboard"):
        assert response.status_code == 200
        for number in range(4):  # every subaccount's listing failed, and each says so
            assert f"Subaccount {number} (desk {number}) could not be read" in page
        assert words in page
    elif name.startswith("kill switch"):
        assert response.status_code == 200
        assert "Could not list order groups: " in page and words in page
    else:
        # A connection test reports any upstream failure as a bad gateway, a 429 included.
        assert response.status_code == (502 if name == "credential test" else action_status)
        assert words in page and 'role="alert"' in page
    assert sim.group(group) == before  # nothing changed upstream

    assert_no_audit_event_lost()
    results = AuditEvent.objects.filter(attempt_seq__isnull=False)
    if not endpoint.action:
        assert not AuditEvent.objects.filter(outcome=AuditEvent.Outcome.ATTEMPTED).exists()  # reads are not audited
    elif name.startswith("kill switch"):
        # The sweep ran and counts the subaccounts it could not list; no group was attempted.
        [sweep] = results
        listed = 4 if endpoint.data["operation"] == "trigger_all" else 1
        assert (sweep.action, sweep.outcome, sweep.params["failed"]) == (endpoint.action, "succeeded", listed)
    else:
        [result] = results
        assert (result.action, result.outcome) == (endpoint.action, "failed")
        assert (result.error_code, result.upstream_status) == (code, upstream_status)
        assert words in result.error and result.error in page  # the audit says what the operator was told


@pytest.mark.parametrize("kind", FAULTS)
def test_a_kill_switch_whose_triggers_fail_records_every_group_as_failed(
    kind, sim, subaccounts, as_admin, short_timeouts
):
    groups = [sim.create_group(number, 10) for number in range(4)]
    set_fault(sim, kind, path="/trigger", method="PUT")  # listing works; every trigger misbehaves
    endpoint = ENDPOINTS["kill switch trigger all"]
    words, code, upstream_status, _ = FAULTS[kind]

    began = time.monotonic()
    as_admin.post(endpoint.url, endpoint.data, headers=HTMX)
    [sweep] = run_sweeps()
    response = as_admin.get(f"/kill-switch/sweeps/{sweep.pk}/")
    elapsed = time.monotonic() - began

    # Each of MAX_TRIES rounds lists the subaccounts and sends the triggers; a last listing verifies.
    writes = 4 * sweeps.MAX_TRIES * (RETRIES + 1)
    assert elapsed < bound(replace(endpoint, depth=2 * sweeps.MAX_TRIES + 1, writes=writes))
    assert response.status_code == 200
    page = page_text(response)
    assert "Failed: <strong>4</strong>" in page and page.count(words) >= 4
    assert not any(sim.group(group)["triggered"] for group in groups)
    assert_no_audit_event_lost()
    failed = AuditEvent.objects.filter(action="trigger", attempt_seq__isnull=False)
    assert Counter(event.order_group_id for event in failed) == dict.fromkeys(groups, sweeps.MAX_TRIES)
    assert {(event.outcome, event.error_code, event.upstream_status) for event in failed} == {
        ("failed", code, upstream_status)
    }
    sweep = AuditEvent.objects.get(action="kill_switch_trigger", attempt_seq__isnull=False)
    assert (sweep.params["failed"], sweep.params["changed"]) == (4, 0)


# --- a panel process killed mid kill switch --------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
# Run in a fresh interpreter against the panel's file database: migrate, one credential for the
# simulator (its private key on stdin), subaccounts 0..n-1, and the operator persona.
SETUP = """
import sys

import django

django.setup()
from django.core.management import call_command

call_command("migrate", verbosity=0)
from ogpanel.models import Subaccount
from tests.panel_fixtures import make_credential, make_user

credential = make_credential(sys.argv[1], sys.stdin.buffer.read())
for number in range(int(sys.argv[2])):
    Subaccount.objects.create(number=number, credential=credential, label=f"desk {number}")
make_user("otto", "ops")
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Panel:
    """`manage.py runserver` in its own process, and a browser-like session signed in to it."""

    def __init__(self, env: dict, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.session = requests.Session()
        wait_for(self._up, what="the panel to start")

    def _up(self) -> bool:
        assert self.process.poll() is None, "the panel process exited; see its log"
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def csrf_token(self, path: str) -> str:
        page = self.get(path).text
        return page.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.url + path, timeout=30)

    def post(self, path: str, data: dict) -> requests.Response:
        data = {**data, "csrfmiddlewaretoken": self.csrf_token(path)}
        return self.session.post(self.url + path, data, timeout=60, allow_redirects=False)

    def log_in(self, username: str) -> None:
        response = self.post("/accounts/login/", {"username": username, "password": f"{username}-password-1"})
        assert response.status_code == 302, response.text

    def kill_switch(self) -> requests.Response:
        return self.post(
            "/kill-switch/",
            {"operation": "trigger_all", "reason": "drill", "confirm": "TRIGGER", "reauth_password": "otto-password-1"},
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=10)
        self.session.close()
        self.log.close()


@pytest.fixture
def own_simulator(rsa_public_pem):
    """A simulator of this test's own: stopping it releases the requests it keeps hanging."""
    from ogpanel.simulator import start

    server = start(host="127.0.0.1", port=0)
    server.add_key(SIM_KEY_ID, rsa_public_pem)
    yield server
    server.stop()


UNANSWERED = (
    "outcome = 'attempted' AND seq NOT IN (SELECT attempt_seq FROM ogpanel_auditevent WHERE attempt_seq IS NOT NULL)"
)


def audit_rows(db: Path, where: str) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            f"SELECT seq, action, order_group_id FROM ogpanel_auditevent WHERE {where} ORDER BY seq"
        ).fetchall()


def test_a_panel_killed_mid_kill_switch_leaves_outcome_unknown_and_the_next_kill_switch_finishes_and_reconciles(
    tmp_path,
    own_simulator,
    rsa_pem,
):
    sim = own_simulator
    db = tmp_path / "panel.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{db}",
        "OGPANEL_ENCRYPTION_KEYS": ENCRYPTION_KEYS,
        "OGPANEL_LIST_CACHE_SECONDS": "0",
        "OGPANEL_SWEEP_LEASE_SECONDS": "2",  # no worker runs here: the next kill switch takes the sweep over
        "PYTHONUNBUFFERED": "1",
    }
    subprocess.run(
        [sys.executable, "-c", SETUP, sim.base_url, "3"], cwd=ROOT, env=env, input=rsa_pem, check=True, timeout=120
    )
    groups = {number: [sim.create_group(number, 10), sim.create_group(number, 10)] for number in range(3)}
    stuck = groups[2]
    # Subaccount 2's triggers hang far past the panel's patience: the sweep is stuck half done.
    sim.set_fault("hang", path="/trigger", method="PUT", subaccount=2, seconds=120)
    log = tmp_path / "panel.log"

    first = Panel({**env, "OGPANEL_READ_TIMEOUT": "60"}, log)
    try:
        first.log_in("otto")
        answer = first.kill_switch()  # answers at once; the sweep runs on in a thread of that process

        def stuck_mid_sweep() -> bool:
            triggers = [r for r in sim.requests if r.path.endswith("/trigger")]
            return (
                len(audit_rows(db, "action = 'trigger' AND outcome = 'attempted'")) == 6
                and sorted(r.status for r in triggers if r.status) == [200] * 4
                and len([r for r in triggers if r.status is None]) == 2
            )

        wait_for(stuck_mid_sweep, what="the sweep to be stuck on subaccount 2")
        first.stop(signal.SIGKILL)
    finally:
        first.stop(signal.SIGKILL)
    assert answer.status_code == 302
    url = answer.headers["Location"]

    # Four groups were triggered upstream, two were not. The two stuck calls have no result, and
    # neither has the sweep; a result the dead process had not written yet is unknown too.
    triggered = [sim.group(group)["triggered"] for number in range(3) for group in groups[number]]
    assert triggered == [True] * 4 + [False] * 2
    unanswered = audit_rows(db, UNANSWERED)
    unknown_groups = {group for _, action, group in unanswered if action == "trigger"}
    assert [action for _, action, _ in unanswered if action != "trigger"] == ["kill_switch_trigger"]
    assert set(stuck) <= unknown_groups
    answered = audit_rows(db, "action = 'trigger' AND attempt_seq IS NOT NULL")
    assert len(unknown_groups) + len(answered) == 6
    assert not {group for _, _, group in answered} & set(stuck)  # only calls that really returned have a result
    assert audit_rows(db, "action = 'trigger' AND attempt_seq IS NOT NULL AND outcome != 'succeeded'") == []
    verified = subprocess.run(
        [sys.executable, "manage.py", "verify_audit"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0 and verified.stdout.startswith("OK: ")
    [(first_run_end, _, _)] = audit_rows(db, "seq = (SELECT max(seq) FROM ogpanel_auditevent)")

    sim.clear_faults()
    second = Panel({**env, "OGPANEL_READ_TIMEOUT": "5"}, log)
    try:
        second.log_in("otto")
        review = second.get("/audit/?outcome=unknown").text
        for seq, _, group in unanswered:
            row = review.split(f'<tr data-seq="{seq}">', 1)[1].split("</tr>", 1)[0]
            assert "Attempted → outcome unknown" in row and group in row
        assert "Outcome unknown: no result was recorded" in second.get(f"/audit/{unanswered[0][0]}/").text

        # Nobody runs the sweep now (no worker here); the kill switch pressed again joins it and takes it over.
        wait_for(lambda: "Nobody is running this sweep" in second.get(url).text, what="the dead panel's lease to lapse")
        again = second.kill_switch()
        assert again.status_code == 302 and again.headers["Location"] == url
        wait_for(lambda: "Verified at the exchange: <strong>6</strong>" in second.get(url).text, what="the sweep's end")
        report = second.get(url).text
    finally:
        second.stop()

    assert "Done" in report
    assert all(sim.group(group)["triggered"] for ids in groups.values() for group in ids)
    retried = audit_rows(db, f"action = 'trigger' AND outcome = 'succeeded' AND seq > {first_run_end}")
    assert sorted(group for _, _, group in retried if group in stuck) == sorted(stuck)
    # Every attempt the dead panel left unknown has a result now, reconciled from what the exchange showed.
    assert audit_rows(db, UNANSWERED) == []
    with sqlite3.connect(db) as connection:
        settled = dict(
            connection.execute(
                "SELECT attempt.order_group_id, json_extract(result.params, '$.exchange_state')"
                " FROM ogpanel_auditevent attempt JOIN ogpanel_auditevent result ON result.attempt_seq = attempt.seq"
                f" WHERE attempt.seq IN ({','.join(str(seq) for seq, _, _ in unanswered)})"
                " AND attempt.action = 'trigger'"
                " AND json_extract(result.params, '$.reconciled') = 1"
            ).fetchall()
        )
    assert settled == {group: "active" if group in stuck else "triggered" for group in unknown_groups}
    assert (
        subprocess.run(
            [sys.executable, "manage.py", "verify_audit"], cwd=ROOT, env=env, capture_output=True, timeout=60
        ).returncode
        == 0
    )
