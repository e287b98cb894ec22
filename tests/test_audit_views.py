"""The audit log page, one event, the export, and the Django admin's view of the panel's models."""

import csv
import io
import json
import re
from datetime import UTC, datetime

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from ogpanel import audit
from ogpanel.kalshi import ServerError
from ogpanel.models import AccessScope, AuditEvent
from tests.panel_fixtures import make_user

ACTOR = audit.Actor.system("test")
LOG = reverse("audit_log")


def event(action: str = "trigger", outcome: str = "observed", actor: audit.Actor = ACTOR, **fields) -> AuditEvent:
    return audit.append(actor, action=action, outcome=outcome, **fields)


def succeeded(action: str = "trigger", **fields) -> None:
    with audit.attempt(ACTOR, action, **fields):
        pass


def failed(action: str = "trigger", **fields) -> None:
    with pytest.raises(ServerError), audit.attempt(ACTOR, action, **fields):
        raise ServerError("boom", status=500, code="internal_server_error")


def unanswered(action: str = "trigger", **fields) -> AuditEvent:
    """An attempt whose process stopped before the exchange answered."""
    with pytest.raises(KeyboardInterrupt), audit.attempt(ACTOR, action, **fields) as pending:
        raise KeyboardInterrupt
    return pending.event


def page_seqs(response) -> list[int]:
    return [int(seq) for seq in re.findall(r'<tr data-seq="(\d+)"', response.content.decode())]


def row(response, seq: int) -> str:
    return re.search(rf'<tr data-seq="{seq}">(.*?)</tr>', response.content.decode(), re.S).group(1)


def main(response) -> str:
    """The page's own content, without the per-response CSRF token and CSP nonce around it."""
    return re.search(r"<main.*</main>", response.content.decode(), re.S).group(0)


def exported(response) -> str:
    return b"".join(response.streaming_content).decode()


def export_seqs(client: Client, fmt: str, query: str = "") -> list[int]:
    body = exported(client.get(reverse("audit_export", args=[fmt]) + "?" + query))
    if fmt == "csv":
        return [int(line["seq"]) for line in csv.DictReader(io.StringIO(body))]
    return [json.loads(line)["seq"] for line in body.splitlines()]


# --- who may see it ----------------------------------------------------------------------------


def test_it_lists_events_newest_first_without_export_buttons_for_a_viewer(as_viewer):
    for n in range(3):
        event(reason=f"event {n}")
    response = as_viewer.get(LOG)
    assert response.status_code == 200
    assert page_seqs(response) == [3, 2, 1]
    assert "/audit/export." not in response.content.decode()


def test_it_offers_the_filtered_export_to_admins(as_admin):
    event()
    response = as_admin.get(LOG + "?action=trigger&subaccount=1")
    body = response.content.decode()
    assert 'href="/audit/export.csv?action=trigger&amp;subaccount=1"' in body
    assert 'href="/audit/export.jsonl?action=trigger&amp;subaccount=1"' in body


def test_it_sends_anonymous_visitors_to_sign_in(client, db):
    response = client.get(LOG)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_it_refuses_a_user_without_a_role_and_records_the_refusal(db):
    client = Client()
    client.force_login(User.objects.create_user("nobody"))
    assert client.get(LOG).status_code == 403
    refusal = AuditEvent.objects.get()
    assert (refusal.action, refusal.outcome, refusal.actor_username) == ("view_audit", "denied", "nobody")


def test_a_viewer_may_not_export_and_the_refusal_is_recorded(as_viewer):
    event()
    response = as_viewer.get(reverse("audit_export", args=["csv"]))
    assert response.status_code == 403
    assert AuditEvent.objects.filter(action="export_audit", outcome="denied", actor_username="vera").count() == 1


def test_a_scoped_user_sees_their_subaccounts_and_their_own_events_only(as_scoped_operator, scoped_operator):
    sam = audit.Actor(user_id=scoped_operator.pk, username="sam", role="ops")
    mine_in_scope = event(subaccount=1)
    event(subaccount=2)
    own_login = event("login", "succeeded", actor=sam)
    event("login", "succeeded")  # someone else's, no subaccount
    event("credential_create", "succeeded")
    own_out_of_scope = event(actor=sam, subaccount=2)

    response = as_scoped_operator.get(LOG)
    assert page_seqs(response) == [own_login.seq, mine_in_scope.seq]
    assert as_scoped_operator.get(reverse("audit_event", args=[mine_in_scope.seq])).status_code == 200

    hidden = as_scoped_operator.get(reverse("audit_event", args=[own_out_of_scope.seq]))
    missing = as_scoped_operator.get(reverse("audit_event", args=[999]))
    assert hidden.status_code == missing.status_code == 404
    assert main(hidden) == main(missing)  # a hidden event looks exactly like no event
    refusal = AuditEvent.objects.get(outcome="denied")
    assert (refusal.action, refusal.params) == ("view_audit", {"seq": str(own_out_of_scope.seq)})


