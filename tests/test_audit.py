"""audit.py's promises: one attempt and one result per operation, refusals recorded, no secrets,
a hash chain that `verify_audit` checks, and (on PostgreSQL) a table that refuses rewrites."""

import io
import json
import threading
import time
from contextlib import contextmanager
from importlib import import_module

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.http import HttpResponse
from django.test import RequestFactory

from ogpanel import audit, jobs, permissions, services, sweeps
from ogpanel.kalshi import KalshiError, NotFound
from ogpanel.models import AuditEvent, OpenAttempt
from ogpanel.permissions import Action

ACTOR = audit.Actor.system("test")
ON_POSTGRESQL = connection.vendor == "postgresql"
TABLE = connection.ops.quote_name(AuditEvent._meta.db_table)
postgresql_only = pytest.mark.skipif(not ON_POSTGRESQL, reason="the database guard and advisory lock are PostgreSQL's")


def attempts_and_results(action: str) -> list[tuple[AuditEvent, list[AuditEvent]]]:
    return [
        (attempt, list(AuditEvent.objects.filter(attempt_seq=attempt.seq)))
        for attempt in AuditEvent.objects.filter(action=action, outcome=AuditEvent.Outcome.ATTEMPTED)
    ]


# --- one attempt and one result, for every operation and every way it can end -------------------


def _create(sub, group_id):
    services.ordergroup_create(actor=ACTOR, subaccount=sub, contracts_limit=10)


def _delete(sub, group_id):
    services.ordergroup_delete(actor=ACTOR, subaccount=sub, order_group_id=group_id, reason="test")


def _reset(sub, group_id):
    services.ordergroup_reset(actor=ACTOR, subaccount=sub, order_group_id=group_id, reason="test")


def _trigger(sub, group_id):
    services.ordergroup_trigger(actor=ACTOR, subaccount=sub, order_group_id=group_id, reason="test")


def _update_limit(sub, group_id):
    services.ordergroup_update_limit(
        actor=ACTOR, subaccount=sub, order_group_id=group_id, contracts_limit=5, previous_limit=100, reason="test"
    )


def _credential_test(sub, group_id):
    services.credential_test(actor=ACTOR, credential=sub.credential, subaccount=sub.number)


OPERATIONS = {
    "create": _create,
    "delete": _delete,
    "reset": _reset,
    "trigger": _trigger,
    "update_limit": _update_limit,
    "credential_test": _credential_test,
}
GROUP_OPERATIONS = ("delete", "reset", "trigger", "update_limit")
# ending -> (outcome, upstream status, error code)
ENDINGS = {
    "success": ("succeeded", None, ""),
    "4xx": ("failed", 400, "invalid_parameters"),
    "5xx": ("failed", 500, "internal_server_error"),
    "timeout": ("failed", None, "timeout"),  # no answer to quote: the kind of failure is the code
    "missing group": ("failed", 404, "not_found"),
}
CASES = [
    (operation, ending)
    for operation in OPERATIONS
    for ending in ENDINGS
    if ending != "missing group" or operation in GROUP_OPERATIONS
]


@pytest.mark.parametrize("operation, ending", CASES)
def test_every_operation_records_exactly_one_attempt_and_one_result(operation, ending, sim, subaccounts, settings):
    settings.OGPANEL_READ_TIMEOUT = 0.5
    sub = subaccounts[1]
    group_id = "og_missing" if ending == "missing group" else sim.create_group(1, 100)
    if ending == "4xx":
        sim.set_fault("error", status=400)
    elif ending == "5xx":
        sim.set_fault("error", status=500)  # retried by the client for some operations: still one result
    elif ending == "timeout":
        sim.set_fault("hang", seconds=2)

    if ending == "success":
        OPERATIONS[operation](sub, group_id)
    else:
        with pytest.raises(NotFound if ending == "missing group" else Exception):
            OPERATIONS[operation](sub, group_id)

    [(attempt, results)] = attempts_and_results(operation)
    assert len(results) == 1 and AuditEvent.objects.count() == 2
    [result] = results
    outcome, status, code = ENDINGS[ending]
    assert (result.outcome, result.upstream_status, result.error_code) == (outcome, status, code)
    assert result.seq == attempt.seq + 1 and result.prev_hash == attempt.hash
    assert (result.subaccount, result.api_key_id, result.environment) == (1, "test-key", "custom")
    assert result.latency_ms is not None and result.actor_username == "test"
    if operation in GROUP_OPERATIONS:
        assert attempt.order_group_id == result.order_group_id == group_id
    if ending == "success":
        assert result.error == ""
    else:
        assert result.error  # the operator's message, as shown on the page
    if ending == "timeout":
        assert "did not answer within 0.5 s" in result.error and result.latency_ms >= 450
    assert audit.verify().ok


