"""The policy and four-eyes actions as permissions of the role groups, as 0004_roles did for the first ones.

A frozen copy of the new `permissions.Action` members and their `MIN_ROLE`, as that migration's
tables are; tests/test_permissions.py checks the two migrations together still agree with the code.
"""

from django.db import migrations

# codename (= permissions.Action value) -> (description, lowest role allowed)
ACTIONS = {
    "view_policy": ("See the risk policy and its breaches", "viewer"),
    "manage_policy": ("Change the risk policy", "admin"),
    "approve": ("See requests for a second person, and decide those the role allows", "ops"),
}
ROLES = ("viewer", "ops", "admin")


def grant(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    panel_type, _ = ContentType.objects.get_or_create(app_label="ogpanel", model="subaccount")
    for codename, (description, lowest) in ACTIONS.items():
        permission, _ = Permission.objects.get_or_create(
            content_type=panel_type, codename=codename, defaults={"name": description}
        )
        for role in ROLES[ROLES.index(lowest) :]:
            Group.objects.get_or_create(name=role)[0].permissions.add(permission)


def revoke(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Permission.objects.filter(
        content_type__app_label="ogpanel", content_type__model="subaccount", codename__in=ACTIONS
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("ogpanel", "0020_policy_four_eyes"), ("ogpanel", "0004_roles")]

    operations = [migrations.RunPython(grant, revoke)]
