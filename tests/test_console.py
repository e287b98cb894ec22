"""The order-group console: dashboard, group page and operations, against the simulator (the kill switch:
test_kill_switch.py).

Every test talks to the real simulator over HTTP through the panel's own client; `sim.requests`
proves when the panel did (or did not) call the exchange.
"""

import json

import pytest

from ogpanel import vault
from ogpanel.models import AuditEvent, Credential, Subaccount
from ogpanel.simulator import ExchangeError
from tests.panel_fixtures import make_credential

HTMX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def _no_listing_cache(settings):
    # These tests change the simulator directly between requests; a shared listing would hide that.
    settings.OGPANEL_LIST_CACHE_SECONDS = 0


def events(response) -> dict:
    return json.loads(response.headers.get("HX-Trigger", "{}"))


def upstream_calls(sim) -> int:
    return len(sim.requests)


def writes(sim) -> list:
    return [record for record in sim.requests if record.method != "GET"]


def text(response) -> str:
    return response.content.decode()


def gone(sim, group_id: str) -> bool:
    try:
        sim.group(group_id)
    except ExchangeError as exc:
        return exc.status == 404
    return False


# --- dashboard -----------------------------------------------------------------------------------


def test_it_lists_every_group_of_every_subaccount_and_marks_triggered_ones(sim, subaccounts, as_viewer):
    calm = sim.create_group(0, 100)
    tripped = sim.create_group(2, 5)
    sim.fill(sim.place_order(2, tripped, count=10), 10)  # 10 filled > limit 5: the exchange triggers it

    response = as_viewer.get("/")

    assert response.status_code == 200
    page = text(response)
    assert f'id="group-0-{calm}"' in page and f'id="group-2-{tripped}"' in page
    assert f'<tr id="group-2-{tripped}" class="is-triggered">' in page
    assert f'<tr id="group-0-{calm}">' in page
    assert page.count(">TRIGGERED<") == 1 and page.count(">ACTIVE<") == 1
    assert "1 TRIGGERED" in page
    assert f'href="/groups/2/{tripped}/"' in page
    assert '<th scope="col" class="num">Contracts limit</th>' in page
    # One list call per configured subaccount, each with its own ?subaccount=.
    assert sorted(r.query.get("subaccount") for r in sim.requests) == ["0", "1", "2", "3"]


@pytest.mark.parametrize(
    ("kind", "status", "words"),
    [("error", 500, "exchange error"), ("rate_limit", None, "rate limited")],
)
def test_it_keeps_listing_the_others_when_one_subaccount_fails(sim, subaccounts, as_viewer, kind, status, words):
    fine = sim.create_group(1, 10)
    hidden = sim.create_group(2, 10)
    sim.set_fault(kind, subaccount=2, status=status)

    response = as_viewer.get("/")

    assert response.status_code == 200
    page = text(response)
    assert fine in page and hidden not in page
    assert f"Subaccount 2 (desk 2) could not be read — {words}:" in page
    assert f"Error: {words}" in page
    assert page.count('<span class="status-ok">OK</span>') == 3


def test_a_subaccount_whose_key_cannot_be_decrypted_does_not_blank_the_page(
    sim, subaccounts, credential, rsa_pem, as_viewer
):
    broken = make_credential(sim.base_url, rsa_pem, label="moved")
    # A ciphertext copied from another row does not decrypt here (it is bound to its own row).
    Credential.objects.filter(pk=broken.pk).update(private_key_encrypted=credential.private_key_encrypted)
    Subaccount.objects.create(number=4, credential=broken, label="desk 4")
    fine = sim.create_group(1, 10)

    response = as_viewer.get("/")

    assert response.status_code == 200
    assert fine in text(response)
    assert "Subaccount 4 (desk 4) could not be read — API key unusable:" in text(response)