def test_a_limit_change_records_the_limit_before_and_after(sim, subaccounts):
    group_id = sim.create_group(1, 100)
    _update_limit(subaccounts[1], group_id)
    [(attempt, [result])] = attempts_and_results("update_limit")
    assert attempt.params == result.params == {"contracts_limit": 5, "previous_limit": 100}


def test_a_created_group_id_is_recorded_with_the_result(sim, subaccounts):
    created = services.ordergroup_create(actor=ACTOR, subaccount=subaccounts[2], contracts_limit=10)
    [(attempt, [result])] = attempts_and_results("create")
    assert attempt.params == {"contracts_limit": 10, "exchange_index": 0}
    assert result.params["order_group_id"] == created.order_group_id


def test_the_kill_switch_records_the_sweep_and_each_group_within_it(sim, subaccounts):
    ok_group, failing_group = sim.create_group(1, 100), sim.create_group(2, 100)
    sim.set_fault("error", status=500, subaccount=2, path="/trigger")
    started = sweeps.sweep_start(
        actor=ACTOR,
        subaccounts=subaccounts[1:3],
        reason="drill",
        action=sweeps.TRIGGER,
        lease_owner="",
        lease_seconds=10,
    )
    assert jobs.claim(started.sweep.pk, "test") and jobs.run(started.sweep.pk, "test", threading.Event())

    [(sweep, [sweep_result])] = attempts_and_results("kill_switch_trigger")
    assert sweep_result.outcome == "succeeded" and sweep_result.params["failed"] == 1
    assert sweep.reason == "drill" and sweep.params == {"subaccounts": [1, 2]}
    per_group: dict[str, list] = {}
    for attempt, results in attempts_and_results("trigger"):
        assert len(results) == 1 and attempt.params == {"kill_switch": sweep.seq} and attempt.reason == "drill"
        per_group.setdefault(attempt.order_group_id, []).append(results[0])
    assert [result.outcome for result in per_group[ok_group]] == ["succeeded"]
    # A group the exchange keeps refusing is tried again after each read-back, up to MAX_TRIES calls.
    assert [(result.outcome, result.upstream_status) for result in per_group[failing_group]] == [
        ("failed", 500)
    ] * sweeps.MAX_TRIES
    assert audit.verify().ok


def test_attempts_recorded_together_are_chained_in_order_between_single_events(credential):
    audit.append(ACTOR, action="login", outcome="succeeded")
    pendings = audit.Pending.many(
        ACTOR,
        "trigger",
        [{"credential": credential, "subaccount": n, "order_group_id": f"og_{n}", "reason": "drill"} for n in range(3)],
    )
    pendings[1].failed(NotFound("gone", status=404))
    audit.append(ACTOR, action="logout", outcome="succeeded")

    events = list(AuditEvent.objects.order_by("seq"))
    assert [(e.seq, e.action, e.outcome, e.order_group_id) for e in events] == [
        (1, "login", "succeeded", ""),
        (2, "trigger", "attempted", "og_0"),
        (3, "trigger", "attempted", "og_1"),
        (4, "trigger", "attempted", "og_2"),
        (5, "trigger", "failed", "og_1"),
        (6, "logout", "succeeded", ""),
    ]
    assert [p.event.pk for p in pendings] == [e.pk for e in events[1:4]]
    assert events[1].api_key_id == credential.key_id and events[4].attempt_seq == 3
    assert audit.verify().ok


@pytest.fixture
def other_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def test_credential_changes_are_recorded_and_no_private_key_text_reaches_any_event(db, sim, rsa_pem, other_pem):
    credential = services.credential_create(
        actor=ACTOR,
        label="desk",
        environment="custom",
        key_id="test-key",
        private_key_pem=rsa_pem,
        custom_base_url=sim.base_url,
    )
    services.credential_test(actor=ACTOR, credential=credential)
    services.credential_rotate(actor=ACTOR, credential=credential, key_id="key-2", private_key_pem=other_pem)
    with pytest.raises(KalshiError):  # the simulator does not know key-2: a failure whose message is recorded
        services.credential_test(actor=ACTOR, credential=credential)
    encrypted = credential.private_key_encrypted
    services.credential_remove(actor=ACTOR, credential=credential)

    for action in ("credential_create", "credential_rotate", "credential_remove"):
        [(_attempt, [result])] = attempts_and_results(action)
        assert result.outcome == "succeeded"
    assert len(attempts_and_results("credential_test")) == 2 and AuditEvent.objects.count() == 10
    rotated = attempts_and_results("credential_rotate")[0][1][0]
    assert rotated.params["before"]["key_id"] == "test-key" and rotated.api_key_id == "key-2"

    dump = "\n".join(json.dumps(row, default=str) for row in AuditEvent.objects.values())
    for pem in (rsa_pem, other_pem):
        body = [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]
        assert len(body) > 20
        assert not any(line in dump for line in body)
    assert encrypted[-40:] not in dump and "PRIVATE KEY" not in dump


