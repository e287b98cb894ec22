"""Who may do what, on which subaccounts: the one rule, used by views and templates alike.

Roles are Django groups named after `Role` (created by a data migration). A user's role is the
highest role among their groups; superusers are admins. An `AccessScope` row limits a user to
some subaccounts; without one they may see every subaccount.

Credentials are shared state: one key may serve several subaccounts, and the mapping decides
which key trades where. So credentials and the mapping are changed by unscoped admins only,
and a scoped admin sees (and tests) only the credentials that serve some of their subaccounts
and no others (`credential_visible`, `may_change_credentials`).
"""

from collections.abc import Callable, Iterable
from enum import IntEnum, StrEnum
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

# Whoever a request belongs to: `request.user`, signed in or not.
type AnyUser = User | AnonymousUser
type View = Callable[..., HttpResponseBase]


class Role(IntEnum):
    NONE = 0
    VIEWER = 1
    OPS = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class Action(StrEnum):
    VIEW = "view"
    VIEW_AUDIT = "view_audit"
    RESET = "reset"
    TRIGGER = "trigger"
    KILL_SWITCH = "kill_switch"
    CREATE = "create"
    DELETE = "delete"
    UPDATE_LIMIT = "update_limit"
    EXPORT_AUDIT = "export_audit"
    MANAGE_CREDENTIALS = "manage_credentials"
    MANAGE_USERS = "manage_users"
    # Policy and four eyes (policy.py, approvals.py).
    VIEW_POLICY = "view_policy"
    MANAGE_POLICY = "manage_policy"
    APPROVE = "approve"


MIN_ROLE: dict[Action, Role] = {
    Action.VIEW: Role.VIEWER,
    Action.VIEW_AUDIT: Role.VIEWER,
    Action.RESET: Role.OPS,
    Action.TRIGGER: Role.OPS,
    Action.KILL_SWITCH: Role.OPS,
    Action.CREATE: Role.ADMIN,
    Action.DELETE: Role.ADMIN,
    Action.UPDATE_LIMIT: Role.ADMIN,
    Action.EXPORT_AUDIT: Role.ADMIN,
    Action.MANAGE_CREDENTIALS: Role.ADMIN,
    Action.MANAGE_USERS: Role.ADMIN,
    Action.VIEW_POLICY: Role.VIEWER,
    Action.MANAGE_POLICY: Role.ADMIN,
    Action.APPROVE: Role.OPS,
}

ROLE_NAMES = {role.label: role for role in Role if role is not Role.NONE}
MAX_DIGITS = 20  # more than any subaccount or id the panel uses; longer "numbers" are refused as text
# Role and scope are cached on the user object: a fresh object (another request) reads them again.
_ROLE_CACHE = "_ogpanel_role"
_SCOPE_CACHE = "_ogpanel_scope"


def role_of(user: AnyUser) -> Role:
    if not user.is_authenticated or not user.is_active:
        return Role.NONE
    if user.is_superuser:
        return Role.ADMIN
    cached: Role | None = getattr(user, _ROLE_CACHE, None)
    if cached is None:
        names = user.groups.filter(name__in=ROLE_NAMES).values_list("name", flat=True)
        cached = max((ROLE_NAMES[name] for name in names), default=Role.NONE)
        setattr(user, _ROLE_CACHE, cached)
    return cached


def scope_of(user: AnyUser) -> frozenset[int] | None:
    """The subaccounts a user is limited to, or None for all of them."""
    if not user.is_authenticated:
        return frozenset()
    if not hasattr(user, _SCOPE_CACHE):
        from ogpanel.models import AccessScope

        row = AccessScope.objects.filter(user=user).values_list("subaccounts", flat=True).first()
        setattr(user, _SCOPE_CACHE, None if row is None else frozenset(row))
    scope: frozenset[int] | None = getattr(user, _SCOPE_CACHE)
    return scope


def in_scope(user: AnyUser, subaccount: int) -> bool:
    scope = scope_of(user)
    return scope is None or subaccount in scope


def visible(user: AnyUser, subaccounts: Iterable[int]) -> list[int]:
    """The subaccounts, among those given, that the user may see."""
    if role_of(user) < MIN_ROLE[Action.VIEW]:
        return []
    return [number for number in subaccounts if in_scope(user, number)]


def can(user: AnyUser, action: Action, subaccount: int | None = None) -> bool:
    """The rule. With a subaccount, the user must also be scoped to it."""
    if role_of(user) < MIN_ROLE[action]:
        return False
    return subaccount is None or in_scope(user, subaccount)


def in_scope_all(user: AnyUser, subaccounts: Iterable[int]) -> bool:
    """Every one of these subaccounts is in the user's scope (vacuously true for none)."""
    scope = scope_of(user)
    return scope is None or all(number in scope for number in subaccounts)


def may_approve(user: AnyUser, *, requester_id: int | None, action: Action, subaccounts: Iterable[int]) -> bool:
    """The four-eyes rule: never the requester; the role `action` needs; every subaccount it touches in scope."""
    if not user.is_authenticated or user.pk == requester_id:
        return False
    return can(user, Action.APPROVE) and can(user, action) and in_scope_all(user, subaccounts)


def may_change_credentials(user: AnyUser) -> bool:
    """Create, rotate and remove credentials, and map subaccounts to them: unscoped admins only.

    Rotating or removing a key, or moving a subaccount to another one, reaches every subaccount
    the key serves, inside the user's scope or not.
    """
    return can(user, Action.MANAGE_CREDENTIALS) and scope_of(user) is None


def credential_visible(user: AnyUser, serves: Iterable[int]) -> bool:
    """May `user` see a credential that serves these subaccounts? A scoped admin: only one that
    serves some of their subaccounts and none outside them."""
    if not can(user, Action.MANAGE_CREDENTIALS):
        return False
    scope = scope_of(user)
    served = set(serves)
    return scope is None or (bool(served) and served <= scope)


def allowed_actions(user: AnyUser) -> dict[str, bool]:
    """What the templates read to decide which buttons and forms to render."""
    return {action.value: can(user, action) for action in Action}


def require(action: Action) -> Callable[[View], View]:
    """View decorator: the user's role must allow `action`; otherwise 403, recorded in the audit log.

    Subaccount scope is checked where the subaccount is known (forms and selectors), with 404
    so that a user out of scope learns nothing about the group.
    """

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not can(request.user, action):
                return deny(request, action, kwargs)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def refuse_out_of_scope(request: HttpRequest, action: Action, subaccount: int | str | None) -> HttpResponse | None:
    """A 404, audited as denied, when `subaccount` is outside the user's scope; None when it is not.

    For a subaccount that arrives in a form rather than the URL: it answers exactly as an
    unconfigured one would. Anything that is not a whole number is left to the form, which says
    what is wrong with it.
    """
    raw = str(subaccount).strip() if subaccount is not None else ""
    # isascii: "²" and other scripts' digits pass isdigit() but not int(). A subaccount has at most
    # two digits, and int() refuses more than 4,300: longer numbers are left to the form too.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > MAX_DIGITS or in_scope(request.user, int(raw)):
        return None
    return deny(request, action, {"subaccount": int(raw)}, status=404)


def deny(
    request: HttpRequest, action: Action, detail: dict[str, Any] | None = None, *, status: int = 403
) -> HttpResponse:
    from ogpanel import audit
    from ogpanel.views.common import error_response

    audit.record_denial(request, action, detail or {})
    if status == 404:
        return error_response(request, "Not found.", status=404)
    return error_response(request, "You are not allowed to do this.", status=403)
