"""Benchmark 2: what the panel adds to one trigger, against Kalshi's client triggering directly.

    .venv/bin/python benchmarks/action_overhead.py [--runs 200] [--latency 0]
    .venv/bin/python benchmarks/action_overhead.py --database-url postgresql://postgres@127.0.0.1/ogpanel_bench_h3

The panel runs under gunicorn (1 worker, 4 threads, as in the Dockerfile but smaller) on SQLite
(default, a fresh file) or the given PostgreSQL database (dropped and re-created). Each run posts
the trigger form of one group over real HTTP with a signed-in operator's session, as the page's
htmx button does: session, CSRF, permission check, audit attempt and result (each committed),
signing, the exchange call, the answer. Right after, the official client (kalshi-python-sync, in
its own process) triggers a second group on the same simulator. Runs are spaced so the panel's
own rate limiter never has to wait. Target: <= 5 ms added at the median.
"""

import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import common

SUBACCOUNT = 1
SPACING = 0.15  # seconds between a run's starts: above Basic's 0.1 s per write, so the limiter never waits


def main() -> None:
    parser = common.arguments(__doc__)
    parser.add_argument("--runs", type=int, default=200, help="timed triggers each way")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the simulator adds to each call")
    args = parser.parse_args()
    if args.quick:
        args.runs = 3
    warmup = 2 if args.quick else 10

    common.configure(database_url=args.database_url)
    key = common.new_key()
    sim = common.start_simulator(key, latency=args.latency)
    panel_group, official_group = common.seed_groups(sim, groups=2, subaccounts=[SUBACCOUNT])[SUBACCOUNT]
    common.make_credential(sim, key, subaccounts=[SUBACCOUNT])
    headers = {**common.auth_headers(common.make_user("otto", "ops", password=False)), **common.HTMX}
    url_path = f"/groups/{SUBACCOUNT}/{panel_group}/trigger/"

    panel = common.Gunicorn(workers=1, threads=4)
    official = common.OfficialClient(sim, key)
    panel_times, official_times = [], []
    try:
        session = requests.Session()
        for run in range(warmup + args.runs):
            began = time.perf_counter()
            response = session.post(
                panel.url + url_path, data={"reason": f"benchmark run {run}"}, headers=headers, timeout=30
            )
            elapsed = time.perf_counter() - began
            if response.status_code != 200 or "HX-Trigger" not in response.headers:
                raise SystemExit(f"the panel's trigger answered {response.status_code}:\n{response.text[:2000]}")
            direct = official.trigger(official_group, SUBACCOUNT)
            if run >= warmup:
                panel_times.append(elapsed)
                official_times.append(direct)
            time.sleep(max(0.0, SPACING - (time.perf_counter() - began)))
    finally:
        official.close()
        panel.stop()
        sim.stop()

    from ogpanel import audit
    from ogpanel.models import AuditEvent

    recorded = AuditEvent.objects.filter(action="trigger").values_list("outcome", flat=True)
    expected = {"attempted": warmup + args.runs, "succeeded": warmup + args.runs}
    if {o: list(recorded).count(o) for o in set(recorded)} != expected or not audit.verify().ok:
        raise SystemExit("the audit log does not hold one attempt and one result per trigger, or does not verify")

    ms = lambda seconds: f"{seconds * 1000:.1f} ms"  # noqa: E731
    rows = []
    for label, pct in (("median", 50), ("p99", 99)):
        through_panel = common.percentile(panel_times, pct)
        direct = common.percentile(official_times, pct)
        added = through_panel - direct
        rows.append(
            [
                label,
                ms(through_panel),
                ms(direct),
                ms(added),
                "<= 5 ms" if pct == 50 else "",
                common.verdict(added <= 0.005) if pct == 50 else "",
            ]
        )
    print(
        f"\nBenchmark 2, action overhead: {args.runs} triggers each way, simulator latency {ms(args.latency)}; "
        f"panel under gunicorn (1 worker, 4 threads) on {common.describe_database()}"
    )
    print(common.machine() + "\n")
    print(
        common.table(
            ["", "through the panel (HTTP POST)", "official client, direct", "added by the panel", "target", "verdict"],
            rows,
        )
    )
    print(f"\naudit: {2 * (warmup + args.runs)} trigger events (an attempt and a result each), chain verifies")


if __name__ == "__main__":
    main()
