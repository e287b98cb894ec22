"""The role × action × {in scope, out of scope} matrix over every page, partial and POST.

Rows are personas (anonymous, a signed-in user with no role, viewer, ops and admin, each also
limited to subaccount 1). Columns are the panel's endpoints, each aimed at a group (or audit
event) on subaccount 1 — in scope for the scoped personas — or on subaccount 2, outside it.
What each case must answer is derived from `ALLOWED` below, written out from the issue rather
than read from `permissions.MIN_ROLE`, so a change to the table shows up here:

- allowed: the page answers 200, a plain POST redirects (302), the change reached the simulator
  and its audit result event exists;
- the role may not: 403, no upstream call, exactly one new audit event — "denied", naming the action;
- out of scope: 404 that does not name the group, no upstream call, one "denied" event;
- anonymous: a redirect to the login page (HX-Redirect for htmx), no upstream call, no event.

The buttons follow the same rule: a link, or a subaccount offered in a form, is on the page
exactly when the persona may use it. Also here: refused htmx requests (a compact message for
#flash), and the lists and exports a scoped persona gets (nothing from subaccount 2).

A subaccount posted in a form (create, kill switch, mapping) is held to the same scope rule as
one in the URL: out of scope it answers 404 exactly as an unconfigured one.

Credentials are aimed at the credential that serves the target subaccount: subaccount 1 has one
of its own, 0, 2 and 3 share another. A scoped admin sees and tests only the first (404 for the
shared one, exactly as for a credential that does not exist) and changes neither: creating,
rotating and removing credentials and the mapping are for unscoped admins (403 in scope).

Every request goes over real HTTP to the simulator; `sim.requests` is cleared just before the
request under test, so an empty log proves the refusal made no upstream call.
"""

import csv
import io
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpResponseBase
from django.test import Client, override_settings
from django.urls import resolve, reverse

from ogpanel import audit
from ogpanel.models import AuditEvent, Credential, Subaccount
from ogpanel.permissions import Action
from ogpanel.simulator import ExchangeError
from tests.panel_fixtures import ENCRYPTION_KEYS, make_credential, make_user
from tests.sweeps import run_sweeps

HTMX = {"HX-Request": "true"}
IN_SCOPE, OUT_OF_SCOPE = 1, 2
SCOPES = {"in_scope": IN_SCOPE, "out_of_scope": OUT_OF_SCOPE}

VIEWER_ACTIONS = {Action.VIEW, Action.VIEW_AUDIT}
OPS_ACTIONS = VIEWER_ACTIONS | {Action.RESET, Action.TRIGGER, Action.KILL_SWITCH}
ALLOWED: dict[str, set[Action]] = {  # the words: viewer, ops (+ reset, trigger, kill switch), admin (all)
    "nobody": set(),
    "viewer": VIEWER_ACTIONS,
    "scoped_viewer": VIEWER_ACTIONS,
    "operator": OPS_ACTIONS,
    "scoped_operator": OPS_ACTIONS,
    "admin": set(Action),
    "scoped_admin": set(Action),
}
SCOPED = {"scoped_viewer", "scoped_operator", "scoped_admin"}
# The personas tests/panel_fixtures.py already defines; the others are made here the same way.
PERSONA_FIXTURES = {
    "viewer": "viewer",
    "operator": "operator",
    "admin": "administrator",
    "scoped_operator": "scoped_operator",
}
MADE_PERSONAS = {"scoped_viewer": ("viewer", [IN_SCOPE]), "scoped_admin": ("admin", [IN_SCOPE])}
# Changed by unscoped admins only: a credential (and the mapping) reaches every subaccount it serves.
UNSCOPED_ONLY = {
    "credential_create_form",
    "credential_create",
    "credential_rotate_form",
    "credential_rotate",
    "credential_remove_form",
    "credential_remove",
    "subaccounts_page",
    "subaccounts_assign",
}


