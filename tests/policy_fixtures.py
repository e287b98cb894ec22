"""Fixtures and helpers for the policy and four-eyes tests (issue 18), imported by their modules.

Personas beside tests/panel_fixtures.py's: `second_operator` (olga, ops, every subaccount) and
`second_admin` (ben, admin). `four_eyes_everywhere` sets a default policy naming every
four-eyes action, as an admin starting from the suggested policy would.
"""

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import pytest
from django.contrib.auth.models import User
from django.test import Client

from ogpanel import policy
from ogpanel.audit import Actor
from ogpanel.models import ApprovalRequest, AuditEvent
from tests.panel_fixtures import make_user

SETUP = Actor.system("tests")


def set_policy(subaccount: int | None = None, **rules) -> policy.Rules:
    """Write a policy version as the system (no second person involved) and return its rules."""
    values = {"four_eyes": frozenset(policy.FOUR_EYES), **rules}
    values["four_eyes"] = frozenset(values["four_eyes"])
    chosen = policy.Rules(**values)
    policy.policy_set(actor=SETUP, subaccount=subaccount, rules=chosen, reason="test setup")
    return chosen


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def writes(sim) -> list:
    """The exchange calls that change something."""
    return [record for record in sim.requests if record.method != "GET"]


def events_after(seq: int, **filters) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(seq__gt=seq, **filters).order_by("seq"))


def last_seq() -> int:
    return AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def only_request() -> ApprovalRequest:
    (req,) = ApprovalRequest.objects.all()
    return req


@pytest.fixture
def second_operator(db) -> User:
    return make_user("olga", "ops")


@pytest.fixture
def second_admin(db) -> User:
    return make_user("ben", "admin")


@pytest.fixture
def four_eyes_everywhere(db) -> policy.Rules:
    return set_policy()


class Receiver:
    """A webhook endpoint on a loopback port that records the JSON body of every POST (answers 204)."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(settings):
    receiver = Receiver()
    settings.OGPANEL_ALERT_WEBHOOK_URL = receiver.url
    settings.OGPANEL_ALERT_WEBHOOK_FORMAT = "json"
    yield receiver
    receiver.close()
