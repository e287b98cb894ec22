"""`make demo`'s seeding: credentials the simulator accepts, groups in both states, one user per role."""

from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from ogpanel import audit, permissions, selectors
from ogpanel.management.commands.demo import DEMO_USERS, seed
from ogpanel.models import Credential, Subaccount


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


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