def signed_in(request: pytest.FixtureRequest, persona: str) -> tuple[Client, User | None]:
    """The module's test client, signed in as `persona` (or signed out, for "anonymous")."""
    client = request.getfixturevalue("browser")
    if persona == "anonymous":
        return client, None
    if persona in PERSONA_FIXTURES:
        user = request.getfixturevalue(PERSONA_FIXTURES[persona])
    elif persona == "nobody":  # signed in, in no role group
        user = User.objects.create_user("nobody", password="nobody-password-1")
    else:
        role, scope = MADE_PERSONAS[persona]
        user = make_user(persona, role, subaccounts=scope)
    client.force_login(user)
    return client, user


def exists(sim, group_id: str) -> bool:
    try:
        sim.group(group_id)
    except ExchangeError as exc:
        assert exc.status == 404
        return False
    return True


@dataclass
class World:
    """What one case acts on: an active and a triggered group on the target subaccount, an audit event
    about the active one, the credentials; and who acts (None: anonymous)."""

    sim: object
    number: int  # the target subaccount
    credential: Credential  # used by subaccounts 0, 2 and 3
    own: Credential  # used by subaccount 1 alone
    spare: Credential  # used by no subaccount
    rsa_pem: bytes
    user: User | None = None
    active: str = ""
    tripped: str = ""
    event_seq: int = 0

    def __post_init__(self) -> None:
        self.active = self.sim.create_group(self.number, 10)
        self.tripped = self.sim.create_group(self.number, 1)
        self.sim.fill(self.sim.place_order(self.number, self.tripped, count=2), 2)
        assert self.sim.group(self.tripped)["triggered"] is True
        self.event_seq = audit.append(
            audit.Actor.system("exchange"),
            action="trigger",
            outcome=AuditEvent.Outcome.SUCCEEDED,
            subaccount=self.number,
            order_group_id=self.active,
        ).seq

    @property
    def serving(self) -> Credential:
        """The credential the target subaccount uses."""
        return self.own if self.number == IN_SCOPE else self.credential

    @property
    def password(self) -> str:
        """make_user's password: the `reauth_password` the kill switch and credential changes ask for."""
        return f"{self.user.username}-password-1" if self.user else ""


@dataclass(frozen=True)
class Endpoint:
    id: str
    url_name: str
    method: str
    action: Action  # what the role must allow
    # Where the subaccount comes from: "url" (out of scope → 404), "form" (posted), "credential" (the one
    # serving it is in the URL), or "" (not subaccount-bound).
    target: str = ""
    args: Callable[[World], list] = lambda world: []
    data: Callable[[World], dict] = lambda world: {}
    group: Callable[[World], str] = lambda world: ""  # the group named in the request: a 404 must not repeat it
    done: Callable[[World, HttpResponseBase], bool] | None = None  # an allowed request had its effect
    ok_status: int | None = None  # default: 200 for GET, 302 for a plain POST
    audited_as: str = ""  # the action of the audit result event an allowed request leaves

    def url(self, world: World) -> str:
        return reverse(self.url_name, args=self.args(world))

    @property
    def expected_ok_status(self) -> int:
        return self.ok_status or (200 if self.method == "GET" else 302)


def active_args(world: World) -> list:
    return [world.number, world.active]


def tripped_args(world: World) -> list:
    return [world.number, world.tripped]


def created_on_target(world: World, response) -> bool:
    """The redirect names the new group; the simulator has it on the target subaccount."""
    match = resolve(urlsplit(response["Location"]).path)
    return match.url_name == "group_detail" and world.sim.group(match.kwargs["group_id"])["subaccount"] == world.number


def listed_target(world: World, response) -> bool:
    return b"Connected:" in response.content and [r.query.get("subaccount") for r in world.sim.requests] == [
        str(world.number)
    ]


def key_pem(world: World) -> str:
    return world.rsa_pem.decode()


def serving_args(world: World) -> list:
    return [world.serving.pk]


def serves(credential: Credential) -> str:
    return ",".join(str(n) for n in credential.subaccounts.values_list("number", flat=True))