# --- what it shows -----------------------------------------------------------------------------


def test_each_attempt_shows_its_result_and_a_lone_attempt_shows_outcome_unknown(as_viewer):
    succeeded(subaccount=1, order_group_id="og_ok")
    failed(subaccount=1, order_group_id="og_bad")
    lone = unanswered(subaccount=1, order_group_id="og_lost")
    response = as_viewer.get(LOG)

    assert page_seqs(response) == [5, 4, 3, 2, 1]
    assert "Attempted →" in row(response, 1) and "succeeded" in row(response, 1) and "#2" in row(response, 1)
    assert "failed" in row(response, 3) and "#4" in row(response, 3)
    assert "HTTP 500 internal_server_error" in row(response, 4) and "result of" in row(response, 4)
    assert "outcome unknown" in row(response, lone.seq)


def test_an_attempt_is_outcome_unknown_until_its_result_is_appended(as_viewer):
    single = audit.Pending(ACTOR, "trigger", subaccount=1, order_group_id="og_one")
    first, second = audit.Pending.many(
        ACTOR,
        "kill_switch_trigger",
        [
            {"subaccount": 2, "order_group_id": "og_two"},
            {"subaccount": 3, "order_group_id": "og_three"},
        ],
    )
    event("login", "succeeded")
    assert page_seqs(as_viewer.get(f"{LOG}?outcome=unknown")) == [3, 2, 1]

    second.succeeded()
    assert page_seqs(as_viewer.get(f"{LOG}?outcome=unknown")) == [2, 1]
    single.failed(ServerError("boom", status=500))
    first.succeeded()
    assert page_seqs(as_viewer.get(f"{LOG}?outcome=unknown")) == []
    assert page_seqs(as_viewer.get(f"{LOG}?outcome=attempted")) == [3, 2, 1]  # the attempts themselves stay


def test_a_limit_change_shows_the_limit_before_and_after(as_viewer):
    succeeded(
        "update_limit", subaccount=1, order_group_id="og_a", params={"contracts_limit": 50, "previous_limit": 100}
    )
    assert "Limit 100 → 50" in row(as_viewer.get(LOG), 1)


def _page_queries(client: Client) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(LOG).status_code == 200
    return [query["sql"] for query in queries.captured_queries]


def test_results_are_joined_for_the_whole_page_in_one_query(as_viewer):
    succeeded()
    few = _page_queries(as_viewer)
    for _ in range(24):
        succeeded()
    many = _page_queries(as_viewer)
    assert len(many) == len(few)  # 2 events or 50: no query per row
    assert sum('"attempt_seq" IN' in sql for sql in many) == 1


def test_pages_are_keyset_paged_on_seq_without_offset(as_viewer):
    for _ in range(120):
        event(subaccount=1)
    first = as_viewer.get(LOG + "?subaccount=1")
    assert page_seqs(first) == list(range(120, 70, -1))
    assert "Newest events" not in first.content.decode()
    older = re.search(r'href="/audit/\?([^"]+)"[^>]*>Older events', first.content.decode()).group(1)
    assert older == "subaccount=1&amp;before=71"

    with CaptureQueriesContext(connection) as queries:
        second = as_viewer.get(LOG + "?subaccount=1&before=71")
    assert page_seqs(second) == list(range(70, 20, -1))
    assert "Newest events" in second.content.decode()
    page_query = next(
        q["sql"] for q in queries.captured_queries if 'ORDER BY "ogpanel_auditevent"."seq" DESC' in q["sql"]
    )
    assert '"seq" < 71' in page_query and "LIMIT 51" in page_query
    assert not any("OFFSET" in q["sql"] for q in queries.captured_queries)

    last = as_viewer.get(LOG + "?subaccount=1&before=21")
    assert page_seqs(last) == list(range(20, 0, -1)) and "Older events" not in last.content.decode()


@pytest.fixture
def mixed_events(db) -> dict[str, int]:
    alice = audit.Actor(user_id=None, username="alice", role="ops")
    bob = audit.Actor(user_id=None, username="bob", role="admin")
    events = {
        "old": event("login", "succeeded", actor=alice, at=datetime(2025, 1, 15, 23, 59, 59, tzinfo=UTC)),
        "trigger": event("trigger", "succeeded", actor=alice, subaccount=1, order_group_id="og_a", reason="fat finger"),
        "reset": event("reset", "failed", actor=bob, subaccount=2, order_group_id="og_b", error="HTTP 500 boom"),
        "limit": event(
            "update_limit",
            "succeeded",
            actor=alice,
            subaccount=2,
            order_group_id="og_c",
            params={"contracts_limit": 5, "previous_limit": 9},
        ),
        "lost": audit.Pending(bob, "delete", subaccount=3, order_group_id="og_d").event,
    }
    return {name: ev.seq for name, ev in events.items()}


