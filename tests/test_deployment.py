"""The production compose file is valid and wires the panel to PostgreSQL, Redis and its health check."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.skipif(compose_command() is None, reason="neither `docker compose` nor `docker-compose` is installed")
def test_compose_file_passes_compose_config():
    env = {
        **os.environ,
        "SECRET_KEY": "s",
        "OGPANEL_ENCRYPTION_KEYS": "k",
        "POSTGRES_PASSWORD": "p",
        "OGPANEL_DB_APP_PASSWORD": "a",
    }
    result = subprocess.run([*compose_command(), "config"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    services = result.stdout
    for name in ("db:", "redis:", "panel:", "migrate:", "simulator:"):
        assert name in services
    assert "profiles:\n    - demo" in services  # the simulator only with --profile demo
    assert "DATABASE_URL: postgresql://ogpanel:p@db:5432/ogpanel" in services
    assert "REDIS_URL: redis://redis:6379/0" in services


def test_compose_refuses_to_start_without_secrets():
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    env = {
        k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "OGPANEL_ENCRYPTION_KEYS", "POSTGRES_PASSWORD")
    }
    result = subprocess.run([*command, "config"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr or "POSTGRES_PASSWORD" in result.stderr
