"""Property-based: whatever arrives in a form field or a URL, the panel answers without a 500 and
never sends the exchange a value outside what the API accepts.

Hypothesis drives every form field and URL parameter with edge cases (non-ASCII digits, signs,
huge numbers, NUL, over-long text) and random text. After each example the simulator's request
log is checked: every request the panel made is one of the order-group endpoints, with a valid
group id, subaccount, limit and exchange index in its path, query and body.

Each test runs its examples from an inner function, after its fixtures are set up once: the
database and the simulator carry over from one example to the next, which the properties must
survive anyway. The test then checks the exchange was really called, so the property on what
was sent is not vacuous.
"""

import json
import re
from urllib.parse import quote

import pytest
from django.contrib.auth.models import User
from django.test import Client
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ogpanel.kalshi import MAX_CONTRACTS_LIMIT, ORDER_GROUP_ID_RE
from ogpanel.models import Credential
from tests.sweeps import run_sweeps

FUZZ = hypothesis_settings(max_examples=50, deadline=None)
HTMX = {"HX-Request": "true"}
API = "/trade-api/v2/portfolio/order_groups"
GROUP_PATH = re.compile(rf"{API}/(?P<id>[^/]+)(?P<suffix>/trigger|/reset|/limit)?")
MAX_SUBACCOUNT = 32

# Values that have broken number parsing somewhere: other scripts' digits, superscripts, signs,
# spaces, exponents, underscores, overflow, NUL, and text longer than any field allows.
EDGES = [
    "",
    " ",
    "0",
    "1",
    "2",
    "32",
    "33",
    "63",
    "64",
    "-1",
    "+1",
    " 1 ",
    "1.5",
    "1e3",
    "1_0",
    "0x1",
    "٣",
    "²",
    "１",
    "1000000",
    "1000001",
    "9" * 25,
    "\x00",
    "1\x00",
    "a" * 600,
    "og_1",
    "../x",
    "a/b",
    "%2F",
    "<b>",
    "TRIGGER",
    "RESET",
    "trigger_all",
    "trigger_one",
    "reset_one",
    "active",
    "triggered",
    "assign",
    "unassign",
    "custom",
    "demo",
    "production",
    "attempted",
    "unknown",
    "2026-01-02",
    "csv",
    "jsonl",
]


def anything(*more: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(EDGES + list(more)), st.text(max_size=40), st.integers(-(2**70), 2**70).map(str))


def maybe(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    """A field that is sometimes left out of the request altogether."""
    return st.one_of(st.none(), strategy)


def fields(**strategies) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({name: maybe(strategy) for name, strategy in strategies.items()}).map(
        lambda data: {name: value for name, value in data.items() if value is not None}
    )


# --- the property ------------------------------------------------------------------------------


def _whole(value, low: int, high: int | None = None) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)


def _digits(value: str, low: int, high: int | None = None) -> bool:
    return value.isascii() and value.isdigit() and _whole(int(value), low, high)


def invalid_upstream(record) -> str:
    """Why a request the panel sent is not one the API accepts, or ""."""
    body = json.loads(record.body) if record.body else {}
    query = dict(record.query)
    if "subaccount" in query and not _digits(query.pop("subaccount"), 0, MAX_SUBACCOUNT):
        return "subaccount"
    if "exchange_index" in query and not _digits(query.pop("exchange_index"), 0):
        return "exchange_index"
    if query:
        return f"unexpected query {sorted(query)}"
    if record.path == API:
        return "" if record.method == "GET" and not body else "list"
    if record.path == f"{API}/create":
        ok = (
            record.method == "POST"
            and set(body) <= {"contracts_limit", "subaccount", "exchange_index"}
            and _whole(body.get("contracts_limit"), 1, MAX_CONTRACTS_LIMIT)
            and _whole(body.get("subaccount", 0), 0, MAX_SUBACCOUNT)
            and _whole(body.get("exchange_index", 0), 0)
        )
        return "" if ok else "create"
    match = GROUP_PATH.fullmatch(record.path)
    if not match or not ORDER_GROUP_ID_RE.fullmatch(match["id"]):
        return "group path"
    suffix = match["suffix"]
    if suffix == "/limit":
        ok = (
            record.method == "PUT"
            and set(body) == {"contracts_limit"}
            and _whole(body["contracts_limit"], 1, MAX_CONTRACTS_LIMIT)
        )
    elif suffix:
        ok = record.method == "PUT" and not body
    else:
        ok = record.method in ("GET", "DELETE") and not body
    return "" if ok else f"{record.method} {suffix or 'group'}"


