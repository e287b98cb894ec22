"""`manage.py watch_order_groups`: the trip watch (see ogpanel/watcher.py). SIGTERM or Ctrl-C stops it cleanly.

Run two for a standby (docker-compose.yml does): one leads through the lease, the other takes
over when it dies or hangs. `--probe` is the container healthcheck: it announces an outage it
finds (watch_outage.check) and exits 1 while the trip watch is stale or stopped.
"""

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ogpanel import alerts, metrics, notices, watch_outage
from ogpanel.management.stopping import stop_on_signals
from ogpanel.watch_health import watch_health
from ogpanel.watcher import Watcher


class Command(BaseCommand):
    help = "Follow every configured subaccount; record order-group changes made outside the panel and alert on trips."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--interval",
            type=float,
            default=None,
            help=f"Seconds between polls (default OGPANEL_WATCH_SECONDS, now {settings.OGPANEL_WATCH_SECONDS:g}).",
        )
        parser.add_argument(
            "--once", action="store_true", help="Poll every subaccount once, send due alerts, and exit (no WebSocket)."
        )
        parser.add_argument(
            "--probe",
            action="store_true",
            help="Exit 0 while the trip watch is running, 1 when it is stale or stopped (a container healthcheck).",
        )

    def handle(self, *args: Any, interval: float | None, once: bool, probe: bool, **options: Any) -> None:
        if interval is not None and interval <= 0:
            raise CommandError("--interval must be more than 0 seconds")
        if probe:
            self._probe()
            return
        if once:
            watcher = Watcher(interval=interval, websocket=False)
            watcher.poll_once()
            alerts.deliver_due()
            watcher.beat(stopped=True)
            return
        if settings.OGPANEL_WATCHER_METRICS_ADDRESS:
            metrics.serve(
                settings.OGPANEL_WATCHER_METRICS_ADDRESS,
                allowed=settings.OGPANEL_METRICS_ALLOWED_ADDRESSES,
                token=settings.OGPANEL_METRICS_TOKEN,
            )
        watcher = Watcher(interval=interval)
        stop = stop_on_signals()
        self.stdout.write(
            f"Watching order groups every {watcher.interval:g} s"
            f"{' with the WebSocket stream' if watcher.websocket else ''} as {watcher.holder}; SIGTERM or Ctrl-C stops."
        )
        watcher.run(stop)
        self.stdout.write("Stopped.")

    def _probe(self) -> None:
        # The probe runs beside a watcher that may be the one stuck: it raises the outage itself.
        watch_outage.check()
        notices.deliver_due(kinds=watch_outage.KINDS)
        state = watch_health().state
        self.stdout.write(f"trip watch: {state}")
        if state != "running":
            raise SystemExit(1)
