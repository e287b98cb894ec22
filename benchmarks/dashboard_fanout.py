"""Benchmark 1: the dashboard's fan-out against the same reads one after another with Kalshi's client.

    .venv/bin/python benchmarks/dashboard_fanout.py [--tier premier] [--latency 0.05] [--groups 10] [--runs 20]

33 subaccounts x 10 order groups in the simulator, which adds `--latency` seconds to every call and
enforces `--tier` (the panel is configured for the same tier). The panel runs under gunicorn (as
deployed) and is asked over real HTTP for the dashboard's table fragment, the htmx partial its
self-refresh fetches. Shared listings are switched off (OGPANEL_LIST_CACHE_SECONDS=0), so every
request reads all 33 subaccounts upstream. The official client (kalshi-python-sync, in its own
process; see common.official_python) lists the same 33 subaccounts one after another.
Targets: dashboard <= 1.5x one upstream round trip, and >= 10x faster than the sequential reads.
"""

import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import common


def main() -> None:
    parser = common.arguments(__doc__)
    parser.add_argument("--tier", default="premier", help="rate-limit tier of the key (panel and simulator)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the simulator adds to each call")
    parser.add_argument("--groups", type=int, default=10, help="order groups per subaccount")
    parser.add_argument("--runs", type=int, default=20, help="timed dashboard requests")
    args = parser.parse_args()
    if args.quick:
        args.latency, args.groups, args.runs = 0.005, 1, 2

    common.configure(database_url=args.database_url, tier=args.tier, list_cache_seconds=0)
    from ogpanel.kalshi import TIERS

    key = common.new_key()
    sim = common.start_simulator(key, latency=args.latency, tier=args.tier)
    common.seed_groups(sim, groups=args.groups)
    common.make_credential(sim, key)
    headers = {**common.auth_headers(common.make_user("vera", "viewer", password=False)), **common.DASHBOARD_POLL}
    expected_groups = len(common.SUBACCOUNTS) * args.groups
    # A dashboard spends 33 reads; pausing between requests keeps each one within the tier's budget,
    # so what is timed is the fan-out, not the rate limiter (benchmark 3 is about that).
    pause = 0.0 if args.quick else max(0.2, 2 * len(common.SUBACCOUNTS) * 10 / TIERS[args.tier][0])

    panel = common.Gunicorn(workers=1, threads=4)
    official = common.OfficialClient(sim, key)
    try:
        session = requests.Session()
        for _ in range(2):  # warm up: the first request parses the key and opens connections
            fetch_dashboard(session, panel.url, headers, expected_groups)
            time.sleep(pause)
        dashboard = []
        for _ in range(args.runs):
            dashboard.append(fetch_dashboard(session, panel.url, headers, expected_groups))
            time.sleep(pause)
        round_trips = [official.list_sequentially([n])["seconds"] for n in range(10)]
        sequential = []
        for _ in range(3 if not args.quick else 1):
            answer = official.list_sequentially(common.SUBACCOUNTS)
            if answer["groups"] != expected_groups:
                raise SystemExit(f"the official client listed {answer['groups']} of {expected_groups} groups")
            sequential.append(answer["seconds"])
    finally:
        official.close()
        panel.stop()
        limited = sim.rate_limited_count
        sim.stop()

    rtt, dash, seq = common.median(round_trips), common.median(dashboard), common.median(sequential)
    ms = lambda seconds: f"{seconds * 1000:.0f} ms"  # noqa: E731
    print(
        f"\nBenchmark 1, dashboard fan-out: {len(common.SUBACCOUNTS)} subaccounts x {args.groups} groups, "
        f"simulator latency {ms(args.latency)}, tier {args.tier}; panel under gunicorn (1 worker, 4 threads), "
        f"{common.describe_database()}"
    )
    print(common.machine() + "\n")
    print(
        common.table(
            ["measure", "result", "target", "verdict"],
            [
                ["one upstream round trip (official client, one list, median of 10)", ms(rtt), "", ""],
                [
                    f"dashboard fragment over HTTP, median of {args.runs}",
                    ms(dash),
                    f"<= 1.5x round trip = {ms(1.5 * rtt)}",
                    common.verdict(dash <= 1.5 * rtt),
                ],
                [
                    "dashboard fragment, p90 / max",
                    f"{ms(common.percentile(dashboard, 90))} / {ms(max(dashboard))}",
                    "",
                    "",
                ],
                [f"33 lists one after another (official client), median of {len(sequential)}", ms(seq), "", ""],
                ["sequential / dashboard", f"{seq / dash:.1f}x", ">= 10x", common.verdict(seq / dash >= 10)],
                ["429s from the simulator", limited, "0", common.verdict(limited == 0)],
            ],
        )
    )


def fetch_dashboard(session: requests.Session, url: str, headers: dict, expected_groups: int) -> float:
    began = time.perf_counter()
    response = session.get(url + "/", headers=headers, timeout=30)
    elapsed = time.perf_counter() - began
    response.raise_for_status()
    # Every group has a row; a short table means a subaccount failed.
    rows = response.text.count('<tr id="group-')
    if rows < expected_groups:
        raise SystemExit(f"the dashboard showed {rows} of {expected_groups} groups:\n{response.text[:2000]}")
    return elapsed


if __name__ == "__main__":
    main()
