"""Audit checkpoints: what someone who can write to the database (and only to it) cannot hide.

The tamper matrix's two gaps, on whichever database the suite runs on: the last events deleted,
and the chain rewritten whole with every hash recomputed. Both pass `verify_audit`; both fail
`verify_audit --against CHECKPOINTS`. So does a checkpoint altered or forged without the key.
Tampering is raw SQL past the model (tests.test_audit.tampering), as a database user would.
"""

import hashlib
import hmac
import io
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from ogpanel import audit, checkpoints, vault
from ogpanel.models import AuditEvent
from tests.test_audit import ACTOR, TABLE, _chain, tampering

NEW_KEY, OLD_KEY = vault.new_key_entry("c2"), vault.new_key_entry("c1")


@pytest.fixture
def checkpoint_file(settings, tmp_path, monkeypatch) -> Path:
    settings.OGPANEL_AUDIT_CHECKPOINT_KEYS = f"{NEW_KEY},{OLD_KEY}"
    settings.OGPANEL_AUDIT_CHECKPOINT_FILE = str(tmp_path / "outside" / "checkpoints.jsonl")
    monkeypatch.setattr(checkpoints, "_last_written", None)
    return Path(settings.OGPANEL_AUDIT_CHECKPOINT_FILE)


def verify(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_audit", "--workers", "1", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        return exc.code, out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def raw_key(entry: str) -> bytes:
    return vault.parse_keys(entry)[entry.split(":", 1)[0]]


def truncate(keep: int) -> None:
    with tampering() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE seq > %s", [keep])


def rewrite_from(seq: int) -> None:
    """Edit event `seq` and recompute every hash and link after it: a chain that verifies."""
    with tampering() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET reason = 'nothing happened' WHERE seq = %s", [seq])
        previous = AuditEvent.objects.filter(seq=seq - 1).values_list("hash", flat=True).first() or audit.GENESIS
        for row in AuditEvent.objects.filter(seq__gte=seq).order_by("seq").values(*audit.CHAINED_FIELDS):
            row["prev_hash"] = previous
            previous = audit.compute_hash(row)
            cursor.execute(
                f"UPDATE {TABLE} SET prev_hash = %s, hash = %s WHERE seq = %s", [row["prev_hash"], previous, row["seq"]]
            )


# --- writing --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_checkpoint_holds_the_head_and_a_mac_only_the_key_makes(checkpoint_file, caplog):
    caplog.set_level(logging.INFO, logger="ogpanel.checkpoints")
    events = _chain(5)

    record = checkpoints.write(reason="test")

    assert lines(checkpoint_file) == [record]
    assert (record["seq"], record["hash"], record["reason"], record["key"]) == (5, events[-1].hash, "test", "c2")
    assert record["event_at"] == audit.timestamp(events[-1].at)
    signed = json.dumps({k: v for k, v in record.items() if k != "mac"}, sort_keys=True, separators=(",", ":"))
    assert record["mac"] == hmac.new(raw_key(NEW_KEY), signed.encode(), hashlib.sha256).hexdigest()
    [logged] = [r.getMessage() for r in caplog.records if r.name == "ogpanel.checkpoints"]
    assert json.loads(logged.split(" ", 2)[2]) == record  # the log line is a whole checkpoint too


@pytest.mark.django_db
def test_an_empty_log_is_checkpointed_as_the_genesis(checkpoint_file):
    record = checkpoints.write(reason="test")

    assert (record["seq"], record["hash"], record["event_at"]) == (0, audit.GENESIS, "")
    assert verify("--against", str(checkpoint_file))[0] == 0


@pytest.mark.django_db
def test_write_if_due_writes_when_the_interval_has_passed_and_the_log_has_grown(settings, checkpoint_file, monkeypatch):
    settings.OGPANEL_AUDIT_CHECKPOINT_SECONDS = 60
    now = [1000.0]
    monkeypatch.setattr(checkpoints, "_clock", lambda: now[0])
    _chain(2)

    assert checkpoints.write_if_due()["seq"] == 2  # a process's first call writes at once
    _chain(1)
    now[0] += 59
    assert checkpoints.write_if_due() is None  # not due yet
    now[0] += 2
    assert checkpoints.write_if_due()["seq"] == 3
    now[0] += 600
    assert checkpoints.write_if_due() is None  # due, but nothing new to vouch for
    assert [(r["seq"], r["reason"]) for r in lines(checkpoint_file)] == [(2, "periodic"), (3, "periodic")]


@pytest.mark.django_db
def test_without_a_key_nothing_is_written_and_checking_against_checkpoints_is_refused(settings, checkpoint_file):
    settings.OGPANEL_AUDIT_CHECKPOINT_KEYS = ""
    _chain(2)

    assert checkpoints.write(reason="test") is None and checkpoints.write_if_due() is None
    assert not checkpoint_file.exists()
    checkpoint_file.parent.mkdir()
    checkpoint_file.write_text("")
    with pytest.raises(CommandError, match="needs their key"):
        verify("--against", str(checkpoint_file))
    with pytest.raises(CommandError, match="OGPANEL_AUDIT_CHECKPOINT_KEYS"):
        call_command("audit_checkpoint")


@pytest.mark.django_db
def test_a_file_that_cannot_be_written_is_logged_and_never_raises(settings, checkpoint_file, caplog):
    checkpoint_file.mkdir(parents=True)  # a directory where the file should be
    _chain(1)

    assert checkpoints.write(reason="kill_switch_trigger") is None
    assert "audit checkpoint not written" in caplog.text


# --- checking against checkpoints -----------------------------------------------------------------


@pytest.mark.django_db
def test_an_untouched_log_that_grew_since_passes_against_its_checkpoints(checkpoint_file):
    _chain(3)
    checkpoints.write(reason="test")
    _chain(2)
    checkpoints.write(reason="test")
    _chain(1)

    code, out, err = verify("--against", str(checkpoint_file))

    assert (code, err) == (0, "")
    assert "Checkpoints: 2 match; the latest holds #5" in out and "1 events since are covered by the chain only" in out


@pytest.mark.django_db
@pytest.mark.parametrize("cut", [1, 3, 6])
def test_a_truncated_tail_passes_the_chain_but_not_the_checkpoints(checkpoint_file, cut):
    _chain(6)
    checkpoints.write(reason="test")
    truncate(6 - cut)

    assert verify()[0] == 0  # the chain alone cannot tell
    code, _, err = verify("--against", str(checkpoint_file))

    assert code == 1
    assert f"recorded event #6, but the log ends at #{6 - cut}: events #{6 - cut + 1} to #6 are missing" in err


@pytest.mark.django_db
@pytest.mark.parametrize("edited", [1, 4, 6])
def test_a_consistent_rewrite_passes_the_chain_but_not_the_checkpoints(checkpoint_file, edited):
    _chain(6)
    checkpoints.write(reason="test")
    rewrite_from(edited)

    assert verify()[0] == 0  # every hash recomputed: the chain alone cannot tell
    code, _, err = verify("--against", str(checkpoint_file))

    assert code == 1 and "the log up to #6 was rewritten" in err


@pytest.mark.django_db
def test_a_rewrite_before_an_older_checkpoint_is_named_at_each_checkpoint_it_breaks(checkpoint_file):
    _chain(3)
    checkpoints.write(reason="test")
    _chain(3)
    checkpoints.write(reason="test")
    rewrite_from(5)

    code, _, err = verify("--against", str(checkpoint_file))

    assert code == 1
    assert "line 2: event #6" in err and "line 1" not in err  # the older checkpoint still holds


@pytest.mark.django_db
def test_checkpoints_altered_or_forged_without_the_key_are_refused(checkpoint_file):
    _chain(4)
    honest = checkpoints.write(reason="test")
    rewrite_from(2)
    _, head_hash, _ = checkpoints.head()
    altered = {**honest, "hash": head_hash}  # the rewritten head, the honest MAC
    forged = {**altered, "mac": hmac.new(b"a guess", b"{}", hashlib.sha256).hexdigest()}
    unknown = {**altered, "key": "k9"}
    with checkpoint_file.open("a") as file:
        file.writelines(json.dumps(record) + "\n" for record in (altered, forged, unknown))
        file.write('{"kind": "ogpanel_audit_checkpoint", "seq": "not a number"}\n')

    code, _, err = verify("--against", str(checkpoint_file))

    assert code == 1
    assert "line 1: event #4" in err  # the honest checkpoint shows the rewrite
    assert "line 2: its MAC does not match" in err and "line 3: its MAC does not match" in err
    assert "line 4: made with key 'k9', which is not configured" in err
    assert "line 5: not a readable checkpoint" in err


@pytest.mark.django_db
def test_checkpoints_made_with_an_older_key_verify_after_the_key_is_rotated(settings, checkpoint_file):
    settings.OGPANEL_AUDIT_CHECKPOINT_KEYS = OLD_KEY
    _chain(2)
    assert checkpoints.write(reason="test")["key"] == "c1"
    settings.OGPANEL_AUDIT_CHECKPOINT_KEYS = f"{NEW_KEY},{OLD_KEY}"
    assert checkpoints.write(reason="test")["key"] == "c2"

    assert verify("--against", str(checkpoint_file))[0] == 0
    settings.OGPANEL_AUDIT_CHECKPOINT_KEYS = NEW_KEY  # the old key dropped too early
    code, _, err = verify("--against", str(checkpoint_file))
    assert code == 1 and "line 1: made with key 'c1'" in err


@pytest.mark.django_db
def test_a_log_holding_checkpoints_is_read_like_the_file(checkpoint_file, tmp_path):
    _chain(2)
    record = checkpoints.write(reason="test")
    log = tmp_path / "panel.log"
    log.write_text(
        "2026-01-01 00:00:00,000 INFO django.server hello\n"
        f"2026-01-01 00:00:01,000 INFO ogpanel.checkpoints audit checkpoint {json.dumps(record)}\n"
    )
    truncate(1)

    code, _, err = verify("--against", str(log))

    assert code == 1 and "line 2:" in err and "are missing" in err


@pytest.mark.django_db
def test_the_next_write_after_tampering_raises_the_alarm(checkpoint_file, caplog):
    _chain(5)
    checkpoints.write(reason="test")
    truncate(3)

    assert checkpoints.write(reason="test")["seq"] == 3  # the new head is vouched for as it is...
    alarms = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "ogpanel.checkpoints"]
    assert len(alarms) == 1 and "events #4 to #5 are missing" in alarms[0].getMessage()  # ...and the cut is named
    assert verify("--against", str(checkpoint_file))[0] == 1  # the earlier checkpoint still shows it


