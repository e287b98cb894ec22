"""The risk policy: breaches made outside the panel, their remediation, versions, and the policy file.

Breaches are tested the way the trip watch finds them: `watch()` below lists a subaccount
(selectors.listing, real HTTP to the simulator) and hands the listing to breaches.record_breaches,
exactly the one line the watcher runs after each successful listing. "Another client" is the
`kalshi` fixture: a KalshiClient of its own, changing groups behind the panel's back.
"""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from hypothesis import given, settings
from hypothesis import strategies as st

from ogpanel import audit, breaches, notices, policy, policy_file, selectors
from ogpanel.kalshi import MAX_CONTRACTS_LIMIT, OrderGroup
from ogpanel.models import AuditEvent, Notice, PolicyBreach, PolicyVersion, Subaccount
from tests.policy_fixtures import *  # noqa: F403  (fixtures)
from tests.policy_fixtures import set_policy

Kind = PolicyBreach.Kind
NO_FOUR_EYES = frozenset()


@pytest.fixture(autouse=True)
def _no_listing_cache(settings):
    settings.OGPANEL_LIST_CACHE_SECONDS = 0


def watch(sub: Subaccount, **options) -> breaches.BreachReport:
    """What the trip watch does after each successful listing of a subaccount."""
    return breaches.record_breaches(sub, selectors.listing(sub, fresh=True), **options)


def breach_events(action: str = "policy_breach") -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


# --- breaches made at the exchange ---------------------------------------------------------------------


def test_a_group_raised_above_its_ceiling_by_another_client_is_one_breach_and_one_alert_until_lowered(
    sim, kalshi, subaccounts, webhook
):
    set_policy(1, ceiling=100, four_eyes=NO_FOUR_EYES)
    sub = subaccounts[1]
    group = sim.create_group(1, 50)
    assert watch(sub).opened == []

    kalshi.update_order_group_limit(group, 500, subaccount=1)
    first, second = watch(sub), watch(sub)

    assert [(b.kind, b.order_group_id, b.contracts_limit, b.ceiling) for b in first.opened] == [
        (Kind.ABOVE_CEILING, group, 500, 100)
    ]
    assert second.opened == [] and second.cleared == []
    (event,) = breach_events()
    assert (event.actor_username, event.outcome, event.subaccount, event.order_group_id) == (
        "policy",
        "observed",
        1,
        group,
    )
    assert event.params["contracts_limit"] == 500 and event.params["ceiling"] == 100
    assert notices.deliver_due() == 1
    (alert,) = webhook.bodies
    assert alert["event"] == "policy_breach" and alert["breach"] == "above_ceiling"
    assert (alert["order_group_id"], alert["contracts_limit"], alert["ceiling"]) == (group, 500, 100)
    assert alert["audit_seq"] == event.seq
    assert sim.group(group)["contracts_limit"] == 500  # remediation is off: the panel only reports

    kalshi.update_order_group_limit(group, 80, subaccount=1)
    cleared = watch(sub)

    assert [row.order_group_id for row in cleared.cleared] == [group]
    (gone,) = breach_events("policy_breach_cleared")
    assert gone.params["opened_seq"] == event.seq
    row = PolicyBreach.objects.get()
    assert row.cleared_seq == gone.seq and row.cleared_at is not None
    assert watch(sub).cleared == [] and Notice.objects.count() == 1
    assert audit.verify().ok

    kalshi.update_order_group_limit(group, 900, subaccount=1)  # a new breach is a new event
    assert len(watch(sub).opened) == 1 and len(breach_events()) == 2


def test_a_group_created_above_its_ceiling_at_the_exchange_is_a_breach(sim, kalshi, subaccounts):
    set_policy(ceiling=100, four_eyes=NO_FOUR_EYES)  # the default covers subaccount 2
    created = kalshi.create_order_group(250, subaccount=2)
    report = watch(subaccounts[2])
    assert [b.order_group_id for b in report.opened] == [created.order_group_id]
    assert "above the ceiling of 100" in report.opened[0].text