def desk_state() -> list[tuple]:
    """Every credential (its key) and every mapping: a refused request changes none of them."""
    credentials = Credential.objects.order_by("pk").values_list("pk", "label", "key_id", "private_key_encrypted")
    return [*credentials, *Subaccount.objects.order_by("number").values_list("number", "credential_id", "label")]


ENDPOINTS = [
    # Order groups.
    Endpoint("dashboard", "dashboard", "GET", Action.VIEW),
    Endpoint("group_detail", "group_detail", "GET", Action.VIEW, "url", active_args, group=lambda w: w.active),
    Endpoint("trigger_form", "group_trigger", "GET", Action.TRIGGER, "url", active_args, group=lambda w: w.active),
    Endpoint(
        "trigger",
        "group_trigger",
        "POST",
        Action.TRIGGER,
        "url",
        active_args,
        data=lambda w: {"reason": "matrix"},
        group=lambda w: w.active,
        done=lambda w, r: w.sim.group(w.active)["triggered"] is True,
        audited_as="trigger",
    ),
    Endpoint("reset_form", "group_reset", "GET", Action.RESET, "url", tripped_args, group=lambda w: w.tripped),
    Endpoint(
        "reset",
        "group_reset",
        "POST",
        Action.RESET,
        "url",
        tripped_args,
        data=lambda w: {"reason": "matrix"},
        group=lambda w: w.tripped,
        done=lambda w, r: w.sim.group(w.tripped)["triggered"] is False,
        audited_as="reset",
    ),
    Endpoint("delete_form", "group_delete", "GET", Action.DELETE, "url", active_args, group=lambda w: w.active),
    Endpoint(
        "delete",
        "group_delete",
        "POST",
        Action.DELETE,
        "url",
        active_args,
        data=lambda w: {"reason": "matrix"},
        group=lambda w: w.active,
        done=lambda w, r: not exists(w.sim, w.active),
        audited_as="delete",
    ),
    Endpoint("limit_form", "group_limit", "GET", Action.UPDATE_LIMIT, "url", active_args, group=lambda w: w.active),
    Endpoint(
        "limit",
        "group_limit",
        "POST",
        Action.UPDATE_LIMIT,
        "url",
        active_args,
        data=lambda w: {"contracts_limit": "7", "reason": "matrix"},
        group=lambda w: w.active,
        done=lambda w, r: w.sim.group(w.active)["contracts_limit"] == 7,
        audited_as="update_limit",
    ),
    Endpoint("create_form", "group_create", "GET", Action.CREATE),
    Endpoint(
        "create",
        "group_create",
        "POST",
        Action.CREATE,
        "form",
        data=lambda w: {"subaccount": str(w.number), "contracts_limit": "5", "exchange_index": "0"},
        done=created_on_target,
        audited_as="create",
    ),
    Endpoint("kill_switch_page", "kill_switch", "GET", Action.KILL_SWITCH),
    Endpoint(
        "kill_switch",
        "kill_switch",
        "POST",
        Action.KILL_SWITCH,
        "form",
        data=lambda w: {"operation": "trigger_one", "subaccount": str(w.number), "reason": "matrix"},
        # The answer comes at once; the sweep runs here, as the panel's own thread would.
        done=lambda w, r: bool(run_sweeps()) and w.sim.group(w.active)["triggered"] is True,
        audited_as="kill_switch_trigger",
    ),
    # Audit log.
    Endpoint("audit_log", "audit_log", "GET", Action.VIEW_AUDIT),
    Endpoint(
        "audit_event", "audit_event", "GET", Action.VIEW_AUDIT, "url", lambda w: [w.event_seq], group=lambda w: w.active
    ),
    Endpoint(
        "export_csv",
        "audit_export",
        "GET",
        Action.EXPORT_AUDIT,
        args=lambda w: ["csv"],
        audited_as="export_audit",
        done=lambda w, r: r["Content-Disposition"].endswith('.csv"'),
    ),
    Endpoint(
        "export_jsonl",
        "audit_export",
        "GET",
        Action.EXPORT_AUDIT,
        args=lambda w: ["jsonl"],
        audited_as="export_audit",
        done=lambda w, r: r["Content-Disposition"].endswith('.jsonl"'),
    ),
    # Credentials and the subaccount mapping.
    Endpoint("credentials", "credentials", "GET", Action.MANAGE_CREDENTIALS),
    Endpoint("credential_create_form", "credential_create", "GET", Action.MANAGE_CREDENTIALS),
    Endpoint(
        "credential_create",
        "credential_create",
        "POST",
        Action.MANAGE_CREDENTIALS,
        data=lambda w: {
            "label": "matrix new",
            "environment": Credential.Environment.CUSTOM,
            "custom_base_url": w.sim.base_url,
            "key_id": "new-key",
            "private_key": key_pem(w),
            "reauth_password": w.password,
        },
        done=lambda w, r: Credential.objects.filter(label="matrix new").exists(),
        audited_as="credential_create",
    ),
    Endpoint("credential_detail", "credential_detail", "GET", Action.MANAGE_CREDENTIALS, "credential", serving_args),
    Endpoint(
        "credential_rotate_form", "credential_rotate", "GET", Action.MANAGE_CREDENTIALS, "credential", serving_args
    ),
    Endpoint(
        "credential_rotate",
        "credential_rotate",
        "POST",
        Action.MANAGE_CREDENTIALS,
        "credential",
        serving_args,
        data=lambda w: {"key_id": "rotated-key", "private_key": key_pem(w), "reauth_password": w.password},
        done=lambda w, r: Credential.objects.get(pk=w.serving.pk).key_id == "rotated-key",
        audited_as="credential_rotate",
    ),
    Endpoint(
        "credential_remove_form", "credential_remove", "GET", Action.MANAGE_CREDENTIALS, "credential", serving_args
    ),
    Endpoint(  # the case: removed with its subaccounts unmapped, they leave the dashboard and the kill switch
        "credential_remove",
        "credential_remove",
        "POST",
        Action.MANAGE_CREDENTIALS,
        "credential",
        serving_args,
        data=lambda w: {"unmap": "on", "seen": serves(w.serving), "reauth_password": w.password},
        done=lambda w, r: not Credential.objects.filter(pk=w.serving.pk).exists(),
        audited_as="credential_remove",
    ),
    Endpoint(
        "credential_test",
        "credential_test",
        "POST",
        Action.MANAGE_CREDENTIALS,
        "credential",
        serving_args,
        data=lambda w: {"subaccount": str(w.number)},
        done=listed_target,
        ok_status=200,
        audited_as="credential_test",
    ),
    Endpoint("subaccounts_page", "subaccounts", "GET", Action.MANAGE_CREDENTIALS),
    Endpoint(
        "subaccounts_assign",
        "subaccounts",
        "POST",
        Action.MANAGE_CREDENTIALS,
        "form",
        data=lambda w: {
            "op": "assign",
            "number": str(w.number),
            "credential": str(w.credential.pk),
            "label": "renamed",
            "reauth_password": w.password,
        },
        done=lambda w, r: Subaccount.objects.get(number=w.number).label == "renamed",
        audited_as="subaccount_assign",
    ),
]


