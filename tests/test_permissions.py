"""Roles as created by the data migration, and the one rule `permissions.can` over roles, actions and scope.

The HTTP matrix (button hidden and server refusing for every view) lives with the views; this
is the rule itself.
"""

import importlib
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Group, User

from ogpanel.permissions import MIN_ROLE, Action, Role, allowed_actions, can, role_of, visible
from tests.panel_fixtures import make_user

roles_migration = importlib.import_module("ogpanel.migrations.0004_roles")
policy_roles_migration = importlib.import_module("ogpanel.migrations.0021_policy_roles")
MIGRATED_ACTIONS = {**roles_migration.ACTIONS, **policy_roles_migration.ACTIONS}

# The issue's words, written out rather than derived from MIN_ROLE, so a change to the table shows up here.
ALLOWED = {
    Role.NONE: set(),
    Role.VIEWER: {Action.VIEW, Action.VIEW_AUDIT, Action.VIEW_POLICY},
    Role.OPS: {
        *{Action.VIEW, Action.VIEW_AUDIT, Action.RESET, Action.TRIGGER, Action.KILL_SWITCH},
        *{Action.VIEW_POLICY, Action.APPROVE},  # issue 18: see the policy; see and decide requests
    },
    Role.ADMIN: set(Action),
}
IN_SCOPE, OUT_OF_SCOPE = 1, 2


def panel_codenames(group: Group) -> set[str]:
    return set(
        group.permissions.filter(content_type__app_label="ogpanel", content_type__model="subaccount").values_list(
            "codename", flat=True
        )
    )


def test_min_role_table_matches_the_issue():
    assert set(MIN_ROLE) == set(Action)
    for role, actions in ALLOWED.items():
        assert {action for action in Action if MIN_ROLE[action] <= role} == actions


@pytest.mark.django_db
def test_migration_creates_the_three_role_groups_with_their_actions():
    groups = {group.name: group for group in Group.objects.filter(name__in=["viewer", "ops", "admin"])}
    assert set(groups) == {"viewer", "ops", "admin"}
    for role in (Role.VIEWER, Role.OPS, Role.ADMIN):
        assert panel_codenames(groups[role.label]) == {action.value for action in ALLOWED[role]}


@pytest.mark.django_db
def test_migration_lets_only_admins_manage_users_in_the_django_admin():
    admin = make_user("adm", "admin")
    ops = make_user("opr", "ops")
    assert admin.has_perm("auth.change_user") and admin.has_perm("ogpanel.change_accessscope")
    assert not ops.has_perm("auth.change_user") and not ops.has_perm("ogpanel.change_accessscope")


@pytest.mark.django_db
def test_group_permissions_read_as_django_permissions():
    ops = make_user("opr", "ops")
    assert ops.has_perm("ogpanel.kill_switch") and ops.has_perm("ogpanel.trigger")
    assert not ops.has_perm("ogpanel.create") and not ops.has_perm("ogpanel.manage_credentials")


def test_migration_table_is_the_same_as_the_code():
    """A new Action or a changed MIN_ROLE needs a new migration; this fails until one is written."""
    assert set(MIGRATED_ACTIONS) == {action.value for action in Action}
    for action in Action:
        assert MIGRATED_ACTIONS[action.value][1] == MIN_ROLE[action].label


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPS, Role.ADMIN])
@pytest.mark.parametrize("action", list(Action))
def test_can_follows_role_and_scope(role, action):
    scoped = make_user("scoped", role.label, subaccounts=[IN_SCOPE])
    unscoped = make_user("unscoped", role.label)
    allowed = action in ALLOWED[role]

    assert role_of(scoped) is role
    assert can(scoped, action) is allowed
    assert can(scoped, action, IN_SCOPE) is allowed
    assert can(scoped, action, OUT_OF_SCOPE) is False
    assert can(unscoped, action, OUT_OF_SCOPE) is allowed
    assert allowed_actions(scoped)[action.value] is allowed


@pytest.mark.django_db
def test_user_without_a_role_may_do_nothing():
    nobody = User.objects.create_user("nobody", password="nobody-password-1")
    assert role_of(nobody) is Role.NONE
    assert not any(can(nobody, action) or can(nobody, action, IN_SCOPE) for action in Action)
    assert visible(nobody, [0, 1, 2]) == []


@pytest.mark.django_db
def test_superuser_is_an_admin_everywhere():
    root = User.objects.create_superuser("root", password="root-password-1")
    assert role_of(root) is Role.ADMIN
    assert all(can(root, action, OUT_OF_SCOPE) for action in Action)


@pytest.mark.django_db
def test_deactivated_user_loses_their_role():
    user = make_user("gone", "admin")
    user.is_active = False
    assert not any(can(user, action) for action in Action)


@pytest.mark.django_db
def test_highest_role_wins_when_in_several_groups():
    user = make_user("both", "viewer")
    user.groups.add(Group.objects.get(name="ops"))
    assert role_of(User.objects.get(pk=user.pk)) is Role.OPS


def test_anonymous_user_may_do_nothing():
    anonymous = SimpleNamespace(is_authenticated=False, is_active=False, is_superuser=False)
    assert not any(can(anonymous, action) for action in Action)
    assert visible(anonymous, [0, 1]) == []


@pytest.mark.django_db
def test_scope_limits_what_is_visible():
    scoped = make_user("scoped", "viewer", subaccounts=[0, 3])
    assert visible(scoped, range(5)) == [0, 3]