def test_it_refreshes_only_the_table_for_htmx_and_keeps_the_filters(sim, subaccounts, as_viewer, settings):
    settings.OGPANEL_REFRESH_SECONDS = 7
    wanted = sim.create_group(1, 10)
    sim.create_group(1, 10)
    sim.create_group(3, 10)
    sim.fill(sim.place_order(1, wanted, count=11), 11)

    page = as_viewer.get("/?subaccount=1&state=triggered")
    assert 'hx-get="/?subaccount=1&amp;state=triggered"' in text(page)
    assert 'hx-trigger="every 7s, ogpanel:groups-changed from:body, ogpanel:live from:body"' in text(page)
    assert 'data-pauses="groups"' in text(page)

    sim.clear_requests()
    fragment = as_viewer.get("/?subaccount=1&state=triggered", headers=HTMX)

    assert fragment.status_code == 200
    assert "<html" not in text(fragment) and "<table" in text(fragment)
    assert 'hx-swap-oob="innerHTML:#refresh-status"' in text(fragment)
    assert "HX-Request" in fragment["Vary"]
    assert text(fragment).count("<tr id=") == 1 and wanted in text(fragment)
    # The table shows the chosen subaccount; the tiles above it show the whole book, each subaccount read once.
    assert sorted(r.query.get("subaccount") for r in sim.requests) == ["0", "1", "2", "3"]


def test_it_refuses_an_unknown_filter_without_calling_the_exchange(sim, subaccounts, as_viewer):
    response = as_viewer.get("/?subaccount=9&state=sideways")

    assert response.status_code == 400
    assert "Select a valid choice" in text(response)
    assert upstream_calls(sim) == 0


# --- group page ----------------------------------------------------------------------------------


def test_it_shows_a_groups_limit_state_and_order_ids(sim, subaccounts, as_viewer):
    group = sim.create_group(1, 25)
    first = sim.place_order(1, group, count=2)
    second = sim.place_order(1, group, count=3)

    response = as_viewer.get(f"/groups/1/{group}/")

    assert response.status_code == 200
    page = text(response)
    assert ">25 <" in page and ">ACTIVE<" in page
    assert f"<li>{first}</li>" in page and f"<li>{second}</li>" in page
    assert "Trigger group…" not in page  # a viewer gets no buttons


def test_it_says_not_found_for_a_group_that_lives_on_another_subaccount(sim, subaccounts, as_viewer):
    group = sim.create_group(1, 25)

    response = as_viewer.get(f"/groups/2/{group}/")

    assert response.status_code == 404
    assert "Order group not found on subaccount 2." in text(response)


@pytest.mark.parametrize(
    "path",
    [
        "/groups/1/bad.id/",  # not a group id shape
        f"/groups/1/{'x' * 65}/",  # too long
        "/groups/7/og_1/",  # subaccount not configured
        "/groups/99/og_1/",  # out of range
    ],
)
def test_it_answers_404_for_a_bad_group_address_without_calling_the_exchange(sim, subaccounts, as_admin, path):
    assert as_admin.get(path).status_code == 404
    assert upstream_calls(sim) == 0


@pytest.mark.parametrize(
    "path",
    [
        "/groups/1/bad.id/trigger/",
        "/groups/1/..%2F..%2Fportfolio/reset/",
        f"/groups/1/{'x' * 65}/delete/",
        "/groups/7/og_1/trigger/",
        "/groups/99/og_1/limit/",
    ],
)
def test_it_refuses_an_operation_on_a_bad_group_address_without_calling_the_exchange(sim, subaccounts, as_admin, path):
    assert as_admin.get(path).status_code == 404
    assert as_admin.post(path, {"reason": "x", "contracts_limit": "5"}).status_code == 404
    assert upstream_calls(sim) == 0
    assert not AuditEvent.objects.exclude(outcome="denied").exists()


# --- trigger, reset, delete ----------------------------------------------------------------------


def test_it_asks_for_a_reason_before_triggering(sim, subaccounts, as_operator):
    group = sim.create_group(2, 10)
    sim.place_order(2, group, count=1)

    confirm = as_operator.get(f"/groups/2/{group}/trigger/")

    assert confirm.status_code == 200
    page = text(confirm)
    assert f'Trigger order group <span class="mono">{group}</span> on subaccount 2 (desk 2)?' in page
    assert "cancels every resting order" in page
    assert '<label for="id_reason">' in page
    assert "Trigger group — cancels all its orders" in page

    sim.clear_requests()
    refused = as_operator.post(f"/groups/2/{group}/trigger/", {"reason": "  "})

    assert refused.status_code == 400
    assert "Give a reason" in text(refused)
    assert upstream_calls(sim) == 0
    assert sim.group(group)["triggered"] is False