def expected(persona: str, endpoint: Endpoint, number: int) -> str:
    if persona == "anonymous":
        return "login"
    if endpoint.action not in ALLOWED[persona]:
        return "forbidden"
    if endpoint.target and persona in SCOPED and number != IN_SCOPE:
        return "not_found"
    if endpoint.id in UNSCOPED_ONLY and persona in SCOPED:
        return "forbidden"
    return "ok"


def matrix_cases():
    for persona in ALLOWED:
        for endpoint in ENDPOINTS:
            for scope, number in SCOPES.items() if endpoint.target else [("", IN_SCOPE)]:
                name = "-".join(part for part in (persona, endpoint.id, scope) if part)
                yield pytest.param(persona, endpoint, number, id=name)


@pytest.fixture(scope="module")
def desk(django_db_setup, django_db_blocker, simulator, rsa_pem):
    """The simulator credentials (one for subaccounts 0, 2 and 3, one for 1 alone) and a spare one that
    serves no subaccount: made once for the module.

    Each credential costs two RSA key loads (~40 ms each: its fingerprint, then its cached
    client); made per test they were most of this module's run time. They are committed
    outside the tests' transactions, so a test that rotates or removes one is rolled back as
    usual, and they are deleted when the module is done.
    """
    with django_db_blocker.unblock(), override_settings(OGPANEL_ENCRYPTION_KEYS=ENCRYPTION_KEYS):
        credential = make_credential(simulator.base_url, rsa_pem)
        own = make_credential(simulator.base_url, rsa_pem, label="desk 1 key")
        spare = make_credential(simulator.base_url, rsa_pem, label="spare", key_id="spare-key")
        for n in range(4):
            Subaccount.objects.create(number=n, credential=own if n == IN_SCOPE else credential, label=f"desk {n}")
    yield credential, own, spare
    with django_db_blocker.unblock():
        Subaccount.objects.filter(credential__in=[credential, own]).delete()
        Credential.objects.filter(pk__in=[credential.pk, own.pk, spare.pk]).delete()


