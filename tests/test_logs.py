"""Log records carry the request id and user of the request they were written in (ogpanel/logs.py).

tests/test_operations.py reads the JSON lines of a panel under gunicorn; here, in process.
"""

import io
import json
import logging

import pytest
from django.conf import settings
from pythonjsonlogger.json import JsonFormatter

from ogpanel.logs import JSON_FORMATTER, RequestContextFilter


@pytest.fixture
def json_log():
    """The console handler as OGPANEL_LOG_FORMAT=json builds it, writing into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(JsonFormatter(**{k: v for k, v in JSON_FORMATTER.items() if k != "()"}))
    root = logging.getLogger()
    root.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)


def test_plain_text_is_the_default():
    assert settings.OGPANEL_LOG_FORMAT == "plain"
    assert settings.LOGGING["handlers"]["console"]["formatter"] == "plain"
    assert settings.LOGGING["handlers"]["console"]["filters"] == ["request", "redact"]


def test_a_record_written_during_a_request_carries_its_id_and_user(as_viewer, json_log):
    response = as_viewer.get("/metrics")  # refused, and the refusal is logged by the view's own logger
    assert response.status_code == 403
    (line,) = [line for line in json_log() if line["logger"] == "ogpanel.views.metrics"]
    assert line["level"] == "WARNING" and line["message"].startswith("metrics: refused a scrape")
    assert line["request_id"] == response["X-Request-ID"]
    assert line["user"] == "vera"


def test_a_record_outside_any_request_carries_empty_ones(json_log):
    logging.getLogger("ogpanel.watcher").warning("between requests")
    (line,) = json_log()
    assert line["request_id"] == "" and line["user"] == ""


def test_each_request_gets_one_line_when_asked_for(client, settings, json_log):
    settings.OGPANEL_LOG_REQUESTS = True
    response = client.get("/accounts/login/?next=/audit/%3Fq%3Dsecret-search")
    (line,) = [line for line in json_log() if line["logger"] == "ogpanel.request"]
    assert (line["method"], line["path"], line["status"], line["view"]) == ("GET", "/accounts/login/", 200, "login")
    assert line["request_id"] == response["X-Request-ID"] and line["user"] == ""
    assert "secret-search" not in json.dumps(line)  # paths only: query strings are the user's business
