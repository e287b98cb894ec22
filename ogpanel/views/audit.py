"""The audit log: the review page, one event, and the export of what the page shows.

`audit_events()` is the one filter: the page and the export both call it, so an export holds
exactly the events the page lists for the same filters. Pages are keyset-paged on `seq`
(`?before=<seq>`), never OFFSET, so the thousandth page costs what the first does.

Scope: a user limited to some subaccounts sees the events of those subaccounts, plus their own
events that concern no subaccount (their sign-ins, their kill-switch sweeps). Other events
without a subaccount (credentials, other people's sign-ins) are for unscoped users only.
"""

import csv
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from itertools import batched, chain

from django import forms
from django.contrib.auth.decorators import login_required
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render

from ogpanel import audit, permissions
from ogpanel.models import AuditEvent, OpenAttempt
from ogpanel.permissions import Action
from ogpanel.views.common import error_response, render_page

PAGE_SIZE = 50
UNKNOWN = "unknown"  # an attempt with no result: the process stopped before the exchange answered
Outcome = AuditEvent.Outcome

# Offered in the action filter; any other action name can still be typed.
KNOWN_ACTIONS = (
    "trigger",
    "reset",
    "create",
    "delete",
    "update_limit",
    "kill_switch_trigger",
    "kill_switch_reset",
    "credential_create",
    "credential_rotate",
    "credential_remove",
    "credential_test",
    "subaccount_assign",
    "subaccount_unassign",
    "role_change",
    "login",
    "login_lockout",
    "logout",
    Action.EXPORT_AUDIT.value,
    "exchange_triggered",
    "exchange_reset",
    "exchange_created",
    "exchange_deleted",
    "exchange_limit_updated",
    "exchange_baseline",
    "kill_switch_join",
    "kill_switch_note",
    "policy_change",
    "policy_breach",
    "policy_breach_cleared",
    "request_filed",
    "request_approved",
    "request_rejected",
    "request_cancelled",
    "request_expired",
    "trip_watch_down",
    "trip_watch_recovered",
)


