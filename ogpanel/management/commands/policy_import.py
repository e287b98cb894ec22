"""python manage.py policy_import FILE [--dry-run] [--reason TEXT]: make the panel's policy what the file says.

The file is the whole policy (ogpanel/policy_file.py): subaccounts it does not name follow the
default. Each change is an audited version from the actor "policy_import", without a second
person in the panel: the review of the repository the file lives in is that. Nothing is written
unless the whole file is valid; `--dry-run` lists what would change.
"""

import getpass
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ogpanel import policy_file
from ogpanel.audit import Actor


def _os_user() -> str:
    try:
        return getpass.getuser()
    except OSError:  # a container user without a passwd entry
        return "unknown"


class Command(BaseCommand):
    help = "Load the policy from a file written by policy_export (or by hand). Exit 1 if the file is not valid."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the policy file; - for stdin")
        parser.add_argument("--dry-run", action="store_true", help="only list what would change")
        parser.add_argument("--reason", default="", help="recorded with each change (default: the file and who ran it)")

    def handle(self, *args: Any, file: str, dry_run: bool, reason: str, **options: Any) -> None:
        try:
            text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {file}: {exc}") from None
        try:
            document = policy_file.loads(text)
        except policy_file.PolicyFileError as exc:
            raise CommandError(f"{file}: {exc}") from None
        if dry_run:
            planned = policy_file.changes(document)
        else:
            reason = reason or f"Imported from {file} by {_os_user()}"
            planned = policy_file.apply(document, actor=Actor.system("policy_import"), reason=reason)
        for change in planned:
            self.stdout.write(("would set " if dry_run else "set ") + str(change))
        self.stdout.write(f"{len(planned)} change{'' if len(planned) == 1 else 's'}{' (dry run)' if dry_run else ''}.")