def test_a_process_stopped_mid_call_leaves_an_attempt_without_a_result(credential):
    with pytest.raises(KeyboardInterrupt):
        with audit.attempt(ACTOR, "trigger", credential=credential, subaccount=1, order_group_id="og_1"):
            raise KeyboardInterrupt  # what stopping a worker mid-request looks like from inside
    [(attempt, results)] = attempts_and_results("trigger")
    assert results == [] and attempt.order_group_id == "og_1"


def test_open_attempts_follow_the_chain_and_the_migration_backfill_rebuilds_them_alike(credential):
    def lone_attempts() -> set[int]:  # computed from the events themselves, as the review page once did
        answered = set(AuditEvent.objects.exclude(attempt_seq=None).values_list("attempt_seq", flat=True))
        attempts = AuditEvent.objects.filter(outcome=AuditEvent.Outcome.ATTEMPTED).values_list("seq", flat=True)
        return set(attempts) - answered

    def open_attempts() -> set[int]:
        return set(OpenAttempt.objects.values_list("seq", flat=True))

    audit.append(ACTOR, action="login", outcome="succeeded")
    swept = audit.Pending.many(ACTOR, "trigger", [{"credential": credential, "subaccount": n} for n in range(4)])
    swept[0].succeeded()
    swept[2].failed(NotFound("gone", status=404))
    with pytest.raises(KeyboardInterrupt), audit.attempt(ACTOR, "reset", subaccount=1) as crashed:
        raise KeyboardInterrupt  # the process stops mid-call: this attempt stays open
    with audit.attempt(ACTOR, "delete", credential=credential, subaccount=1):
        pass
    audit.append(ACTOR, action="logout", outcome="succeeded")

    assert open_attempts() == lone_attempts() == {swept[1].event.seq, swept[3].event.seq, crashed.event.seq}
    OpenAttempt.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute(import_module("ogpanel.migrations.0007_open_attempts").BACKFILL)
    assert open_attempts() == lone_attempts()
    assert audit.verify().ok  # the table is beside the chain, not in it


@pytest.mark.django_db(transaction=True)
def test_the_attempt_is_committed_before_the_exchange_is_called(sim, subaccounts, settings):
    if not ON_POSTGRESQL:
        pytest.skip("needs a second connection that sees only committed rows; SQLite's test database is shared memory")
    settings.OGPANEL_READ_TIMEOUT = 1.0
    group_id = sim.create_group(1, 100)
    sim.set_fault("hang", seconds=2, path="/trigger")

    def trigger():
        try:
            with pytest.raises(KalshiError):
                _trigger(subaccounts[1], group_id)
        finally:
            connection.close()

    worker = threading.Thread(target=trigger)
    worker.start()
    deadline = time.monotonic() + 5
    while not any(r.path.endswith("/trigger") for r in sim.requests) and time.monotonic() < deadline:
        time.sleep(0.01)
    # The exchange has the request and has not answered: this connection already sees the attempt.
    seen_during_call = list(AuditEvent.objects.values_list("action", "outcome"))
    worker.join()
    assert seen_during_call == [("trigger", "attempted")]
    assert AuditEvent.objects.filter(attempt_seq__isnull=False).get().outcome == "failed"


# --- refusals and one-off events ---------------------------------------------------------------


def _request(user, method: str = "post", path: str = "/groups/1/og_x/trigger/"):
    request = getattr(RequestFactory(), method)(path, HTTP_USER_AGENT="pytest-agent", REMOTE_ADDR="10.1.2.3")
    request.user = user
    request.request_id = "req-0123456789"
    return request


