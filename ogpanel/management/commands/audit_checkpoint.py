"""python manage.py audit_checkpoint [--every SECONDS]: checkpoint the audit log's head.

Once (from cron, or after a drill), or with --every in a loop until SIGTERM or Ctrl-C, writing
one whenever the head has moved (checkpoints.write_if_due). Each checkpoint is appended to
OGPANEL_AUDIT_CHECKPOINT_FILE and logged; `verify_audit --against FILE` checks the log against them.
"""

import json
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ogpanel import checkpoints


class Command(BaseCommand):
    help = "Write an audit checkpoint (a keyed MAC over the audit log's head) outside the database."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every",
            type=float,
            metavar="SECONDS",
            help="keep writing one every SECONDS while the log grows, until stopped",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not checkpoints.keys():
            raise CommandError(
                "Audit checkpoints need a key kept out of the database: set OGPANEL_AUDIT_CHECKPOINT_KEYS or "
                "OGPANEL_AUDIT_CHECKPOINT_KEY_FILE (an entry from `manage.py make_encryption_key`)."
            )
        every = options["every"]
        if every is None:
            self.report(checkpoints.write(reason="manual"))
            return
        if every <= 0:
            raise CommandError("--every must be a number of seconds above 0")
        stop = threading.Event()
        previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not stop.is_set():
                if (written := checkpoints.write_if_due(interval=every)) is not None:
                    self.report(written)
                stop.wait(min(every, 1.0))  # write_if_due decides; a stop is noticed within a second
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def report(self, record: dict | None) -> None:
        if record is None:
            raise CommandError("The checkpoint was not written; the log says why.")
        self.stdout.write(json.dumps(record, sort_keys=True))
