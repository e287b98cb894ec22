"""The Django admin: the audit log read-only, the panel's models, and audited role and scope changes.

Credentials and subaccounts are shown here, not edited: the panel's own pages change them
through services, which audit the change, encrypt keys and drop cached clients and listings.
Admins do assign roles (users' groups) and subaccount scopes here; each such change is recorded
as a `role_change` event, like `manage.py grant`'s, once the admin's transaction commits (an
audit append is committed on its own, so it cannot run inside that transaction).
"""

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import AbstractBaseUser
from django.db import models, transaction
from django.forms import ModelForm
from django.http import HttpRequest

from ogpanel import audit, permissions
from ogpanel.models import AccessScope, AuditEvent, Credential, Subaccount

User = get_user_model()


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["seq", "at", "actor_username", "action", "outcome", "subaccount", "order_group_id"]
    list_filter = ["outcome"]
    # Exact, case-sensitive matches on indexed columns only: the table grows without bound.
    search_fields = ["actor_username__exact", "action__exact", "order_group_id__exact", "request_id__exact"]
    show_full_result_count = False
    ordering = ["-seq"]


@admin.register(Credential)
class CredentialAdmin(ReadOnlyAdmin):
    list_display = ["label", "environment", "key_id", "fingerprint"]
    # Listed explicitly so that the encrypted private key is never on the page.
    fields = ["label", "environment", "custom_base_url", "key_id", "fingerprint", "uuid", "created", "updated"]


@admin.register(Subaccount)
class SubaccountAdmin(ReadOnlyAdmin):
    list_display = ["number", "label", "credential"]


def _access(user_pk: int) -> dict:
    """A user's role and scope as `grant` records them; read fresh (role_of and scope_of cache per object)."""
    user = User.objects.filter(pk=user_pk).first()
    if user is None:
        return {"role": "deleted", "subaccounts": "all"}
    scope = permissions.scope_of(user)
    return {"role": permissions.role_of(user).label, "subaccounts": "all" if scope is None else sorted(scope)}


def _record_after_commit(request: HttpRequest, user: AbstractBaseUser, before: dict) -> None:
    actor = audit.Actor.from_request(request)
    user_pk, username = user.pk, user.get_username()

    def record() -> None:
        after = _access(user_pk)
        if after != before:
            audit.append(
                actor,
                action="role_change",
                outcome=AuditEvent.Outcome.SUCCEEDED,
                params={
                    "username": username,
                    "user_id": user_pk,
                    "before": before,
                    "after": after,
                    "via": "admin",
                },
            )

    transaction.on_commit(record)


@admin.register(AccessScope)
class AccessScopeAdmin(admin.ModelAdmin):
    list_display = ["user", "subaccounts"]

    def get_readonly_fields(self, request: HttpRequest, obj: AccessScope | None = None) -> list[str]:
        # Moving a scope to another user would silently widen the first user to every subaccount.
        return ["user"] if obj else []

    def save_model(self, request: HttpRequest, obj: AccessScope, form: ModelForm, change: bool) -> None:
        before = _access(obj.user_id)
        super().save_model(request, obj, form, change)
        _record_after_commit(request, obj.user, before)

    def delete_model(self, request: HttpRequest, obj: AccessScope) -> None:
        before = _access(obj.user_id)
        super().delete_model(request, obj)
        _record_after_commit(request, obj.user, before)

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet[AccessScope]) -> None:
        for scope in queryset.select_related("user"):
            self.delete_model(request, scope)


admin.site.unregister(User)


@admin.register(User)
class AuditedUserAdmin(UserAdmin):
    """Django's user admin; a change of role (groups, superuser, active) is recorded."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        before = _access(obj.pk) if change else {"role": "none", "subaccounts": "all"}
        super().save_model(request, obj, form, change)
        # Groups are saved after this (save_related); the event reads the state once committed.
        _record_after_commit(request, obj, before)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        before = _access(obj.pk)
        _record_after_commit(request, obj, before)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> None:
        for user in queryset:
            self.delete_model(request, user)
