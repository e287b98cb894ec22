"""Benchmark 6: a trip at the exchange to its row red on an open dashboard, stream on and off; what a live check costs.

    .venv/bin/python benchmarks/trip_latency.py [--trips 50] [--watch-seconds 5] [--subaccounts 33] [--groups 10]
        [--live-seconds 0.5] [--redis-url URL] [--database-url URL]

The simulator holds `--subaccounts` x `--groups` active order groups plus one spare group per
trip. The panel runs under gunicorn (2 workers, as deployed but smaller), the watcher as
`manage.py watch_order_groups` in its own process, and Debian's Chromium (Playwright) keeps the
dashboard open, signed in as a viewer. Each trip is a fill over a spare group's limit made
straight in the simulator (another client, never the panel); it is timed from just before that
fill until the group's row carries `is-triggered` (red) in the page, without a reload (a
MutationObserver in the page notes the time: the browser and this script share the clock). The
dashboard's slower full refresh is switched off (OGPANEL_REFRESH_SECONDS=3600): what brings the
trip is the change stamp the page checks every `--live-seconds`. Trips are spaced by a random
0.3-1.3 s, so they fall at every phase of the check and of the watcher's polls.
Stream on: the watcher follows the WebSocket and polls every `--watch-seconds`; stream off:
polling only (OGPANEL_WATCH_WEBSOCKET=0).
Goals: p95 <= 1 s with the stream, <= watch interval + 1 s without. "recorded" is the part of it
up to the watcher's audit event (its `at`); the rest is the page's check, the table fetch and the morph.

Then the price of a check: `--checks` requests for /live against as many for the table fragment
(the htmx refresh), one after another over HTTP: time and bytes each.
Without `--redis-url` the watcher and the panel share no cache (each process has its own).
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import common

CHROMIUM = Path("/usr/bin/chromium")
# Notes the wall-clock time (ms) at which a row turns red, from inside the page: a MutationObserver
# runs as the DOM changes, where Playwright's own waits look again only every 500 ms after the first.
WATCH_ROW = """row => {
  window.__redAt = window.__redAt || {};
  const red = () => {
    const element = document.getElementById(row);
    return element !== null && element.classList.contains("is-triggered");
  };
  const observer = new MutationObserver(() => {
    if (red()) { window.__redAt[row] = Date.now(); observer.disconnect(); }
  });
  observer.observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["class"] });
}"""
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs a loop in this thread


def main() -> None:
    parser = common.arguments(__doc__)
    parser.add_argument("--trips", type=int, default=50, help="trips timed per mode (stream on, stream off)")
    parser.add_argument("--watch-seconds", type=float, default=5.0, help="the watcher's poll interval")
    parser.add_argument("--live-seconds", type=float, default=0.5, help="OGPANEL_LIVE_SECONDS")
    parser.add_argument("--subaccounts", type=int, default=33, help="subaccounts 0..N-1 mapped")
    parser.add_argument("--groups", type=int, default=10, help="active order groups per subaccount")
    parser.add_argument("--checks", type=int, default=200, help="timed /live checks and table fetches")
    parser.add_argument("--redis-url", default="", help="a shared cache for panel and watcher (database flushed)")
    args = parser.parse_args()
    if args.quick:
        args.trips, args.watch_seconds, args.subaccounts, args.groups, args.checks = 3, 1.0, 2, 2, 10
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is not installed: make browser-deps (apt-get install chromium)")

    environment = {"OGPANEL_REFRESH_SECONDS": "3600", "OGPANEL_LIVE_SECONDS": str(args.live_seconds)}
    if args.redis_url:
        import redis

        redis.Redis.from_url(args.redis_url).flushdb()
        environment["REDIS_URL"] = args.redis_url
    common.configure(database_url=args.database_url, tier="premier", **environment)

    subaccounts = range(args.subaccounts)
    key = common.new_key()
    sim = common.start_simulator(key, tier="premier")
    common.seed_groups(sim, groups=args.groups, subaccounts=subaccounts)
    spares = {
        mode: [(n, sim.create_group(n, 1)) for n in random.choices(list(subaccounts), k=args.trips)]
        for mode in ("on", "off")
    }
    common.make_credential(sim, key, subaccounts=subaccounts)
    viewer = common.make_user("vera", "viewer", password=False)
    headers = common.auth_headers(viewer)

    panel = common.Gunicorn(workers=2, threads=4)
    try:
        results = {
            mode: time_trips(panel.url, headers, sim, spares[mode], args, stream=mode == "on") for mode in spares
        }
        costs = check_costs(panel.url, headers, args.checks)
    finally:
        panel.stop()
        sim.stop()

    print(
        f"\n{common.machine()}; {common.describe_database()}; "
        f"{'Redis' if args.redis_url else 'per-process'} cache; {args.subaccounts} subaccounts x {args.groups} groups; "
        f"check every {args.live_seconds:g} s; watcher polls every {args.watch_seconds:g} s\n"
    )
    goals = {"on": 1.0, "off": args.watch_seconds + 1.0}
    print(
        common.table(
            [
                "exchange event -> row red",
                "trips",
                "recorded p50 / p95 s",
                "p50 s",
                "p95 s",
                "max s",
                "goal p95",
                "verdict",
            ],
            [
                (
                    f"stream {mode}",
                    len(seconds),
                    f"{common.percentile(recorded, 50):.2f} / {common.percentile(recorded, 95):.2f}",
                    f"{common.percentile(seconds, 50):.2f}",
                    f"{common.percentile(seconds, 95):.2f}",
                    f"{max(seconds):.2f}",
                    f"<= {goals[mode]:g} s",
                    common.verdict(common.percentile(seconds, 95) <= goals[mode]),
                )
                for mode, (seconds, recorded) in results.items()
            ],
        )
    )
    print()
    print(
        common.table(
            ["request, one after another", "p50 ms", "p95 ms", "bytes"],
            [(name, f"{p50:.1f}", f"{p95:.1f}", f"{size:,}") for name, (p50, p95, size) in costs.items()],
        )
    )


def time_trips(
    url: str, headers: dict[str, str], sim, spares: list[tuple[int, str]], args, *, stream: bool
) -> tuple[list[float], list[float]]:
    """Seconds from each fill over a spare group's limit to its row red on the dashboard, and to its audit event."""
    from playwright.sync_api import sync_playwright

    from ogpanel.models import AuditEvent

    watcher = start_watcher(args.watch_seconds, stream=stream)
    seconds, recorded = [], []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            context.add_cookies(cookies(url, headers))
            page = context.new_page()
            page.goto(url + "/")
            last_number, last_group = spares[-1]
            page.wait_for_selector(f"#group-{last_number}-{last_group}", state="attached", timeout=60_000)
            for number, group_id in spares:
                row = f"group-{number}-{group_id}"
                page.evaluate(WATCH_ROW, row)
                order = sim.place_order(number, group_id, count=2)  # resting, not yet over the limit
                time.sleep(random.uniform(0.3, 1.3))
                began = time.time()
                sim.fill(order, 2)  # the exchange triggers the group: the event
                page.wait_for_function("row => window.__redAt[row]", arg=row, timeout=60_000)
                seconds.append(page.evaluate("row => window.__redAt[row]", row) / 1000 - began)
                event = AuditEvent.objects.get(action="exchange_triggered", order_group_id=group_id)
                recorded.append(event.at.timestamp() - began)
            browser.close()
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(timeout=30)
    return seconds, recorded


