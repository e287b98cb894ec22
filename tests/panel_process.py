"""The panel as a user's world meets it: gunicorn with threads in a process of its own, over real HTTP.

For the tests of degraded dependencies (tests/test_degraded_*.py): a file database prepared in a
fresh interpreter, the panel under gunicorn as the Dockerfile runs it (smaller), a signed-in
browser-like session, and a redis-server of the test's own that can be killed and started again.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.panel_fixtures import ENCRYPTION_KEYS

ROOT = Path(__file__).resolve().parent.parent

# Run in a fresh interpreter against the panel's database: migrate, then for each credential
# (label, account, key id, tier) one credential for the simulator (the private key on stdin), the
# subaccounts given for it, and the users: (name, role, subaccounts or None for all).
SETUP = """
import json
import sys

import django

django.setup()
from django.core.management import call_command

call_command("migrate", verbosity=0)
from ogpanel.models import Subaccount
from tests.panel_fixtures import make_credential, make_user

pem = sys.stdin.buffer.read()
for spec in json.loads(sys.argv[2]):
    credential = make_credential(sys.argv[1], pem, label=spec["label"], key_id=spec["key_id"])
    credential.account, credential.tier = spec.get("account", ""), spec.get("tier", "")
    credential.save()
    for number in spec["subaccounts"]:
        Subaccount.objects.create(number=number, credential=credential, label=f"desk {number}")
for name, role, scope in json.loads(sys.argv[3]):
    make_user(name, role, scope)
"""
PERSONAS = [("otto", "ops", None), ("ada", "admin", None)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, what: str, *, timeout: float = 30.0, interval: float = 0.02):
    """Poll `condition` until it is truthy and return what it returned; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
    return found


def panel_environment(database: Path, **settings: str) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{database}",
        "OGPANEL_ENCRYPTION_KEYS": ENCRYPTION_KEYS,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
        **settings,
    }


def prepare_database(
    env: dict, sim_url: str, pem: bytes, credentials: list[dict], users: list[tuple] = PERSONAS
) -> None:
    subprocess.run(
        [sys.executable, "-c", SETUP, sim_url, json.dumps(credentials), json.dumps(users)],
        cwd=ROOT,
        env=env,
        input=pem,
        check=True,
        timeout=120,
    )


class PanelProcess:
    """gunicorn serving the panel (1 worker with `threads` threads), and a session signed in to it."""

    def __init__(self, env: dict, log: Path, *, threads: int = 4, wait_until_up: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "ogpanel.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--threads",
                str(threads),
                "--timeout",
                "120",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.session = requests.Session()
        if wait_until_up:
            wait_for(self._up, what="the panel to start", timeout=60)

    def _up(self) -> bool:
        assert self.process.poll() is None, "the panel process exited; see its log"
        try:
            requests.get(self.url + "/accounts/login/", timeout=5)  # the first answer loads a lot: be patient
        except requests.RequestException:
            return False
        return True

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self.url + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def csrf_token(self, path: str) -> str:
        page = self.get(path).text
        return page.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]

    def post(self, path: str, data: dict, *, form: str | None = None, **kwargs) -> requests.Response:
        """POST as the page's form does: with the CSRF token of the page at `form` (default: `path`)."""
        data = {**data, "csrfmiddlewaretoken": self.csrf_token(form or path)}
        return self.session.post(
            self.url + path, data, timeout=kwargs.pop("timeout", 60), allow_redirects=False, **kwargs
        )

    def log_in(self, username: str) -> None:
        response = self.post("/accounts/login/", {"username": username, "password": f"{username}-password-1"})
        assert response.status_code == 302, response.text

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.session.close()
        self.log.close()


class RedisServer:
    """A redis-server of this test's own on a free port, which the test may kill and start again."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed, so a Redis outage cannot be staged")
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.answers, what="redis-server to start")

    def answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5).ping())
        except (redis.RedisError, OSError):
            return False

    def kill(self) -> None:
        """Gone at once, as a crashed or unplugged Redis: SIGKILL, no goodbye to its clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def keys(self, pattern: str) -> list[str]:
        import redis

        return sorted(key.decode() for key in redis.Redis.from_url(self.url, socket_timeout=1).keys(pattern))
