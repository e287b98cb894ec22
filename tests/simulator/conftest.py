from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ogpanel.simulator import SimulatorServer, start
from tests.simulator.signing import SignedClient

KEY_ID = "6f1e0c4a-0000-4000-8000-000000000001"


def public_pem(private_key: rsa.RSAPrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="session")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def stranger_key() -> rsa.RSAPrivateKey:
    """A key the simulator has never heard of."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def shared_sim() -> Iterator[SimulatorServer]:
    sim = start()
    yield sim
    sim.stop()


@pytest.fixture
def sim(shared_sim: SimulatorServer, private_key: rsa.RSAPrivateKey) -> SimulatorServer:
    shared_sim.reset()
    shared_sim.add_key(KEY_ID, public_pem(private_key))
    return shared_sim


@pytest.fixture
def client(sim: SimulatorServer, private_key: rsa.RSAPrivateKey) -> SignedClient:
    return SignedClient(sim.base_url, KEY_ID, private_key)