@pytest.fixture(scope="module")
def browser() -> Client:
    """One test client for the module: each new one loads the middleware again (WhiteNoise scans the static files)."""
    return Client()


@pytest.fixture(autouse=True)
def _signed_out(browser) -> None:
    browser.cookies.clear()


@pytest.fixture
def world(db, sim, desk, rsa_pem) -> Callable[..., World]:
    credential, own, spare = desk
    return lambda number, user=None: World(sim, number, credential, own, spare, rsa_pem, user)


def send(client: Client, endpoint: Endpoint, world: World, headers: dict | None = None):
    world.sim.clear_requests()
    if endpoint.method == "GET":
        return client.get(endpoint.url(world), headers=headers or {})
    return client.post(endpoint.url(world), endpoint.data(world), headers=headers or {})


def new_events(before: int) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(seq__gt=before).order_by("seq"))


def last_seq() -> int:
    return AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def assert_untouched(endpoint: Endpoint, world: World) -> None:
    assert world.sim.requests == [], "a refused request called the exchange"
    if endpoint.done is not None and endpoint.method == "POST":
        assert world.sim.group(world.active)["triggered"] is False and exists(world.sim, world.active)
        assert world.sim.group(world.tripped)["triggered"] is True


@pytest.mark.parametrize(("persona", "endpoint", "number"), list(matrix_cases()))
def test_each_persona_gets_exactly_what_its_role_and_scope_allow(request, world, persona, endpoint, number):
    client, user = signed_in(request, persona)
    case = world(number, user)
    outcome = expected(persona, endpoint, number)
    before = last_seq()
    desk_before = desk_state()

    response = send(client, endpoint, case)

    if outcome == "login":
        assert response.status_code == 302
        assert response["Location"].startswith(reverse(settings.LOGIN_URL) + "?next=")
        assert case.sim.requests == [] and new_events(before) == []
        return
    if outcome == "ok":
        assert response.status_code == endpoint.expected_ok_status, response.content[:500]
        if endpoint.method == "GET" and endpoint.group(case):
            assert endpoint.group(case).encode() in response.content
        if endpoint.done is not None:
            assert endpoint.done(case, response)
        if endpoint.audited_as:
            assert AuditEvent.objects.filter(
                seq__gt=before,
                action=endpoint.audited_as,
                actor_username=user.username,
                outcome=AuditEvent.Outcome.SUCCEEDED,
            ).exists()
        return
    # Refused: nothing sent upstream or changed; one "denied" event only; 403 for the role, 404 outside the scope.
    assert_untouched(endpoint, case)
    assert desk_state() == desk_before
    events = new_events(before)
    assert [(e.action, e.outcome, e.actor_username) for e in events] == [
        (endpoint.action.value, AuditEvent.Outcome.DENIED, user.username)
    ]
    assert response.status_code == (403 if outcome == "forbidden" else 404), response.content[:500]
    if endpoint.target == "url" and endpoint.url_name != "audit_event":
        assert events[0].subaccount == number and events[0].order_group_id == endpoint.group(case)
    if endpoint.target == "credential" and outcome == "not_found":
        assert events[0].params == {"credential": str(case.serving.pk)}
    if outcome == "not_found":
        assert_reveals_nothing(client, endpoint, case, response)


