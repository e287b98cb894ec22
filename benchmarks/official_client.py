"""Kalshi's official client (kalshi-python-sync), driven one JSON command a line over stdin/stdout.

Started by benchmarks/common.py (OfficialClient) in an interpreter that has the client; it imports
nothing from the panel, so it also runs from benchmarks/.venv-official. Commands:

    {"op": "configure", "host": ..., "key_id": ..., "pem": ...}          -> {}
    {"op": "list", "subaccounts": [0, 1, ...]}                           -> {"seconds": ..., "groups": ...}
    {"op": "trigger", "order_group_id": ..., "subaccount": ...}          -> {"seconds": ...}
"""

import json
import sys
import time

from kalshi_python_sync import Configuration, KalshiClient


def main() -> None:
    client = None
    for line in sys.stdin:
        command = json.loads(line)
        try:
            if command["op"] == "configure":
                config = Configuration(host=command["host"])
                config.api_key_id = command["key_id"]
                config.private_key_pem = command["pem"]
                client = KalshiClient(config)
                answer = {}
            elif command["op"] == "list":
                began = time.perf_counter()
                groups = sum(len(client.get_order_groups(subaccount=n).order_groups) for n in command["subaccounts"])
                answer = {"seconds": time.perf_counter() - began, "groups": groups}
            elif command["op"] == "trigger":
                began = time.perf_counter()
                client.trigger_order_group(command["order_group_id"], subaccount=command["subaccount"])
                answer = {"seconds": time.perf_counter() - began}
            else:
                answer = {"error": f"unknown op {command['op']!r}"}
        except Exception as exc:  # reported to the benchmark, which stops
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
