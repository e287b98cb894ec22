"""Panel-level fixtures: encryption keys, a credential pointing at the simulator, role personas.

Imported by tests/conftest.py. Personas: `viewer`, `operator` (ops), `administrator` (admin),
`scoped_operator` (ops limited to subaccount 1); `as_viewer`, `as_operator`, `as_admin`,
`as_scoped_operator` are Django test clients logged in as them. `canary_key` and `canary_pem`:
a fresh key per module, for tests that look for it everywhere it must not be (tests/leaks.py).
"""

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from django.test import Client

from ogpanel import budgets, sharedcache, vault
from ogpanel.models import AccessScope, Credential, Subaccount

ENCRYPTION_KEYS = ",".join([vault.new_key_entry("k2"), vault.new_key_entry("k1")])


@pytest.fixture(scope="session", autouse=True)
def flush_past_the_audit_guard():  # public name: conftest imports it with `import *`
    """Let transactional tests (live_server, browser) empty the tables between tests on PostgreSQL.

    Migration 0002 makes the audit table refuse TRUNCATE, and Django's flush is a TRUNCATE; so the
    flush runs with session_replication_role = replica, under which ordinary triggers do not fire.
    Only a superuser may set that, the same person who could drop the triggers anyway: the guard
    against the application's own database role is untouched. Tests only; the panel never flushes.
    """
    from django.conf import settings

    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        yield
        return
    from django.db.backends.postgresql.operations import DatabaseOperations

    flush = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, **kwargs) -> list[str]:
        statements = flush(self, style, tables, **kwargs)
        # SET LOCAL: execute_sql_flush runs the list in one transaction, and the setting ends with it.
        return ["SET LOCAL session_replication_role = replica;", *statements] if statements else statements

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatabaseOperations, "sql_flush", sql_flush)
        yield


@pytest.fixture(autouse=True)
def _panel_isolation(settings):
    """Every test gets its own encryption keys setting, an empty shared cache and full rate budgets."""
    settings.OGPANEL_ENCRYPTION_KEYS = ENCRYPTION_KEYS
    cache.clear()
    budgets.forget()
    sharedcache.forget_outage()
    yield
    cache.clear()


def make_credential(sim_base_url: str, pem: bytes, *, label: str = "sim", key_id: str = "test-key") -> Credential:
    from ogpanel.kalshi import load_private_key, public_key_fingerprint

    credential = Credential(
        label=label, environment=Credential.Environment.CUSTOM, custom_base_url=sim_base_url, key_id=key_id
    )
    credential.fingerprint = public_key_fingerprint(load_private_key(pem))
    credential.private_key_encrypted = vault.encrypt(pem, bound_to=str(credential.uuid))
    credential.save()
    return credential


@pytest.fixture
def credential(db, sim, rsa_pem) -> Credential:
    return make_credential(sim.base_url, rsa_pem)


@pytest.fixture
def subaccounts(credential) -> list[Subaccount]:
    """Subaccounts 0-3 mapped to the simulator credential."""
    return [Subaccount.objects.create(number=n, credential=credential, label=f"desk {n}") for n in range(4)]


def make_user(username: str, role: str, subaccounts: list[int] | None = None) -> User:
    user = User.objects.create_user(username, password=f"{username}-password-1")
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    if subaccounts is not None:
        AccessScope.objects.create(user=user, subaccounts=subaccounts)
    return user


@pytest.fixture
def viewer(db) -> User:
    return make_user("vera", "viewer")


@pytest.fixture
def operator(db) -> User:
    return make_user("otto", "ops")


@pytest.fixture
def administrator(db) -> User:
    return make_user("ada", "admin")


@pytest.fixture
def scoped_operator(db) -> User:
    return make_user("sam", "ops", subaccounts=[1])


def _client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def as_viewer(viewer) -> Client:
    return _client_for(viewer)


@pytest.fixture
def as_operator(operator) -> Client:
    return _client_for(operator)


@pytest.fixture
def as_admin(administrator) -> Client:
    return _client_for(administrator)


@pytest.fixture
def as_scoped_operator(scoped_operator) -> Client:
    return _client_for(scoped_operator)


@pytest.fixture(scope="module")
def canary_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def canary_pem(canary_key) -> str:
    # PKCS#1, as Kalshi issues keys.
    return canary_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