ALERT = re.compile(r'<p class="msg msg-error" role="alert">(.*?)</p>', re.S)


def assert_reveals_nothing(client: Client, endpoint: Endpoint, world: World, response) -> None:
    """The answer names neither the group nor the request, and is the one a group that does not exist gets."""
    group = endpoint.group(world)
    url = endpoint.url(world)
    if endpoint.target in ("url", "credential"):  # a form's address is in the page's navigation anyway
        assert url.encode() not in response.content
    if group:
        assert group.encode() not in response.content
    if endpoint.target == "form":
        # A configured subaccount outside the scope answers like one that is not configured at all.
        data = {key: "30" if value == str(world.number) else value for key, value in endpoint.data(world).items()}
        twin = client.post(url, data)
        assert (twin.status_code, ALERT.findall(twin.content.decode())) == (
            response.status_code,
            ALERT.findall(response.content.decode()),
        )
        return
    if endpoint.target == "credential":
        missing = reverse(endpoint.url_name, args=[10**6])
    elif endpoint.target == "url":
        missing = url.replace(group, str(uuid.uuid4())) if group in url else reverse(endpoint.url_name, args=[10**6])
    else:
        return
    twin = client.get(missing) if endpoint.method == "GET" else client.post(missing, endpoint.data(world))
    assert twin.status_code == 404
    assert ALERT.findall(response.content.decode()) == ALERT.findall(twin.content.decode()) == ["Not found."]
    assert world.sim.requests == []


# --- htmx -----------------------------------------------------------------------------------------

BY_ID = {endpoint.id: endpoint for endpoint in ENDPOINTS}


@pytest.mark.parametrize(
    ("persona", "endpoint_id", "number", "status", "message"),
    [
        pytest.param("viewer", "trigger", IN_SCOPE, 403, "You are not allowed to do this.", id="viewer-trigger"),
        pytest.param("operator", "delete", IN_SCOPE, 403, "You are not allowed to do this.", id="operator-delete"),
        pytest.param(
            "operator",
            "credential_create",
            IN_SCOPE,
            403,
            "You are not allowed to do this.",
            id="operator-credential_create",
        ),
        pytest.param(
            "scoped_operator", "trigger", OUT_OF_SCOPE, 404, "Not found.", id="scoped_operator-trigger-out_of_scope"
        ),
    ],
)
def test_a_refused_htmx_post_gets_a_compact_message_in_the_flash_area(
    request,
    world,
    persona,
    endpoint_id,
    number,
    status,
    message,
):
    client, _ = signed_in(request, persona)
    case = world(number)
    endpoint = BY_ID[endpoint_id]
    before = last_seq()

    response = send(client, endpoint, case, headers=HTMX)

    assert response.status_code == status
    body = response.content.decode()
    assert message in body and "<html" not in body and "<nav" not in body
    assert response["HX-Retarget"] == "#flash"
    assert case.sim.requests == []
    assert [(e.action, e.outcome) for e in new_events(before)] == [(endpoint.action.value, AuditEvent.Outcome.DENIED)]


