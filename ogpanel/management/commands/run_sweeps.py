"""`manage.py run_sweeps`: the sweep worker (see ogpanel/jobs.py). SIGTERM or Ctrl-C stops it cleanly."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ogpanel import jobs
from ogpanel.management.stopping import stop_on_signals


class Command(BaseCommand):
    help = "Finish every kill switch sweep whose runner died (or that no panel process started)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--poll",
            type=float,
            default=None,
            help=f"Seconds between looks for sweeps (default OGPANEL_SWEEP_POLL_SECONDS, now "
            f"{settings.OGPANEL_SWEEP_POLL_SECONDS:g}).",
        )

    def handle(self, *args: Any, poll: float | None, **options: Any) -> None:
        if poll is not None and poll <= 0:
            raise CommandError("--poll must be more than 0 seconds")
        stop = stop_on_signals()
        self.stdout.write(
            f"Running kill switch sweeps nobody runs (lease {settings.OGPANEL_SWEEP_LEASE_SECONDS:g} s); "
            "SIGTERM or Ctrl-C stops.",
        )
        # Unbuffered enough for a supervisor's log, and for tests waiting on it.
        self.stdout.flush()
        jobs.work(stop, poll=poll)
        self.stdout.write("Stopped.")
