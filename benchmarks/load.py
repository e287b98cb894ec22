"""Benchmark 4, load: 50 users polling the dashboard every 2 s for 60 s, against gunicorn + PostgreSQL + Redis.

Run (PostgreSQL and Redis running on 127.0.0.1; the benchmark database is dropped and re-created):

    .venv/bin/python benchmarks/load.py
    .venv/bin/python benchmarks/load.py --users 10 --duration 15     # a shorter run
    .venv/bin/python benchmarks/load.py --quick     # 5 users for 3 s on SQLite, no Redis: does it run?

Target (issue 7): zero errors, zero 429s, p99 <= 300 ms.

Set-up: the simulator enforces the Basic tier (20 reads/s per key) and adds 10 ms to every call;
33 subaccounts with 10 order groups each, all on one API key. The panel runs under gunicorn as
deployed (4 workers x 4 threads, like the Dockerfile) on PostgreSQL, with Redis (db 14) as the
shared cache, so every worker draws on one rate-limit budget and one set of shared listings.

Each user is a thread with its own HTTP connection: it signs in through the login form, opens the
dashboard page, then sends the dashboard's own self-refresh (GET / with HX-Request and
HX-Trigger: groups, answered with the table fragment) every 2 s, on a fixed schedule from a random
offset. Latency is from sending a request to its last byte. An error is any answer other than 200,
a connection failure, or a fragment reporting a subaccount that could not be read. Upstream reads
and 429s come from the simulator's own request log, over the measured window only (sign-ins and
the first page load come before it).
"""

import argparse
import os
import random
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import common

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/ogpanel_bench_h4"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
PASSWORD = "load-bench-password-1"
_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class UserStats:
    latencies: list[float] = field(default_factory=list)  # seconds, measured window only
    errors: list[str] = field(default_factory=list)
    late: int = 0  # polls sent after their slot because the previous answer took longer than the interval


def sign_in(session: requests.Session, url: str, username: str) -> None:
    page = session.get(url + "/accounts/login/", timeout=30)
    token = _CSRF.search(page.text).group(1)
    answer = session.post(
        url + "/accounts/login/",
        timeout=60,
        allow_redirects=False,
        data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token},
    )
    if answer.status_code != 302:
        raise RuntimeError(f"{username} could not sign in: HTTP {answer.status_code}")
    session.get(url + "/", timeout=30).raise_for_status()  # the dashboard page itself, once


def poll(
    url: str,
    username: str,
    ready: threading.Barrier,
    go: threading.Event,
    window: dict,
    interval: float,
    stats: UserStats,
) -> None:
    with requests.Session() as session:
        # A connection per request, as a reverse proxy without upstream keep-alive (nginx's default) sends them.
        session.headers["Connection"] = "close"
        try:
            sign_in(session, url, username)
        except (requests.RequestException, RuntimeError, AttributeError) as exc:
            stats.errors.append(f"sign-in: {exc}")
            ready.wait()
            return
        ready.wait()
        go.wait()
        began, ends = window["began"], window["ends"]
        slot = began + random.uniform(0, interval)
        while slot < ends:
            delay = slot - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                stats.late += 1
            sent = time.monotonic()
            try:
                answer = session.get(url + "/", headers=common.DASHBOARD_POLL, timeout=30)
                body = answer.content
                if answer.status_code != 200:
                    stats.errors.append(f"HTTP {answer.status_code}")
                elif b"could not be read" in body or b'class="groups"' not in body:
                    stats.errors.append("a subaccount could not be read")
            except requests.RequestException as exc:
                stats.errors.append(type(exc).__name__)
            stats.latencies.append(time.monotonic() - sent)
            slot += interval