@pytest.mark.parametrize("endpoint_id", ["dashboard", "trigger", "kill_switch", "credential_test"])
def test_an_anonymous_htmx_request_is_sent_to_the_login_page_as_a_whole(request, world, endpoint_id):
    case = world(IN_SCOPE)
    before = last_seq()

    response = send(signed_in(request, "anonymous")[0], BY_ID[endpoint_id], case, headers=HTMX)

    assert response.status_code == 200 and response["HX-Redirect"].startswith(reverse("login") + "?next=")
    assert response.content == b""
    assert case.sim.requests == [] and new_events(before) == []


STATUS = {"ok": 200, "forbidden": 403, "not_found": 404}


# --- buttons ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", list(SCOPES))
@pytest.mark.parametrize("persona", list(ALLOWED))
def test_buttons_are_shown_exactly_when_the_server_allows_them(request, world, persona, scope):
    """Each link or form that leads to an endpoint is on the page exactly when the matrix says "ok" for it.

    Pages: the dashboard (row buttons, "New order group", the nav), both group pages, the audit
    log (export), and the create, kill-switch, credential-test and mapping forms (which
    subaccounts they offer).
    """
    client, user = signed_in(request, persona)
    n = SCOPES[scope]
    case = world(n, user)
    pages = {  # page: (its address, the endpoint that serves it)
        "dashboard": (reverse("dashboard"), BY_ID["dashboard"]),
        "active group": (reverse("group_detail", args=[n, case.active]), BY_ID["group_detail"]),
        "tripped group": (reverse("group_detail", args=[n, case.tripped]), BY_ID["group_detail"]),
        "audit log": (reverse("audit_log"), BY_ID["audit_log"]),
    }
    html = {}
    for page, (url, endpoint) in pages.items():
        response = client.get(url)
        assert response.status_code == STATUS[expected(persona, endpoint, n)], page
        html[page] = response.content.decode()
    buttons = [  # (page, what the page links to, the endpoint it leads to)
        ("dashboard", reverse("group_trigger", args=[n, case.active]), BY_ID["trigger"]),
        ("dashboard", reverse("group_reset", args=[n, case.tripped]), BY_ID["reset"]),
        ("dashboard", f'href="{reverse("group_detail", args=[n, case.active])}"', BY_ID["group_detail"]),
        ("dashboard", f'href="{reverse("group_create")}"', BY_ID["create_form"]),
        ("dashboard", f'href="{reverse("kill_switch")}"', BY_ID["kill_switch_page"]),
        ("dashboard", f'href="{reverse("audit_log")}"', BY_ID["audit_log"]),
        ("dashboard", f'href="{reverse("credentials")}"', BY_ID["credentials"]),
        ("active group", reverse("group_trigger", args=[n, case.active]), BY_ID["trigger"]),
        ("active group", reverse("group_limit", args=[n, case.active]), BY_ID["limit"]),
        ("active group", reverse("group_delete", args=[n, case.active]), BY_ID["delete"]),
        ("tripped group", reverse("group_reset", args=[n, case.tripped]), BY_ID["reset"]),
        ("tripped group", reverse("group_limit", args=[n, case.tripped]), BY_ID["limit"]),
        ("tripped group", reverse("group_delete", args=[n, case.tripped]), BY_ID["delete"]),
        ("audit log", reverse("audit_export", args=["csv"]), BY_ID["export_csv"]),
        ("audit log", reverse("audit_export", args=["jsonl"]), BY_ID["export_jsonl"]),
    ]
    # A subaccount is offered by the create and kill-switch forms exactly when acting on it is allowed.
    for form_name, endpoint in (("group_create", BY_ID["create"]), ("kill_switch", BY_ID["kill_switch"])):
        response = client.get(reverse(form_name))
        html[form_name] = response.content.decode() if response.status_code == 200 else ""
        buttons.append((form_name, f'<option value="{n}"', endpoint))
    # So do the credential test form and the subaccount mapping (one row per subaccount); the
    # credential pages link to the changes exactly when they are allowed.
    serving = case.serving.pk
    for page, url, offer, endpoint in (
        ("credential", reverse("credential_detail", args=[serving]), f'<option value="{n}"', "credential_test"),
        (
            "credential",
            reverse("credential_detail", args=[serving]),
            reverse("credential_rotate", args=[serving]),
            "credential_rotate_form",
        ),
        (
            "credential",
            reverse("credential_detail", args=[serving]),
            reverse("credential_remove", args=[serving]),
            "credential_remove_form",
        ),
        ("credentials", reverse("credentials"), f'href="{reverse("credential_create")}"', "credential_create_form"),
        ("credentials", reverse("credentials"), f'href="{reverse("subaccounts")}"', "subaccounts_page"),
        ("mapping", reverse("subaccounts"), f'id="sub-{n}"', "subaccounts_assign"),
    ):
        response = client.get(url)
        html[page] = response.content.decode() if response.status_code == 200 else ""
        buttons.append((page, offer, BY_ID[endpoint]))

    wrong = [
        f"{page}: {'missing' if should else 'shown'} {link}"
        for page, link, endpoint in buttons
        for should in [expected(persona, endpoint, n) == "ok"]
        if (link in html[page]) != should
    ]
    assert wrong == []


