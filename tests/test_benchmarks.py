"""Every benchmark still runs: each script, at its smallest size (--quick), ends with its results table.

Nothing here judges a timing; docs/performance.md has the numbers. The scripts run side by side,
each in its own process with its own simulator, database and gunicorn (benchmarks/quick.py;
CI also runs them all on PostgreSQL, `make bench-quick`).
"""

import os
import subprocess
import sys
from urllib.parse import unquote, urlsplit

import pytest

from benchmarks import quick

DATABASE_URL = os.environ.get("DATABASE_URL", "")
ON_POSTGRES = urlsplit(DATABASE_URL).scheme in ("postgres", "postgresql")


def test_each_benchmark_runs_at_its_smallest_size_and_prints_its_table():
    runs = quick.run_all()
    assert [run.script for run in runs] == list(quick.SCRIPTS)
    for run in runs:
        assert run.ok, f"{run.script} failed:\n{run.output}"


@pytest.fixture
def audit_bench_database():
    """A PostgreSQL database for the audit benchmark beside the suite's own: ogpanel_bench_<suite db>_audit."""
    import psycopg

    parts = urlsplit(DATABASE_URL)
    name = f"ogpanel_bench_{unquote(parts.path.lstrip('/'))}_audit"
    maintenance = parts._replace(path="/postgres", query="").geturl()

    def drop() -> None:
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    drop()
    yield parts._replace(path=f"/{name}").geturl()
    drop()


def _audit_quick(url: str) -> str:
    done = subprocess.run(
        [sys.executable, str(quick.ROOT / "benchmarks" / "audit_scale.py"), "--quick", "--database-url", url],
        cwd=quick.ROOT,
        capture_output=True,
        text=True,
        timeout=quick.TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.skipif(not ON_POSTGRES, reason="the audit table's triggers and TRUNCATE exist on PostgreSQL only")
def test_the_audit_benchmark_runs_on_postgresql_from_an_empty_and_from_a_used_database(audit_bench_database):
    import psycopg

    first = _audit_quick(audit_bench_database)  # the database does not exist yet
    assert "Generated 2,000 chained events" in first and "OK: 2000 events" in first and "CSV export" in first

    with psycopg.connect(audit_bench_database) as conn:
        events_after_first = conn.execute("SELECT count(*) FROM ogpanel_auditevent").fetchone()[0]
    # Used: a trip alert points at an event (the foreign key that once stopped TRUNCATE), and the
    # append-only triggers are in place.
    with psycopg.connect(audit_bench_database, autocommit=True) as conn:
        event_id = conn.execute("SELECT id FROM ogpanel_auditevent WHERE seq = 1").fetchone()[0]
        conn.execute(
            "INSERT INTO ogpanel_tripalert (event_id, subaccount, order_group_id, observed_at, attempts, last_error)"
            " VALUES (%s, 3, 'og-used', now(), 0, '')",
            [event_id],
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM ogpanel_auditevent")

    second = _audit_quick(audit_bench_database)
    assert "Generated 2,000 chained events" in second and "OK: 2000 events" in second and "CSV export" in second
    with psycopg.connect(audit_bench_database) as conn:
        # Emptied and refilled, not appended to: the same 2,000 plus the pages' own audited exports.
        assert conn.execute("SELECT count(*) FROM ogpanel_auditevent").fetchone()[0] == events_after_first
        assert conn.execute("SELECT count(*) FROM ogpanel_tripalert").fetchone()[0] == 0  # emptied with the events