def test_remediation_lowers_the_limit_back_to_the_ceiling_when_switched_on(sim, kalshi, subaccounts):
    set_policy(1, ceiling=100, remediation="lower_limit", four_eyes=frozenset(policy.FOUR_EYES))
    sub = subaccounts[1]
    group = sim.create_group(1, 50)
    kalshi.update_order_group_limit(group, 500, subaccount=1)

    report = watch(sub)

    assert len(report.opened) == 1 and report.remediated == [f"Lowered the limit of {group} from 500 to 100."]
    assert sim.group(group)["contracts_limit"] == 100
    lowered = AuditEvent.objects.get(action="update_limit", outcome="succeeded")
    assert lowered.actor_username == "policy" and lowered.params["previous_limit"] == 500
    assert lowered.reason.startswith("Policy remediation: Order group")
    assert [row.order_group_id for row in watch(sub).cleared] == [group]
    assert AuditEvent.objects.filter(action="update_limit", outcome="attempted").count() == 1


def test_remediation_can_trigger_the_group_instead(sim, kalshi, subaccounts):
    set_policy(1, ceiling=100, remediation="trigger", four_eyes=NO_FOUR_EYES)
    group = sim.create_group(1, 50)
    kalshi.update_order_group_limit(group, 500, subaccount=1)

    assert watch(subaccounts[1]).remediated == [f"Triggered {group}."]
    assert sim.group(group)["triggered"] is True
    assert watch(subaccounts[1]).remediated == []  # triggered already: nothing more to do
    kalshi.reset_order_group(group, subaccount=1)  # someone reopens it while it is still above the ceiling
    assert watch(subaccounts[1]).remediated == [f"Triggered {group}."]


def test_a_failed_remediation_is_tried_again_later_not_at_every_poll(sim, kalshi, subaccounts):
    set_policy(1, ceiling=100, remediation="lower_limit", four_eyes=NO_FOUR_EYES)
    sub = subaccounts[1]
    group = sim.create_group(1, 50)
    kalshi.update_order_group_limit(group, 500, subaccount=1)
    sim.set_fault("error", path=f"/portfolio/order_groups/{group}/limit", method="PUT", status=400)

    failed = watch(sub)
    soon = watch(sub)
    row = PolicyBreach.objects.get()
    later = watch(sub, now=row.remediation_tried_at + breaches.REMEDIATION_RETRY + timedelta(seconds=1))

    assert failed.remediated[0].startswith("Remediation failed:") and soon.remediated == []
    assert later.remediated[0].startswith("Remediation failed:")
    assert AuditEvent.objects.filter(action="update_limit", outcome="failed").count() == 2
    assert row.remediation_ok is False and sim.group(group)["contracts_limit"] == 500


def test_a_subaccount_left_without_an_active_group_is_a_breach_until_one_is_active(sim, kalshi, subaccounts):
    set_policy(3, require_active_group=True, four_eyes=NO_FOUR_EYES)
    sub = subaccounts[3]
    assert [b.kind for b in watch(sub).opened] == [Kind.NO_ACTIVE_GROUP]  # no group at all
    group = sim.create_group(3, 10)
    assert len(watch(sub).cleared) == 1

    kalshi.trigger_order_group(group, subaccount=3)
    report = watch(sub)
    assert [b.text for b in report.opened] == [
        "Subaccount 3 has no active order group; its policy requires at least one."
    ]
    kalshi.reset_order_group(group, subaccount=3)
    assert len(watch(sub).cleared) == 1
    assert len(breach_events()) == 2 and len(breach_events("policy_breach_cleared")) == 2