class AuditFilterForm(forms.Form):
    actor = forms.CharField(label="Actor (username)", required=False, max_length=150)
    action = forms.CharField(
        label="Action", required=False, max_length=50, widget=forms.TextInput(attrs={"list": "audit-actions"})
    )
    subaccount = forms.IntegerField(label="Subaccount", required=False, min_value=0, max_value=63)
    group = forms.CharField(label="Order group id", required=False, max_length=100)
    outcome = forms.ChoiceField(
        label="Outcome",
        required=False,
        choices=[("", "Any"), *Outcome.choices, (UNKNOWN, "Outcome unknown")],
    )
    since = forms.DateField(label="From (UTC)", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="To (UTC, inclusive)", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    # Three characters at least: the trigram indexes behind search (PostgreSQL) need one trigram
    # to look up, and a shorter string would read every event.
    q = forms.CharField(
        label="Search",
        required=False,
        min_length=3,
        max_length=200,
        help_text="Actor, action, group id, reason, error or parameters; 3 characters or more.",
    )
    before = forms.IntegerField(label="Page (before event)", required=False, min_value=1, widget=forms.HiddenInput)

    def clean(self) -> dict:
        super().clean()
        data = self.cleaned_data  # what Form.clean returns
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError("The “From” date is after the “To” date.")
        return data

    def filters(self) -> dict:
        """The cleaned filters as `audit_events()` keywords (paging aside)."""
        return {name: value for name, value in self.cleaned_data.items() if name != "before"}


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def audit_events(
    user: permissions.AnyUser,
    *,
    actor: str = "",
    action: str = "",
    subaccount: int | None = None,
    group: str = "",
    outcome: str = "",
    since: date | None = None,
    until: date | None = None,
    q: str = "",
) -> QuerySet[AuditEvent]:
    """The events `user` may see that match the filters, newest first."""
    events = AuditEvent.objects.order_by("-seq")
    scope = permissions.scope_of(user)
    if scope is not None:
        events = events.filter(Q(subaccount__in=scope) | Q(subaccount__isnull=True, actor_id=user.pk))
    if actor:
        events = events.filter(actor_username=actor)
    if action:
        events = events.filter(action=action)
    if subaccount is not None:
        events = events.filter(subaccount=subaccount)
    if group:
        events = events.filter(order_group_id=group)
    if outcome == UNKNOWN:
        # Kept by audit.py as results arrive: looking for attempts without one reads every attempt.
        events = events.filter(seq__in=OpenAttempt.objects.values("seq"))
    elif outcome:
        events = events.filter(outcome=outcome)
    if since:
        events = events.filter(at__gte=_start_of(since))
    if until and until < date.max:  # "to the last day there is" bounds nothing (and has no day after it)
        events = events.filter(at__lt=_start_of(until + timedelta(days=1)))
    if q:
        events = events.filter(
            Q(actor_username__icontains=q)
            | Q(action__icontains=q)
            | Q(order_group_id__icontains=q)
            | Q(reason__icontains=q)
            | Q(error__icontains=q)
            | Q(params__icontains=q)
        )
    return events


def attach_results(events: list[AuditEvent]) -> None:
    """Set `.result` on each attempt among `events` (None: outcome unknown), in one query."""
    attempts = {event.seq: event for event in events if event.outcome == Outcome.ATTEMPTED}
    for event in attempts.values():
        event.result = None
    for result in AuditEvent.objects.filter(attempt_seq__in=list(attempts)).order_by("seq"):
        if result.attempt_seq is not None:  # (always: it answers one of the attempts)
            attempts[result.attempt_seq].result = result


def _query(request: HttpRequest, **changes: str | None) -> str:
    """The current query string with `changes` applied (None removes a parameter)."""
    params = request.GET.copy()
    for name, value in changes.items():
        params.pop(name, None)
        if value is not None:
            params[name] = value
    return params.urlencode()


@login_required
@permissions.require(Action.VIEW_AUDIT)
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    context = {"form": form, "events": [], "known_actions": KNOWN_ACTIONS, "filter_query": _query(request, before=None)}
    if not form.is_valid():
        return render_page(request, "ogpanel/audit_log.html", context, fragment="results", status=400)
    events = audit_events(request.user, **form.filters())
    before = form.cleaned_data["before"]
    if before is not None:
        events = events.filter(seq__lt=before)
    page = list(events[: PAGE_SIZE + 1])
    older = page[PAGE_SIZE - 1].seq if len(page) > PAGE_SIZE else None
    page = page[:PAGE_SIZE]
    attach_results(page)
    context.update(
        events=page,
        paged=before is not None,
        older_query=_query(request, before=str(older)) if older else "",
    )
    return render_page(request, "ogpanel/audit_log.html", context, fragment="results")


@login_required
@permissions.require(Action.VIEW_AUDIT)
def audit_event(request: HttpRequest, seq: int) -> HttpResponse:
    visible = audit_events(request.user)
    event = visible.filter(seq=seq).first()
    if event is None:
        if AuditEvent.objects.filter(seq=seq).exists():  # out of scope: answered exactly like a missing event
            return permissions.deny(request, Action.VIEW_AUDIT, {"seq": seq}, status=404)
        return error_response(request, "Not found.", status=404)
    context = {
        "event": event,
        "attempt": visible.filter(seq=event.attempt_seq).first() if event.attempt_seq else None,
        "results": list(visible.filter(attempt_seq=event.seq).order_by("seq")),
        "params_json": json.dumps(event.params, indent=2, sort_keys=True, ensure_ascii=False),
    }
    return render(request, "ogpanel/audit_event.html", context)


# --- export ------------------------------------------------------------------------------------

EXPORT_FIELDS = (*audit.CHAINED_FIELDS, "hash")
# A spreadsheet runs a cell starting with one of these as a formula; reasons, user agents and
# failed-login names are typed by people, some hostile. (The JSON Lines export stays verbatim.)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Echo:
    """csv.writer needs a file; this one hands each written line back, for streaming."""

    def write(self, line: str) -> str:
        return line


def _csv_cell(value: object) -> object:
    if isinstance(value, str):  # most cells: tested first, as an export may hold a million rows
        return "'" + value if value.startswith(_FORMULA_STARTS) else value
    if value is None:
        return ""
    if isinstance(value, datetime):
        return audit.timestamp(value)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value


def _csv_lines(events: QuerySet[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(EXPORT_FIELDS)
    for row in events.values_list(*EXPORT_FIELDS).iterator(chunk_size=2000):
        yield writer.writerow([_csv_cell(value) for value in row])


def _jsonl_lines(events: QuerySet[AuditEvent]) -> Iterator[str]:
    """One event per line, as hashed: `audit.compute_hash(line) == line["hash"]` checks it offline."""
    for row in events.values(*EXPORT_FIELDS).iterator(chunk_size=2000):
        row["at"] = audit.timestamp(row["at"])
        yield json.dumps(row, ensure_ascii=False) + "\n"


EXPORTS = {
    "csv": (_csv_lines, "text/csv; charset=utf-8"),
    "jsonl": (_jsonl_lines, "application/x-ndjson; charset=utf-8"),
}


@login_required
@permissions.require(Action.EXPORT_AUDIT)
def audit_export(request: HttpRequest, fmt: str) -> HttpResponseBase:
    if fmt not in EXPORTS:
        return error_response(request, "Export as .csv or .jsonl.", status=404)
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        return error_response(request, "The filters are not valid; correct them on the audit log page.", status=400)
    filters = form.filters()
    exported = audit.record(
        request,
        Action.EXPORT_AUDIT,
        Outcome.SUCCEEDED,
        params={
            "format": fmt,
            **{name: value for name, value in filters.items() if value not in ("", None)},
        },
    )
    # Up to the export's own event: the file is the log as it stood when it was asked for.
    events = audit_events(request.user, **filters).filter(seq__lt=exported.seq)
    lines, content_type = EXPORTS[fmt]
    # A thousand lines a chunk: a million one-line writes would cost the server a syscall each.
    chunks: Iterator[str] = ("".join(batch) for batch in batched(lines(events), 1000, strict=False))
    if fmt == "csv" and request.GET.get("bom") == "1":  # Excel reads UTF-8 only after a byte order mark
        chunks = chain(["\ufeff"], chunks)
    response = StreamingHttpResponse(chunks, content_type=content_type)
    stamp = exported.at.strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="ogpanel-audit-{stamp}.{fmt}"'
    return response
