"""Sweeps as durable jobs: a lease on each Sweep row, a start inside the panel process, and the worker.

How a sweep runs. The kill switch POST records the sweep (sweeps.sweep_start) already leased to
the panel process that took it, and that process runs it at once in a thread of its own, renewing
the lease as it goes: the first trigger is on the wire one listing after the POST, with no queue
to wait in. A worker (`manage.py run_sweeps`; in `make demo` a thread of the demo process) looks
every OGPANEL_SWEEP_POLL_SECONDS for a sweep whose lease has lapsed (its process was killed,
restarted or lost its database) or that nobody was given (OGPANEL_SWEEPS_IN_PANEL=0), takes the
lease with a conditional UPDATE, and finishes the sweep; sweeps.sweep_run resumes from the rows.
A dead runner's sweep is taken over OGPANEL_SWEEP_LEASE_SECONDS (10 s) after its last renewal,
plus at most one poll.

Why a lease on our own table and not a job engine. Evaluated for this (both maintained, both
worth using where they fit):

- Django 6.1's `django.tasks` with `django-tasks-db` 0.13 (the database backend): the worker
  polls (`db_worker --interval`, 1 s by default), so a task starts up to a second after it is
  queued, not within a round trip + 50 ms. A worker SIGKILLed mid-task leaves its task RUNNING
  for good: only READY tasks are ever claimed, and nothing notices a dead worker (django-tasks
  issue #46, open; the worker-ping work in PR #133 was closed unmerged). The sweep would still
  need its own table for progress and a lease for recovery, so the engine would add a queue table
  and a second process model without providing either guarantee.
- procrastinate 3.10: LISTEN/NOTIFY starts jobs fast, and workers' heartbeats let stalled jobs be
  found and retried; but it runs on PostgreSQL only, and the demo and half of CI run on SQLite.

What is hand-written is small: claim, renew and release are one conditional UPDATE each.
"""

import functools
import logging
import os
import socket
import threading
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Q
from django.utils import timezone

from ogpanel import sweeps
from ogpanel.audit import Actor
from ogpanel.models import Subaccount, Sweep

logger = logging.getLogger(__name__)

_threads: dict[int, threading.Thread] = {}  # sweep id -> the thread of this process running it
_threads_lock = threading.Lock()
_never = threading.Event()  # the stop signal of runs started by the panel: they end with their process


def owner(role: str) -> str:
    """Who holds a lease: role, host and process, so the progress page can say who runs a sweep."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}"


def _lease_end() -> datetime:
    return timezone.now() + timedelta(seconds=settings.OGPANEL_SWEEP_LEASE_SECONDS)


class Lease:
    """A lease held on one sweep; `keep()` renews it every quarter of its length."""

    def __init__(self, sweep_id: int, holder: str, stop: threading.Event):
        self.sweep_id, self.holder, self.stop = sweep_id, holder, stop
        self.renewed = time.monotonic()

    def keep(self) -> bool:
        if self.stop.is_set():
            return False
        if time.monotonic() - self.renewed < settings.OGPANEL_SWEEP_LEASE_SECONDS / 4:
            return True
        held = Sweep.objects.filter(pk=self.sweep_id, lease_owner=self.holder, finished_at__isnull=True).update(
            lease_until=_lease_end()
        )
        self.renewed = time.monotonic()
        if not held:
            logger.warning("lost the lease on sweep %s; another process runs it now", self.sweep_id)
        return bool(held)

    def release(self) -> None:
        """Hand the sweep back at once (a stop asked for), so the next worker need not wait out the lease."""
        Sweep.objects.filter(pk=self.sweep_id, lease_owner=self.holder).update(lease_owner="", lease_until=None)


def claim(sweep_id: int, holder: str) -> bool:
    """Take the lease on an unfinished sweep nobody holds (or whose holder stopped renewing)."""
    now = timezone.now()
    return bool(
        Sweep.objects.filter(pk=sweep_id, finished_at__isnull=True)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_owner=holder, lease_until=_lease_end())
    )


def run(sweep_id: int, holder: str, stop: threading.Event) -> bool:
    """Run a sweep whose lease `holder` has, in this thread; True once it is done."""
    lease = Lease(sweep_id, holder, stop)
    try:
        done = sweeps.sweep_run(sweep_id, lease)
    except Exception:
        # The database or a bug: the lease lapses and another run picks the sweep up from its rows.
        logger.exception("sweep %s stopped on an error; it resumes once its lease lapses", sweep_id)
        return False
    if not done and stop.is_set():
        lease.release()
    return done


def _run_in_thread(sweep_id: int, holder: str, stop: threading.Event) -> None:
    try:
        run(sweep_id, holder, stop)
    finally:
        with _threads_lock:
            _threads.pop(sweep_id, None)
        connection.close()  # this thread's own connection


def start(sweep_id: int, holder: str, stop: threading.Event = _never) -> None:
    """Run a sweep whose lease `holder` has in a thread of this process, unless one already does."""
    with _threads_lock:
        if sweep_id in _threads:
            return
        thread = threading.Thread(
            target=_run_in_thread, args=(sweep_id, holder, stop), name=f"ogpanel-sweep-{sweep_id}", daemon=True
        )
        _threads[sweep_id] = thread
    thread.start()


def wait_idle(timeout: float) -> bool:
    """Wait for this process's sweep threads to end; False if some still run at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        with _threads_lock:
            running = list(_threads.values())
        if not running:
            return True
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))
        if time.monotonic() >= deadline:
            with _threads_lock:
                return not _threads


def kill_switch(*, actor: Actor, subaccounts: list[Subaccount], reason: str, action: str) -> sweeps.Started:
    """Record a sweep and, unless OGPANEL_SWEEPS_IN_PANEL=0, start it in this process once committed.

    An open sweep it joins whose runner died is taken over here too: the kill switch must not
    wait for a worker that may not be running.
    """
    holder = owner("panel") if settings.OGPANEL_SWEEPS_IN_PANEL else ""
    started = sweeps.Started(None, ())
    while started.sweep is None and not started.joined:  # again if what covered it finished meanwhile
        started = sweeps.sweep_start(
            actor=actor,
            subaccounts=subaccounts,
            reason=reason,
            action=action,
            lease_owner=holder,
            lease_seconds=settings.OGPANEL_SWEEP_LEASE_SECONDS,
        )
    if holder:
        ours = [started.sweep.pk] if started.sweep else []
        ours += [other.pk for other in started.joined if claim(other.pk, holder)]
        for sweep_id in ours:
            # On commit: another thread can read the sweep's rows only once they are committed.
            transaction.on_commit(functools.partial(start, sweep_id, holder))
    return started


def work(stop: threading.Event, *, poll: float | None = None, role: str = "worker") -> None:
    """The worker: take over every sweep nobody runs, each in a thread, until `stop` is set."""
    holder = owner(role)
    poll = settings.OGPANEL_SWEEP_POLL_SECONDS if poll is None else poll
    while not stop.is_set():
        try:
            close_old_connections()
            now = timezone.now()
            waiting = Sweep.objects.filter(finished_at__isnull=True).filter(
                Q(lease_until__isnull=True) | Q(lease_until__lt=now)
            )
            for sweep_id in waiting.order_by("created_at").values_list("pk", flat=True):
                if claim(sweep_id, holder):
                    logger.info("taking over sweep %s", sweep_id)
                    start(sweep_id, holder, stop)
        except Exception:  # the database is down: try again next poll
            logger.exception("looking for sweeps to run failed")
        stop.wait(poll)
    wait_idle(timeout=60)
    connection.close()
