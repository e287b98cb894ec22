"""The one place that writes audit events, and the check of their hash chain.

Every change an operator makes goes through `attempt(...)`: an *attempted* event is committed
before the exchange is called and a *succeeded*/*failed* event after it, so a process that dies
mid-call still leaves a trace ("outcome unknown"). Each event's hash covers its canonical
content and the previous event's hash; appends are serialized (an advisory lock on PostgreSQL,
SQLite's IMMEDIATE transactions) so the chain stays linear under concurrent requests.
"""

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from django.db import connection, transaction
from django.http import HttpRequest

from ogpanel.kalshi import KalshiError
from ogpanel.models import AuditEvent
from ogpanel.permissions import Action, role_of

GENESIS = "0" * 64
_LOCK_ID = 0x6F6770616E656C  # "ogpanel"; the PostgreSQL advisory lock serializing appends

# Fields covered by the hash, in a fixed order; the hash and the row id are not.
CHAINED_FIELDS = (
    "seq", "at", "actor_id", "actor_username", "actor_role", "action", "environment", "subaccount",
    "order_group_id", "api_key_id", "params", "reason", "request_id", "client_ip", "user_agent",
    "outcome", "attempt_seq", "upstream_status", "error_code", "error", "latency_ms", "prev_hash",
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
    return at.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def canonical(values: dict) -> bytes:
    content = {name: values[name] for name in CHAINED_FIELDS}
    if isinstance(content["at"], datetime):
        content["at"] = timestamp(content["at"])
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def compute_hash(values: dict) -> str:
    return hashlib.sha256(canonical(values)).hexdigest()


def _now() -> datetime:
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


# Column widths, so that a value too long for its column is cut rather than refused.
_MAX_LENGTHS = {field.attname: field.max_length for field in AuditEvent._meta.concrete_fields if field.max_length}


def _storable(value):
    """PostgreSQL refuses NUL characters in text and jsonb; replace them, keys and values alike."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
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
        if isinstance(fitted.get(name), str):
            fitted[name] = fitted[name][:limit]
    return fitted


def append(actor: Actor, *, action: str, outcome: str, **fields) -> AuditEvent:
    """Append one event to the chain and commit it before returning."""
    values = {
        "at": _now(), "actor_id": actor.user_id, "actor_username": actor.username, "actor_role": actor.role,
        "request_id": actor.request_id, "client_ip": actor.client_ip, "user_agent": actor.user_agent,
        "action": action, "outcome": outcome, "environment": "", "subaccount": None, "order_group_id": "",
        "api_key_id": "", "params": {}, "reason": "", "attempt_seq": None, "upstream_status": None,
        "error_code": "", "error": "", "latency_ms": None,
    }
    unknown = set(fields) - set(values)
    if unknown:
        raise TypeError(f"unknown audit fields: {sorted(unknown)}")
    values.update(fields)
    # Store exactly what a later read gives back, so the hash recomputes from the row.
    values["params"] = json.loads(json.dumps(values["params"], default=str))
    values = _fit(values)
    # durable: the event must be committed now, not when some outer transaction decides.
    with transaction.atomic(durable=True):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_ID])
        last = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
        values["seq"], values["prev_hash"] = (last[0] + 1, last[1]) if last else (1, GENESIS)
        values["hash"] = compute_hash(values)
        return AuditEvent.objects.create(**values)


def record(request: HttpRequest, action: str, outcome: str, **fields) -> AuditEvent:
    """A one-off event attributed to the request's user: login ("succeeded"/"failed"), logout, ...

    Record a logout before `auth.logout()` (afterwards the user is anonymous) and a failed
    login with the name that was tried: `params={"username": name}`.
    """
    return append(Actor.from_request(request), action=action, outcome=outcome, **fields)


_GROUP_KEYS = ("order_group_id", "group_id")  # services say order_group_id; URL patterns say group_id
_MAX_SUBACCOUNT_FIELD = 63  # Subaccount.number's own bound; larger values stay in params as text


def record_denial(request: HttpRequest, action: Action | str, detail: dict, *,
                  error: str = "permission denied") -> AuditEvent:
    """A refused action: permission denied, or invalid input (`error="invalid input: ..."`).

    `detail` is what the client asked for (view kwargs, form fields); the subaccount and group
    id go to their own columns so the review page's filters find the refusal.
    """
    fields = {"params": {k: str(v) for k, v in detail.items() if k not in ("subaccount", *_GROUP_KEYS)}}
    subaccount = str(detail.get("subaccount", ""))
    if subaccount.isascii() and subaccount.isdigit() and int(subaccount) <= _MAX_SUBACCOUNT_FIELD:
        fields["subaccount"] = int(subaccount)
    elif subaccount:
        fields["params"]["subaccount"] = subaccount
    group_id = next((detail[key] for key in _GROUP_KEYS if detail.get(key)), "")
    if group_id:
        fields["order_group_id"] = str(group_id)
    return record(request, str(action), AuditEvent.Outcome.DENIED, error=error, **fields)


class Pending:
    """An attempt that has been recorded and awaits its result.

    `attempt()` wraps this for the common case; a fan-out (the kill switch) records its
    attempts first, calls the exchange from worker threads, then records the results from
    the request's own thread, so worker threads never touch the database.
    """

    def __init__(self, actor: Actor, action: str, *, credential=None, **fields):
        if credential is not None:
            fields.setdefault("environment", credential.environment)
            fields.setdefault("api_key_id", credential.key_id)
        self.actor, self.action, self.fields = actor, action, fields
        self.event = append(actor, action=action, outcome=AuditEvent.Outcome.ATTEMPTED, **fields)
        self.began = time.monotonic()
        self.result: AuditEvent | None = None
        self.result_params: dict = {}

    def succeeded(self, *, latency: float | None = None, **params) -> AuditEvent:
        return self._finish(AuditEvent.Outcome.SUCCEEDED, latency, params)

    def failed(self, exc: BaseException, *, latency: float | None = None, **params) -> AuditEvent:
        if isinstance(exc, KalshiError):
            result = {"upstream_status": exc.status, "error_code": (exc.code or "")[:100], "error": exc.operator_message}
        else:
            result = {"error": f"internal error: {type(exc).__name__}"}
        return self._finish(AuditEvent.Outcome.FAILED, latency, params, **result)

    def _finish(self, outcome: str, latency: float | None, params: dict, **result) -> AuditEvent:
        if latency is None:
            latency = time.monotonic() - self.began
        same = ("environment", "subaccount", "order_group_id", "api_key_id", "reason")
        self.result = append(
            self.actor, action=self.action, outcome=outcome, attempt_seq=self.event.seq,
            params={**self.fields.get("params", {}), **params}, latency_ms=round(latency * 1000),
            **{k: v for k, v in self.fields.items() if k in same}, **result,
        )
        return self.result


@contextmanager
def attempt(actor: Actor, action: str, *, credential=None, **fields) -> Iterator[Pending]:
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


def verify(chunk_size: int = 5000) -> Verification:
    """Recompute the chain from the first event. Catches edits, deletions, insertions and reorders."""
    expected_prev, expected_seq, count = GENESIS, 1, 0
    rows = AuditEvent.objects.order_by("seq").values(*CHAINED_FIELDS, "hash").iterator(chunk_size=chunk_size)
    for row in rows:
        count += 1
        if row["seq"] != expected_seq:
            return Verification(False, count, expected_seq if row["seq"] > expected_seq else row["seq"],
                                f"sequence jumps from {expected_seq - 1} to {row['seq']}")
        if row["prev_hash"] != expected_prev:
            return Verification(False, count, row["seq"], "previous-hash link broken")
        if compute_hash(row) != row["hash"]:
            return Verification(False, count, row["seq"], "content does not match its hash")
        expected_prev, expected_seq = row["hash"], expected_seq + 1
    return Verification(True, count, head=expected_prev if count else "")