# --- pages every persona may open --------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["anonymous", *ALLOWED])
def test_sign_in_pages_and_the_health_check_answer_everyone(request, world, persona):
    client, user = signed_in(request, persona)
    case = world(IN_SCOPE)
    case.sim.clear_requests()

    assert client.get(reverse("healthz")).status_code == 200
    login = client.get(reverse("login"))
    assert login.status_code == (200 if user is None else 302)
    if user is not None:
        assert client.get(reverse("reauth")).status_code == 200  # force_login opens no re-authentication window
    assert case.sim.requests == []


# --- what lists and exports hold --------------------------------------------------------------------


@pytest.mark.parametrize("persona", [p for p in ALLOWED if Action.VIEW in ALLOWED[p]])
def test_lists_and_exports_hold_only_what_is_in_scope(request, world, sim, persona):
    """The dashboard, the audit log and its exports: subaccount 2 shows for unscoped personas only."""
    client, _user = signed_in(request, persona)
    mine, theirs = world(IN_SCOPE), world(OUT_OF_SCOPE)
    sees_theirs = persona not in SCOPED
    sim.clear_requests()

    dashboard = client.get(reverse("dashboard")).content.decode()
    assert mine.active in dashboard and (theirs.active in dashboard) is sees_theirs
    listed = {r.query.get("subaccount") for r in sim.requests}
    assert listed == ({"0", "1", "2", "3"} if sees_theirs else {"1"})

    log = client.get(reverse("audit_log")).content.decode()
    assert reverse("audit_event", args=[mine.event_seq]) in log
    assert (reverse("audit_event", args=[theirs.event_seq]) in log) is sees_theirs

    if Action.EXPORT_AUDIT not in ALLOWED[persona]:
        return
    exported = client.get(reverse("audit_export", args=["csv"]))
    rows = list(csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert {row["subaccount"] for row in rows if row["subaccount"]} == ({"1", "2"} if sees_theirs else {"1"})
    exported = client.get(reverse("audit_export", args=["jsonl"]))
    lines = [json.loads(line) for line in b"".join(exported.streaming_content).decode().splitlines()]
    assert {line["subaccount"] for line in lines if line["subaccount"] is not None} == ({1, 2} if sees_theirs else {1})


@pytest.mark.parametrize("persona", ["admin", "scoped_admin"])
def test_the_credential_list_holds_only_the_credentials_serving_the_scope_alone(request, world, persona):
    """An unscoped admin sees every credential; one limited to subaccount 1 only the one serving it alone:
    not the one it shares with other desks, not one serving nobody."""
    client, _user = signed_in(request, persona)
    case = world(IN_SCOPE)

    page = client.get(reverse("credentials")).content.decode()

    shown = {credential.label for credential in (case.own, case.credential, case.spare) if credential.label in page}
    assert shown == ({"desk 1 key"} if persona == "scoped_admin" else {"desk 1 key", "sim", "spare"})