def cpu_seconds(parent: int) -> float:
    """CPU time used so far by the processes whose parent is `parent` (gunicorn's workers), from /proc."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def make_users(count: int) -> list[str]:
    """Viewers sharing one password hash (hashing 50 passwords would only slow the set-up down)."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User

    hashed = make_password(PASSWORD)
    users = User.objects.bulk_create(User(username=f"load{n:03d}", password=hashed) for n in range(count))
    Group.objects.get_or_create(name="viewer")[0].user_set.add(*users)
    return [user.username for user in users]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="its database is flushed first")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between one user's polls")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--subaccounts", type=int, default=33)
    parser.add_argument("--groups", type=int, default=10, help="order groups per subaccount")
    parser.add_argument("--latency", type=float, default=0.010, help="simulator latency, seconds")
    parser.add_argument("--quick", action="store_true", help="a tiny run that only checks the script works")
    args = parser.parse_args()
    if args.quick:  # a fresh SQLite file and per-process caches: nothing to set up
        args.database_url, args.redis_url, args.workers = None, "", 1
        args.users, args.duration = 5, 3.0

    environment = {}
    if args.redis_url:
        import redis

        redis.Redis.from_url(args.redis_url).flushdb()
        environment["REDIS_URL"] = args.redis_url
    database_url = common.configure(database_url=args.database_url, tier="basic", **environment)
    key = common.new_key()
    sim = common.start_simulator(key, latency=args.latency, tier="basic")
    subaccounts = range(args.subaccounts)
    common.seed_groups(sim, groups=args.groups, subaccounts=subaccounts)
    common.make_credential(sim, key, subaccounts=subaccounts)
    usernames = make_users(args.users)
    server = common.Gunicorn(workers=args.workers, threads=args.threads)
    try:
        ready, go = threading.Barrier(args.users + 1), threading.Event()
        window: dict = {}
        stats = [UserStats() for _ in usernames]
        threads = [
            threading.Thread(
                target=poll, args=(server.url, name, ready, go, window, args.interval, user_stats), daemon=True
            )
            for name, user_stats in zip(usernames, stats, strict=True)
        ]
        for thread in threads:
            thread.start()
        ready.wait()  # everyone signed in and saw the dashboard once
        window["began"] = time.monotonic() + 0.5
        window["ends"] = window["began"] + args.duration
        go.set()
        time.sleep(max(window["began"] - time.monotonic(), 0))
        sim.clear_requests()
        limited_before = sim.rate_limited_count
        cpu_before = cpu_seconds(server.process.pid)
        for thread in threads:
            thread.join(args.duration + 60)
        elapsed = time.monotonic() - window["began"]
        panel_cpu = cpu_seconds(server.process.pid) - cpu_before
        upstream = sim.requests
        limited = sim.rate_limited_count - limited_before
    finally:
        server.stop()
        sim.stop()

    latencies = [x * 1000 for s in stats for x in s.latencies]
    errors = [e for s in stats for e in s.errors]
    reads = sum(r.method == "GET" for r in upstream)
    p99 = common.percentile(latencies, 99)
    kinds = {kind: errors.count(kind) for kind in sorted(set(errors))}
    rows = [
        ("dashboard polls", f"{len(latencies):,} ({len(latencies) / elapsed:.1f}/s)", ""),
        ("latency p50", f"{common.percentile(latencies, 50):.0f} ms", ""),
        ("latency p90", f"{common.percentile(latencies, 90):.0f} ms", ""),
        ("latency p99", f"{p99:.0f} ms", f"<= 300 ms: {common.verdict(p99 <= 300)}"),
        ("latency max", f"{max(latencies):.0f} ms", ""),
        ("polls sent late", str(sum(s.late for s in stats)), ""),
        ("panel CPU per poll", f"{panel_cpu / len(latencies) * 1000:.1f} ms (gunicorn workers, all cores)", ""),
        ("errors", f"{len(errors)} {kinds or ''}".strip(), f"0: {common.verdict(not errors)}"),
        ("upstream reads", f"{reads:,} ({reads / elapsed:.1f}/s; Basic allows 20/s)", ""),
        ("upstream 429s", str(limited), f"0: {common.verdict(limited == 0)}"),
    ]
    print(
        f"\n{args.users} users polling every {args.interval:g} s for {args.duration:g} s; "
        f"gunicorn {args.workers} workers x {args.threads} threads; {common.describe_database()}; "
        f"{'Redis' if args.redis_url else 'per-process'} cache; simulator {args.latency * 1000:g} ms, Basic tier; "
        f"{args.subaccounts} subaccounts x {args.groups} groups"
    )
    print(f"Machine: {common.machine()}; database {database_url}\n")
    print(common.table(("measure", "result", "target"), rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