FILTERS = [
    ("actor=alice", ["limit", "trigger", "old"]),
    ("action=reset", ["reset"]),
    ("subaccount=2", ["limit", "reset"]),
    ("group=og_c", ["limit"]),
    ("outcome=failed", ["reset"]),
    ("outcome=unknown", ["lost"]),
    ("outcome=attempted", ["lost"]),
    ("since=2025-01-01&until=2025-01-15", ["old"]),
    ("since=2025-01-16", ["lost", "limit", "reset", "trigger"]),
    ("q=FAT", ["trigger"]),
    ("q=boom", ["reset"]),
    ("q=previous_limit", ["limit"]),
    ("q=og_d", ["lost"]),
    ("q=bob", ["lost", "reset"]),
    ("actor=alice&subaccount=2", ["limit"]),
]


@pytest.mark.parametrize("query, expected", FILTERS)
def test_each_filter_narrows_the_page_and_the_export_to_the_same_events(query, expected, mixed_events, as_admin):
    assert page_seqs(as_admin.get(f"{LOG}?{query}")) == [mixed_events[name] for name in expected]
    for fmt in ("csv", "jsonl"):
        # Page, then export at once: an earlier export's own event may match the filters too.
        page = page_seqs(as_admin.get(f"{LOG}?{query}"))
        assert export_seqs(as_admin, fmt, query) == page


@pytest.mark.parametrize(
    "query", ["before=abc", "since=2025-13-45", "subaccount=-1", "outcome=maybe", "since=2025-02-01&until=2025-01-01"]
)
def test_invalid_filters_answer_400_with_the_reason_and_no_events(query, as_viewer):
    event()
    response = as_viewer.get(f"{LOG}?{query}")
    assert response.status_code == 400
    assert "correct the filters" in response.content.decode() and page_seqs(response) == []


def test_htmx_gets_only_the_results_fragment(as_viewer):
    event()
    response = as_viewer.get(LOG + "?action=trigger", HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200 and "HX-Request" in response["Vary"]
    assert body.lstrip().startswith('<div id="audit-results">') and "<html" not in body
    assert page_seqs(response) == [1]


def test_the_event_page_shows_every_field_and_links_attempt_and_result(as_viewer):
    succeeded(subaccount=1, order_group_id="og_a", reason="drill", params={"contracts_limit": 3})
    lone = unanswered(subaccount=1, order_group_id="og_b")
    attempt, result = AuditEvent.objects.order_by("seq")[:2]

    body = as_viewer.get(reverse("audit_event", args=[attempt.seq])).content.decode()
    assert f'href="/audit/{result.seq}/"' in body and "drill" in body and attempt.hash in body and "og_a" in body
    body = as_viewer.get(reverse("audit_event", args=[result.seq])).content.decode()
    assert "result of attempt" in body and f'href="/audit/{attempt.seq}/"' in body
    body = as_viewer.get(reverse("audit_event", args=[lone.seq])).content.decode()
    assert "Outcome unknown" in body


# --- export ------------------------------------------------------------------------------------


def test_the_export_streams_a_named_file_and_is_itself_recorded(as_admin, administrator):
    succeeded(subaccount=1)
    response = as_admin.get(reverse("audit_export", args=["csv"]) + "?subaccount=1")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(r'attachment; filename="ogpanel-audit-\d{8}T\d{6}Z\.csv"', response["Content-Disposition"])
    lines = list(csv.DictReader(io.StringIO(exported(response))))
    assert [line["seq"] for line in lines] == ["2", "1"] and lines[0]["attempt_seq"] == "1"
    record = AuditEvent.objects.get(action="export_audit")
    assert (record.actor_id, record.outcome, record.params) == (
        administrator.pk,
        "succeeded",
        {"format": "csv", "subaccount": 1},
    )
    assert record.seq == 3  # recorded first, and not part of the file it describes

    response = as_admin.get(reverse("audit_export", args=["jsonl"]))
    assert response["Content-Type"].startswith("application/x-ndjson")
    assert response["Content-Disposition"].endswith('.jsonl"')


def test_the_csv_export_offers_a_byte_order_mark_for_excel_and_keeps_the_same_rows(as_admin):
    succeeded(subaccount=1, reason="Überprüfung — naïve café")
    url = reverse("audit_export", args=["csv"])
    plain = b"".join(as_admin.get(url + "?subaccount=1").streaming_content)
    for_excel = b"".join(as_admin.get(url + "?subaccount=1&bom=1").streaming_content)

    assert not plain.startswith(b"\xef\xbb\xbf") and for_excel.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(for_excel.decode("utf-8-sig"))))
    assert [row["seq"] for row in rows] == [row["seq"] for row in csv.DictReader(io.StringIO(plain.decode()))]
    assert "Überprüfung — naïve café" in {row["reason"] for row in rows}
    assert "bom=1" in main(as_admin.get(reverse("audit_log")))


