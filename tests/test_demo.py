"""`make demo`'s seeding: credentials the simulator accepts, groups in both states, one user per role."""

from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from ogpanel import audit, permissions, selectors
from ogpanel.management.commands.demo import DEMO_GROUPS, DEMO_USERS, seed
from ogpanel.models import AuditEvent, Credential, Subaccount, TripAlert

README = Path(__file__).resolve().parents[1] / "README.md"
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}


@pytest.mark.django_db
def test_seed_makes_a_working_panel_with_a_tripped_group(sim, administrator):
    passwords = seed(sim, environment=Credential.Environment.CUSTOM, base_url=sim.base_url)

    listings = selectors.listings(selectors.subaccounts_for(administrator), fresh=True)
    assert [listing.subaccount for listing in listings] == [0, 1, 2, 3, 4, 5]
    assert all(listing.ok for listing in listings), [listing.error for listing in listings]
    states = [group.triggered for listing in listings for group in listing.groups]
    assert True in states and False in states
    for username, role, scope in DEMO_USERS:
        user = authenticate(username=username, password=passwords[username])
        assert user is not None and permissions.role_of(user).label == role
        assert permissions.scope_of(user) == (None if scope is None else frozenset(scope))
    assert audit.verify().ok


@pytest.mark.django_db
def test_running_the_demo_twice_replaces_keys_and_keeps_the_audit_chain(settings, unused_port):
    settings.OGPANEL_BASE_URLS = {
        **settings.OGPANEL_BASE_URLS,
        "simulator": f"http://127.0.0.1:{unused_port}/trade-api/v2",
    }
    first, second = StringIO(), StringIO()
    call_command("demo", "--no-serve", stdout=first)
    keys_before = set(Credential.objects.values_list("key_id", flat=True))
    call_command("demo", "--no-serve", stdout=second)

    assert Credential.objects.count() == 2
    assert keys_before.isdisjoint(Credential.objects.values_list("key_id", flat=True))
    assert Subaccount.objects.count() == 6
    assert "admin" in second.getvalue() and "Demo users" in second.getvalue()
    assert audit.verify().ok


@pytest.mark.django_db
def test_the_demo_prints_the_passwords_last_and_drops_the_last_runs_trips(settings, unused_port):
    settings.OGPANEL_BASE_URLS = {
        **settings.OGPANEL_BASE_URLS,
        "simulator": f"http://127.0.0.1:{unused_port}/trade-api/v2",
    }
    ghost = audit.append(
        audit.Actor.system("exchange"), action="exchange_triggered", outcome=AuditEvent.Outcome.OBSERVED, subaccount=1
    )
    TripAlert.objects.create(event=ghost, subaccount=1, order_group_id="from-the-last-simulator", observed_at=ghost.at)
    out = StringIO()
    call_command("demo", "--no-serve", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"Exchange simulator: http://127.0.0.1:{unused_port}/")
    assert [line.split()[0] for line in lines[-len(DEMO_USERS) :]] == [username for username, _, _ in DEMO_USERS]
    assert not TripAlert.objects.exists()  # no ghost in the banner
    assert AuditEvent.objects.filter(pk=ghost.pk).exists()  # the audit log keeps it


def test_the_readme_says_how_many_demo_groups_start_tripped():
    tripped = sum(1 for _, limit, _, fill in DEMO_GROUPS if fill and fill > limit)
    readme = README.read_text()
    assert f"{NUMBERS[len(DEMO_GROUPS)]} order groups" in readme and f"({NUMBERS[tripped]} of them tripped)" in readme


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_first_key_message_does_not_talk_about_rotation(settings, tmp_path):
    settings.OGPANEL_ENCRYPTION_KEYS = ""
    settings.OGPANEL_ENCRYPTION_KEY_FILE = str(tmp_path / "encryption.keys")  # `make demo`'s first run: none yet
    first = StringIO()
    call_command("make_encryption_key", stdout=StringIO(), stderr=first)
    assert "rotat" not in first.getvalue() and "secret store" in first.getvalue()

    (tmp_path / "encryption.keys").write_text("k1:" + "A" * 43 + "=\n")
    settings.OGPANEL_ENCRYPTION_KEY_FILE = str(tmp_path / "encryption.keys")
    later = StringIO()
    call_command("make_encryption_key", stdout=StringIO(), stderr=later)
    assert "rotate_encryption_keys" in later.getvalue()
