"""python manage.py verify_audit: recompute the audit log's hash chain from the first event.

Exit 0 and "OK: N events" when every event matches its hash and links to the one before;
exit 1 naming the first bad sequence number otherwise (an edited, deleted, inserted or
reordered event). On PostgreSQL the work is shared between --workers processes (default: one
per CPU, at most 8), each with its own database connection.

The chain cannot show events cut from its end, or a chain rewritten whole by someone who can
write to the database. `--against FILE` checks it against audit checkpoints (checkpoints.py):
heads recorded earlier with a keyed MAC, outside the database. A checkpoint whose MAC does not
match, or whose head the chain no longer holds, fails the check (exit 1) and is named.
"""

import os
import sys
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ogpanel import audit, checkpoints


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
        parser.add_argument(
            "--against",
            metavar="CHECKPOINTS",
            type=Path,
            help="also check the log against this file of audit checkpoints (or a log holding them)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        against = options["against"]
        if against is not None and not against.is_file():
            raise CommandError(f"--against: {against} is not a file")
        result = audit.verify(chunk_size=max(options["chunk_size"], 1), workers=max(options["workers"], 1))
        if not result.ok:
            self.stderr.write(f"FAILED: event #{result.bad_seq}: {result.problem} (checked {result.count} events)")
            sys.exit(1)
        self.stdout.write(f"OK: {result.count} events")
        if result.count:
            self.stdout.write(f"Head: #{result.count} {result.head}")
        if against is not None:
            self.against(against, result.count)

    def against(self, path: Path, count: int) -> None:
        try:
            report = checkpoints.check(path)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        for problem in report.problems:
            self.stderr.write(f"FAILED: {path}: {problem}")
        if not report.ok:
            sys.exit(1)
        if report.latest is None:
            self.stderr.write(f"FAILED: {path} holds no checkpoint")
            sys.exit(1)
        latest = report.latest
        self.stdout.write(
            f"Checkpoints: {report.checkpoints} match; the latest holds #{latest['seq']} "
            f"(written at {latest['written_at']}); {count - latest['seq']} events since are covered by the chain only"
        )
