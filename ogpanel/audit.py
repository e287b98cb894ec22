"""The one place that writes audit events, and the check of their hash chain.

Every change an operator makes goes through `attempt(...)`: an *attempted* event is committed
before the exchange is called and a *succeeded*/*failed* event after it, so a process that dies
mid-call still leaves a trace ("outcome unknown"). Each event's hash covers its canonical
content and the previous event's hash; appends are serialized (an advisory lock on PostgreSQL,
SQLite's IMMEDIATE transactions) so the chain stays linear under concurrent requests.
"""

import hashlib
import json
import multiprocessing
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

from django.db import connection, connections, transaction
from django.db.models import Max, Min, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest

from ogpanel.kalshi import KalshiError
from ogpanel.models import AuditEvent, Credential, OpenAttempt, Subaccount
from ogpanel.permissions import Action, role_of
from ogpanel.redaction import redact

GENESIS = "0" * 64
_LOCK_ID = 0x6F6770616E656C  # "ogpanel"; the PostgreSQL advisory lock serializing appends

# Fields covered by the hash, in a fixed order; the hash and the row id are not.
CHAINED_FIELDS = (
    "seq",
    "at",
    "actor_id",
    "actor_username",
    "actor_role",
    "action",
    "environment",
    "subaccount",
    "order_group_id",
    "api_key_id",
    "params",
    "reason",
    "request_id",
    "client_ip",
    "user_agent",
    "outcome",
    "attempt_seq",
    "upstream_status",
    "error_code",
    "error",
    "latency_ms",
    "prev_hash",
)


@dataclass(frozen=True)
class Actor:
    """Who an event is attributed to, snapshotted at the time of the event."""

    user_id: int | None
    username: str
    role: str
    request_id: str = ""
    client_ip: str = ""
    user_agent: str = ""
    # An action a second person approved (approvals.py): {"approval_request": id, "requested_by": name,
    # "approved_by": name}, merged into every event's params, so the chain's canonical form is unchanged.
    approval: dict | None = None

    @classmethod
    def from_request(cls, request: HttpRequest) -> "Actor":
        user = request.user
        authenticated = user.is_authenticated
        return cls(
            user_id=user.pk if authenticated else None,
            username=user.get_username() if authenticated else "",
            role=role_of(user).label if authenticated else "",
            request_id=getattr(request, "request_id", ""),
            client_ip=client_ip(request),
            user_agent=request.headers.get("User-Agent", "")[:300],
        )

    @classmethod
    def system(cls, name: str) -> "Actor":
        """A non-human actor: "exchange" for changes observed upstream, or a command's name."""
        return cls(user_id=None, username=name, role="system")


def client_ip(request: HttpRequest) -> str:
    """The address set by middleware (proxy-aware), else the socket peer."""
    return getattr(request, "client_ip", "") or request.META.get("REMOTE_ADDR", "")