# --- concurrency and the command ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_writers_at_once_leave_one_whole_authentic_line_each(checkpoint_file):
    _chain(3)
    start = threading.Barrier(6)
    written = []

    def write() -> None:
        try:
            start.wait()
            written.append(checkpoints.write(reason="test"))
        finally:
            connection.close()

    threads = [threading.Thread(target=write) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    def as_text(record: dict) -> str:
        return json.dumps(record, sort_keys=True)

    assert sorted(map(as_text, lines(checkpoint_file))) == sorted(map(as_text, written))
    assert len(written) == 6 and checkpoints.check(checkpoint_file).checkpoints == 6


@pytest.mark.django_db(transaction=True)
def test_the_command_writes_one_and_with_every_keeps_writing_as_the_log_grows_until_stopped(checkpoint_file):
    _chain(1)
    out = io.StringIO()
    call_command("audit_checkpoint", stdout=out)
    assert json.loads(out.getvalue())["reason"] == "manual"
    checkpoints._last_written = None

    def grow_then_stop() -> None:
        try:
            deadline = time.monotonic() + 30
            while len(lines(checkpoint_file)) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            audit.append(ACTOR, action="trigger", outcome="observed", subaccount=1)
            while len(lines(checkpoint_file)) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            connection.close()
            os.kill(os.getpid(), signal.SIGTERM)  # the command's own handler stops its loop

    previous = signal.getsignal(signal.SIGTERM)
    helper = threading.Thread(target=grow_then_stop)
    helper.start()
    try:
        call_command("audit_checkpoint", "--every", "0.05", stdout=io.StringIO())
    finally:
        helper.join()
        signal.signal(signal.SIGTERM, previous)

    assert [(r["seq"], r["reason"]) for r in lines(checkpoint_file)] == [
        (1, "manual"),
        (1, "periodic"),
        (2, "periodic"),
    ]