def test_the_json_lines_export_can_be_verified_offline(as_admin):
    succeeded(subaccount=1, params={"note": "é ünïcode"})
    failed(subaccount=2)
    lines = [json.loads(line) for line in exported(as_admin.get(reverse("audit_export", args=["jsonl"]))).splitlines()]
    assert len(lines) == 4
    for line in lines:
        assert audit.compute_hash(line) == line["hash"]


def test_the_csv_export_defuses_spreadsheet_formulas(as_admin):
    event(reason='=HYPERLINK("http://evil")', user_agent="@SUM(1)")
    [line] = csv.DictReader(io.StringIO(exported(as_admin.get(reverse("audit_export", args=["csv"])))))
    assert line["reason"] == '\'=HYPERLINK("http://evil")' and line["user_agent"] == "'@SUM(1)"


def test_a_scoped_admin_exports_only_their_subaccounts(db, sim):
    admin_in_one = make_user("sue", "admin", subaccounts=[1])
    client = Client()
    client.force_login(admin_in_one)
    keep = event(subaccount=1)
    event(subaccount=2)
    assert export_seqs(client, "csv") == [keep.seq]


def test_the_export_refuses_an_unknown_format_or_bad_filters(as_admin):
    assert as_admin.get("/audit/export.xlsx").status_code == 404
    assert as_admin.get(reverse("audit_export", args=["csv"]) + "?before=x").status_code == 400
    assert not AuditEvent.objects.filter(action="export_audit").exists()


# --- the Django admin --------------------------------------------------------------------------


@pytest.fixture
def superuser_client(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="root-password-1"))
    return client


def test_the_admin_shows_the_audit_log_read_only(superuser_client):
    ev = event(reason="keep me")
    base = "/admin/ogpanel/auditevent/"
    assert superuser_client.get(base).status_code == 200
    change_page = superuser_client.get(f"{base}{ev.pk}/change/")
    assert change_page.status_code == 200 and "keep me" in change_page.content.decode()
    assert 'name="_save"' not in change_page.content.decode()
    assert superuser_client.post(f"{base}{ev.pk}/change/", {"reason": "rewritten"}).status_code == 403
    assert superuser_client.get(f"{base}add/").status_code == 403
    assert superuser_client.post(f"{base}{ev.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.get(pk=ev.pk).reason == "keep me" and audit.verify().ok


def test_the_admin_never_shows_a_credentials_private_key(superuser_client, credential):
    body = superuser_client.get(f"/admin/ogpanel/credential/{credential.pk}/change/").content.decode()
    assert credential.fingerprint in body
    assert credential.private_key_encrypted[-40:] not in body and "private_key" not in body.lower()
    assert superuser_client.get("/admin/ogpanel/subaccount/").status_code == 200


def test_a_scope_change_in_the_admin_is_recorded(superuser_client, scoped_operator, django_capture_on_commit_callbacks):
    scope = AccessScope.objects.get(user=scoped_operator)
    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(f"/admin/ogpanel/accessscope/{scope.pk}/change/", {"subaccounts": "[1, 2]"})
    assert response.status_code == 302
    change = AuditEvent.objects.get(action="role_change")
    assert (change.actor_username, change.outcome) == ("root", "succeeded")
    assert change.params == {
        "username": "sam",
        "user_id": scoped_operator.pk,
        "via": "admin",
        "before": {"role": "ops", "subaccounts": [1]},
        "after": {"role": "ops", "subaccounts": [1, 2]},
    }


def test_a_role_change_in_the_user_admin_is_recorded(db, operator, django_capture_on_commit_callbacks):
    root = User.objects.create_superuser("root", password="root-password-1")
    request = RequestFactory().post("/admin/auth/user/")
    request.user = root
    user_admin = admin.site.get_model_admin(User)
    with django_capture_on_commit_callbacks(execute=True):
        user_admin.save_model(request, operator, form=None, change=True)
        operator.groups.set([Group.objects.get(name="viewer")])  # what save_related does next
    change = AuditEvent.objects.get(action="role_change")
    assert (change.params["before"], change.params["after"]) == (
        {"role": "ops", "subaccounts": "all"},
        {"role": "viewer", "subaccounts": "all"},
    )