def timestamp(at: datetime) -> str:
    """UTC to the millisecond, as hashed and exported: 2026-01-02T03:04:05.678+00:00."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


# The hashed form is json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
# default=str) of the chained fields. It is written out field by field below, byte for byte the
# same (tests/test_audit_speed.py holds it to that), because verify_audit builds it a million times.
_SORTED_FIELDS = tuple(sorted(CHAINED_FIELDS))
_AT, _SEQ, _PREV = (_SORTED_FIELDS.index(name) for name in ("at", "seq", "prev_hash"))
_TEMPLATE = "{" + ",".join(f'"{name}":%s' for name in _SORTED_FIELDS) + "}"
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _json(value: Any) -> str:
    """One value as that json.dumps writes it; plain strings, None and ints without its machinery."""
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if value is None:
        return "null"
    if kind is int:
        return int.__repr__(value)
    return _ENCODER.encode(value)


def canonical(values: dict) -> bytes:
    ordered = [values[name] for name in _SORTED_FIELDS]
    if isinstance(ordered[_AT], datetime):
        ordered[_AT] = timestamp(ordered[_AT])
    return (_TEMPLATE % tuple(map(_json, ordered))).encode()


def compute_hash(values: dict) -> str:
    return hashlib.sha256(canonical(values)).hexdigest()


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


# Column widths, so that a value too long for its column is cut rather than refused.
_MAX_LENGTHS = {field.attname: field.max_length for field in AuditEvent._meta.concrete_fields if field.max_length}


def _storable(value: object) -> object:
    """PostgreSQL refuses NUL characters in text and jsonb; replace them, keys and values alike.

    Key material is cut out too: what a client typed (a failed sign-in's name, a reason) may be a
    pasted private key, and an audit record must never hold one (redaction.py).
    """
    if isinstance(value, str):
        return redact(value.replace("\x00", "\ufffd"))
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


def _fit(values: dict) -> dict:
    """Make every value storable, so that recording a refusal of hostile input cannot fail.

    Denials carry what a client sent (URL parts, headers); an over-long or NUL-bearing value
    must be recorded cut, not turn the refusal into a 500 and leave no trace.
    """
    fitted = {name: _storable(value) for name, value in values.items()}
    for name, limit in _MAX_LENGTHS.items():
        if isinstance(value := fitted.get(name), str):
            fitted[name] = value[:limit]
    return fitted


def append(
    actor: Actor, *, action: str, outcome: str, within: Callable[[AuditEvent], None] | None = None, **fields: Any
) -> AuditEvent:
    """Append one event to the chain and commit it before returning.

    `within(event)` runs inside the append's transaction: rows that must exist exactly when the
    event does (the watcher's state, a trip alert) commit with it, and an exception it raises
    rolls the event back too.
    """
    values = _values(actor, action, outcome, fields)
    # durable: the event must be committed now, not when some outer transaction decides.
    with transaction.atomic(durable=True):
        event = _link([values])[0]
        if within is not None:
            within(event)
        return event


class AlreadyRecorded(Exception):
    """Raised by an `observe` callback: another recorder (a second watcher) was first; roll back."""


def observe(
    actor: Actor,
    subaccount: Subaccount,
    *,
    action: str,
    params: dict,
    within: Callable[[AuditEvent], None],
    order_group_id: str | None = None,
) -> bool:
    """Append what was seen at the exchange on `subaccount` (outcome observed), with `within`'s rows.

    False, and nothing written, when `within` raised AlreadyRecorded: the trip watch and the policy
    check may run in two watchers during a hand-over, and only the first one's event may stand.
    """
    fields: dict[str, Any] = {
        "subaccount": subaccount.number,
        "environment": subaccount.credential.environment,
        "api_key_id": subaccount.credential.key_id,
        "params": params,
    }
    if order_group_id is not None:
        fields["order_group_id"] = order_group_id
    try:
        append(actor, action=action, outcome=AuditEvent.Outcome.OBSERVED, within=within, **fields)
    except AlreadyRecorded:
        return False
    return True


def append_many(actor: Actor, *, action: str, outcome: str, fields: list[dict]) -> list[AuditEvent]:
    """Append one event per entry of `fields`, in order, in one transaction, and commit them.

    One lock and one commit however many there are: the kill switch records hundreds of
    attempts at once, and committing them one by one would hold up its first exchange call.
    """
    values = [_values(actor, action, outcome, one) for one in fields]
    with transaction.atomic(durable=True):
        return _link(values)


def _values(actor: Actor, action: str, outcome: str, fields: dict) -> dict:
    values: dict[str, Any] = {
        "at": _now(),
        "actor_id": actor.user_id,
        "actor_username": actor.username,
        "actor_role": actor.role,
        "request_id": actor.request_id,
        "client_ip": actor.client_ip,
        "user_agent": actor.user_agent,
        "action": action,
        "outcome": outcome,
        "environment": "",
        "subaccount": None,
        "order_group_id": "",
        "api_key_id": "",
        "params": {},
        "reason": "",
        "attempt_seq": None,
        "upstream_status": None,
        "error_code": "",
        "error": "",
        "latency_ms": None,
    }
    unknown = set(fields) - set(values)
    if unknown:
        raise TypeError(f"unknown audit fields: {sorted(unknown)}")
    values.update(fields)
    if actor.approval:
        values["params"] = {**values["params"], **actor.approval}
    # Store exactly what a later read gives back, so the hash recomputes from the row.
    values["params"] = json.loads(json.dumps(values["params"], default=str))
    return _fit(values)


def _link(values: list[dict]) -> list[AuditEvent]:
    """Chain events onto the last one and insert them; runs inside the caller's durable transaction."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_ID])
    seq, prev_hash = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first() or (0, GENESIS)
    events = []
    for value in values:
        seq += 1
        value["seq"], value["prev_hash"] = seq, prev_hash
        value["hash"] = prev_hash = compute_hash(value)
        events.append(AuditEvent(**value))
    events = AuditEvent.objects.bulk_create(events)
    _track_open_attempts(events)
    return events


def _track_open_attempts(events: list[AuditEvent]) -> None:
    """Keep OpenAttempt (the attempts no result answers yet) in step with the events just appended.

    In the append's transaction, so the two never disagree; the table is derived from the chain
    and not part of it (verify() ignores it).
    """
    opened = [OpenAttempt(seq=event.seq) for event in events if event.outcome == AuditEvent.Outcome.ATTEMPTED]
    if opened:
        OpenAttempt.objects.bulk_create(opened)
    answered = [event.attempt_seq for event in events if event.attempt_seq is not None]
    if answered:
        OpenAttempt.objects.filter(seq__in=answered).delete()


def record(request: HttpRequest, action: str, outcome: str, **fields: Any) -> AuditEvent:
    """A one-off event attributed to the request's user: login ("succeeded"/"failed"), logout, ...

    Record a logout before `auth.logout()` (afterwards the user is anonymous) and a failed
    login with the name that was tried: `params={"username": name}`.
    """
    return append(Actor.from_request(request), action=action, outcome=outcome, **fields)


_GROUP_KEYS = ("order_group_id", "group_id")  # services say order_group_id; URL patterns say group_id
_MAX_SUBACCOUNT_FIELD = 63  # Subaccount.number's own bound; larger values stay in params as text


def record_denial(
    request: HttpRequest, action: Action | str, detail: dict, *, error: str = "permission denied"
) -> AuditEvent:
    """A refused action: permission denied, or invalid input (`error="invalid input: ..."`).

    `detail` is what the client asked for (view kwargs, form fields); the subaccount and group
    id go to their own columns so the review page's filters find the refusal.
    """
    fields: dict[str, Any] = {"params": {k: str(v) for k, v in detail.items() if k not in ("subaccount", *_GROUP_KEYS)}}
    subaccount = str(detail.get("subaccount", ""))
    if subaccount.isascii() and subaccount.isdigit() and int(subaccount) <= _MAX_SUBACCOUNT_FIELD:
        fields["subaccount"] = int(subaccount)
    elif subaccount:
        fields["params"]["subaccount"] = subaccount
    group_id = next((detail[key] for key in _GROUP_KEYS if detail.get(key)), "")
    if group_id:
        fields["order_group_id"] = str(group_id)
    return record(request, str(action), AuditEvent.Outcome.DENIED, error=error, **fields)


def _error_code(exc: KalshiError) -> str:
    """The exchange's code, else the kind of failure (timeout, unreachable, malformed_response, rate_limited):
    a call that got no error body still gets a code a reviewer can filter on."""
    return (exc.code or re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower())[:100]


def _with_credential(credential: Credential | None = None, **fields: Any) -> dict:
    """The credential's environment and key id, unless the fields name their own."""
    if credential is None:
        return fields
    return {"environment": credential.environment, "api_key_id": credential.key_id, **fields}


class Pending:
    """An attempt that has been recorded and awaits its result.

    `attempt()` wraps this for the common case; a fan-out (the kill switch) records its
    attempts first (`Pending.many`, one commit), calls the exchange from worker threads, and
    records each result from the request's own thread, so worker threads never touch the database.
    """

    def __init__(
        self,
        actor: Actor,
        action: str,
        *,
        credential: Credential | None = None,
        recorded: AuditEvent | None = None,
        **fields: Any,
    ) -> None:
        fields = _with_credential(credential, **fields)
        self.actor, self.action, self.fields = actor, action, fields
        self.event = (
            recorded
            if recorded is not None
            else append(actor, action=action, outcome=AuditEvent.Outcome.ATTEMPTED, **fields)
        )
        self.began = time.monotonic()
        self.result: AuditEvent | None = None
        self.result_params: dict = {}

    @classmethod
    def many(cls, actor: Actor, action: str, attempts: list[dict]) -> list["Pending"]:
        """Record several attempts (each a dict of fields, credential= allowed) in one commit."""
        fields = [_with_credential(**attempt) for attempt in attempts]
        events = append_many(actor, action=action, outcome=AuditEvent.Outcome.ATTEMPTED, fields=fields)
        return [cls(actor, action, recorded=event, **one) for event, one in zip(events, fields, strict=True)]

    def succeeded(self, *, latency: float | None = None, **params: Any) -> AuditEvent:
        return self._finish(AuditEvent.Outcome.SUCCEEDED, latency, params)

    def failed(self, exc: BaseException, *, latency: float | None = None, **params: Any) -> AuditEvent:
        result: dict[str, Any]
        if isinstance(exc, KalshiError):
            result = {"upstream_status": exc.status, "error_code": _error_code(exc), "error": exc.operator_message}
        else:
            result = {"error_code": "internal_error", "error": f"internal error: {type(exc).__name__}"}
        return self._finish(AuditEvent.Outcome.FAILED, latency, params, **result)

    def _finish(self, outcome: str, latency: float | None, params: dict, **result: Any) -> AuditEvent:
        if latency is None:
            latency = time.monotonic() - self.began
        same = ("environment", "subaccount", "order_group_id", "api_key_id", "reason")
        self.result = append(
            self.actor,
            action=self.action,
            outcome=outcome,
            attempt_seq=self.event.seq,
            params={**self.fields.get("params", {}), **params},
            latency_ms=round(latency * 1000),
            **{k: v for k, v in self.fields.items() if k in same},
            **result,
        )
        return self.result


@contextmanager
def attempt(actor: Actor, action: str, *, credential: Credential | None = None, **fields: Any) -> Iterator[Pending]:
    """Record an attempt, run the body (the upstream call), then record its result.

    The body may add to what the result records through `pending.result_params`. An
    exception is recorded as failed (a KalshiError with the exchange's status and code) and
    re-raised. A process being stopped mid-call (SystemExit, KeyboardInterrupt) records no
    result: whether the exchange acted is unknown, and the lone attempt says exactly that.
    """
    pending = Pending(actor, action, credential=credential, **fields)
    try:
        yield pending
    except Exception as exc:
        pending.failed(exc, **pending.result_params)
        raise
    else:
        pending.succeeded(**pending.result_params)


@dataclass(frozen=True)
class Verification:
    ok: bool
    count: int
    bad_seq: int | None = None
    problem: str = ""
    head: str = ""  # the last event's hash, when ok: recorded elsewhere, it shows a cut or rewritten end


def verify(chunk_size: int = 20000, workers: int = 1) -> Verification:
    """Recompute the chain from the first event. Catches edits, deletions, insertions and reorders.

    Events are read as plain values in keyset-paged chunks (seq > the last one read) and hashed a
    column at a time. With `workers` > 1 (PostgreSQL only) the seq range is split between that many
    processes, each checking its part; the parts are then joined in order, as if read in one pass.
    """
    parts = [(None, None)]
    if workers > 1 and connection.vendor == "postgresql":
        low, high = AuditEvent.objects.aggregate(low=Min("seq"), high=Max("seq")).values()
        if high is not None and high - low >= workers * chunk_size:
            cuts = [low + (high - low) * n // workers for n in range(1, workers)]
            parts = list(zip([None, *cuts], [*cuts, None], strict=True))
    if len(parts) == 1:
        return _join([_check_part(None, None, chunk_size)])
    connections.close_all()  # each process opens its own connection; none may share this one
    with ProcessPoolExecutor(len(parts), mp_context=multiprocessing.get_context("fork")) as pool:
        return _join(list(pool.map(_check_part, *zip(*parts, strict=True), [chunk_size] * len(parts))))


@dataclass(frozen=True)
class _Part:
    """What checking the events of one seq range found, for joining with the ranges around it."""

    count: int = 0
    first: tuple[int, str] = (0, "")  # seq and prev_hash of its first event: the link to the range before
    last: tuple[int, str] = (0, "")  # seq and hash of its last event
    problem: tuple[int, int, str] | None = None  # events checked up to the first bad one, its seq, what is wrong


def _link_problem(seq: int, prev_hash: str, expected_seq: int, expected_prev: str) -> tuple[int, str] | None:
    if seq != expected_seq:
        return (expected_seq if seq > expected_seq else seq), f"sequence jumps from {expected_seq - 1} to {seq}"
    if prev_hash != expected_prev:
        return seq, "previous-hash link broken"
    return None


def _join(parts: list[_Part]) -> Verification:
    expected_seq, expected_prev, count = 1, GENESIS, 0
    for part in parts:
        if not part.count:
            continue
        problem = _link_problem(*part.first, expected_seq, expected_prev)
        if problem:
            return Verification(False, count + 1, *problem)
        if part.problem:
            checked, bad_seq, what = part.problem
            return Verification(False, count + checked, bad_seq, what)
        count += part.count
        expected_seq, expected_prev = part.last[0] + 1, part.last[1]
    return Verification(True, count, head=expected_prev if count else "")


def _check_part(low: int | None, high: int | None, chunk_size: int) -> _Part:
    """Check the events with low < seq <= high (None: no bound): each one's hash, and each one's link
    to the one before it within the range. Plain values, keyset-paged, never model instances."""
    events = AuditEvent.objects.order_by("seq").annotate(params_text=Cast("params", TextField()))
    if high is not None:
        events = events.filter(seq__lte=high)
    columns = ["params_text" if name == "params" else name for name in _SORTED_FIELDS]
    count = 0
    first: tuple[int, str] | None = None  # seq and prev_hash of the first event checked
    last: tuple[int, str] | None = None  # seq and hash of the last event checked
    while True:
        after = low if last is None else last[0]
        page = events if after is None else events.filter(seq__gt=after)
        rows = list(page.values_list(*columns, "hash")[:chunk_size])
        if not rows:
            return _Part(count, first or (0, ""), last or (0, ""))
        computed = _hashes(rows)
        seqs, prevs, stored = ([row[i] for row in rows] for i in (_SEQ, _PREV, -1))
        intact = (
            computed == stored
            and prevs[1:] == stored[:-1]
            and seqs == list(range(seqs[0], seqs[0] + len(rows)))
            and (last is None or _link_problem(seqs[0], prevs[0], last[0] + 1, last[1]) is None)
        )
        if not intact:  # find the first bad event, checking as one pass would (the loop returns)
            for n, (seq, prev_hash, ours, theirs) in enumerate(
                zip(seqs, prevs, computed, stored, strict=True), start=count + 1
            ):
                if last and (problem := _link_problem(seq, prev_hash, last[0] + 1, last[1])):
                    return _Part(n, first or (seq, prev_hash), last, (n, *problem))
                if ours != theirs:  # `last or`: _join reads `last` only from a part without a problem
                    return _Part(
                        n, first or (seq, prev_hash), last or (0, ""), (n, seq, "content does not match its hash")
                    )
                first, last = first or (seq, prev_hash), (seq, theirs)
        first = first or (seqs[0], prevs[0])
        count, last = count + len(rows), (seqs[-1], stored[-1])


def _hashes(rows: list[tuple]) -> list[str]:
    """Each row's hash (columns in _SORTED_FIELDS order, params as text, then the stored hash).

    Built a column at a time: a loop in C over a column of plain strings or ints costs far less
    than a Python call per value, and a chunk's params texts repeat ({} above all).
    """
    columns = list(zip(*rows, strict=True))
    parts = []
    values: Sequence[Any]
    # strict=False: the last column, the stored hash, is not hashed.
    for name, values in zip(_SORTED_FIELDS, columns, strict=False):
        if name == "params":
            known: dict[str, str] = {}
            parts.append(
                [known[text] if text in known else known.setdefault(text, _json(json.loads(text))) for text in values]
            )
            continue
        if name == "at":
            values = [timestamp(at) if isinstance(at, datetime) else at for at in values]
        kinds = set(map(type, values))
        if kinds == {str}:
            parts.append(list(map(encode_basestring, values)))
        elif kinds <= {int, type(None)}:
            parts.append(_ENCODER.encode(list(values))[1:-1].split(","))
        else:
            parts.append(list(map(_json, values)))
    return [hashlib.sha256((_TEMPLATE % row).encode()).hexdigest() for row in zip(*parts, strict=True)]