def test_it_triggers_a_group_and_redirects_a_plain_post(sim, subaccounts, as_operator):
    group = sim.create_group(2, 10)
    order = sim.place_order(2, group, count=1)

    response = as_operator.post(f"/groups/2/{group}/trigger/", {"reason": "desk 2 runaway"})

    assert response.status_code == 302 and response["Location"] == f"/groups/2/{group}/"
    state = sim.group(group)
    assert state["triggered"] is True and state["orders"][order] == "cancelled"
    result = AuditEvent.objects.get(action="trigger", outcome="succeeded")
    assert (result.reason, result.subaccount, result.order_group_id, result.actor_username) == (
        "desk 2 runaway",
        2,
        group,
        "otto",
    )
    follow = as_operator.get(response["Location"])
    assert f"Triggered order group {group} on subaccount 2." in text(follow)
    assert ">TRIGGERED<" in text(follow)


def test_it_triggers_a_group_in_place_for_htmx(sim, subaccounts, as_operator):
    group = sim.create_group(3, 10)

    panel = as_operator.get(f"/groups/3/{group}/trigger/", headers=HTMX)
    assert "<html" not in text(panel) and f'hx-post="/groups/3/{group}/trigger/"' in text(panel)

    response = as_operator.post(f"/groups/3/{group}/trigger/", {"reason": "drill"}, headers=HTMX)

    assert response.status_code == 200 and response.content == b""  # the action panel empties
    fired = events(response)
    assert fired["ogpanel:flash"]["message"] == f"Triggered order group {group} on subaccount 3."
    assert "ogpanel:groups-changed" in fired  # the table reloads itself
    assert sim.group(group)["triggered"] is True


@pytest.mark.parametrize("htmx", [False, True])
def test_it_resets_a_triggered_group(sim, subaccounts, as_operator, htmx):
    group = sim.create_group(1, 5)
    sim.fill(sim.place_order(1, group, count=6), 6)
    assert sim.group(group)["triggered"] is True

    response = as_operator.post(
        f"/groups/1/{group}/reset/", {"reason": "cleared with desk"}, headers=HTMX if htmx else {}
    )

    if htmx:
        assert response.status_code == 200 and "ogpanel:groups-changed" in events(response)
        assert events(response)["ogpanel:flash"]["message"] == f"Reset order group {group} on subaccount 1."
    else:
        assert response.status_code == 302 and response["Location"] == f"/groups/1/{group}/"
    state = sim.group(group)
    assert state["triggered"] is False and state["volume"] == 0
    assert AuditEvent.objects.get(action="reset", outcome="succeeded").reason == "cleared with desk"


@pytest.mark.parametrize("htmx", [False, True])
def test_it_deletes_a_group(sim, subaccounts, as_admin, htmx):
    group = sim.create_group(0, 5)
    sim.place_order(0, group, count=1)

    response = as_admin.post(f"/groups/0/{group}/delete/", {"reason": "desk closed"}, headers=HTMX if htmx else {})

    if htmx:
        assert response.status_code == 200 and "ogpanel:groups-changed" in events(response)
    else:
        assert response.status_code == 302 and response["Location"] == "/"
    assert gone(sim, group)
    assert AuditEvent.objects.get(action="delete", outcome="succeeded").reason == "desk closed"


def test_deleting_from_the_groups_own_page_sends_htmx_to_the_dashboard(sim, subaccounts, as_admin):
    group = sim.create_group(0, 5)

    response = as_admin.post(
        f"/groups/0/{group}/delete/",
        {"reason": "gone"},
        headers={**HTMX, "HX-Current-URL": f"http://testserver/groups/0/{group}/"},
    )

    assert response.status_code == 200 and response["HX-Redirect"] == "/"
    assert gone(sim, group)


# --- create and limit ----------------------------------------------------------------------------


def test_it_creates_a_group_and_redirects_to_it(sim, subaccounts, as_admin):
    response = as_admin.post("/groups/new/", {"subaccount": "3", "contracts_limit": "250", "exchange_index": "0"})

    assert response.status_code == 302
    created = AuditEvent.objects.get(action="create", outcome="succeeded").params["order_group_id"]
    assert response["Location"] == f"/groups/3/{created}/"
    assert sim.group(created)["subaccount"] == 3 and sim.group(created)["contracts_limit"] == 250


