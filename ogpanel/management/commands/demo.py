"""`manage.py demo`: the panel, the exchange simulator, the trip watch, the sweep worker and demo data in one process.

Each run starts a fresh simulator (its state lives in memory), so it also makes fresh API keys,
re-registers them, replaces the demo credentials and prints new passwords for the demo users.
Audit history from earlier runs is kept: it is append-only. The trip banner's trips of the earlier
run are dropped: their groups lived on the old simulator, and would show as ghosts.

Output, for a newcomer: where the simulator and the panel are, then the passwords, last. The
development server's banner and its line per request stay out of the way unless asked for
(OGPANEL_LOG_REQUESTS=1); errors (4xx, 5xx) are always shown.
"""

import io
import logging
import secrets
import threading
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.core.servers.basehttp import get_internal_wsgi_application

from ogpanel import jobs, services
from ogpanel.audit import Actor
from ogpanel.models import AccessScope, Credential, Subaccount, TripAlert
from ogpanel.simulator import SimulatorServer, start
from ogpanel.watcher import Watcher, forget_observations

# (label, subaccounts it serves)
DEMO_CREDENTIALS = [("demo-primary", [0, 1, 2]), ("demo-desks", [3, 4, 5])]
# (username, role, subaccount scope or None for all)
DEMO_USERS = [("viewer", "viewer", None), ("ops", "ops", None), ("admin", "admin", None), ("desk3", "ops", [3])]
# (subaccount, limit, orders with their sizes, fills that push it over the limit → triggered)
DEMO_GROUPS = [
    (0, 100, [10, 20], None),
    (0, 250, [50], None),
    (1, 50, [30, 30], 60),
    (2, 1000, [5, 5, 5], None),
    (3, 500, [100], None),
    (4, 20, [10, 15], 25),
    (5, 75, [], None),
]


class Command(BaseCommand):
    help = "Run the panel with the local exchange simulator and demo data (Ctrl-C stops everything)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="Panel port (default 8000).")
        parser.add_argument("--no-serve", action="store_true", help="Seed and exit (for tests).")

    def handle(self, *args: Any, port: int, no_serve: bool, **options: Any) -> None:
        sim_url = urlsplit(settings.OGPANEL_BASE_URLS["simulator"])
        simulator = start(
            host=sim_url.hostname or "127.0.0.1",
            port=sim_url.port or 8765,
            max_subaccount=settings.OGPANEL_MAX_SUBACCOUNT,
        )
        passwords = seed(simulator, environment=Credential.Environment.SIMULATOR)
        # A fresh simulator is a new exchange: the last one's trips would be ghosts in the banner
        # (their groups are gone; their audit events stay).
        TripAlert.objects.all().delete()
        if no_serve:
            self._introduce(simulator.base_url, None, passwords)
            simulator.stop()
            return
        # The trip watch runs in this process too, so a group tripped through /_sim/ shows on the dashboard.
        # A fresh simulator is a new exchange: what the watcher knew of the last one would read as changes.
        forget_observations()
        watcher = Watcher()
        watcher.poll_once()  # its baseline lines now, so that the passwords stay the last thing printed
        stop_watching = threading.Event()
        watching = threading.Thread(target=watcher.run, args=(stop_watching,), name="ogpanel-watcher", daemon=True)
        watching.start()
        # The sweep worker too: it finishes a kill switch whose runner died (the panel starts sweeps itself).
        stop_sweeping = threading.Event()
        sweeping = threading.Thread(target=jobs.work, args=(stop_sweeping,), name="ogpanel-sweeps", daemon=True)
        sweeping.start()
        if not settings.OGPANEL_LOG_REQUESTS:
            # Loading the WSGI application runs django.setup(), which configures logging anew: load it first.
            get_internal_wsgi_application()
            logging.getLogger("django.server").setLevel(logging.WARNING)  # 2xx/3xx lines off; errors stay
        self._introduce(simulator.base_url, port, passwords)
        try:
            # Its banner ("Starting development server ...") would bury the passwords: the URL is printed above.
            call_command("runserver", f"127.0.0.1:{port}", use_reloader=False, stdout=io.StringIO())
        finally:
            stop_watching.set()
            stop_sweeping.set()
            watching.join(timeout=10)
            sweeping.join(timeout=10)
            simulator.stop()

    def _introduce(self, simulator_url: str, port: int | None, passwords: dict[str, str]) -> None:
        self.stdout.write(f"Exchange simulator: {simulator_url}  (OGPANEL_SIMULATOR_URL moves it)")
        if port is not None:
            self.stdout.write(
                self.style.SUCCESS(f"Panel: http://127.0.0.1:{port}/  (DEMO_PORT moves it; Ctrl-C stops everything)")
            )
        self.stdout.write(self.style.SUCCESS("Demo users (passwords are new on every run):"))
        for username, role, scope in DEMO_USERS:
            where = "all subaccounts" if scope is None else f"subaccounts {scope}"
            self.stdout.write(f"  {username:<8} {passwords[username]}   role {role}, {where}")


def seed(simulator: SimulatorServer, *, environment: str, base_url: str = "") -> dict[str, str]:
    """Demo credentials (keys registered with `simulator`), order groups and users; returns passwords."""
    actor = Actor.system("demo")
    for label, numbers in DEMO_CREDENTIALS:
        _credential(actor, simulator, label, numbers, environment, base_url)
    for subaccount, limit, orders, fill in DEMO_GROUPS:
        group_id = simulator.create_group(subaccount, limit)
        order_ids = [simulator.place_order(subaccount, group_id, count=size) for size in orders]
        if fill:
            simulator.fill(order_ids[0], fill)
    return {username: _user(username, role, scope) for username, role, scope in DEMO_USERS}


def _credential(
    actor: Actor, simulator: SimulatorServer, label: str, numbers: list[int], environment: str, base_url: str
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_id = f"{label}-{secrets.token_hex(4)}"
    simulator.add_key(key_id, public)
    credential = Credential.objects.filter(label=label).first()
    if credential is None:
        credential = services.credential_create(
            actor=actor,
            label=label,
            environment=environment,
            key_id=key_id,
            private_key_pem=pem,
            custom_base_url=base_url,
        )
    else:
        services.credential_rotate(actor=actor, credential=credential, key_id=key_id, private_key_pem=pem)
    for number in numbers:
        if not Subaccount.objects.filter(number=number, credential=credential).exists():
            services.subaccount_assign(actor=actor, number=number, credential=credential, label=f"desk {number}")


def _user(username: str, role: str, scope: list[int] | None) -> str:
    password = secrets.token_urlsafe(12)
    user, _ = User.objects.get_or_create(username=username)
    user.set_password(password)
    user.save()
    user.groups.set([Group.objects.get_or_create(name=role)[0]])
    AccessScope.objects.filter(user=user).delete()
    if scope is not None:
        AccessScope.objects.create(user=user, subaccounts=scope)
    return password
