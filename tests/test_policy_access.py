"""The role × action × scope matrix, extended to the Policy and Requests pages and their POSTs (issue 18).

Written the way tests/test_access_matrix.py is, so the two can be folded together: the same
personas (anonymous, no role, viewer, ops, admin, each also limited to subaccount 1), each
endpoint aimed at subaccount 1 (in scope for the scoped personas) or 2 (outside it), and what
each case must answer derived from ALLOWED, written out from the issue:

- allowed: 200 for a page, 302 for a plain POST, the change made (and its audit result event);
- the role may not: 403, no upstream call, exactly one new "denied" event naming the action;
- out of scope: 404 naming neither the group nor the request, no upstream call, one "denied" event;
- anonymous: a redirect to the login page, no upstream call, no event.

Two rules of the issue's own: the default policy touches every subaccount, so only someone
with all of them in scope may change it (a scoped admin is refused, 403); and only its requester
may withdraw a request (everyone else, 403). Requests are filed by a seventh person, "reggie".
"""

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import reverse

from ogpanel import approvals, policy
from ogpanel.audit import Actor
from ogpanel.models import ApprovalRequest, AuditEvent, Subaccount
from ogpanel.permissions import Action
from tests.panel_fixtures import ENCRYPTION_KEYS, make_credential, make_user
from tests.policy_fixtures import set_policy

IN_SCOPE, OUT_OF_SCOPE = 1, 2
SCOPES = {"in_scope": IN_SCOPE, "out_of_scope": OUT_OF_SCOPE}
VIEWER_ACTIONS = {Action.VIEW, Action.VIEW_AUDIT, Action.VIEW_POLICY}
OPS_ACTIONS = VIEWER_ACTIONS | {Action.RESET, Action.TRIGGER, Action.KILL_SWITCH, Action.APPROVE}
ALLOWED: dict[str, set[Action]] = {  # viewers see the policy; ops also see and decide requests; admins all
    "nobody": set(),
    "viewer": VIEWER_ACTIONS,
    "scoped_viewer": VIEWER_ACTIONS,
    "operator": OPS_ACTIONS,
    "scoped_operator": OPS_ACTIONS,
    "admin": set(Action),
    "scoped_admin": set(Action),
}
SCOPED = {"scoped_viewer", "scoped_operator", "scoped_admin"}
PERSONAS = {
    "nobody": (None, None),
    "viewer": ("viewer", None),
    "scoped_viewer": ("viewer", [IN_SCOPE]),
    "operator": ("ops", None),
    "scoped_operator": ("ops", [IN_SCOPE]),
    "admin": ("admin", None),
    "scoped_admin": ("admin", [IN_SCOPE]),
}


@dataclass
class World:
    """A tripped group on the target subaccount and reggie's pending request to reset it."""

    sim: object
    number: int
    user: User | None = None
    group: str = ""
    request: ApprovalRequest | None = None

    def __post_init__(self) -> None:
        self.group = self.sim.create_group(self.number, 1)
        self.sim.fill(self.sim.place_order(self.number, self.group, count=2), 2)
        reggie = User.objects.get(username="reggie")
        self.request = approvals.request_file(
            actor=Actor(user_id=reggie.pk, username="reggie", role="ops"),
            user=reggie,
            kind="reset",
            reason="matrix",
            subaccount=self.number,
            order_group_id=self.group,
        )


@dataclass(frozen=True)
class Endpoint:
    id: str
    url_name: str
    method: str
    action: Action
    target: str = ""  # "url": the subaccount is in the address (out of scope: 404); "" not bound to one
    args: Callable[[World], list] = lambda world: []
    data: Callable[[World], dict] = lambda world: {}
    done: Callable[[World], bool] | None = None
    audited_as: str = ""
    whole_desk: bool = False  # only someone with every subaccount in scope may (the default policy)
    requester_only: bool = False  # only the request's requester may (withdrawing it)

    def url(self, world: World) -> str:
        return reverse(self.url_name, args=self.args(world))


