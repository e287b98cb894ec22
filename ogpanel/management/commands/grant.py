"""python manage.py grant USERNAME ROLE [--subaccounts 0,3-7 | --all-subaccounts]"""

import getpass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from ogpanel import audit
from ogpanel.models import AccessScope, AuditEvent
from ogpanel.permissions import ROLE_NAMES, Role, role_of, scope_of

NO_ROLE = "none"


def parse_subaccounts(text: str, *, maximum: int) -> list[int]:
    """ "0,3-7" -> [0, 3, 4, 5, 6, 7]; every number must lie in 0..maximum."""
    numbers: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        if not low.strip().isdigit() or (dash and not high.strip().isdigit()):
            raise CommandError(f"--subaccounts: {part!r} is not a number or a range like 3-7")
        first, last = int(low), int(high) if dash else int(low)
        if first > last:
            raise CommandError(f"--subaccounts: the range {part!r} runs backwards")
        if last > maximum:
            raise CommandError(f"--subaccounts: {last} is out of range; subaccounts are 0..{maximum}")
        numbers.update(range(first, last + 1))
    return sorted(numbers)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except OSError:  # a container user without a passwd entry
        return ""


def _describe(user: User) -> dict:
    scope = scope_of(user)
    return {"role": role_of(user).label, "subaccounts": "all" if scope is None else sorted(scope)}


class Command(BaseCommand):
    help = (
        "Give a user a role (viewer, ops, admin, or none to remove it), and optionally limit them "
        "to some subaccounts or lift the limit. The change is recorded in the audit log."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("role", choices=[*ROLE_NAMES, NO_ROLE])
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument(
            "--subaccounts", metavar="LIST", help="only these subaccounts, e.g. 0,3-7 (replaces any earlier limit)"
        )
        scope.add_argument("--all-subaccounts", action="store_true", help="remove any subaccount limit")

    def handle(
        self, *, username: str, role: str, subaccounts: str | None, all_subaccounts: bool, **options: Any
    ) -> None:
        scope = None if subaccounts is None else parse_subaccounts(subaccounts, maximum=settings.OGPANEL_MAX_SUBACCOUNT)
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}. Create one with createsuperuser or the Django admin.")
        if user.is_superuser and role != Role.ADMIN.label:
            raise CommandError(
                f"{username} is a superuser, and superusers are always admins. Remove superuser "
                "status in the Django admin first."
            )

        before = _describe(user)
        with transaction.atomic():
            user.groups.remove(*Group.objects.filter(name__in=ROLE_NAMES))
            if role != NO_ROLE:
                user.groups.add(Group.objects.get_or_create(name=role)[0])
            # Admins manage users in the Django admin too, which needs staff status; nobody else gets it.
            user.is_staff = user.is_superuser or role == Role.ADMIN.label
            user.save(update_fields=["is_staff"])
            if all_subaccounts:
                AccessScope.objects.filter(user=user).delete()
            elif scope is not None:
                AccessScope.objects.update_or_create(user=user, defaults={"subaccounts": scope})
        after = _describe(get_user_model().objects.get(pk=user.pk))  # fresh: role and scope are cached per object

        audit.append(
            audit.Actor.system("grant"),
            action="role_change",
            outcome=AuditEvent.Outcome.SUCCEEDED,
            params={"username": username, "user_id": user.pk, "before": before, "after": after, "run_by": _os_user()},
        )
        self.stdout.write(
            f"{username}: role {before['role']} -> {after['role']}, "
            f"subaccounts {before['subaccounts']} -> {after['subaccounts']}"
        )