class Fuzz:
    """What the examples share: the personas, a group that exists, and what was sent upstream."""

    def __init__(self, sim, **users: User):
        self.sim, self.users, self.group = sim, users, sim.create_group(1, 10)
        self.sent: set[str] = set()  # "METHOD path-kind" of the valid requests seen

    def client(self, who: str) -> Client:
        client = Client()
        client.force_login(self.users[who])
        return client

    def check(self, response) -> None:
        assert response.status_code != 500
        requests = self.sim.requests
        self.sim.clear_requests()
        assert not [(record, why) for record in requests if (why := invalid_upstream(record))]
        self.sent.update(f"{record.method} {record.path.rsplit('/', 1)[-1]}" for record in requests)


@pytest.fixture
def fuzz(settings, sim, subaccounts, administrator, scoped_operator) -> Fuzz:
    # Wrong passwords are part of the input: no lockout may cut an example short of the code under test.
    settings.OGPANEL_LOGIN_MAX_FAILURES = settings.OGPANEL_LOGIN_MAX_FAILURES_PER_ADDRESS = 10**6
    return Fuzz(sim, admin=administrator, scoped=scoped_operator)


# The personas' own passwords (tests.panel_fixtures), so re-authentication sometimes succeeds.
PASSWORD = st.one_of(st.sampled_from(["ada-password-1", "sam-password-1"]), anything())
WHO = st.sampled_from(["admin", "scoped"])
HTMX_OR_NOT = st.sampled_from([{}, HTMX])


# --- order groups ------------------------------------------------------------------------------


def test_dashboard_filters(fuzz):
    @FUZZ
    @given(who=WHO, query=fields(subaccount=anything(), state=anything()), headers=HTMX_OR_NOT)
    def dashboard(who, query, headers):
        fuzz.check(fuzz.client(who).get("/", query, headers=headers))

    dashboard()
    assert "GET order_groups" in fuzz.sent


def test_group_addresses_and_their_forms(fuzz):
    @FUZZ
    @given(
        who=WHO,
        method=st.sampled_from(["get", "post"]),
        subaccount=st.one_of(st.integers(0, 10**25).map(str), anything()),
        group=st.one_of(st.just("EXISTING"), st.from_regex(ORDER_GROUP_ID_RE, fullmatch=True), anything()),
        suffix=st.sampled_from(["", "trigger/", "reset/", "delete/", "limit/"]),
        data=fields(reason=anything(), contracts_limit=anything()),
        headers=HTMX_OR_NOT,
    )
    def group_address(who, method, subaccount, group, suffix, data, headers):
        group = fuzz.group if group == "EXISTING" else group
        url = f"/groups/{quote(subaccount, safe='')}/{quote(group, safe='')}/{suffix}"
        fuzz.check(getattr(fuzz.client(who), method)(url, data, headers=headers))

    group_address()
    assert "GET " + fuzz.group in fuzz.sent


def test_create_form(fuzz):
    @FUZZ
    @given(
        who=WHO,
        data=fields(subaccount=anything(), contracts_limit=anything(), exchange_index=anything()),
        headers=HTMX_OR_NOT,
    )
    @example(who="admin", data={"subaccount": "²", "contracts_limit": "1"}, headers={})  # isdigit() but not int()
    @example(who="admin", data={"subaccount": "1", "contracts_limit": "1", "exchange_index": "0"}, headers={})
    def create(who, data, headers):
        fuzz.check(fuzz.client(who).post("/groups/new/", data, headers=headers))

    create()
    assert "POST create" in fuzz.sent


def test_kill_switch_form(fuzz):
    @FUZZ
    @given(
        who=WHO,
        form=fields(
            operation=anything(),
            subaccount=anything(),
            reason=anything(),
            confirm=anything(),
            reauth_password=PASSWORD,
            reauth_otp=anything(),
        ),
        headers=HTMX_OR_NOT,
    )
    @example(
        who="admin",
        form={"operation": "trigger_one", "subaccount": "²", "reason": "x", "confirm": "TRIGGER"},
        headers={},
    )
    @example(
        who="scoped",
        form={"operation": "trigger_all", "reason": "x", "confirm": "TRIGGER", "reauth_password": "sam-password-1"},
        headers={},
    )
    def kill_switch(who, form, headers):
        response = fuzz.client(who).post("/kill-switch/", form, headers=headers)
        run_sweeps()  # the answer comes at once; the sweep's calls are what is checked
        fuzz.check(response)

    kill_switch()
    assert "PUT trigger" in fuzz.sent