def tightened(world: World, number: int | None) -> bool:
    return policy.rules_for(number).ceiling == 50


def policy_form(world: World) -> dict:
    rules = {**policy.SUGGESTED.as_dict(), "contracts_limit_ceiling": "50", "reason": "matrix"}
    return {**rules, "base_version": "0"}


def request_args(world: World) -> list:
    return [world.request.pk]


ENDPOINTS = [
    Endpoint("policy_page", "policy", "GET", Action.VIEW_POLICY),
    Endpoint("policy_export", "policy_export", "GET", Action.VIEW_POLICY),
    Endpoint("policy_edit_form", "policy_edit", "GET", Action.MANAGE_POLICY, "url", lambda w: [w.number]),
    Endpoint(
        "policy_edit",
        "policy_edit",
        "POST",
        Action.MANAGE_POLICY,
        "url",
        lambda w: [w.number],
        data=policy_form,
        done=lambda w: tightened(w, w.number),
        audited_as="policy_change",
    ),
    Endpoint("policy_default_form", "policy_edit_default", "GET", Action.MANAGE_POLICY, whole_desk=True),
    Endpoint(
        "policy_default",
        "policy_edit_default",
        "POST",
        Action.MANAGE_POLICY,
        data=lambda w: {**policy_form(w), "base_version": "1"},
        done=lambda w: tightened(w, None),
        audited_as="policy_change",
        whole_desk=True,
    ),
    Endpoint("requests", "requests", "GET", Action.APPROVE),
    Endpoint("request_detail", "request_detail", "GET", Action.APPROVE, "url", request_args),
    Endpoint(
        "request_approve",
        "request_approve",
        "POST",
        Action.APPROVE,
        "url",
        request_args,
        done=lambda w: w.sim.group(w.group)["triggered"] is False,
        audited_as="reset",
    ),
    Endpoint(
        "request_reject",
        "request_reject",
        "POST",
        Action.APPROVE,
        "url",
        request_args,
        done=lambda w: ApprovalRequest.objects.get(pk=w.request.pk).status == "rejected",
        audited_as="request_rejected",
    ),
    Endpoint("request_cancel", "request_cancel", "POST", Action.APPROVE, "url", request_args, requester_only=True),
]
BY_ID = {endpoint.id: endpoint for endpoint in ENDPOINTS}


def expected(persona: str, endpoint: Endpoint, number: int) -> str:
    if persona == "anonymous":
        return "login"
    if endpoint.action not in ALLOWED[persona]:
        return "forbidden"
    if endpoint.target and persona in SCOPED and number != IN_SCOPE:
        return "not_found"
    if (endpoint.whole_desk and persona in SCOPED) or endpoint.requester_only:
        return "forbidden"
    return "ok"


def matrix_cases():
    for persona in ["anonymous", *ALLOWED]:
        for endpoint in ENDPOINTS:
            for scope, number in SCOPES.items() if endpoint.target else [("", IN_SCOPE)]:
                name = "-".join(part for part in (persona, endpoint.id, scope) if part)
                yield pytest.param(persona, endpoint, number, id=name)


@pytest.fixture(scope="module")
def desk(django_db_setup, django_db_blocker, simulator, rsa_pem):
    """Subaccounts 0-3 on the simulator's credential, made once for the module (each key load costs ~40 ms)."""
    with django_db_blocker.unblock(), override_settings(OGPANEL_ENCRYPTION_KEYS=ENCRYPTION_KEYS):
        credential = make_credential(simulator.base_url, rsa_pem)
        for n in range(4):
            Subaccount.objects.create(number=n, credential=credential, label=f"desk {n}")
    yield credential
    with django_db_blocker.unblock():
        Subaccount.objects.filter(credential=credential).delete()
        credential.delete()


@pytest.fixture(scope="module")
def client() -> Client:
    return Client()


@pytest.fixture
def world(db, sim, desk, client, settings) -> Callable[..., World]:
    settings.OGPANEL_LIST_CACHE_SECONDS = 0
    client.cookies.clear()
    make_user("reggie", "ops")
    set_policy()  # the suggested default: every four-eyes action named
    return lambda number, user=None: World(sim, number, user)


