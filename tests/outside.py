"""Running the panel as its users' world does: its own processes, its own database, real HTTP.

`outside_database()` makes a database for panel processes (they cannot reach the test run's own,
which on SQLite lives in memory): a SQLite file, or on PostgreSQL a fresh database owned by a
fresh owner role, set up by deploy/postgres/10-ogpanel-runtime-role.sh and migrated by the owner,
as production is; the panels then connect as the runtime role. `PanelProcess` runs runserver (the
demo's DEBUG mode) or gunicorn (production settings) on it, logging to a file. `send()` writes
raw bytes to a panel and reads its answer, so a request may be anything at all.
"""

import os
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import requests
from django.conf import settings

from tests.panel_fixtures import ENCRYPTION_KEYS
from tests.panel_process import wait_for
from tests.test_resilience import free_port

ROOT = Path(__file__).resolve().parent.parent
ROLE_SCRIPT = ROOT / "deploy" / "postgres" / "10-ogpanel-runtime-role.sh"
# Users of the panel (password "<name>-password-1"): an admin, an admin limited to subaccount 1, a viewer.
SEED = """
import sys

import django

django.setup()
from ogpanel.models import Subaccount
from tests.panel_fixtures import make_credential, make_user

credential = make_credential(sys.argv[1], sys.stdin.buffer.read())
for number in range(4):
    Subaccount.objects.create(number=number, credential=credential, label=f"desk {number}")
make_user("ada", "admin")
make_user("desk1", "admin", subaccounts=[1])
make_user("vera", "viewer")
make_user("otto", "ops")
"""
# Django's own lines, as settings.LOGGING formats them: "2026-01-02 03:04:05,678 WARNING django.request ...".
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<logger>\S+) ")
# runserver's access lines, gunicorn's own and its access lines: "[01/Jan/2026 03:04:05] ...",
# "[2026-01-02 03:04:05 +0000] [1] ..." and '127.0.0.1 - - [01/Jan/2026:03:04:05 +0000] "GET / ..." ...'.
SERVER_LINE = re.compile(r"^(\[\d\d/\w{3}/\d{4} |\[\d{4}-\d\d-\d\d |\S+ - \S+ \[\d\d/\w{3}/\d{4}:)")


@dataclass
class OutsideDatabase:
    vendor: str
    owner_url: str  # migrations run as this role
    runtime_url: str  # the panels connect as this one (the same as the owner on SQLite)
    runtime_role: str = ""

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Read the panels' database (as its owner), for what a test checks."""
        if self.vendor == "sqlite":
            with sqlite3.connect(self.owner_url.removeprefix("sqlite:///")) as connection:
                return connection.execute(sql.replace("%s", "?"), params).fetchall()
        import psycopg

        with psycopg.connect(self.owner_url) as connection:
            return connection.execute(sql, params).fetchall()


def _superuser() -> dict:
    """How the test run reaches PostgreSQL (CI: the superuser postgres, trusted on loopback)."""
    db = settings.DATABASES["default"]
    return {
        "host": db["HOST"] or "127.0.0.1",
        "port": db["PORT"] or "5432",
        "user": db["USER"],
        "password": db["PASSWORD"],
    }


def _url(role: str, password: str, database: str) -> str:
    server = _superuser()
    return f"postgresql://{quote(role)}:{quote(password)}@{server['host']}:{server['port']}/{database}"


def manage(env: dict, *args: str, stdin: bytes | None = None, code: str | None = None) -> subprocess.CompletedProcess:
    """`manage.py ARGS` (or `python -c CODE ARGS`) in a fresh interpreter; its output if it succeeds."""
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "manage.py", *args]
    done = subprocess.run(command, cwd=ROOT, env=env, input=stdin, capture_output=True, timeout=180)
    assert done.returncode == 0, (args, done.stdout.decode()[-2000:], done.stderr.decode()[-4000:])
    return done


def base_env(database_url: str, var_dir: Path) -> dict:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("OGPANEL_", "DATABASE_URL"))}
    env.pop("REDIS_URL", None)  # each panel its own in-process cache: the test run's cache is cleared per test
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url,
        "OGPANEL_ENCRYPTION_KEYS": ENCRYPTION_KEYS,
        "OGPANEL_VAR_DIR": str(var_dir),
        "PYTHONUNBUFFERED": "1",
    }


