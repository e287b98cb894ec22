"""Running the kill switch's sweeps in a test's own thread.

A kill switch POST answers at once and its panel process runs the sweep in a thread once the rows
are committed; in a test wrapped in a transaction (the `db` fixture) that never happens, so the
test runs them here, as that thread would, seeing its own uncommitted rows.
"""

import threading

from ogpanel import jobs
from ogpanel.models import Sweep


def run_sweeps() -> list[Sweep]:
    """Run every unfinished sweep to its end, as the process holding its lease; returns them, refreshed."""
    unfinished = list(Sweep.objects.filter(finished_at__isnull=True).order_by("pk"))
    for sweep in unfinished:
        holder = sweep.lease_owner or "test"
        if not sweep.lease_owner:
            assert jobs.claim(sweep.pk, holder)
        assert jobs.run(sweep.pk, holder, threading.Event()), f"sweep {sweep.pk} did not finish"
        sweep.refresh_from_db()
    return unfinished
