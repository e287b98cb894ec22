"""The audit log's fast paths behave exactly like the plain ones they replace (benchmark 5).

canonical() is written out field by field but must stay byte for byte the json.dumps form every
stored hash was made from; verify() reads in chunks (and, on PostgreSQL, in several processes)
but must name the same first bad event as one pass over the chain would.
"""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import IntEnum
from pathlib import Path

import pytest
from django.db import connection, transaction
from hypothesis import given, settings
from hypothesis import strategies as st

from ogpanel import audit
from ogpanel.models import AuditEvent
from tests.test_audit import TAMPERING, _chain, postgresql_only, tampering

ROOT = Path(__file__).resolve().parent.parent


def dumps_form(values: dict) -> bytes:
    """The definition of the hashed form, as first written (and as every existing hash was made)."""
    content = {name: values[name] for name in audit.CHAINED_FIELDS}
    if isinstance(content["at"], datetime):
        content["at"] = audit.timestamp(content["at"])
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


class Level(IntEnum):
    HIGH = 3


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(),
    st.floats(allow_nan=False),
    st.sampled_from([AuditEvent.Outcome.ATTEMPTED, Level.HIGH, Decimal("1.50"), '\x00\x1f"\\/\u2028é💥']),
)
json_like = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3), max_leaves=8
)
moments = st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))]))


@settings(max_examples=300, deadline=None)
@given(
    values=st.fixed_dictionaries(dict.fromkeys(audit.CHAINED_FIELDS, scalars)),
    params=json_like,
    at=st.one_of(moments, st.text()),
)
def test_the_written_out_canonical_form_is_byte_for_byte_the_json_dumps_form(values, params, at):
    values.update(params=params, at=at)
    assert audit.canonical(values) == dumps_form(values)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 100])
@pytest.mark.parametrize("kind", TAMPERING)
def test_verify_names_the_same_first_bad_event_whatever_the_chunk_size(kind, chunk_size, db):
    _chain(7)
    tamper, bad_seq = TAMPERING[kind]
    with tampering() as cursor:
        tamper(cursor)
    result = audit.verify(chunk_size=chunk_size)
    assert not result.ok and result.bad_seq == bad_seq


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 100])
def test_an_intact_chain_verifies_whatever_the_chunk_size(chunk_size, db):
    events = _chain(7)
    assert audit.verify(chunk_size=chunk_size) == audit.Verification(True, 7, head=events[-1].hash)


@postgresql_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", [None, *TAMPERING])
def test_verify_in_several_processes_agrees_with_one_pass(kind):
    _chain(12)
    if kind:
        with transaction.atomic(), tampering() as cursor:  # SET LOCAL needs a transaction; the processes see the commit
            TAMPERING[kind][0](cursor)
    one_pass = audit.verify(chunk_size=2)
    # The command in a process of its own, as an operator runs it: forking this test process, with
    # its live-server and simulator threads, could copy a lock some thread holds and hang.
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    run = subprocess.run(
        [sys.executable, "manage.py", "verify_audit", "--workers", "3", "--chunk-size", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert one_pass.ok == (kind is None)
    if one_pass.ok:
        assert (run.returncode, run.stdout.splitlines()[0]) == (0, f"OK: {one_pass.count} events")
    else:
        assert run.returncode == 1 and f"event #{one_pass.bad_seq}: {one_pass.problem}" in run.stderr


def test_a_search_shorter_than_three_characters_is_refused_with_the_reason(as_viewer):
    response = as_viewer.get("/audit/?q=ab")
    assert response.status_code == 400 and "at least 3 characters" in response.content.decode()
    assert as_viewer.get("/audit/?q=abc").status_code == 200