def test_a_listing_that_failed_changes_nothing(sim, kalshi, subaccounts):
    set_policy(1, ceiling=100, four_eyes=NO_FOUR_EYES)
    group = sim.create_group(1, 500)
    watch(subaccounts[1])
    kalshi.update_order_group_limit(group, 50, subaccount=1)
    sim.set_fault("error", subaccount=1, status=500)

    report = watch(subaccounts[1])

    assert (report.opened, report.cleared) == ([], [])
    assert PolicyBreach.objects.get().cleared_at is None


def test_without_a_policy_nothing_is_a_breach(sim, subaccounts):
    sim.create_group(1, MAX_CONTRACTS_LIMIT)
    assert watch(subaccounts[1]).opened == [] and PolicyBreach.objects.count() == 0


# --- the detector, the loosening rule, the file: as properties ---------------------------------------------

rules = st.builds(
    policy.Rules,
    ceiling=st.none() | st.integers(1, 2500) | st.integers(1, MAX_CONTRACTS_LIMIT),
    above_ceiling=st.sampled_from(PolicyVersion.AboveCeiling.values),
    require_active_group=st.booleans(),
    four_eyes=st.frozensets(st.sampled_from(list(policy.FOUR_EYES))),
    remediation=st.sampled_from(PolicyVersion.Remediation.values),
)
groups = st.lists(
    st.builds(
        OrderGroup,
        id=st.uuids().map(str),
        contracts_limit=st.none() | st.integers(1, 2000),
        contracts_limit_fp=st.none(),
        is_auto_cancel_enabled=st.booleans(),
        exchange_index=st.just(0),
    ),
    max_size=6,
    unique_by=lambda group: group.id,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(found=groups, rules=rules)
def test_breaches_are_exactly_the_groups_above_the_ceiling_and_a_missing_active_group(found, rules):
    found_breaches = breaches.breaches_in(7, found, rules)

    above = [b for b in found_breaches if b.kind == Kind.ABOVE_CEILING]
    assert [b.order_group_id for b in above] == [
        g.id for g in found if rules.ceiling is not None and (g.contracts_limit or 0) > rules.ceiling
    ]
    assert all(b.contracts_limit > b.ceiling == rules.ceiling and b.subaccount == 7 for b in above)
    missing = [b for b in found_breaches if b.kind == Kind.NO_ACTIVE_GROUP]
    assert len(missing) == (1 if rules.require_active_group and not any(not g.triggered for g in found) else 0)
    assert len({b.key for b in found_breaches}) == len(found_breaches)  # one breach per group and kind


@settings(max_examples=400, deadline=None, derandomize=True)
@given(a=rules, b=rules, c=rules)
def test_any_change_loosens_one_way_or_the_other_and_tightening_composes(a, b, c):
    assert policy.loosenings(a, a) == []
    if a != b:
        assert policy.loosenings(a, b) or policy.loosenings(b, a)
    if not policy.loosenings(a, b) and not policy.loosenings(b, c):
        assert policy.loosenings(a, c) == []


@settings(max_examples=200, deadline=None, derandomize=True)
@given(default=rules, named=st.dictionaries(st.integers(0, 32), rules, max_size=5))
def test_a_policy_file_reads_back_as_it_was_written(default, named):
    document = policy_file.PolicyDocument(default, named)
    text = policy_file.dumps(document)
    assert policy_file.loads(text) == document
    assert policy_file.dumps(policy_file.loads(text)) == text


# --- versions, export and import ------------------------------------------------------------------------


def test_every_change_is_a_new_audited_version(db):
    set_policy(1, ceiling=100)
    set_policy(1, ceiling=50)
    versions = list(PolicyVersion.objects.filter(subaccount=1).order_by("version"))
    assert [(v.version, v.contracts_limit_ceiling) for v in versions] == [(1, 100), (2, 50)]
    changes = AuditEvent.objects.filter(action="policy_change").order_by("seq")
    assert [(e.subaccount, e.params["version"], e.params["rules"]["contracts_limit_ceiling"]) for e in changes] == [
        (1, 1, 100),
        (1, 2, 50),
    ]
    assert changes[1].params["loosens"] == [] and policy.rules_for(1).ceiling == 50
    with pytest.raises(policy.PolicyChanged):
        policy.policy_set(
            actor=audit.Actor.system("t"), subaccount=1, rules=policy.NO_POLICY, reason="x", base_version=1
        )


def test_policy_export_and_import_round_trip(db, tmp_path, capsys):
    set_policy(ceiling=1000, require_active_group=True)
    set_policy(2, ceiling=10, above_ceiling="approve", remediation="trigger", four_eyes=frozenset({"reset"}))
    set_policy(5, four_eyes=NO_FOUR_EYES)
    exported = tmp_path / "policy.json"
    call_command("policy_export", output=str(exported))
    text = exported.read_text()
    assert '"format": "ogpanel-policy/1"' in text and '"2": {' in text and '"5": {' in text

    # The panel drifts: one subaccount changes, one follows the default again, a new one gets its own.
    set_policy(2, ceiling=20)
    policy.policy_set(
        actor=audit.Actor.system("t"), subaccount=5, rules=policy.NO_POLICY, reason="x", follows_default=True
    )
    set_policy(9, ceiling=1)
    set_policy(ceiling=5)
    capsys.readouterr()

    call_command("policy_import", str(exported), "--dry-run")
    dry = capsys.readouterr().out
    assert "4 changes (dry run)." in dry and PolicyVersion.objects.filter(subaccount=9).count() == 1
    call_command("policy_import", str(exported))
    assert capsys.readouterr().out.endswith("4 changes.\n")

    assert policy_file.dumps(policy_file.current()) == text
    assert policy.effective(9).source == "default" and policy.rules_for(2).ceiling == 10
    call_command("policy_import", str(exported))
    assert capsys.readouterr().out == "0 changes.\n"
    imported = AuditEvent.objects.filter(action="policy_change", actor_username="policy_import")
    assert imported.count() == 4 and all(e.reason.startswith(f"Imported from {exported}") for e in imported)


def test_it_imports_a_policy_file_from_stdin(db, monkeypatch, capsys):
    set_policy(2, ceiling=10)
    text = policy_file.dumps(policy_file.current())
    set_policy(2, ceiling=20)
    capsys.readouterr()

    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    call_command("policy_import", "-")
    assert capsys.readouterr().out.endswith("1 change.\n") and policy.rules_for(2).ceiling == 10


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("not json", "Not JSON"),
        ('{"format": "other"}', 'must be "ogpanel-policy/1"'),
        ('{"format": "ogpanel-policy/1"}', "default: expected an object"),
        ('{"format": "ogpanel-policy/1", "default": {}}', "default: missing above_ceiling"),
        ("BAD_CEILING", "contracts_limit_ceiling must be null or a whole number"),
        ("BAD_NAME", "unknown four_eyes name trigger"),
        ("BAD_SUBACCOUNT", "'64' is not a subaccount number"),
    ],
)
def test_a_bad_policy_file_is_refused_whole_with_the_reason(db, tmp_path, content, words):
    good = policy.SUGGESTED.as_dict()
    bad = {
        "BAD_CEILING": {"default": good, "subaccounts": {"1": {**good, "contracts_limit_ceiling": True}}},
        "BAD_NAME": {"default": good, "subaccounts": {"1": {**good, "four_eyes": ["reset", "trigger"]}}},
        "BAD_SUBACCOUNT": {"default": good, "subaccounts": {"64": good}},
    }
    if content in bad:
        content = json.dumps({"format": policy_file.FORMAT, **bad[content]})
    path = tmp_path / "policy.json"
    path.write_text(content)

    with pytest.raises(CommandError, match=words.replace("(", r"\(")):
        call_command("policy_import", str(path))
    assert PolicyVersion.objects.count() == 0