def test_it_creates_a_group_in_place_for_htmx(sim, subaccounts, as_admin):
    form = as_admin.get("/groups/new/", headers=HTMX)
    assert "<html" not in text(form) and 'hx-post="/groups/new/"' in text(form)
    assert '<option value="3">Subaccount 3 (desk 3)</option>' in text(form)

    response = as_admin.post(
        "/groups/new/", {"subaccount": "1", "contracts_limit": "40", "exchange_index": "0"}, headers=HTMX
    )

    assert response.status_code == 200 and "ogpanel:groups-changed" in events(response)
    created = AuditEvent.objects.get(action="create", outcome="succeeded").params["order_group_id"]
    assert events(response)["ogpanel:flash"]["message"].startswith(f"Created order group {created} on subaccount 1")
    assert sim.group(created)["contracts_limit"] == 40


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("contracts_limit", "0", "from 1 to 1,000,000"),
        ("contracts_limit", "1000001", "from 1 to 1,000,000"),
        ("contracts_limit", "1.5", "from 1 to 1,000,000"),
        ("contracts_limit", "ten", "from 1 to 1,000,000"),
        ("subaccount", "99", "Subaccount must be a whole number from 0 to 32."),
        ("subaccount", "7", "Subaccount 7 is not configured"),
        ("subaccount", "-1", "Subaccount must be a whole number"),
        ("exchange_index", "x", "Exchange index must be a whole number"),
    ],
)
def test_it_refuses_bad_create_input_without_calling_the_exchange(sim, subaccounts, as_admin, field, value, message):
    data = {"subaccount": "1", "contracts_limit": "10", "exchange_index": "0", field: value}

    for headers in ({}, HTMX):
        response = as_admin.post("/groups/new/", data, headers=headers)
        assert response.status_code == 400
        assert message in text(response)

    assert upstream_calls(sim) == 0
    assert not AuditEvent.objects.filter(action="create").exists()


@pytest.mark.parametrize("htmx", [False, True])
def test_it_changes_a_limit_and_records_the_previous_one(sim, subaccounts, as_admin, htmx):
    group = sim.create_group(2, 100)

    form = as_admin.get(f"/groups/2/{group}/limit/")
    assert "triggers it at once" in text(form) and "Current limit: <strong>100</strong>" in text(form)

    response = as_admin.post(
        f"/groups/2/{group}/limit/", {"contracts_limit": "60", "reason": "tighten"}, headers=HTMX if htmx else {}
    )

    if htmx:
        assert response.status_code == 200
        assert events(response)["ogpanel:flash"]["message"].endswith("to 60 (was 100).")
    else:
        assert response.status_code == 302 and response["Location"] == f"/groups/2/{group}/"
    assert sim.group(group)["contracts_limit"] == 60
    result = AuditEvent.objects.get(action="update_limit", outcome="succeeded")
    assert result.params["contracts_limit"] == 60 and result.params["previous_limit"] == 100
    assert result.reason == "tighten"


def test_a_limit_below_current_volume_triggers_the_group(sim, subaccounts, as_admin):
    group = sim.create_group(1, 100)
    order = sim.place_order(1, group, count=50)
    sim.fill(order, 30)

    response = as_admin.post(f"/groups/1/{group}/limit/", {"contracts_limit": "20"})

    assert response.status_code == 302
    state = sim.group(group)
    assert state["contracts_limit"] == 20 and state["triggered"] is True and state["orders"][order] == "cancelled"


@pytest.mark.parametrize("value", ["0", "1000001", "1.5", "ten", ""])
def test_it_refuses_a_bad_limit_without_calling_the_exchange(sim, subaccounts, as_admin, value):
    group = sim.create_group(1, 100)

    response = as_admin.post(f"/groups/1/{group}/limit/", {"contracts_limit": value})

    assert response.status_code == 400
    assert "errorlist" in text(response)
    assert upstream_calls(sim) == 0
    assert sim.group(group)["contracts_limit"] == 100


