"""`python -m ogpanel.simulator` as a separate process."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ogpanel.simulator.__main__ import parse_key_spec
from tests.simulator.conftest import KEY_ID, public_pem
from tests.simulator.signing import SignedClient

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_the_cli_prints_its_url_serves_signed_calls_and_stops_on_signal(
    tmp_path: Path, private_key: rsa.RSAPrivateKey, stop_signal: signal.Signals
) -> None:
    key_file = tmp_path / "public.pem"
    key_file.write_bytes(public_pem(private_key))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ogpanel.simulator",
            "--port",
            "0",
            "--public-key",
            f"{KEY_ID}={key_file}:0,2-3",
            "--max-subaccount",
            "5",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/trade-api/v2")

        client = SignedClient(base_url, KEY_ID, private_key)
        created = client.post("/portfolio/order_groups/create", json={"contracts_limit": 10, "subaccount": 3})
        assert created.status_code == 201, created.text
        assert client.get("/portfolio/order_groups", params={"subaccount": 1}).status_code == 403
        assert client.get("/portfolio/order_groups", params={"subaccount": 6}).status_code == 400
    finally:
        process.send_signal(stop_signal)
        returncode = process.wait(timeout=10)
        process.stdout.close()
        stderr = process.stderr.read()
        process.stderr.close()
    assert returncode == 0, stderr
    assert "POST /trade-api/v2/portfolio/order_groups/create" in stderr  # request log on stderr


def test_the_cli_refuses_an_unreadable_key_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ogpanel.simulator", "--port", "0", "--public-key", f"k={tmp_path / 'missing.pem'}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 2
    assert "--public-key k" in result.stderr


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("abc=keys/public.pem", ("abc", Path("keys/public.pem"), None)),
        ("abc=keys/public.pem:0,3-5", ("abc", Path("keys/public.pem"), frozenset({0, 3, 4, 5}))),
        ("abc=C:/odd:path.pem", ("abc", Path("C:/odd:path.pem"), None)),
    ],
)
def test_key_specs_parse_with_optional_subaccounts(spec: str, expected: tuple) -> None:
    assert parse_key_spec(spec) == expected


def test_the_simulator_imports_nothing_from_the_panel() -> None:
    check = (
        "import sys, ogpanel.simulator, ogpanel.simulator.__main__\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('django', 'kalshi_python_sync')\n"
        "          or (m.startswith('ogpanel.') and not m.startswith('ogpanel.simulator'))]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