def start_watcher(interval: float, *, stream: bool) -> subprocess.Popen:
    """`manage.py watch_order_groups` on this benchmark's database, once it has polled (and connected)."""
    from ogpanel.models import WatcherHeartbeat

    WatcherHeartbeat.objects.all().delete()
    env = {
        **os.environ,
        "PYTHONPATH": str(common.ROOT),
        "OGPANEL_WATCH_WEBSOCKET": "1" if stream else "0",
        "OGPANEL_LOG_LEVEL": "ERROR",  # not a line per trip
    }
    process = subprocess.Popen(
        [sys.executable, str(common.ROOT / "manage.py"), "watch_order_groups", "--interval", str(interval)],
        cwd=common.ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        beat = WatcherHeartbeat.objects.filter(pk=1, stopped_at=None).first()
        streams = beat.streams if beat else {}
        if beat and (not stream or (streams and all(s["state"] == "connected" for s in streams.values()))):
            return process
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the watcher did not come up")
        time.sleep(0.1)


def cookies(url: str, headers: dict[str, str]) -> list[dict]:
    """The signed-in session of common.auth_headers, as Playwright's cookies."""
    pairs = (part.split("=", 1) for part in headers["Cookie"].split("; "))
    return [{"name": name, "value": value, "url": url} for name, value in pairs]


def check_costs(url: str, headers: dict[str, str], count: int) -> dict[str, tuple[float, float, int]]:
    """p50 ms, p95 ms and bytes of a /live check and of a table fetch, each `count` times in a row."""
    session = requests.Session()
    asks = {
        "/live (the change stamp)": ("/live", {**headers, "HX-Request": "true", "HX-Trigger": "live"}),
        "/ table fragment (htmx refresh)": ("/", {**headers, **common.DASHBOARD_POLL}),
    }
    costs = {}
    for name, (path, sent) in asks.items():
        session.get(url + path, headers=sent).raise_for_status()  # warm up
        times, size = [], 0
        for _ in range(count):
            began = time.perf_counter()
            answer = session.get(url + path, headers=sent)
            times.append((time.perf_counter() - began) * 1000)
            answer.raise_for_status()
            size = len(answer.content)
        costs[name] = (common.percentile(times, 50), common.percentile(times, 95), size)
    return costs


if __name__ == "__main__":
    main()
