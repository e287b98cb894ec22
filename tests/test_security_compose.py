"""The compose file runs migrations as the database's owner and everything else as the runtime role."""

import os
import re
import subprocess

import pytest

from tests.test_deployment import ROOT, compose_command

SECRETS = {
    "SECRET_KEY": "s",
    "OGPANEL_ENCRYPTION_KEYS": "k",
    "POSTGRES_PASSWORD": "owner-secret",
    "OGPANEL_DB_APP_PASSWORD": "app-secret",
}
pytestmark = pytest.mark.skipif(compose_command() is None, reason="neither `docker compose` nor `docker-compose`")


def services(env: dict) -> dict[str, str]:
    """Each service's block of `compose config`, by name."""
    result = subprocess.run([*compose_command(), "config"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    body = result.stdout.split("services:\n", 1)[1]
    return dict(re.findall(r"^  (\S+):\n((?:    .*\n)*)", body, re.MULTILINE))


def test_only_migrate_holds_the_owner_s_password_and_the_rest_connect_as_the_runtime_role():
    blocks = services({**os.environ, **SECRETS})

    assert "DATABASE_URL: postgresql://ogpanel:owner-secret@db:5432/ogpanel" in blocks["migrate"]
    for name in ("panel", "watcher"):
        assert "DATABASE_URL: postgresql://ogpanel_app:app-secret@db:5432/ogpanel" in blocks[name]
        assert "/var/lib/ogpanel/checkpoints" in blocks[name]
        assert "OGPANEL_TRUSTED_PROXY_ADDRESSES: 172.16.0.0/12,192.168.0.0/16" in blocks[name]
    for name, block in blocks.items():
        if name not in ("migrate", "db"):
            assert "owner-secret" not in block, name
    assert "/docker-entrypoint-initdb.d" in blocks["db"] and "OGPANEL_DB_APP_PASSWORD: app-secret" in blocks["db"]
