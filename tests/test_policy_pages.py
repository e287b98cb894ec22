"""The Policy page, editing a policy (tightening at once, loosening through a second person), and its file."""

import json

import pytest
from django.urls import reverse

from ogpanel import policy, policy_file
from ogpanel.models import ApprovalRequest, PolicyVersion
from tests.panel_fixtures import make_user
from tests.policy_fixtures import *  # noqa: F403  (fixtures)
from tests.policy_fixtures import only_request, set_policy, signed_in

Status = ApprovalRequest.Status


@pytest.fixture(autouse=True)
def _no_listing_cache(settings):
    settings.OGPANEL_LIST_CACHE_SECONDS = 0


def form_data(rules: policy.Rules, *, base_version: int, reason: str = "desk review", **extra) -> dict:
    data = {
        "contracts_limit_ceiling": "" if rules.ceiling is None else str(rules.ceiling),
        "above_ceiling": rules.above_ceiling,
        "four_eyes": sorted(rules.four_eyes),
        "remediation": rules.remediation,
        "reason": reason,
        "base_version": str(base_version),
    }
    if rules.require_active_group:
        data["require_active_group"] = "on"
    return {**data, **extra}


def test_the_policy_page_shows_each_subaccounts_ceiling_and_its_breaches_now(sim, subaccounts, as_viewer):
    set_policy(ceiling=1000)
    set_policy(2, ceiling=10, four_eyes=frozenset({"reset"}))
    big = sim.create_group(2, 50)

    page = as_viewer.get(reverse("policy")).content.decode()

    row = page[page.index('id="policy-2"') :].split("</tr>")[0]
    assert "own, version 1" in row and ">10<" in row and "reset" in row
    assert f"Order group {big} on subaccount 2 has a limit of 50 contracts, above the ceiling of 10." in row
    first = page[page.index('id="policy-1"') :].split("</tr>")[0]
    assert "default" in first and ">1000<" in first and "none" in first
    assert "Edit…" not in page and "Edit the default policy" not in page  # a viewer reads only


def test_a_tightening_change_applies_at_once(sim, subaccounts, administrator, second_admin):
    set_policy(1, ceiling=100)
    admin = signed_in(administrator)
    assert "Save the policy" in admin.get(reverse("policy_edit", args=[1])).content.decode()

    response = admin.post(
        reverse("policy_edit", args=[1]),
        form_data(policy.Rules(50, four_eyes=frozenset(policy.FOUR_EYES), require_active_group=True), base_version=1),
    )

    assert response.status_code == 302 and ApprovalRequest.objects.count() == 0
    latest = policy.latest(1)
    assert (latest.version, latest.contracts_limit_ceiling, latest.set_by) == (2, 50, "ada")
    assert latest.require_active_group is True


def test_a_loosening_change_waits_for_a_second_admin_and_names_both(sim, subaccounts, administrator, second_admin):
    set_policy(1, ceiling=100)
    admin = signed_in(administrator)

    filed = admin.post(
        reverse("policy_edit", args=[1]),
        form_data(policy.Rules(500, four_eyes=frozenset({"policy"})), base_version=1, reason="bigger book"),
    )

    req = only_request()
    assert filed.status_code == 302 and req.kind == "policy_change" and policy.rules_for(1).ceiling == 100
    assert req.params["loosens"] == [
        "raises the ceiling",
        "no longer needs a second person to reset an order group, reset every group on a subaccount (kill switch), "
        "raise a group's limit, delete an order group, add, rotate or remove a credential, map or unmap a subaccount",
    ]
    signed_in(second_admin).post(reverse("request_approve", args=[req.pk]))
    latest = policy.latest(1)
    assert (latest.version, latest.contracts_limit_ceiling, latest.set_by, latest.approved_by) == (2, 500, "ada", "ben")
    assert latest.reason == "bigger book"


def test_an_approved_change_is_refused_if_the_policy_moved_on(sim, subaccounts, administrator, second_admin):
    set_policy(1, ceiling=100)
    signed_in(administrator).post(
        reverse("policy_edit", args=[1]), form_data(policy.Rules(500), base_version=1, reason="more")
    )
    set_policy(1, ceiling=80)

    signed_in(second_admin).post(reverse("request_approve", args=[only_request().pk]))

    req = only_request()
    assert req.status == Status.FAILED and "policy changed since this request was filed" in req.result
    assert policy.rules_for(1).ceiling == 80


def test_a_stale_form_is_refused(sim, subaccounts, administrator):
    set_policy(1, ceiling=100)
    response = signed_in(administrator).post(
        reverse("policy_edit", args=[1]), form_data(policy.Rules(50), base_version=0)
    )
    assert response.status_code == 409 and PolicyVersion.objects.filter(subaccount=1).count() == 1


def test_loosening_the_default_needs_an_admin_with_every_subaccount_in_scope(sim, subaccounts, administrator):
    set_policy(ceiling=100)
    make_user("scoped-admin", "admin", subaccounts=[1])  # an admin, but not for every subaccount
    admin = signed_in(administrator)

    refused = admin.post(reverse("policy_edit_default"), form_data(policy.Rules(), base_version=1))

    assert refused.status_code == 409 and "with every subaccount in scope" in refused.content.decode()
    assert ApprovalRequest.objects.count() == 0 and policy.rules_for(None).ceiling == 100
    second = make_user("root2", "admin")
    filed = admin.post(reverse("policy_edit_default"), form_data(policy.Rules(), base_version=1))
    assert filed.status_code == 302 and only_request().subaccounts == list(range(33))
    assert signed_in(second).post(reverse("request_approve", args=[only_request().pk])).status_code == 302
    assert policy.rules_for(None) == policy.NO_POLICY


def test_a_scoped_admin_edits_only_their_own_subaccounts_policy(sim, subaccounts):
    scoped = signed_in(make_user("scoped-admin", "admin", subaccounts=[1]))
    assert scoped.get(reverse("policy_edit", args=[1])).status_code == 200
    assert scoped.get(reverse("policy_edit", args=[2])).status_code == 404
    assert scoped.get(reverse("policy_edit_default")).status_code == 403


def test_following_the_default_again_is_a_version_too(sim, subaccounts, administrator):
    set_policy(ceiling=1000, four_eyes=frozenset())
    set_policy(1, ceiling=100, four_eyes=frozenset())
    response = signed_in(administrator).post(
        reverse("policy_edit", args=[1]),
        form_data(policy.NO_POLICY, base_version=1, follows_default="on"),
    )
    assert response.status_code == 302
    assert policy.effective(1).source == "default" and policy.rules_for(1).ceiling == 1000


def test_the_page_downloads_the_policy_file_of_what_the_user_may_see(sim, subaccounts, as_admin):
    set_policy(ceiling=1000)
    set_policy(1, ceiling=10)
    set_policy(2, ceiling=20)
    scoped = signed_in(make_user("scoped", "viewer", subaccounts=[1]))

    whole = as_admin.get(reverse("policy_export"))
    mine = scoped.get(reverse("policy_export"))

    assert whole["Content-Disposition"] == 'attachment; filename="ogpanel-policy.json"'
    assert whole.content.decode() == policy_file.dumps(policy_file.current())
    assert list(json.loads(mine.content)["subaccounts"]) == ["1"]