# --- audit -------------------------------------------------------------------------------------

AUDIT_FILTERS = fields(
    actor=anything("ada"),
    action=anything("trigger"),
    subaccount=anything(),
    group=anything(),
    outcome=anything(),
    since=anything(),
    until=anything(),
    q=anything(),
    before=anything(),
)


def test_audit_filters_and_paging(fuzz):
    @FUZZ
    @given(who=WHO, query=AUDIT_FILTERS, headers=HTMX_OR_NOT)
    def audit_log(who, query, headers):
        fuzz.check(fuzz.client(who).get("/audit/", query, headers=headers))

    audit_log()


def test_audit_event_and_export(fuzz):
    @FUZZ
    @given(
        who=WHO,
        seq=st.one_of(st.integers(0, 10**25).map(str), anything()),
        fmt=anything("csv", "jsonl"),
        query=AUDIT_FILTERS,
    )
    def event_and_export(who, seq, fmt, query):
        client = fuzz.client(who)
        fuzz.check(client.get(f"/audit/{quote(seq, safe='')}/"))
        response = client.get(f"/audit/export.{quote(fmt, safe='')}", query)
        if response.streaming:
            b"".join(response.streaming_content)  # the export's rows are produced as it streams
        fuzz.check(response)

    event_and_export()


# --- credentials and the subaccount mapping ------------------------------------------------------


def test_credential_forms(fuzz, credential, rsa_pem):
    pem = st.one_of(st.just(rsa_pem.decode()), anything())
    forms = st.one_of(
        st.tuples(
            st.just("create"),
            fields(
                label=anything(),
                environment=anything(),
                custom_base_url=anything(fuzz.sim.base_url, "https://x/trade-api/v2"),
                key_id=anything("test-key"),
                private_key=pem,
                reauth_password=PASSWORD,
            ),
        ),
        st.tuples(st.just("rotate"), fields(key_id=anything("test-key"), private_key=pem, reauth_password=PASSWORD)),
        st.tuples(st.just("remove"), fields(unmap=anything("on"), seen=anything("0,1,2,3"), reauth_password=PASSWORD)),
        st.tuples(st.just("test"), fields(subaccount=anything())),
        st.tuples(
            st.just("subaccounts"),
            fields(
                number=anything(),
                op=anything(),
                credential=anything(str(credential.pk)),
                label=anything(),
                reauth_password=PASSWORD,
            ),
        ),
    )

    @FUZZ
    @given(pk=st.one_of(st.just(str(credential.pk)), st.integers(10**6, 10**25).map(str), anything()), form=forms)
    @example(pk=str(credential.pk), form=("test", {"subaccount": "1"}))
    def credential_forms(pk, form):
        name, data = form
        url = {"create": "/credentials/new/", "subaccounts": "/subaccounts/"}.get(
            name, f"/credentials/{quote(pk, safe='')}/{name}/"
        )
        if name == "test":
            # Only the simulator's credential is tested: one created here may name any https host.
            number = int(pk) if pk.isascii() and pk.isdigit() else None
            if Credential.objects.filter(pk=number).exclude(pk=credential.pk).exists():
                return
        fuzz.check(fuzz.client("admin").post(url, data, headers=HTMX if name == "test" else {}))

    credential_forms()
    assert "GET order_groups" in fuzz.sent


# --- signing in ----------------------------------------------------------------------------------

NEXT = anything("/", "/audit/", "//evil.example/", "https://evil.example/", "javascript:alert(1)", "dashboard")


def test_login_and_reauth_fields(fuzz):
    @FUZZ
    @given(
        login=fields(username=anything("ada"), password=PASSWORD, next=NEXT),
        page=fields(next=NEXT),
        reauth=fields(reauth_password=PASSWORD, reauth_otp=anything(), next=NEXT),
    )
    @example(
        login={"username": "ada", "password": "ada-password-1", "next": "0"},
        page={"next": "0"},
        reauth={"reauth_password": "ada-password-1", "next": "0"},
    )  # a bare word is not a view name
    def sign_in(login, page, reauth):
        fuzz.check(Client().post("/accounts/login/", login))
        fuzz.check(Client().get("/accounts/login/", page))
        fuzz.check(fuzz.client("admin").post("/accounts/reauth/", reauth))

    sign_in()
