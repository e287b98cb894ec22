"""Shared fixtures: RSA keys generated per session and the simulator on a loopback port."""

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ogpanel.kalshi import KalshiClient

SIM_KEY_ID = "test-key"


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def rsa_pem(rsa_key) -> bytes:
    return rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="session")
def rsa_pem_pkcs1(rsa_key) -> bytes:
    return rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


@pytest.fixture(scope="session")
def rsa_public_pem(rsa_key) -> bytes:
    return rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="session")
def simulator(rsa_public_pem):
    from ogpanel.simulator import start

    server = start(host="127.0.0.1", port=0)
    server.add_key(SIM_KEY_ID, rsa_public_pem)
    yield server
    server.stop()


@pytest.fixture
def sim(simulator):
    simulator.reset()
    simulator.clear_faults()
    simulator.clear_requests()
    return simulator


@pytest.fixture
def kalshi(sim, rsa_pem):
    client = KalshiClient(sim.base_url, SIM_KEY_ID, rsa_pem, timeout=(1.0, 2.0), retries=2, backoff=0.01)
    yield client
    client.close()


from tests.panel_fixtures import *  # noqa: E402, F403  (panel-level fixtures and personas)
from tests.panel_fixtures import _panel_isolation  # noqa: E402,F401  (autouse; `import *` skips _names)
