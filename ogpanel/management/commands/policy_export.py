"""python manage.py policy_export [--output FILE]: the whole policy as a file (JSON; see ogpanel/policy_file.py)."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ogpanel import policy_file


class Command(BaseCommand):
    help = "Write the policy (the default and every subaccount with its own) as JSON, to stdout or --output."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", metavar="FILE", help="write here instead of to stdout")

    def handle(self, *args: Any, output: str | None, **options: Any) -> None:
        text = policy_file.dumps(policy_file.current())
        if output:
            Path(output).write_text(text, encoding="utf-8")
        else:
            self.stdout.write(text, ending="")