def test_a_viewer_posting_a_trigger_is_refused_recorded_and_nothing_is_sent(sim, subaccounts, viewer):
    view = permissions.require(Action.TRIGGER)(lambda request, **kwargs: HttpResponse("triggered"))
    response = view(_request(viewer), subaccount=1, group_id="og_x")

    assert response.status_code == 403
    event = AuditEvent.objects.get()
    assert (event.action, event.outcome, event.error) == ("trigger", "denied", "permission denied")
    assert (event.subaccount, event.order_group_id) == (1, "og_x")
    assert (event.actor_id, event.actor_username, event.actor_role) == (viewer.pk, "vera", "viewer")
    assert (event.request_id, event.client_ip, event.user_agent) == ("req-0123456789", "10.1.2.3", "pytest-agent")
    assert sim.requests == []


def test_a_refusal_answered_as_not_found_is_recorded_too(scoped_operator):
    response = permissions.deny(
        _request(scoped_operator), Action.TRIGGER, {"subaccount": 2, "group_id": "og_y"}, status=404
    )
    assert response.status_code == 404
    event = AuditEvent.objects.get()
    assert (event.outcome, event.subaccount, event.order_group_id, event.actor_username) == ("denied", 2, "og_y", "sam")


def test_invalid_input_is_recorded_as_a_refusal_with_its_reason(operator):
    audit.record_denial(
        _request(operator),
        Action.UPDATE_LIMIT,
        {"subaccount": "1", "contracts_limit": "abc"},
        error="invalid input: limit must be a whole number",
    )
    event = AuditEvent.objects.get()
    assert (event.outcome, event.error, event.params) == (
        "denied",
        "invalid input: limit must be a whole number",
        {"contracts_limit": "abc"},
    )


def test_hostile_refused_input_is_recorded_cut_to_fit_and_the_chain_holds(operator):
    detail = {"subaccount": "99999", "group_id": "og_" + "x" * 500 + "\x00", "note": "a\x00b"}
    audit.record_denial(_request(operator), Action.TRIGGER, detail)
    event = AuditEvent.objects.get()
    assert event.subaccount is None and event.params["subaccount"] == "99999"
    assert len(event.order_group_id) == 100 and event.params["note"] == "a\ufffdb"
    assert audit.verify().ok


def test_sign_ins_and_outs_are_recorded_with_who_and_from_where(operator):
    audit.record(_request(operator), "login", AuditEvent.Outcome.SUCCEEDED)
    audit.record(_request(operator), "logout", AuditEvent.Outcome.SUCCEEDED)
    anonymous = _request(operator)
    anonymous.user = type("Anonymous", (), {"is_authenticated": False, "pk": None})()
    audit.record(anonymous, "login", AuditEvent.Outcome.FAILED, params={"username": "otto"})

    login, logout, failed = AuditEvent.objects.order_by("seq")
    assert (login.action, login.actor_username, login.actor_role, login.client_ip) == (
        "login",
        "otto",
        "ops",
        "10.1.2.3",
    )
    assert (logout.action, logout.outcome) == ("logout", "succeeded")
    assert (failed.outcome, failed.actor_id, failed.actor_username, failed.params) == (
        "failed",
        None,
        "",
        {"username": "otto"},
    )


def test_deleting_a_user_keeps_their_events_and_the_chain(operator):
    audit.record(_request(operator), "login", AuditEvent.Outcome.SUCCEEDED)
    user_id = operator.pk
    operator.delete()  # no cascade into the append-only table (PostgreSQL would refuse one)
    event = AuditEvent.objects.get()
    assert (event.actor_id, event.actor_username, event.actor_role) == (user_id, "otto", "ops")
    assert audit.verify().ok


# --- the hash chain and verify_audit -----------------------------------------------------------


def _chain(n: int = 5) -> list[AuditEvent]:
    return [
        audit.append(ACTOR, action="trigger", outcome="observed", subaccount=1, reason=f"event {i + 1}")
        for i in range(n)
    ]


@contextmanager
def tampering():
    """Raw SQL past the model, as someone with direct database access would write it.

    On PostgreSQL the table's triggers refuse this, so it runs as a replica (superuser only,
    the test database's owner here) until the test's transaction ends.
    """
    with connection.cursor() as cursor:
        if ON_POSTGRESQL:
            cursor.execute("SET LOCAL session_replication_role = replica")
        yield cursor
        if ON_POSTGRESQL:
            cursor.execute("SET LOCAL session_replication_role = origin")


def _edit(cursor):
    cursor.execute(f"UPDATE {TABLE} SET reason = 'nothing happened' WHERE seq = 3")


