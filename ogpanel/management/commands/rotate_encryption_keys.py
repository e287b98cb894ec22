"""Re-encrypt every stored private key under the newest encryption key.

Run after putting a new key first in OGPANEL_ENCRYPTION_KEYS (or the key file) while keeping
the old ones; afterwards the old keys can be removed. All or nothing: if any stored key cannot
be decrypted with the configured keys, nothing is changed.
"""

from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from ogpanel import audit, vault
from ogpanel.audit import Actor
from ogpanel.models import Credential


class Command(BaseCommand):
    help = "Re-encrypt every credential's private key under the newest configured encryption key."

    def handle(self, *args: Any, **options: Any) -> None:
        newest = vault.newest_key_id()
        with audit.attempt(
            Actor.system("rotate_encryption_keys"), "encryption_keys_rotate", params={"key_id": newest}
        ) as pending:
            previous = _reencrypt_all()
            pending.result_params.update(rewritten=sum(previous.values()), previous_key_ids=dict(previous))
        count = sum(previous.values())
        before = ", ".join(f"{n} under {key_id}" for key_id, n in sorted(previous.items())) or "none stored"
        self.stdout.write(
            f"Re-encrypted {count} credential{'' if count == 1 else 's'} under key {newest} (before: {before})."
        )


def _reencrypt_all() -> Counter:
    """Rewrite each row under the newest key; returns how many rows were under each key id before."""
    previous: Counter = Counter()
    with transaction.atomic():
        credentials = list(Credential.objects.select_for_update().order_by("pk"))
        unreadable = []
        for credential in credentials:
            bound_to = str(credential.uuid)
            try:
                stored = vault.encrypt(
                    vault.decrypt(credential.private_key_encrypted, bound_to=bound_to), bound_to=bound_to
                )
            except vault.VaultError as exc:
                unreadable.append(f"{credential.label!r}: {exc}")
                continue
            previous[vault.key_id_of(credential.private_key_encrypted)] += 1
            # update(), not save(): re-encryption is not a change to the credential (its `updated` stays).
            Credential.objects.filter(pk=credential.pk).update(private_key_encrypted=stored)
        if unreadable:
            raise CommandError("Nothing was changed; these stored keys cannot be decrypted: " + "; ".join(unreadable))
    return previous