# --- upstream failures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "answer", "words"),
    [
        ("error", 500, 502, "internal error"),
        ("rate_limit", None, 429, "Rate limited by the exchange"),
    ],
)
@pytest.mark.parametrize("htmx", [False, True])
def test_it_shows_an_exchange_failure_in_place(sim, subaccounts, as_operator, kind, status, answer, words, htmx):
    group = sim.create_group(1, 10)
    sim.set_fault(kind, path=f"/portfolio/order_groups/{group}/trigger", method="PUT", status=status)

    response = as_operator.post(f"/groups/1/{group}/trigger/", {"reason": "test"}, headers=HTMX if htmx else {})

    assert response.status_code == answer
    page = text(response)
    assert words in page and 'role="alert"' in page
    assert "Traceback" not in page
    assert ("<html" in page) is not htmx  # the form again, with the error: a page, or the panel in place
    assert sim.group(group)["triggered"] is False
    assert AuditEvent.objects.get(action="trigger", outcome="failed").reason == "test"


def test_it_says_not_found_when_a_group_id_is_sent_to_the_wrong_subaccount(sim, subaccounts, as_operator):
    group = sim.create_group(1, 10)

    response = as_operator.post(f"/groups/2/{group}/trigger/", {"reason": "wrong desk"})

    assert response.status_code == 404
    assert "Order group not found on subaccount 2." in text(response)
    assert sim.group(group)["triggered"] is False


# --- permissions ---------------------------------------------------------------------------------


def test_it_refuses_trigger_for_a_viewer_and_hides_the_button(sim, subaccounts, as_viewer):
    group = sim.create_group(1, 10)

    assert "Trigger…" not in text(as_viewer.get("/"))
    assert "Trigger group…" not in text(as_viewer.get(f"/groups/1/{group}/"))
    sim.clear_requests()

    response = as_viewer.post(f"/groups/1/{group}/trigger/", {"reason": "let me"})

    assert response.status_code == 403
    assert upstream_calls(sim) == 0
    assert sim.group(group)["triggered"] is False
    assert AuditEvent.objects.filter(action="trigger", outcome="denied").exists()


def test_an_operator_sees_trigger_but_not_admin_actions(sim, subaccounts, as_operator):
    group = sim.create_group(1, 10)

    assert "Trigger…" in text(as_operator.get("/")) and "New order group…" not in text(as_operator.get("/"))
    detail = text(as_operator.get(f"/groups/1/{group}/"))
    assert "Trigger group…" in detail and "Delete group…" not in detail and "Change limit…" not in detail
    sim.clear_requests()

    assert as_operator.post(f"/groups/1/{group}/delete/", {"reason": "x"}).status_code == 403
    assert as_operator.post(f"/groups/1/{group}/limit/", {"contracts_limit": "5"}).status_code == 403
    assert as_operator.post("/groups/new/", {"subaccount": "1", "contracts_limit": "5"}).status_code == 403
    assert upstream_calls(sim) == 0


def test_a_scoped_operator_gets_404_outside_their_subaccount(sim, subaccounts, as_scoped_operator):
    mine = sim.create_group(1, 10)
    theirs = sim.create_group(2, 10)

    dashboard = text(as_scoped_operator.get("/"))
    assert mine in dashboard and theirs not in dashboard
    assert [r.query.get("subaccount") for r in sim.requests] == ["1"]
    sim.clear_requests()

    assert as_scoped_operator.get(f"/groups/2/{theirs}/").status_code == 404
    assert as_scoped_operator.get(f"/groups/2/{theirs}/trigger/").status_code == 404
    assert as_scoped_operator.post(f"/groups/2/{theirs}/trigger/", {"reason": "x"}).status_code == 404
    assert upstream_calls(sim) == 0
    assert sim.group(theirs)["triggered"] is False


def test_a_group_page_whose_key_cannot_be_decrypted_says_so_instead_of_failing(settings, sim, subaccounts, as_operator):
    group = sim.create_group(1, 10)
    settings.OGPANEL_ENCRYPTION_KEYS = vault.new_key_entry("other")  # the stored key's encryption key is gone

    page = as_operator.get(f"/groups/1/{group}/")
    trigger = as_operator.post(f"/groups/1/{group}/trigger/", {"reason": "drill"}, headers=HTMX)

    assert page.status_code == 409 and "cannot be used here" in text(page)
    assert trigger.status_code == 409 and "An admin must rotate it" in text(trigger)
    assert upstream_calls(sim) == 0 and sim.group(group)["triggered"] is False
    assert AuditEvent.objects.filter(action="trigger", outcome="failed", error_code="credential_unusable").exists()
