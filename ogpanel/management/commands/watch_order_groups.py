"""`manage.py watch_order_groups`: the trip watch (see ogpanel/watcher.py). SIGTERM or Ctrl-C stops it cleanly."""

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ogpanel import alerts
from ogpanel.watcher import Watcher


class Command(BaseCommand):
    help = "Follow every configured subaccount; record order-group changes made outside the panel and alert on trips."

    def add_arguments(self, parser):
        parser.add_argument(
            "--interval",
            type=float,
            default=None,
            help=f"Seconds between polls (default OGPANEL_WATCH_SECONDS, now {settings.OGPANEL_WATCH_SECONDS:g}).",
        )
        parser.add_argument(
            "--once", action="store_true", help="Poll every subaccount once, send due alerts, and exit (no WebSocket)."
        )

    def handle(self, *args, interval: float | None, once: bool, **options):
        if interval is not None and interval <= 0:
            raise CommandError("--interval must be more than 0 seconds")
        if once:
            watcher = Watcher(interval=interval, websocket=False)
            watcher.poll_once()
            alerts.deliver_due()
            watcher.beat(stopped=True)
            return
        watcher = Watcher(interval=interval)
        stop = threading.Event()

        def request_stop(signum, frame) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        self.stdout.write(
            f"Watching order groups every {watcher.interval:g} s"
            f"{' with the WebSocket stream' if watcher.websocket else ''}; SIGTERM or Ctrl-C stops."
        )
        watcher.run(stop)
        self.stdout.write("Stopped.")