@contextmanager
def outside_database(tmp: Path, sim_base_url: str, key_pem: bytes) -> Iterator[OutsideDatabase]:
    """A migrated, seeded database for panel processes, dropped (with its roles) afterwards."""
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        url = f"sqlite:///{tmp / 'outside.sqlite3'}"
        database = OutsideDatabase("sqlite", url, url)
        manage(base_env(url, tmp), "migrate", "--no-input")
        manage(base_env(url, tmp), sim_base_url, code=SEED, stdin=key_pem)
        yield database
        return
    import psycopg
    from psycopg import sql

    suffix = secrets.token_hex(4)
    owner, runtime, name = f"ogpanel_owner_{suffix}", f"ogpanel_app_{suffix}", f"ogpanel_outside_{suffix}"
    owner_password, runtime_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    server = _superuser()
    admin = psycopg.connect(dbname="postgres", autocommit=True, **server)
    try:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(owner), owner_password))
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))
        script_env = {
            **os.environ,
            "PGHOST": server["host"],
            "PGPORT": server["port"],
            "PGUSER": server["user"],
            "PGPASSWORD": server["password"],
            "POSTGRES_USER": owner,
            "POSTGRES_DB": name,
            "OGPANEL_DB_APP_USER": runtime,
            "OGPANEL_DB_APP_PASSWORD": runtime_password,
        }
        subprocess.run(["sh", str(ROLE_SCRIPT)], env=script_env, capture_output=True, timeout=60, check=True)
        database = OutsideDatabase(
            "postgresql", _url(owner, owner_password, name), _url(runtime, runtime_password, name), runtime
        )
        manage(base_env(database.owner_url, tmp), "migrate", "--no-input")
        manage(base_env(database.runtime_url, tmp), sim_base_url, code=SEED, stdin=key_pem)
        yield database
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        for role in (runtime, owner):
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.close()


class PanelProcess:
    """A panel in its own process: `runserver` in DEBUG (as `make demo` runs it) or gunicorn (production)."""

    def __init__(self, mode: str, env: dict, log: Path):
        self.mode, self.port = mode, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        if mode == "debug":
            env = {**env, "OGPANEL_DEBUG": "1"}
            command = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload"]
        else:
            command = [sys.executable, "-m", "gunicorn", "ogpanel.wsgi", "--bind", f"127.0.0.1:{self.port}"]
            command += ["--workers", "1", "--threads", "4", "--timeout", "60", "--access-logfile", "-"]  # as the image
        self._log = log.open("ab")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_for(self._up, timeout=60, what=f"the {mode} panel to start")
        except BaseException:
            self.stop()  # no panel outlives a test run that could not use it
            raise

    def _up(self) -> bool:
        assert self.process.poll() is None, f"the {self.mode} panel exited: {self.log_path.read_text()[-3000:]}"
        try:
            return requests.get(self.url + "/healthz", timeout=5).status_code == 200
        except requests.RequestException:  # not listening yet, or slow to answer on a busy machine
            return False

    def log(self, start: int = 0) -> str:
        return self.log_path.read_bytes()[start:].decode(errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def session(self, username: str) -> requests.Session:
        """A browser-like session signed in through the form (which also opens the re-authentication window)."""
        session = requests.Session()
        session.get(self.url + "/accounts/login/", timeout=30)
        response = session.post(
            self.url + "/accounts/login/",
            {
                "username": username,
                "password": f"{username}-password-1",
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            timeout=30,
            allow_redirects=False,
        )
        assert response.status_code == 302, response.text[:500]
        return session

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self._log.close()


@dataclass(frozen=True)
class Answer:
    status: int  # 0: the connection closed without an answer
    head: bytes
    body: bytes


def send(port: int, request: bytes, timeout: float = 60) -> Answer:
    """Write `request` as it is and read the whole answer (the request says Connection: close)."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        try:
            connection.sendall(request)
        except (BrokenPipeError, ConnectionResetError):  # answered (and closed) before reading it all
            pass
        while True:
            try:
                chunk = connection.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return Answer(int(match[1]) if match else 0, head, body)
