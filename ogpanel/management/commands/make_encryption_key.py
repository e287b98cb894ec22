"""Print a fresh encryption key entry ("id:base64key") for OGPANEL_ENCRYPTION_KEYS or the key file."""

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ogpanel import vault


class Command(BaseCommand):
    help = "Print a new AES-256 encryption key entry, id:base64key, for OGPANEL_ENCRYPTION_KEYS or its key file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--id", default="", help="Key id (letters and digits); random if omitted.")

    def handle(self, *args: Any, **options: Any) -> None:
        key_id = options["id"]
        if key_id and not key_id.isalnum():
            raise CommandError("The key id may contain only letters and digits.")
        # Only the entry goes to stdout, so `make_encryption_key >> keyfile` works; advice goes to stderr.
        # Asked before the entry is written: `make_encryption_key > keyfile` may be writing the configured file.
        try:
            vault.keys()
            first = False
        except ImproperlyConfigured:  # no key yet (`make demo`'s first run)
            first = True
        self.stdout.write(vault.new_key_entry(key_id))
        if first:
            self.stderr.write(
                "A new encryption key for the stored API keys. Keep a copy in your secret store: "
                "without it they cannot be read."
            )
            return
        self.stderr.write(
            "Put it first (newest) in OGPANEL_ENCRYPTION_KEYS or the key file, keep the older entries, restart, "
            "then run `manage.py rotate_encryption_keys`; after that the older entries can be dropped."
        )
