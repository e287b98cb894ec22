"""Benchmark 3: the kill switch over 330 order groups with the exchange enforcing the Basic tier.

    .venv/bin/python benchmarks/killswitch_ratelimit.py [--tier basic] [--groups 10] [--latency 0.05]
    .venv/bin/python benchmarks/killswitch_ratelimit.py --database-url postgresql://postgres@127.0.0.1/ogpanel_bench_h3

33 subaccounts x 10 active groups. The simulator enforces `--tier` (the panel is configured for
the same tier), its write bucket full (2 s of budget), and adds `--latency` seconds to every call.
An operator opens the kill switch (its preview reads every subaccount) and presses "Trigger all
330 groups on 33 subaccounts" on the panel under gunicorn, over real HTTP. The POST only records
the sweep; the panel process runs it in a thread (jobs.py).
Measured: how fast the POST answers; when the first trigger reaches the simulator (target: one
listing round trip, the simulator's latency, + 50 ms); the wall time until the sweep is done
(verified by listing every subaccount again) against the true floor, which spends the starting
burst: (groups - burst) / writes per second, a write costing 10 tokens; and the 429s (must be 0).
"""

import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import common

BURST_SECONDS = 2.0  # the exchange's write bucket holds this much of its per-second budget (Kalshi docs)


def first_trigger_at(sim, done: threading.Event) -> float | None:
    """perf_counter() when the first PUT .../trigger reached the simulator (polled every millisecond)."""
    while not done.is_set():
        if any(record.path.endswith("/trigger") for record in sim.requests):
            return time.perf_counter()
        time.sleep(0.001)
    return None


def main() -> None:
    parser = common.arguments(__doc__)
    parser.add_argument("--tier", default="basic", help="rate-limit tier (panel and simulator)")
    parser.add_argument("--groups", type=int, default=10, help="order groups per subaccount")
    parser.add_argument("--subaccounts", type=int, default=len(common.SUBACCOUNTS), help="subaccounts 0..N-1")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the simulator adds to each call")
    args = parser.parse_args()
    if args.quick:
        args.groups, args.subaccounts, args.latency = 2, 3, 0.005

    from ogpanel.kalshi import REQUEST_COST, TIERS

    common.configure(database_url=args.database_url, tier=args.tier)
    key = common.new_key()
    sim = common.start_simulator(key, latency=args.latency, tier=args.tier)
    numbers = range(args.subaccounts)
    seeded = common.seed_groups(sim, groups=args.groups, subaccounts=numbers)
    common.make_credential(sim, key, subaccounts=numbers)
    operator = common.make_user("otto", "ops", password=False)  # a trigger asks for no password
    headers = {**common.auth_headers(operator), **common.HTMX}
    form = {"operation": "trigger_all", "reason": "benchmark"}
    total = args.groups * args.subaccounts
    writes_per_second = TIERS[args.tier][1] / REQUEST_COST
    burst = BURST_SECONDS * writes_per_second
    floor = total / writes_per_second
    floor_with_burst = max(total - burst, 0) / writes_per_second

    from ogpanel.models import Sweep

    panel = common.Gunicorn(workers=1, threads=4)
    try:
        # The operator opens the kill switch first: its preview reads every subaccount (and warms the panel).
        preview = requests.get(panel.url + "/kill-switch/", headers=headers, timeout=60)
        assert preview.status_code == 200 and f"Trigger all {total} groups" in preview.text, preview.text[:2000]
        if not args.quick:
            time.sleep(2.5)  # a clean start: the exchange's write bucket full, no other traffic in flight
        sim.clear_requests()
        posted = threading.Event()
        seen: list[float | None] = []
        watching = threading.Thread(target=lambda: seen.append(first_trigger_at(sim, posted)))
        watching.start()
        began = time.perf_counter()
        response = requests.post(panel.url + "/kill-switch/", data=form, headers=headers, timeout=60)
        answered = time.perf_counter() - began
        deadline = time.monotonic() + 10 * floor + 120
        while not Sweep.objects.filter(finished_at__isnull=False).exists():
            if time.monotonic() > deadline:
                raise SystemExit("the sweep did not finish")
            time.sleep(0.02)
        wall = time.perf_counter() - began
        posted.set()
        watching.join()
    finally:
        panel.stop()
        limited = sim.rate_limited_count
        triggered = sum(sim.group(group_id)["triggered"] for ids in seeded.values() for group_id in ids)
        sim.stop()
    if response.status_code != 200:
        raise SystemExit(f"the kill switch answered {response.status_code}:\n{response.text[:2000]}")
    first = (seen[0] - began) if seen and seen[0] else float("nan")

    from ogpanel import audit
    from ogpanel.models import AuditEvent, OpenAttempt

    results = AuditEvent.objects.filter(action="trigger").exclude(outcome="attempted")
    failed = results.filter(outcome="failed").count()
    unknown = OpenAttempt.objects.count()
    sweep = Sweep.objects.get()
    verified = AuditEvent.objects.get(action="kill_switch_trigger", outcome="succeeded").params["verified"]
    ok_chain = audit.verify().ok
    first_target = args.latency + 0.05

    print(
        f"\nBenchmark 3, kill switch at the rate limit: {args.subaccounts} subaccounts x {args.groups} groups, "
        f"tier {args.tier} ({writes_per_second:g} writes/s, a burst of {burst:g}), simulator latency "
        f"{args.latency * 1000:.0f} ms; panel under gunicorn (1 worker, 4 threads) on {common.describe_database()}"
    )
    print(common.machine() + "\n")
    print(
        common.table(
            ["measure", "result", "target", "verdict"],
            [
                [
                    "kill switch POST answered (sweep recorded)",
                    f"{answered * 1000:.0f} ms",
                    "< 300 ms",
                    common.verdict(answered < 0.3),
                ],
                [
                    "first trigger at the exchange, from the POST",
                    f"{first * 1000:.0f} ms",
                    f"<= {first_target * 1000:.0f} ms (a listing + 50 ms)",
                    common.verdict(first <= first_target),
                ],
                [
                    "groups triggered (simulator state)",
                    f"{triggered} of {total}",
                    f"{total}",
                    common.verdict(triggered == total),
                ],
                [
                    "groups verified at the exchange (read back)",
                    f"{verified} of {total}",
                    f"{total}",
                    common.verdict(verified == total),
                ],
                ["floor without the burst: groups / writes per second", f"{floor:.1f} s", "", ""],
                ["true floor: (groups - burst) / writes per second", f"{floor_with_burst:.1f} s", "", ""],
                [
                    "kill switch wall time (POST to sweep done, verified)",
                    f"{wall:.1f} s",
                    f"<= {1.1 * floor_with_burst:.1f} s",
                    common.verdict(wall <= 1.1 * floor_with_burst),
                ],
                [
                    "wall / true floor",
                    f"{wall / floor_with_burst:.2f}x" if floor_with_burst else "-",
                    "<= 1.1x",
                    common.verdict(wall <= 1.1 * floor_with_burst),
                ],
                ["429s from the simulator", limited, "0", common.verdict(limited == 0)],
                ["per-group failures in the audit log", failed, "0", common.verdict(failed == 0)],
                ["attempts left without a result", unknown, "0", common.verdict(unknown == 0)],
                ["sweep runs (processes that took it up)", sweep.runs, "1", common.verdict(sweep.runs == 1)],
                ["audit chain verifies", ok_chain, "True", common.verdict(ok_chain)],
            ],
        )
    )


if __name__ == "__main__":
    main()
