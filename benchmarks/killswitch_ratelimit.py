"""Benchmark 3: the kill switch over 330 order groups with the exchange enforcing the Basic tier.

    .venv/bin/python benchmarks/killswitch_ratelimit.py [--tier basic] [--groups 10] [--latency 0.05]
    .venv/bin/python benchmarks/killswitch_ratelimit.py --database-url postgresql://postgres@127.0.0.1/ogpanel_bench_h3

33 subaccounts x 10 active groups. The simulator enforces `--tier` (the panel is configured for
the same tier) and adds `--latency` seconds to every call. An operator runs "trigger every group on
every subaccount" through the panel under gunicorn, over real HTTP (the kill switch form, with the
password re-entered). Measured: the request's wall time against the floor the tier allows
(groups / writes per second, a write costing 10 tokens), and the 429s the simulator answered.
Target: <= 1.1x the floor, zero 429s.
"""

import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import common


def main() -> None:
    parser = common.arguments(__doc__)
    parser.add_argument("--tier", default="basic", help="rate-limit tier (panel and simulator)")
    parser.add_argument("--groups", type=int, default=10, help="order groups per subaccount")
    parser.add_argument("--subaccounts", type=int, default=len(common.SUBACCOUNTS), help="subaccounts 0..N-1")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the simulator adds to each call")
    args = parser.parse_args()
    if args.quick:
        args.groups, args.subaccounts, args.latency = 2, 3, 0.005

    from ogpanel.kalshi import TIERS

    common.configure(database_url=args.database_url, tier=args.tier)
    key = common.new_key()
    sim = common.start_simulator(key, latency=args.latency, tier=args.tier)
    numbers = range(args.subaccounts)
    seeded = common.seed_groups(sim, groups=args.groups, subaccounts=numbers)
    common.make_credential(sim, key, subaccounts=numbers)
    operator = common.make_user("otto", "ops")
    headers = {**common.auth_headers(operator), **common.HTMX}
    form = {
        "operation": "trigger_all",
        "reason": "benchmark",
        "confirm": "TRIGGER",
        "reauth_password": "otto-password-1",
    }
    total = args.groups * args.subaccounts
    writes_per_second = TIERS[args.tier][1] / 10
    floor = total / writes_per_second

    panel = common.Gunicorn(workers=1, threads=4)
    try:
        if not args.quick:
            time.sleep(2.5)  # a clean start: the exchange's write bucket full, no other traffic in flight
        began = time.perf_counter()
        response = requests.post(panel.url + "/kill-switch/", data=form, headers=headers, timeout=10 * floor + 60)
        wall = time.perf_counter() - began
    finally:
        panel.stop()
        limited = sim.rate_limited_count
        triggered = sum(sim.group(group_id)["triggered"] for ids in seeded.values() for group_id in ids)
        sim.stop()
    if response.status_code != 200:
        raise SystemExit(f"the kill switch answered {response.status_code}:\n{response.text[:2000]}")

    from ogpanel import audit
    from ogpanel.models import AuditEvent

    results = AuditEvent.objects.filter(action="trigger").exclude(outcome="attempted")
    failed = results.filter(outcome="failed").count()
    ok_chain = audit.verify().ok

    print(
        f"\nBenchmark 3, kill switch at the rate limit: {args.subaccounts} subaccounts x {args.groups} groups, "
        f"tier {args.tier} ({writes_per_second:g} writes/s), simulator latency {args.latency * 1000:.0f} ms; "
        f"panel under gunicorn (1 worker, 4 threads) on {common.describe_database()}"
    )
    print(common.machine() + "\n")
    print(
        common.table(
            ["measure", "result", "target", "verdict"],
            [
                [
                    "groups triggered (simulator state)",
                    f"{triggered} of {total}",
                    f"{total}",
                    common.verdict(triggered == total),
                ],
                ["floor: groups / writes per second", f"{floor:.1f} s", "", ""],
                [
                    "kill switch wall time (HTTP POST to answer)",
                    f"{wall:.1f} s",
                    f"<= {1.1 * floor:.1f} s",
                    common.verdict(wall <= 1.1 * floor),
                ],
                ["wall / floor", f"{wall / floor:.2f}x", "<= 1.1x", common.verdict(wall <= 1.1 * floor)],
                ["429s from the simulator", limited, "0", common.verdict(limited == 0)],
                ["per-group failures in the audit log", failed, "0", common.verdict(failed == 0)],
                ["audit chain verifies", ok_chain, "True", common.verdict(ok_chain)],
            ],
        )
    )


if __name__ == "__main__":
    main()