def signed_in(client: Client, persona: str) -> User | None:
    if persona == "anonymous":
        return None
    role, scope = PERSONAS[persona]
    user = make_user(persona, role, subaccounts=scope) if role else User.objects.create_user(persona, password="x")
    client.force_login(user)
    return user


def last_seq() -> int:
    return AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


@pytest.mark.parametrize(("persona", "endpoint", "number"), list(matrix_cases()))
def test_each_persona_gets_exactly_what_its_role_and_scope_allow(client, world, persona, endpoint, number):
    user = signed_in(client, persona)
    case = world(number, user)
    outcome = expected(persona, endpoint, number)
    before = last_seq()
    case.sim.clear_requests()

    url = endpoint.url(case)
    response = client.get(url) if endpoint.method == "GET" else client.post(url, endpoint.data(case))

    new = list(AuditEvent.objects.filter(seq__gt=before).order_by("seq"))
    if outcome == "login":
        assert response.status_code == 302
        assert response["Location"].startswith(reverse(settings.LOGIN_URL) + "?next=")
        assert case.sim.requests == [] and new == []
        return
    if outcome == "ok":
        assert response.status_code == (200 if endpoint.method == "GET" else 302), response.content[:500]
        if endpoint.done is not None:
            assert endpoint.done(case)
        if endpoint.audited_as:
            assert [e for e in new if e.action == endpoint.audited_as and e.actor_username == user.username]
        return
    assert case.sim.requests == [], "a refused request called the exchange"
    assert case.sim.group(case.group)["triggered"] is True
    assert ApprovalRequest.objects.get(pk=case.request.pk).status == "pending"
    assert [(e.action, e.outcome, e.actor_username) for e in new] == [
        (endpoint.action.value, AuditEvent.Outcome.DENIED, user.username)
    ]
    assert response.status_code == (403 if outcome == "forbidden" else 404), response.content[:500]
    if outcome == "not_found":
        assert case.group.encode() not in response.content
        assert url.encode() not in response.content


@pytest.mark.parametrize("scope", list(SCOPES))
@pytest.mark.parametrize("persona", list(ALLOWED))
def test_links_and_buttons_are_shown_exactly_when_the_server_allows_them(client, world, persona, scope):
    user = signed_in(client, persona)
    n = SCOPES[scope]
    case = world(n, user)
    dashboard = client.get(reverse("dashboard")).content.decode()
    policy_page = client.get(reverse("policy"))
    detail = client.get(reverse("request_detail", args=[case.request.pk]))
    listing = client.get(reverse("requests"))
    pages = {
        "dashboard": dashboard,
        "policy": policy_page.content.decode() if policy_page.status_code == 200 else "",
        "detail": detail.content.decode() if detail.status_code == 200 else "",
        "requests": listing.content.decode() if listing.status_code == 200 else "",
    }
    buttons = [  # (page, what it shows, the endpoint it leads to)
        ("dashboard", f'href="{reverse("policy")}"', BY_ID["policy_page"]),
        ("dashboard", f'href="{reverse("requests")}"', BY_ID["requests"]),
        ("policy", f'href="{reverse("policy_edit", args=[n])}"', BY_ID["policy_edit_form"]),
        ("policy", f'href="{reverse("policy_edit_default")}"', BY_ID["policy_default_form"]),
        ("requests", f'href="{reverse("request_detail", args=[case.request.pk])}"', BY_ID["request_detail"]),
        ("detail", f'action="{reverse("request_approve", args=[case.request.pk])}"', BY_ID["request_approve"]),
        ("detail", f'action="{reverse("request_cancel", args=[case.request.pk])}"', BY_ID["request_cancel"]),
    ]
    wrong = [
        f"{page}: {'missing' if should else 'shown'} {shown}"
        for page, shown, endpoint in buttons
        for should in [expected(persona, endpoint, n) == "ok"]
        if (shown in pages[page]) != should
    ]
    assert wrong == []