def _edit_and_rehash(cursor):
    _edit(cursor)
    row = AuditEvent.objects.filter(seq=3).values(*audit.CHAINED_FIELDS).get()
    cursor.execute(f"UPDATE {TABLE} SET hash = %s WHERE seq = 3", [audit.compute_hash(row)])


def _delete(cursor):
    cursor.execute(f"DELETE FROM {TABLE} WHERE seq = 3")


def _delete_first(cursor):
    cursor.execute(f"DELETE FROM {TABLE} WHERE seq = 1")


def _insert(cursor):
    """Make room at 3, then insert a forged event there, correctly chained to event 2."""
    cursor.execute(f"UPDATE {TABLE} SET seq = -seq WHERE seq >= 3")
    cursor.execute(f"UPDATE {TABLE} SET seq = 1 - seq WHERE seq < 0")
    forged = AuditEvent.objects.filter(seq=2).values(*audit.CHAINED_FIELDS, "hash").get()
    forged.update(seq=3, prev_hash=forged["hash"], reason="forged", action="reset")
    forged["hash"] = audit.compute_hash(forged)
    columns = [*audit.CHAINED_FIELDS, "hash"]
    values = [
        json.dumps(forged[c])
        if c == "params"
        else connection.ops.adapt_datetimefield_value(forged[c])
        if c == "at"
        else forged[c]
        for c in columns
    ]
    cursor.execute(f"INSERT INTO {TABLE} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})", values)


def _reorder(cursor):
    cursor.execute(f"UPDATE {TABLE} SET seq = -2 WHERE seq = 2")
    cursor.execute(f"UPDATE {TABLE} SET seq = 2 WHERE seq = 3")
    cursor.execute(f"UPDATE {TABLE} SET seq = 3 WHERE seq = -2")


def test_verify_audit_passes_an_untouched_chain(db):
    events = _chain()
    out = io.StringIO()
    call_command("verify_audit", stdout=out)  # returns: exit status 0
    assert out.getvalue().splitlines() == ["OK: 5 events", f"Head: #5 {events[-1].hash}"]


def test_verify_audit_passes_an_empty_log(db):
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    assert out.getvalue().strip() == "OK: 0 events"


# tampering -> the first sequence number verify_audit must name
TAMPERING = {
    "edited": (_edit, 3),
    # Rehashing an edited event hides it, but the next event's link to it then breaks.
    "edited and rehashed": (_edit_and_rehash, 4),
    "deleted": (_delete, 3),  # event 3 is missing
    "first deleted": (_delete_first, 1),
    # The forged event is chained correctly; the event it displaced no longer links.
    "inserted": (_insert, 4),
    "reordered": (_reorder, 2),
}


@pytest.mark.parametrize("kind", TAMPERING)
def test_verify_audit_names_the_first_bad_event_and_exits_1(kind, db):
    _chain()
    tamper, bad_seq = TAMPERING[kind]
    with tampering() as cursor:
        tamper(cursor)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("verify_audit", stdout=out, stderr=err)
    assert exited.value.code == 1
    assert err.getvalue().startswith(f"FAILED: event #{bad_seq}:") and "OK" not in out.getvalue()


# --- PostgreSQL: the table refuses rewrites; appends stay linear under concurrency ---------------


@postgresql_only
# CASCADE: trip alerts reference events, and without it their foreign key would refuse before the guard does.
@pytest.mark.parametrize(
    "statement", [f"UPDATE {TABLE} SET reason = 'x'", f"DELETE FROM {TABLE}", f"TRUNCATE {TABLE} CASCADE"]
)
def test_postgresql_refuses_to_update_delete_or_truncate_the_audit_table(statement, db):
    _chain(2)
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    assert AuditEvent.objects.count() == 2 and audit.verify().ok


@postgresql_only
def test_postgresql_refuses_rewrites_through_the_orm_too(db):
    _chain(1)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.update(reason="x")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.all().delete()


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_the_chain_stays_valid_after_20_concurrent_actions():
    start = threading.Barrier(20)
    errors: list[BaseException] = []

    def act(n: int) -> None:
        try:
            start.wait()
            with audit.attempt(
                audit.Actor.system(f"worker-{n}"), "trigger", subaccount=n % 4, order_group_id=f"og_{n}"
            ):
                time.sleep(0.01)  # the "exchange call": other threads append meanwhile
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=act, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    result = audit.verify()
    assert result.ok and result.count == 40
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True)) == list(range(1, 41))
    for attempt, results in attempts_and_results("trigger"):
        assert [r.order_group_id for r in results] == [attempt.order_group_id]
