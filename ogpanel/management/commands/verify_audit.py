"""python manage.py verify_audit: recompute the audit log's hash chain from the first event.

Exit 0 and "OK: N events" when every event matches its hash and links to the one before;
exit 1 naming the first bad sequence number otherwise (an edited, deleted, inserted or
reordered event). On PostgreSQL the work is shared between --workers processes (default: one
per CPU, at most 8), each with its own database connection.

The head line (last seq and hash) is worth keeping somewhere else, from cron say: the chain
cannot show events cut from its end, or a chain rewritten whole by someone who can write to
the database, but a head recorded earlier that is no longer in the chain does.
"""

import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ogpanel import audit


class Command(BaseCommand):
    help = "Verify the audit log's hash chain. Exit 0 if intact, 1 naming the first bad event."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--workers",
            type=int,
            default=min(os.cpu_count() or 1, 8),
            help="processes checking parts of the chain at once (PostgreSQL; default: CPUs, at most 8)",
        )
        parser.add_argument("--chunk-size", type=int, default=20000, help="events read per query")

    def handle(self, *args: Any, **options: Any) -> None:
        result = audit.verify(chunk_size=max(options["chunk_size"], 1), workers=max(options["workers"], 1))
        if not result.ok:
            self.stderr.write(f"FAILED: event #{result.bad_seq}: {result.problem} (checked {result.count} events)")
            sys.exit(1)
        self.stdout.write(f"OK: {result.count} events")
        if result.count:
            self.stdout.write(f"Head: #{result.count} {result.head}")
