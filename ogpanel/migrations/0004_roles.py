"""The three roles as Django groups, with one permission per panel action.

`permissions.role_of` reads the group names; the permissions make the roles legible (and
editable) in the Django admin. The tables are frozen copies of `permissions.Action` and
`permissions.MIN_ROLE` as they were when this migration was written: a migration must not
change meaning when the code moves on. tests/test_permissions.py checks they still agree, so
a new action fails the tests until a migration adds it.
"""

from django.db import migrations

# codename (= permissions.Action value) -> (description, lowest role allowed)
ACTIONS = {
    "view": ("See order groups and their detail", "viewer"),
    "view_audit": ("Review the audit log", "viewer"),
    "reset": ("Reset order groups", "ops"),
    "trigger": ("Trigger order groups", "ops"),
    "kill_switch": ("Use the kill switch", "ops"),
    "create": ("Create order groups", "admin"),
    "delete": ("Delete order groups", "admin"),
    "update_limit": ("Change order group limits", "admin"),
    "export_audit": ("Export the audit log", "admin"),
    "manage_credentials": ("Manage API credentials and subaccounts", "admin"),
    "manage_users": ("Manage users' roles and scopes", "admin"),
}
ROLES = ("viewer", "ops", "admin")
# Admins assign roles and scopes in the Django admin too (as staff): these model permissions let them.
# (app, model) -> (verbose name, verbs), named as Django names its default model permissions.
ADMIN_SITE_PERMISSIONS = {
    ("auth", "user"): ("user", ("add", "change", "view")),
    ("auth", "group"): ("group", ("view",)),
    ("ogpanel", "accessscope"): ("access scope", ("add", "change", "delete", "view")),
}


def create_roles(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    # Content types and default model permissions are normally created after all migrations
    # (post_migrate); get_or_create here makes rows that step then recognises as existing.
    panel_type, _ = ContentType.objects.get_or_create(app_label="ogpanel", model="subaccount")
    granted: dict[str, list] = {role: [] for role in ROLES}
    for codename, (description, lowest) in ACTIONS.items():
        permission, _ = Permission.objects.get_or_create(
            content_type=panel_type, codename=codename, defaults={"name": description}
        )
        for role in ROLES[ROLES.index(lowest) :]:
            granted[role].append(permission)
    for (app_label, model), (verbose_name, verbs) in ADMIN_SITE_PERMISSIONS.items():
        content_type, _ = ContentType.objects.get_or_create(app_label=app_label, model=model)
        for verb in verbs:
            permission, _ = Permission.objects.get_or_create(
                content_type=content_type, codename=f"{verb}_{model}", defaults={"name": f"Can {verb} {verbose_name}"}
            )
            granted["admin"].append(permission)
    for role in ROLES:
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.add(*granted[role])


def remove_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    Group.objects.filter(name__in=ROLES).delete()
    Permission.objects.filter(
        content_type__app_label="ogpanel", content_type__model="subaccount", codename__in=ACTIONS
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("ogpanel", "0003_audit_indexes"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
