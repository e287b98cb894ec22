"""What the benchmarks share: the simulator, seeded order groups, the panel's database and users,
the panel served over real HTTP, Kalshi's official client in its own process, and result tables.

A script puts the project root on sys.path, then calls `configure()` before touching any model:

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import common
    common.configure(database_url=args.database_url)

Nothing here measures anything; the scripts do.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import urlopen

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
OFFICIAL_VENV = BENCHMARKS / ".venv-official"
OFFICIAL_CLIENT = "kalshi-python-sync==3.34.0"
KEY_ID = "bench-key"
SUBACCOUNTS = range(33)  # 0 (primary) to 32
HTMX = {"HX-Request": "true"}
# What the dashboard's self-refresh sends (hx-trigger "every …" on #groups): a passive poll.
DASHBOARD_POLL = {"HX-Request": "true", "HX-Trigger": "groups"}


# --- Django ----------------------------------------------------------------------------------


def arguments(doc: str) -> argparse.ArgumentParser:
    """The options every panel benchmark takes: where its database is, and a tiny run that only checks it works."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL (ogpanel_bench_*, recreated); default a fresh SQLite")
    parser.add_argument("--quick", action="store_true", help="a tiny run that only checks the script works")
    return parser


def configure(
    *, database_url: str | None = None, tier: str = "basic", list_cache_seconds: float | None = None, **environment: str
) -> str:
    """Point Django at a fresh database, set up, migrate; returns the DATABASE_URL in use.

    Without `database_url`, a SQLite file in a new temporary directory. A PostgreSQL URL must name
    a database called ogpanel_bench_*: it is dropped and created anew (the audit table refuses
    deletes, so a fresh database is the only clean start). `environment` adds OGPANEL_* settings;
    the same environment reaches a panel started by `Gunicorn()`.
    """
    if database_url is None:
        database_url = f"sqlite:///{tempfile.mkdtemp(prefix='ogpanel-bench-')}/panel.sqlite3"
    elif urlsplit(database_url).scheme in ("postgres", "postgresql"):
        _recreate_postgres(database_url)
    from ogpanel import vault

    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
            "DATABASE_URL": database_url,
            "OGPANEL_ENCRYPTION_KEYS": os.environ.get("OGPANEL_ENCRYPTION_KEYS") or vault.new_key_entry("bench"),
            "OGPANEL_KALSHI_TIER": tier,
            **environment,
        }
    )
    if list_cache_seconds is not None:
        os.environ["OGPANEL_LIST_CACHE_SECONDS"] = str(list_cache_seconds)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return database_url


