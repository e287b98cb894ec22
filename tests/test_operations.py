"""Operations signals from a panel run as in production: gunicorn with several workers (gunicorn.conf.py),
JSON logs, and /metrics scraped over HTTP.

One panel for the module, on its own migrated SQLite file (the suite's test database is not
visible to another process), in a scratch directory of its own.
"""

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from benchmarks.common import free_port
from tests.test_metrics import samples, value

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2
MAX_REQUESTS = 3  # each worker is replaced after a few requests: its counts must outlive it


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    base = tmp_path_factory.mktemp("gunicorn")
    database = base / "panel.sqlite3"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")},
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{database}",
        "OGPANEL_METRICS_ALLOWED_ADDRESSES": "127.0.0.1",
        "OGPANEL_LOG_FORMAT": "json",
        "OGPANEL_LOG_LEVEL": "INFO",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, check=True)
    create = (
        "from django.contrib.auth.models import Group, User;"
        "u = User.objects.create_user('alice', password='alice-password-1');"
        "u.groups.add(Group.objects.get_or_create(name='ops')[0])"
    )
    subprocess.run([*manage, "shell", "-c", create], cwd=ROOT, env=env, check=True)
    url = f"http://127.0.0.1:{free_port()}"
    log_path = base / "stderr.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "--config",
                str(ROOT / "gunicorn.conf.py"),
                "--chdir",
                str(ROOT),
                "ogpanel.wsgi",
                "--bind",
                url.removeprefix("http://"),
                "--workers",
                str(WORKERS),
                "--max-requests",
                str(MAX_REQUESTS),
            ],
            cwd=base,
            env={**env, "PROMETHEUS_MULTIPROC_DIR": str(base / "metrics")},  # made by gunicorn.conf.py
            stderr=log,
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except (requests.ConnectionError, requests.Timeout):  # up, but not answering yet
                    pass
                assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            yield {"url": url, "database": database, "log": log_path}
        finally:
            process.terminate()
            process.wait(timeout=30)


def _json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_metrics_add_up_every_workers_requests_even_after_workers_were_replaced(panel):
    url = panel["url"]
    requests_sent = 4 * WORKERS * MAX_REQUESTS  # several generations of workers
    for _ in range(requests_sent):
        assert requests.get(f"{url}/accounts/login/", timeout=10).status_code == 200
    scraped = samples(requests.get(f"{url}/metrics", timeout=10).text)
    assert value(scraped, "ogpanel_http_requests_total", view="login", status="200") == requests_sent

    # Workers were replaced along the way (each logs its boot with its pid), and their counts stayed.
    booted = set(re.findall(r"Booting worker with pid: (\d+)", panel["log"].read_text()))
    assert len(booted) > WORKERS


def test_a_json_log_line_carries_the_request_id_and_user_of_the_audit_event_the_request_wrote(panel):
    url = panel["url"]
    session = requests.Session()
    page = session.get(f"{url}/accounts/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    signed_in = session.post(
        f"{url}/accounts/login/",
        data={"username": "alice", "password": "alice-password-1", "csrfmiddlewaretoken": token},
        allow_redirects=False,
        timeout=10,
    )
    assert signed_in.status_code == 302
    with sqlite3.connect(panel["database"]) as db:
        request_id, actor = db.execute(
            "SELECT request_id, actor_username FROM ogpanel_auditevent"
            " WHERE action = 'login' AND outcome = 'succeeded' ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    assert request_id == signed_in.headers["X-Request-ID"] and actor == "alice"

    deadline = time.monotonic() + 10  # the worker writes the line as the response goes
    while not (lines := [line for line in _json_lines(panel["log"]) if line.get("request_id") == request_id]):
        assert time.monotonic() < deadline, panel["log"].read_text()[-3000:]
        time.sleep(0.05)
    (line,) = lines
    assert line["logger"] == "ogpanel.request" and line["level"] == "INFO"
    assert line["method"] == "POST" and line["path"] == "/accounts/login/" and line["status"] == 302
    assert line["view"] == "login" and line["user"] == "alice"
    assert line["time"].endswith("+00:00")
    assert "alice-password-1" not in panel["log"].read_text()
