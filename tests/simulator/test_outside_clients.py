"""Two more outside clients against the simulator, unchanged: kalshi-sdk (Python) and kalshi-typescript.

Each runs all seven order-group operations, then reads the account's rate budget, against a
simulator that enforces a tier and refuses PUT/POST without a JSON Content-Type, over HTTP/1.1
keep-alive. The official Python client's test is test_official_client.py.

kalshi-typescript is installed from the npm registry into a directory of the test run (never into
the tree) the first time it is needed, and the test is skipped, saying why, where npm or the
package cannot be had.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ogpanel.simulator import SimulatorServer, start
from tests.simulator.conftest import KEY_ID, public_pem

TYPESCRIPT_CLIENT = "kalshi-typescript@3.30.0"


@pytest.fixture
def tiered_sim(private_key: rsa.RSAPrivateKey):
    server = start(tier="premier")
    server.add_key(KEY_ID, public_pem(private_key))
    yield server
    server.stop()


def pkcs1(private_key: rsa.RSAPrivateKey) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()


# --- kalshi-sdk 22.4 -------------------------------------------------------------------------------


def test_kalshi_sdk_completes_all_seven_operations_and_reads_the_budget(
    tiered_sim: SimulatorServer, private_key: rsa.RSAPrivateKey
) -> None:
    from kalshi import KalshiClient
    from kalshi.errors import KalshiNotFoundError

    sim = tiered_sim
    with KalshiClient(key_id=KEY_ID, private_key=pkcs1(private_key), base_url=sim.base_url, max_retries=0) as sdk:
        created = sdk.order_groups.create(contracts_limit=100, subaccount=2)
        assert created.subaccount == 2
        group_id = created.order_group_id

        assert [group.id for group in sdk.order_groups.list(subaccount=2)] == [group_id]
        order_id = sim.place_order(2, group_id)
        assert sdk.order_groups.get(group_id, subaccount=2).orders == [order_id]

        sdk.order_groups.trigger(group_id, subaccount=2)
        assert sim.group(group_id)["triggered"] is True
        sdk.order_groups.reset(group_id, subaccount=2)
        assert sim.group(group_id)["triggered"] is False

        limited = sdk.order_groups.create(contracts_limit=10).order_group_id  # /limit takes no subaccount in SDK
        sdk.order_groups.update_limit(limited, contracts_limit=50)
        assert sim.group(limited)["contracts_limit"] == 50

        sdk.order_groups.delete(group_id, subaccount=2)
        with pytest.raises(KalshiNotFoundError):
            sdk.order_groups.get(group_id, subaccount=2)

        limits = sdk.account.limits()
        assert (limits.usage_tier, limits.write.refill_rate, limits.write.bucket_capacity) == ("premier", 1000, 2000)
        assert sdk.account.endpoint_costs().default_cost == 10

    assert {r.status for r in sim.requests} == {200, 201, 404}
    assert sim.rate_limited_count == 0


# --- kalshi-typescript 3.30 ------------------------------------------------------------------------

SCRIPT = r"""
const { Configuration, OrderGroupsApi, AccountApi } = require("kalshi-typescript");
const axios = require("axios");
const [basePath, keyId, pem] = [process.argv[2], process.argv[3], require("fs").readFileSync(0, "utf8")];

(async () => {
  // Each API object gets an axios instance of its own: the client's signing interceptor otherwise
  // lands on axios's shared default instance (reference §11).
  const config = new Configuration({ apiKey: keyId, privateKeyPem: pem, basePath });
  const groups = new OrderGroupsApi(config, basePath, axios.create());
  const account = new AccountApi(config, basePath, axios.create());
  const out = {};
  const created = (await groups.createOrderGroup({ contracts_limit: 100, subaccount: 2 })).data;
  out.created_subaccount = created.subaccount;
  const id = created.order_group_id;
  out.listed = (await groups.getOrderGroups(2)).data.order_groups.map((g) => g.id);
  out.got_limit = (await groups.getOrderGroup(id, 2)).data.contracts_limit_fp;
  await groups.updateOrderGroupLimit(id, { contracts_limit: 50 }, 2);
  await groups.triggerOrderGroup(id, 2);
  out.triggered = (await groups.getOrderGroup(id, 2)).data.is_auto_cancel_enabled;
  await groups.resetOrderGroup(id, 2);
  await groups.deleteOrderGroup(id, 2);
  try { await groups.getOrderGroup(id, 2); out.after_delete = "found"; }
  catch (error) { out.after_delete = error.response.status; }
  out.limits = (await account.getAccountApiLimits()).data;
  out.id = id;
  console.log(JSON.stringify(out));
})().catch((error) => {
  console.error(error.response ? JSON.stringify([error.response.status, error.response.data]) : String(error));
  process.exit(1);
});
"""


@pytest.fixture(scope="session")
def typescript_client(tmp_path_factory) -> Path:
    """A directory with kalshi-typescript installed from the npm registry, for this test run only."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("node and npm are not installed, so kalshi-typescript cannot be run")
    directory = tmp_path_factory.mktemp("kalshi-typescript")
    installed = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--silent", TYPESCRIPT_CLIENT],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "npm_config_update_notifier": "false"},
    )
    if installed.returncode != 0:
        pytest.skip(f"npm could not install {TYPESCRIPT_CLIENT}: {installed.stderr.strip()[-500:]}")
    return directory


def test_kalshi_typescript_completes_all_seven_operations_and_reads_the_budget(
    typescript_client: Path, tiered_sim: SimulatorServer, private_key: rsa.RSAPrivateKey
) -> None:
    sim = tiered_sim
    (typescript_client / "run.js").write_text(SCRIPT)
    ran = subprocess.run(
        ["node", "run.js", sim.base_url, KEY_ID],
        cwd=typescript_client,
        input=pkcs1(private_key),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    out = json.loads(ran.stdout)

    assert out["created_subaccount"] == 2
    assert out["listed"] == [out["id"]] and out["got_limit"] == "100.00"
    assert out["triggered"] is True and out["after_delete"] == 404
    assert out["limits"]["usage_tier"] == "premier"
    assert out["limits"]["write"] == {"refill_rate": 1000, "bucket_capacity": 2000}
    limit_calls = [r for r in sim.requests if r.path.endswith("/limit")]
    assert [(r.status, r.query) for r in limit_calls] == [(200, {"subaccount": "2"})]
    assert sim.rate_limited_count == 0