def _recreate_postgres(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = unquote(parts.path.lstrip("/"))
    if not name.startswith("ogpanel_bench"):
        raise SystemExit(f"refusing to drop {name!r}: a benchmark database must be called ogpanel_bench_*")
    maintenance = parts._replace(path="/postgres", query="").geturl()
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def describe_database() -> str:
    from django.db import connection

    if connection.vendor == "sqlite":
        return f"SQLite {connection.Database.sqlite_version}"
    version = connection.pg_version  # e.g. 150020
    return f"PostgreSQL {version // 10000}.{version % 10000}"


# --- keys, simulator, seeded data ----------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """A throwaway RSA key: PKCS#8 for the panel, PKCS#1 for the official client (as its docs show)."""

    pem: bytes
    pkcs1_pem: bytes
    public_pem: bytes


def new_key() -> Key:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Key(
        pem=private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        pkcs1_pem=private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ),
        public_pem=private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


def start_simulator(key: Key, *, latency: float = 0.0, tier: str | None = None):
    """The simulator on a free loopback port: `latency` seconds added to every API call, `tier` enforced."""
    from ogpanel.simulator import start

    sim = start(latency=latency, tier=tier)
    sim.add_key(KEY_ID, key.public_pem)
    return sim


def seed_groups(
    sim, *, groups: int, subaccounts: Iterable[int] = SUBACCOUNTS, limit: int = 100
) -> dict[int, list[str]]:
    """`groups` active order groups on each subaccount, created directly in the simulator (no HTTP)."""
    return {n: [sim.create_group(n, limit) for _ in range(groups)] for n in subaccounts}


def make_credential(sim, key: Key, *, subaccounts: Iterable[int] = SUBACCOUNTS, label: str = "bench"):
    """A credential for the simulator (key encrypted as the panel stores it), mapped to `subaccounts`."""
    from ogpanel import vault
    from ogpanel.kalshi import load_private_key, public_key_fingerprint
    from ogpanel.models import Credential, Subaccount

    credential = Credential(
        label=label,
        environment=Credential.Environment.CUSTOM,
        custom_base_url=sim.base_url,
        key_id=KEY_ID,
        fingerprint=public_key_fingerprint(load_private_key(key.pem)),
    )
    credential.private_key_encrypted = vault.encrypt(key.pem, bound_to=str(credential.uuid))
    credential.save()
    Subaccount.objects.bulk_create(Subaccount(number=n, credential=credential, label=f"desk {n}") for n in subaccounts)
    return credential


def make_user(username: str, role: str = "ops", *, password: bool = True):
    """A user in the role's group ("viewer", "ops", "admin").

    The password is "<username>-password-1"; hashing it costs ~0.5 s, so pass password=False
    for users who only need a session (auth_headers) and never type it (re-authentication does).
    """
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user(username, password=f"{username}-password-1" if password else None)
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def auth_headers(user) -> dict[str, str]:
    """Headers for a signed-in session of `user`, CSRF token included, for any HTTP client.

    The session is written to the database (as a sign-in would), so a panel in another
    process on the same database accepts it. Signing in through the form would work too, but
    costs a password hash per user.
    """
    import secrets
    import string

    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    csrf = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    return {
        "Cookie": f"{settings.SESSION_COOKIE_NAME}={session}; {settings.CSRF_COOKIE_NAME}={csrf}",
        "X-CSRFToken": csrf,
    }


# --- the panel over HTTP -------------------------------------------------------------------------


class Gunicorn:
    """The panel under gunicorn in a subprocess, as deployed (Dockerfile), on this benchmark's database."""

    def __init__(self, *, workers: int = 1, threads: int = 4, timeout: float = 30.0) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "ogpanel.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--timeout",
                "60",
                "--log-level",
                "warning",
                "--access-logfile",  # gunicorn.conf.py turns the access log on
                os.devnull,
            ],
            cwd=ROOT,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urlopen(self.url + "/healthz", timeout=1) as answer:  # noqa: S310 (our own http:// URL)
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("gunicorn did not come up")
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- Kalshi's official client, in its own interpreter ---------------------------------------------


def official_python() -> str:
    """An interpreter that has kalshi-python-sync: this one, or benchmarks/.venv-official (built on first use)."""
    if importlib.util.find_spec("kalshi_python_sync") is not None:
        return sys.executable
    python = OFFICIAL_VENV / "bin" / "python"
    if not python.exists():
        base = sys.executable if sys.version_info >= (3, 13) else shutil.which("python3.13")
        if base is None:
            raise SystemExit("kalshi-python-sync needs Python >= 3.13; none found")
        print(f"building {OFFICIAL_VENV.relative_to(ROOT)} with {OFFICIAL_CLIENT} ...", file=sys.stderr)
        if base == sys.executable:
            venv.create(OFFICIAL_VENV, with_pip=True)
        else:
            subprocess.run([base, "-m", "venv", str(OFFICIAL_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", OFFICIAL_CLIENT], check=True)
    return str(python)


class OfficialClient:
    """benchmarks/official_client.py in a subprocess: one JSON command a line in, one answer a line out.

    Timings are taken inside that process, around the client's own call, so the pipe costs nothing.
    """

    def __init__(self, sim, key: Key) -> None:
        self.process = subprocess.Popen(
            [official_python(), str(BENCHMARKS / "official_client.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.ask({"op": "configure", "host": sim.base_url, "key_id": KEY_ID, "pem": key.pkcs1_pem.decode()})

    def ask(self, command: dict) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the official client's process ended")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"official client: {answer['error']}")
        return answer

    def list_sequentially(self, subaccounts: Sequence[int]) -> dict:
        """GET /portfolio/order_groups?subaccount=N for each, one after another: {"seconds", "groups"}."""
        return self.ask({"op": "list", "subaccounts": list(subaccounts)})

    def trigger(self, order_group_id: str, subaccount: int) -> float:
        """PUT /portfolio/order_groups/{id}/trigger; the seconds it took."""
        return self.ask({"op": "trigger", "order_group_id": order_group_id, "subaccount": subaccount})["seconds"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)


# --- results ---------------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p50 of 1..100 is 50, p99 is 99)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    """CPU count, Python, OS, and the load when measuring (the machine may be shared)."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()} {platform.release()}, "
        f"load average {load}"
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table, so a run's output pastes into docs/performance.md as it is."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"
