"""Benchmark 5, the audit log at scale: verify_audit, the review page and a filtered export over 1,000,000 events.

Run (PostgreSQL on 127.0.0.1 by default; the database ogpanel_bench_h4_audit is created if missing and
its audit table emptied and refilled, unless --reuse finds enough events there already):

    .venv/bin/python benchmarks/audit_scale.py
    .venv/bin/python benchmarks/audit_scale.py --reuse                 # keep the events a previous run generated
    .venv/bin/python benchmarks/audit_scale.py --database-url sqlite:///var/bench-audit.sqlite3
    .venv/bin/python benchmarks/audit_scale.py --quick                 # 2,000 events on SQLite: does it run?
    .venv/bin/python benchmarks/audit_scale.py --quick --database-url postgresql://postgres@127.0.0.1:5432/ogpanel_bench_quick

Targets (issue 7): `manage.py verify_audit` <= 10 s; a filtered page <= 100 ms.

The events are generated through a fast path, not through `audit.append()` (a million locked,
committed one-row transactions would take hours): rows are built in seq order, each hashed with
`ogpanel.audit.compute_hash` over the previous row's hash, exactly as `append()` would chain
them, and written in bulk (COPY on PostgreSQL, executemany on SQLite). The mix imitates a busy
desk over a year: attempts with their results (7% failed), exchange observations, sign-ins,
refusals, kill-switch sweeps, credential changes and 100 attempts left without a result
("outcome unknown"). The chain is a real one: verify_audit recomputes every hash.

Page timings go through the whole Django stack in process (middleware, session, permission,
query, template) with the test client, as an admin and as a user scoped to two subaccounts;
each is the median of several requests after a warm-up one.
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from importlib import import_module
from pathlib import Path
from urllib.parse import unquote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import common

ROOT = common.ROOT
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/ogpanel_bench_h4_audit"
UNKNOWN_ATTEMPTS = 100  # lone attempts, spread over the year


def configure(database_url: str) -> None:
    """Django on this database, created if missing and migrated; kept between runs (unlike common.configure)."""
    parts = urlsplit(database_url)
    if parts.scheme in ("postgres", "postgresql"):
        import psycopg

        name = unquote(parts.path.lstrip("/"))
        with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    os.environ["DATABASE_URL"] = database_url
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


# --- generation ---------------------------------------------------------------------------------

PEOPLE = [f"trader{n:02d}" for n in range(1, 25)] + [f"risk{n:02d}" for n in range(1, 7)] + ["ada", "otto", "vera"]
ROLES = {name: "viewer" if name == "vera" else "admin" if name in ("ada", "risk01") else "ops" for name in PEOPLE}
REASONS = [
    "fat finger on {t}",
    "desk limit breached on {t}",
    "risk asked to pause {t}",
    "end of day flatten",
    "reopening after review of {t}",
    "testing the kill switch drill",
    "manual hedge on {t}",
    "INC-{n} follow up",
    "news event, stand down {t}",
    "limit raised for the open",
    "",
    "",
    "",
]
TICKERS = ["KXBTC", "KXETH", "INXD", "KXFED", "KXCPI", "NASDAQ100", "KXHIGHNY", "KXRAIN"]
ERRORS = [
    (400, "invalid_parameters", "The exchange refused the request: contracts_limit out of range."),
    (404, "not_found", "The exchange has no such order group."),
    (429, "too_many_requests", "Rate limited by the exchange; try again shortly."),
    (500, "internal_error", "The exchange answered HTTP 500."),
    (503, "service_unavailable", "The exchange answered HTTP 503."),
    (None, "", "The exchange could not be reached (timed out)."),
]
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
    "Mozilla/5.0 (Macintosh) Safari/18.4",
    "Mozilla/5.0 (Windows NT 10.0) Chrome/139.0",
]


class Generator:
    """Audit rows in seq order, chained and hashed with ogpanel.audit's own functions."""

    def __init__(self, total: int, users: dict[str, int]):
        from ogpanel import audit

        self.audit = audit
        self.total = total
        self.users = users  # username -> user id, for the actor column
        self.random = random.Random(7)
        self.buffer: list[dict] = []
        self.seq = 0
        self.prev_hash = audit.GENESIS
        self.at = datetime.now(UTC) - timedelta(days=366)
        self.mean_gap = 365 * 86400 / total
        self.groups: list[tuple[int, str]] = []
        self.unknown_every = max(total // UNKNOWN_ATTEMPTS, 1)
        self.next_unknown = self.unknown_every // 2

    def _id(self) -> str:
        return str(uuid.UUID(int=self.random.getrandbits(128), version=4))

    def _emit(self, actor: str, action: str, outcome: str, **fields) -> dict:
        self.seq += 1
        self.at += timedelta(seconds=self.random.expovariate(1 / self.mean_gap))
        values = {
            "seq": self.seq,
            "at": self.at.replace(microsecond=self.at.microsecond // 1000 * 1000),
            "actor_id": self.users.get(actor),
            "actor_username": actor,
            "actor_role": ROLES.get(actor, "system" if actor else ""),
            "action": action,
            "environment": "",
            "subaccount": None,
            "order_group_id": "",
            "api_key_id": "",
            "params": {},
            "reason": "",
            "request_id": uuid.UUID(int=self.random.getrandbits(128)).hex,
            "client_ip": "",
            "user_agent": "",
            "outcome": outcome,
            "attempt_seq": None,
            "upstream_status": None,
            "error_code": "",
            "error": "",
            "latency_ms": None,
            "prev_hash": self.prev_hash,
        }
        if actor != "exchange":
            values["client_ip"] = f"10.0.{self.random.randrange(4)}.{self.random.randrange(2, 250)}"
            values["user_agent"] = self.random.choice(AGENTS)
        values.update(fields)
        values["hash"] = self.prev_hash = self.audit.compute_hash(values)
        self.buffer.append(values)
        return values

    def _group(self) -> tuple[int, str]:
        if not self.groups or self.random.random() < 0.05:
            self.groups.append((self.random.randrange(33), self._id()))
            del self.groups[:-5000]  # recent groups are the ones acted on
        return self.random.choice(self.groups)

    def _reason(self) -> str:
        return self.random.choice(REASONS).format(t=self.random.choice(TICKERS), n=self.random.randrange(10000, 99999))

    def _result(self, attempt: dict, *, failed_rate: float = 0.07, params: dict | None = None) -> None:
        same = {
            k: attempt[k]
            for k in (
                "environment",
                "subaccount",
                "order_group_id",
                "api_key_id",
                "reason",
                "request_id",
                "client_ip",
                "user_agent",
            )
        }
        result = {
            "attempt_seq": attempt["seq"],
            "latency_ms": self.random.randrange(8, 400),
            "params": {**attempt["params"], **(params or {})},
        }
        if self.random.random() < failed_rate:
            status, code, error = self.random.choice(ERRORS)
            self._emit(
                attempt["actor_username"],
                attempt["action"],
                "failed",
                **same,
                **result,
                upstream_status=status,
                error_code=code,
                error=error,
            )
        else:
            self._emit(attempt["actor_username"], attempt["action"], "succeeded", **same, **result)

    def _group_operation(self) -> None:
        actor = self.random.choice([p for p in PEOPLE if ROLES[p] != "viewer"])
        subaccount, group_id = self._group()
        action = self.random.choices(["trigger", "reset", "update_limit", "create", "delete"], [30, 25, 20, 15, 10])[0]
        fields = {"environment": "production", "subaccount": subaccount, "api_key_id": "bench-key-1"}
        if action == "create":
            attempt = self._emit(
                actor,
                "create",
                "attempted",
                **fields,
                params={"contracts_limit": self.random.randrange(1, 500), "exchange_index": 0},
            )
            self._result(attempt, params={"order_group_id": group_id})
            return
        if action == "update_limit":
            fields["params"] = {
                "contracts_limit": self.random.randrange(1, 500),
                "previous_limit": self.random.randrange(1, 500),
            }
        attempt = self._emit(actor, action, "attempted", order_group_id=group_id, reason=self._reason(), **fields)
        if self.seq >= self.next_unknown:
            self.next_unknown += self.unknown_every
            return  # the process stopped mid-call: outcome unknown
        self._result(attempt)

    def _kill_switch(self) -> None:
        actor = self.random.choice(["risk01", "risk02", "trader01", "ada"])
        action = self.random.choice(["kill_switch_trigger", "kill_switch_reset"])
        reason = self._reason() or "kill switch drill"
        subaccounts = sorted(self.random.sample(range(33), self.random.randrange(1, 6)))
        sweep = self._emit(actor, action, "attempted", reason=reason, params={"subaccounts": subaccounts})
        per_group = "trigger" if action == "kill_switch_trigger" else "reset"
        attempts = [
            self._emit(
                actor,
                per_group,
                "attempted",
                environment="production",
                subaccount=sub,
                order_group_id=self._id(),
                api_key_id="bench-key-1",
                reason=reason,
                params={"kill_switch": sweep["seq"]},
            )
            for sub in subaccounts
            for _ in range(self.random.randrange(1, 8))
        ]
        for attempt in attempts:
            self._result(attempt, failed_rate=0.03)
        self._result(sweep, failed_rate=0, params={"groups": len(attempts), "failed": 0, "changed": len(attempts)})

    def _one_off(self) -> None:
        roll = self.random.random()
        person = self.random.choice(PEOPLE)
        if roll < 0.45:
            self._emit(person, "login", "succeeded")
        elif roll < 0.55:
            self._emit(
                "",
                "login",
                "failed",
                params={"username": self.random.choice([person, "admin", "root"])},
                error="wrong username or password",
            )
        elif roll < 0.85:
            self._emit(person, "logout", "succeeded", params={"why": "idle"} if roll < 0.65 else {})
        elif roll < 0.97:
            subaccount, group_id = self._group()
            self._emit(
                "vera",
                self.random.choice(["trigger", "reset"]),
                "denied",
                subaccount=subaccount,
                order_group_id=group_id,
                error="permission denied",
            )
        else:
            action = self.random.choice(["credential_test", "credential_rotate", "subaccount_assign", "role_change"])
            attempt = self._emit(
                "ada",
                action,
                "attempted",
                environment="production",
                api_key_id="bench-key-1",
                subaccount=self.random.randrange(33),
                params={"label": "desk key"},
            )
            self._result(attempt, failed_rate=0.02)

    def batches(self, size: int = 20000):
        """Lists of rows, `total` rows in all (the last operation is cut if it would overrun)."""
        while self.seq < self.total:
            roll = self.random.random()
            if roll < 0.50:
                self._group_operation()
            elif roll < 0.70:
                subaccount, group_id = self._group()
                self._emit(
                    "exchange",
                    "trigger",
                    "observed",
                    subaccount=subaccount,
                    order_group_id=group_id,
                    params={"contracts_limit": self.random.randrange(1, 500)},
                )
            elif roll < 0.7015:
                self._kill_switch()
            else:
                self._one_off()
            if len(self.buffer) >= size:
                yield self._take()
        yield self._take()

    def _take(self) -> list[dict]:
        rows, self.buffer = self.buffer, []
        return [row for row in rows if row["seq"] <= self.total]


def empty_audit_table() -> None:
    """Empty the audit table and every table whose rows point at its events (trip alerts), in a used database too.

    On PostgreSQL the table refuses TRUNCATE through its triggers; as the superuser, past them
    (benchmark database only). CASCADE takes the referencing tables along, whichever they are.
    """
    from django.db import connection, transaction

    from ogpanel.models import AuditEvent

    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute("TRUNCATE ogpanel_auditevent CASCADE")
        else:
            for relation in AuditEvent._meta.related_objects:
                cursor.execute(f"DELETE FROM {relation.related_model._meta.db_table}")
            cursor.execute("DELETE FROM ogpanel_auditevent")
        cursor.execute("DELETE FROM ogpanel_openattempt")


def write(rows: list[dict]) -> None:
    import json

    from django.db import connection, transaction

    from ogpanel.audit import CHAINED_FIELDS

    columns = (*CHAINED_FIELDS, "hash")

    if connection.vendor == "postgresql":
        from psycopg.types.json import Jsonb

        connection.ensure_connection()
        with (
            connection.connection.cursor() as cursor,
            cursor.copy(f"COPY ogpanel_auditevent ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row([Jsonb(row[c]) if c == "params" else row[c] for c in columns])
        return
    adapt = connection.ops.adapt_datetimefield_value
    values = [
        [json.dumps(row[c]) if c == "params" else adapt(row[c]) if c == "at" else row[c] for c in columns]
        for row in rows
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO ogpanel_auditevent ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
            values,
        )


def generate(total: int, users: dict[str, int]) -> float:
    from django.db import connection

    began = time.monotonic()
    empty_audit_table()
    done = 0
    for rows in Generator(total, users).batches():
        write(rows)
        done += len(rows)
        if done % 200_000 < len(rows):
            print(f"  generated {done:,} / {total:,}", flush=True)
    with connection.cursor() as cursor:  # the open attempts append() would have kept, as migration 0007 fills them
        cursor.execute(import_module("ogpanel.migrations.0007_open_attempts").BACKFILL)
    with connection.cursor() as cursor:  # as autovacuum would have, on tables this old
        if connection.vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE ogpanel_auditevent, ogpanel_openattempt")
        else:
            cursor.execute("ANALYZE")
    return time.monotonic() - began


# --- measurements -------------------------------------------------------------------------------


def bench_users() -> tuple:
    from django.contrib.auth.models import Group, User

    from ogpanel.models import AccessScope

    admin, _ = User.objects.get_or_create(username="bench-admin")
    admin.groups.add(Group.objects.get_or_create(name="admin")[0])
    scoped, _ = User.objects.get_or_create(username="bench-scoped")
    scoped.groups.add(Group.objects.get_or_create(name="viewer")[0])
    AccessScope.objects.update_or_create(user=scoped, defaults={"subaccounts": [3, 4]})
    people = {}
    for name in PEOPLE:
        user, _ = User.objects.get_or_create(username=name)
        people[name] = user.pk
    return admin, scoped, people


def verify_audit(database_url: str) -> tuple[float, str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "benchmarks.settings", "DATABASE_URL": database_url}
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "manage.py", "verify_audit"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    elapsed = time.monotonic() - began
    return elapsed, (done.stdout + done.stderr).strip().splitlines()[0]


def timed_get(client, url: str, repeat: int) -> tuple[float, float, int, int]:
    """Median and worst milliseconds over `repeat` requests after a warm-up one; status; events shown."""
    client.get(url)
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        response = client.get(url)
        if hasattr(response, "streaming_content"):
            body = b"".join(response.streaming_content)
            shown = body.count(b"\n") - 1
        else:
            body = response.content
            shown = body.count(b"<tr data-seq=")
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), max(times), response.status_code, shown


def explain(client, url: str) -> str:
    """The query plan of the page's main query (PostgreSQL), to see which index answers it."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    sql = next(
        (
            q["sql"]
            for q in queries.captured_queries
            if 'ORDER BY "ogpanel_auditevent"."seq" DESC' in q["sql"] and "LIMIT" in q["sql"]
        ),
        None,
    )
    if sql is None or connection.vendor != "postgresql":
        return ""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql)
        return "\n".join("      " + row[0] for row in cursor.fetchall())


def page_cases(total: int) -> list[tuple[str, str, str]]:
    """(label, user, query) for the review page."""
    from ogpanel.models import AuditEvent

    middle = AuditEvent.objects.filter(seq__gte=total // 2).exclude(order_group_id="")
    group = middle.values_list("order_group_id", flat=True).first() or "none"
    day = AuditEvent.objects.filter(seq=total // 2).values_list("at", flat=True).first()
    day = (day or datetime.now(UTC)).date().isoformat()
    return [
        ("unfiltered, newest page", "admin", ""),
        ("unfiltered, a page half-way back", "admin", f"before={total // 2}"),
        ("actor", "admin", "actor=trader07"),
        ("action (common)", "admin", "action=trigger"),
        ("action (rare)", "admin", "action=role_change"),
        ("subaccount", "admin", "subaccount=17"),
        ("outcome failed", "admin", "outcome=failed"),
        ("outcome unknown", "admin", "outcome=unknown"),
        ("group id", "admin", f"group={group}"),
        ("one day", "admin", f"since={day}&until={day}"),
        ("actor + subaccount", "admin", "actor=trader07&subaccount=17"),
        ("search: a reason word", "admin", "q=fat+finger"),
        ("search: a username", "admin", "q=trader07"),
        ("search: a params key", "admin", "q=previous_limit"),
        ("search: a common word", "admin", "q=trigger"),
        ("search: an error text", "admin", "q=HTTP+503"),
        ("search: two letters (refused: 3 at least)", "admin", "q=zq"),
        ("search: part of a group id", "admin", f"q={group[:13]}"),
        ("search: no match", "admin", "q=no-such-thing-anywhere"),
        ("scoped user, unfiltered", "scoped", ""),
        ("scoped user, search", "scoped", f"q={group[:13]}"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help=f"default {DEFAULT_DATABASE_URL}; with --quick a fresh SQLite")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true", help="keep the events already there if there are enough")
    parser.add_argument("--repeat", type=int, default=5, help="timed requests per page (after one warm-up)")
    parser.add_argument("--explain", action="store_true", help="print each page query's plan (PostgreSQL)")
    parser.add_argument("--quick", action="store_true", help="a tiny run that only checks the script works")
    args = parser.parse_args()
    if args.quick:
        if args.database_url is None:
            args.database_url = f"sqlite:///{tempfile.mkdtemp(prefix='ogpanel-bench-')}/audit.sqlite3"
        args.events, args.repeat = 2000, 1
    args.database_url = args.database_url or DEFAULT_DATABASE_URL
    configure(args.database_url)
    import logging

    from django.test import Client

    logging.getLogger("django.request").setLevel(logging.ERROR)  # the refused search is expected

    from ogpanel.models import AuditEvent

    admin, scoped, people = bench_users()
    existing = AuditEvent.objects.count()
    if args.reuse and existing >= args.events:
        print(f"Reusing {existing:,} events.")
    else:
        elapsed = generate(args.events, people)
        print(f"Generated {args.events:,} chained events in {elapsed:.1f} s (fast path, see the docstring).")

    rows = []
    elapsed, line = verify_audit(args.database_url)
    rows.append(("manage.py verify_audit", f"{elapsed:.1f} s", line, f"<= 10 s: {common.verdict(elapsed <= 10)}"))
    clients = {"admin": Client(), "scoped": Client()}
    clients["admin"].force_login(admin)
    clients["scoped"].force_login(scoped)
    for label, who, query in page_cases(args.events):
        url = f"/audit/?{query}"
        median, worst, status, shown = timed_get(clients[who], url, args.repeat)
        target = f"<= 100 ms: {common.verdict(median <= 100)}" if query else ""
        rows.append(
            (f"page: {label}", f"{median:,.0f} ms (max {worst:,.0f})", f"HTTP {status}, {shown} events", target)
        )
        if args.explain:
            print(f"{label}: {url}\n{explain(clients[who], url)}")
    for query in ("actor=trader07", "actor=trader07&outcome=failed"):
        median, worst, status, shown = timed_get(clients["admin"], f"/audit/export.csv?{query}", min(args.repeat, 3))
        rows.append(
            (f"CSV export: {query}", f"{median:,.0f} ms (max {worst:,.0f})", f"HTTP {status}, {shown:,} rows", "")
        )

    print(
        f"\n{AuditEvent.objects.count():,} audit events; {common.describe_database()}; "
        f"page times are medians of {args.repeat} requests after a warm-up, in process"
    )
    print(f"Machine: {common.machine()}\n")
    print(common.table(("measurement", "time", "result", "target"), rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
