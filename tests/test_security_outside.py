"""From outside: panel processes on a database of their own, over real HTTP, in both modes.

The module's world (tests/outside.py): a database migrated by its owner and, on PostgreSQL, used by
the panels as the runtime role of deploy/postgres/10-ogpanel-runtime-role.sh, as in production; a
panel under `runserver` with OGPANEL_DEBUG=1 (what `make demo` runs) and one under gunicorn with
production settings, both on it, both signing with a credential for the test simulator.

- the runtime role is refused UPDATE, DELETE, TRUNCATE, ALTER, DROP and CREATE TRIGGER on the audit
  log, while the panel and the watcher work with what it may do;
- a slash-less credential post and concurrent posts of one label, in both modes: no 500, and no
  piece of the key (tests/leaks.py) in any response or in the panels' logs;
- a fuzz: a fixed number of seeded hostile requests over every form, path, query, header and method,
  charsets, multipart garbage, huge numbers and malformed HX-* headers, from anonymous and signed-in
  clients: no 500, every refusal a 4xx with a message and one log line, never a traceback.

The fuzz sends OGPANEL_FUZZ_REQUESTS requests to each panel (CI: 400; the outside testing that
found the 500s sent 10,000: `OGPANEL_FUZZ_REQUESTS=5000 pytest tests/test_security_outside.py`).
"""

import os
import random
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings

from ogpanel import vault
from tests.leaks import key_pieces, leaks
from tests.outside import LOG_LINE, SERVER_LINE, OutsideDatabase, PanelProcess, base_env, manage, outside_database, send

MODES = ("debug", "production")
FUZZ_REQUESTS = int(os.environ.get("OGPANEL_FUZZ_REQUESTS", "400"))
FUZZ_SEED = 15
ON_POSTGRESQL = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
postgresql_only = pytest.mark.skipif(not ON_POSTGRESQL, reason="roles and privileges are PostgreSQL's")


@dataclass
class World:
    database: OutsideDatabase
    panels: dict[str, PanelProcess]
    env: dict
    credential_pk: int


@pytest.fixture(scope="module")
def world(tmp_path_factory, simulator, rsa_pem) -> World:
    tmp = tmp_path_factory.mktemp("outside")
    with outside_database(tmp, simulator.base_url, rsa_pem) as database:
        env = {
            **base_env(database.runtime_url, tmp),
            # Wrong passwords are part of the input: no lockout may cut the fuzz short.
            "OGPANEL_LOGIN_MAX_FAILURES": "1000000",
            "OGPANEL_LOGIN_MAX_FAILURES_PER_ADDRESS": "1000000",
            "OGPANEL_CONNECT_TIMEOUT": "0.5",
            "OGPANEL_READ_TIMEOUT": "2",
            "OGPANEL_WATCH_WEBSOCKET": "0",
        }
        [(credential_pk,)] = database.rows("SELECT id FROM ogpanel_credential")
        panels: dict[str, PanelProcess] = {}
        try:
            for mode in MODES:
                panels[mode] = PanelProcess(mode, env, tmp / f"{mode}.log")
            yield World(database, panels, env, credential_pk)
        finally:
            for panel in panels.values():
                panel.stop()


def assert_no_key_material(key: rsa.RSAPrivateKey, texts: dict[str, str]) -> None:
    found = dict(leaks(key_pieces(key), texts))  # where -> one piece found there
    shown = {where: texts[where][: texts[where].index(piece) + 16][-600:] for where, piece in list(found.items())[:3]}
    assert found == {}, f"key material in {sorted(found)}; up to the first piece: {shown}"


def credential_form(sim_base_url: str, pem: str, label: str, token: str) -> dict:
    return {
        "label": label,
        "environment": "custom",
        "custom_base_url": sim_base_url,
        "key_id": "canary-key",
        "private_key": pem,
        "csrfmiddlewaretoken": token,
    }


def text_of(response: requests.Response) -> str:
    return f"{response.status_code}\n{response.headers}\n{response.text}"


# --- the runtime role ------------------------------------------------------------------------------

AUDIT = "ogpanel_auditevent"
REFUSED = {
    "update": f"UPDATE {AUDIT} SET reason = 'nothing happened'",
    "delete": f"DELETE FROM {AUDIT} WHERE seq > 1",
    "truncate": f"TRUNCATE {AUDIT} CASCADE",
    "disable the guard": f"ALTER TABLE {AUDIT} DISABLE TRIGGER ogpanel_audit_no_update_delete",
    "disable all triggers": f"ALTER TABLE {AUDIT} DISABLE TRIGGER ALL",
    "drop the guard": f"DROP TRIGGER ogpanel_audit_no_update_delete ON {AUDIT}",
    "create a trigger": f"CREATE TRIGGER forged BEFORE INSERT ON {AUDIT} EXECUTE FUNCTION ogpanel_audit_append_only()",
    "alter a column": f"ALTER TABLE {AUDIT} ALTER COLUMN reason DROP NOT NULL",
    "drop the table": f"DROP TABLE {AUDIT} CASCADE",
    "bypass triggers": "SET session_replication_role = replica",
}


@postgresql_only
@pytest.mark.parametrize("statement", list(REFUSED.values()), ids=list(REFUSED))
def test_the_runtime_role_is_refused_what_would_rewrite_or_unguard_the_audit_log(world, statement):
    import psycopg

    before = world.database.rows(f"SELECT count(*), max(hash) FROM {AUDIT}")
    with psycopg.connect(world.database.runtime_url) as connection:
        [(superuser,)] = connection.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchall()
        assert superuser is False
        assert connection.execute(f"SELECT count(*) FROM {AUDIT}").fetchone()[0] == before[0][0]  # it may read
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute(statement)

    assert world.database.rows(f"SELECT count(*), max(hash) FROM {AUDIT}") == before
    triggers = world.database.rows(
        f"SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = '{AUDIT}'::regclass AND NOT tgisinternal"
    )
    assert sorted(triggers) == [("ogpanel_audit_no_truncate", "O"), ("ogpanel_audit_no_update_delete", "O")]


def test_the_panel_and_the_watcher_work_with_the_runtime_role_s_privileges(world, sim, tmp_path):
    """Sign in, act, review and export; the watcher records a trip and its alert; the chain verifies and
    is checkpointed: all as the role the panels use (on SQLite, the one database user)."""
    panel = world.panels["production"]
    active, tripping = sim.create_group(1, 10), sim.create_group(2, 1)
    watch = ("watch_order_groups", "--once")
    manage(world.env, *watch)  # the baseline
    ada = panel.session("ada")

    assert active in ada.get(panel.url + "/", timeout=30).text
    token = ada.cookies["csrftoken"]
    triggered = ada.post(
        f"{panel.url}/groups/1/{active}/trigger/",
        {"reason": "least privilege", "csrfmiddlewaretoken": token},
        timeout=30,
        allow_redirects=False,
    )
    assert triggered.status_code == 302 and sim.group(active)["triggered"] is True
    assert "least privilege" in ada.get(panel.url + "/audit/?action=trigger", timeout=30).text
    export = ada.get(panel.url + "/audit/export.csv", timeout=30)
    assert export.status_code == 200 and active in export.text

    sim.fill(sim.place_order(2, tripping, count=2), 2)  # the exchange trips a group: the watcher notices
    manage(world.env, *watch)
    assert world.database.rows(
        f"SELECT count(*) FROM {AUDIT} WHERE action = 'exchange_triggered' AND order_group_id = %s", (tripping,)
    ) == [(1,)]
    assert world.database.rows("SELECT count(*) FROM ogpanel_tripalert WHERE order_group_id = %s", (tripping,)) == [
        (1,)
    ]

    checkpointed = {
        **world.env,
        "OGPANEL_AUDIT_CHECKPOINT_KEYS": vault.new_key_entry("c1"),
        "OGPANEL_AUDIT_CHECKPOINT_FILE": str(tmp_path / "checkpoints.jsonl"),
    }
    manage(checkpointed, "audit_checkpoint")
    verified = manage(checkpointed, "verify_audit", "--workers", "1", "--against", str(tmp_path / "checkpoints.jsonl"))
    assert verified.stdout.decode().startswith("OK: ") and "Checkpoints: 1 match" in verified.stdout.decode()


# --- the key never comes back, in either mode -----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_slash_less_credential_post_is_a_404_that_shows_and_logs_no_key(world, sim, canary_key, canary_pem, mode):
    panel = world.panels[mode]
    ada = panel.session("ada")
    start = panel.log_size()
    label = f"slash-less {mode}"

    response = ada.post(
        panel.url + "/credentials/new",
        credential_form(sim.base_url, canary_pem, label, ada.cookies["csrftoken"]),
        headers={"X-CSRFToken": ada.cookies["csrftoken"]},
        timeout=30,
        allow_redirects=False,
    )

    assert response.status_code == 404
    assert world.database.rows("SELECT count(*) FROM ogpanel_credential WHERE label = %s", (label,)) == [(0,)]
    assert "Traceback" not in panel.log(start)
    assert_no_key_material(canary_key, {"response": text_of(response), "log": panel.log(start)})


@pytest.mark.parametrize("mode", MODES)
def test_concurrent_posts_of_one_label_make_one_credential_and_form_errors(world, sim, canary_key, canary_pem, mode):
    panel = world.panels[mode]
    ada = panel.session("ada")
    start = panel.log_size()
    label = f"race {mode}"
    at_once = 6
    barrier = threading.Barrier(at_once)

    def post(_) -> requests.Response:
        session = requests.Session()
        session.cookies.update(ada.cookies)
        form = credential_form(sim.base_url, canary_pem, label, ada.cookies["csrftoken"])
        barrier.wait()
        return session.post(panel.url + "/credentials/new/", form, timeout=60, allow_redirects=False)

    with ThreadPoolExecutor(at_once) as pool:
        responses = list(pool.map(post, range(at_once)))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [302] + [400] * (at_once - 1)
    assert all("A credential with this label already exists." in r.text for r in responses if r.status_code == 400)
    assert world.database.rows("SELECT count(*) FROM ogpanel_credential WHERE label = %s", (label,)) == [(1,)]
    assert "Traceback" not in panel.log(start)
    texts = {f"response {n}": text_of(response) for n, response in enumerate(responses)}
    assert_no_key_material(canary_key, {**texts, "log": panel.log(start)})


# --- the fuzz ------------------------------------------------------------------------------------------

NUMBERS = ["0", "1", "2", "3", "32", "33", "63", "64", "-1", "+1", " 1 ", "1.5", "1e3", "0x1", "1_0", "٣", "²", "１"]
NUMBERS += ["1000000", "1000001", "9" * 25, "7" * 4400, str(2**64), "-0", "00001"]
TEXTS = ["", " ", "\x00", "a\x00b", "a" * 600, "<script>alert(1)</script>", "../../etc/passwd", "%00", "%ff"]
TEXTS += ["'; DROP TABLE ogpanel_auditevent; --", "\u202e", "😀", "TRIGGER", "RESET", "trigger_all", "trigger_one"]
TEXTS += [
    "\ud800",
    "\udcff\udcfe",
    "reset_one",
    "assign",
    "unassign",
    "custom",
    "production",
    "simulator",
    "on",
    "unknown",
    "failed",
    "csv",
]
DATES = ["2026-01-02", "9999-12-31", "0001-01-01", "0000-00-00", "2026-02-30", "2026-13-01", "99999-01-01", "now"]
FIELDS = [
    "label",
    "environment",
    "custom_base_url",
    "key_id",
    "private_key",
    "subaccount",
    "contracts_limit",
    "exchange_index",
    "reason",
    "confirm",
    "operation",
    "number",
    "op",
    "credential",
    "unmap",
    "seen",
    "username",
    "password",
    "next",
    "token",
    "reauth_password",
    "reauth_otp",
    "state",
    "q",
]
QUERY = ["subaccount", "state", "actor", "action", "group", "outcome", "since", "until", "q", "before", "next"]
CHARSETS = ["", "; charset=utf-8", "; charset=UTF-8", "; charset=utf-16", "; charset=latin-1", "; charset=x-nope"]
CHARSETS += ["; charset=", '; charset="utf-8"', "; charset=utf-32"]


def form(fields: dict[str, str]) -> str:
    """URL-encoded, lone surrogates included (as the invalid UTF-8 they become)."""
    return "&".join(f"{quote_plus(k)}={quote_plus(v.encode(errors='surrogatepass'))}" for k, v in fields.items())


class Hostile:
    """Seeded hostile requests, as raw bytes, for one panel."""

    def __init__(self, rng: random.Random, panel: PanelProcess, groups: list[str], credential: int, pem: str):
        self.rng, self.port, self.groups, self.credential, self.pem = rng, panel.port, groups, credential, pem
        self.sessions: dict[str, requests.Session] = {}

    def pick(self, *pools):
        return self.rng.choice([item for pool in pools for item in pool])

    def value(self) -> str:
        roll = self.rng.random()
        if roll < 0.05:
            return self.pem
        if roll < 0.1:
            return "".join(self.rng.choice("aZ9+/=%&;\\\x01é") for _ in range(self.rng.randint(1, 40)))
        return self.pick(NUMBERS, TEXTS, DATES, self.groups, [str(self.credential), "ada", "ada-password-1"])

    def segment(self) -> str:
        segment = self.pick(NUMBERS, TEXTS, self.groups, [str(uuid.uuid4()), "og_1"])
        return quote(segment.encode(errors="surrogatepass"), safe="")

    def path(self) -> str:
        number, group, pk = self.pick(["1", "2", "9"], NUMBERS[:8]), self.segment(), self.pick([str(self.credential)])
        if self.rng.random() < 0.3:
            number, pk = self.segment(), self.segment()
        if self.rng.random() < 0.6:
            group = self.pick(self.groups)
        paths = [
            "/",
            "/groups/new/",
            f"/groups/{number}/{group}/",
            f"/groups/{number}/{group}/trigger/",
            f"/groups/{number}/{group}/reset/",
            f"/groups/{number}/{group}/delete/",
            f"/groups/{number}/{group}/limit/",
            "/kill-switch/",
            "/audit/",
            f"/audit/{self.segment()}/",
            "/audit/1/",
            f"/audit/export.{self.pick(['csv', 'jsonl', 'xml', '', '%00'])}",
            "/credentials/",
            "/credentials/new/",
            f"/credentials/{pk}/",
            f"/credentials/{pk}/rotate/",
            f"/credentials/{pk}/remove/",
            f"/credentials/{pk}/test/",
            "/subaccounts/",
            "/accounts/login/",
            "/accounts/reauth/",
            "/accounts/2fa/setup/",
            "/accounts/2fa/verify/",
            "/admin/",
            "/admin/login/",
            "/admin/ogpanel/credential/",
            "/healthz",
            "/static/ogpanel/panel.css",
            "/no-such-page/",
            "/%ff%fe/",
            "//evil.example/",
            "/groups/1/%E2%80%AE/",
            "/" + "a" * 3000,
        ]
        path = self.pick(paths)
        if self.rng.random() < 0.15 and path.endswith("/"):
            path = path.rstrip("/") or "/"  # slash-less
        if self.rng.random() < 0.4:
            query = {self.pick(QUERY): self.value() for _ in range(self.rng.randint(1, 4))}
            path += "?" + form(query) if self.rng.random() < 0.9 else "?%ff=%fe&&=&a"
        return path

    def body(self, headers: dict) -> bytes:
        kind = self.rng.choices(["form", "multipart", "raw", "json", "many", "none"], [55, 15, 8, 5, 2, 15])[0]
        if kind == "none":
            return b""
        if kind == "many":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            return "&".join(f"f{n}=x" for n in range(1200)).encode()  # past DATA_UPLOAD_MAX_NUMBER_FIELDS
        if kind == "raw":
            headers["Content-Type"] = self.pick(["application/x-www-form-urlencoded", "text/plain", "", "x/y; a=b"])
            return self.rng.randbytes(self.rng.randint(1, 300))
        if kind == "json":
            headers["Content-Type"] = "application/json"
            return f'{{"subaccount": {self.pick(NUMBERS[:10])}, "x": [{self.value()!r}'.encode(errors="replace")
        fields = {self.pick(FIELDS): self.value() for _ in range(self.rng.randint(0, 8))}
        if self.rng.random() < 0.5:
            fields["csrfmiddlewaretoken"] = headers.get("X-CSRFToken", "x")
        if kind == "form":
            charset = self.pick(CHARSETS)
            headers["Content-Type"] = "application/x-www-form-urlencoded" + charset
            text = form(fields)
            if "16" in charset or "32" in charset:
                return text.encode(charset.rsplit("=", 1)[1])
            return text.encode(errors="surrogatepass")
        return self.multipart(fields, headers)

    def multipart(self, fields: dict, headers: dict) -> bytes:
        boundary = self.pick(["x", "----ogpanel", "a" * 80, ""])
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode(errors="replace")
            for name, value in fields.items()
        ]
        if self.rng.random() < 0.4:
            filename = self.pick(["key.pem", "../../x", "", "a" * 300])
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="private_key_file"; filename="{filename}"\r\n'
                f"Content-Type: application/x-pem-file\r\n\r\n{self.pick([self.pem, 'garbage'])}\r\n".encode()
            )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        damage = self.rng.random()
        if damage < 0.15:
            body = body[: self.rng.randint(0, len(body))]  # cut short
        elif damage < 0.25:
            body = body.replace(b"Content-Disposition: form-data; ", b"Content-Disposition: ", 1)
        elif damage < 0.3:
            body = b"--" + boundary.encode() + b"\r\n" + b"X" * 5000 + b"\r\n\r\n"
        header = self.pick([f"multipart/form-data; boundary={boundary}", "multipart/form-data", "multipart/mixed"])
        headers["Content-Type"] = header + self.pick(["", "; charset=utf-16"])
        return body

    def htmx(self, headers: dict) -> None:
        here = f"http://127.0.0.1:{self.port}"
        for name, values in {
            "HX-Request": ["true", "false", "TRUE", "", "1"],
            "HX-Trigger": ["groups", "", "x" * 300],
            "HX-Target": ["flash", "#x", ""],
            "HX-Current-URL": [here + "/", here + "/groups/1/og_1/", "http://[", "http://[::1", "javascript:x", "//e"],
            "HX-Current-URL-URI-AutoEncoded": ["true"],
            "HX-Boosted": ["true", "false"],
            "HX-History-Restore-Request": ["true", "false"],
            "HX-Prompt": ["é", "\x7f"],
        }.items():
            if self.rng.random() < 0.35:
                headers[name] = self.pick(values)

    def request(self, persona: str) -> bytes:
        method = self.rng.choices(
            ["GET", "POST", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "FOO"], [34, 45, 4, 4, 3, 4, 3, 2, 1]
        )[0]
        headers = {"Host": f"127.0.0.1:{self.port}", "Connection": "close", "User-Agent": "ogpanel-fuzz"}
        session = self.sessions.get(persona)
        if session is not None:
            token = session.cookies["csrftoken"]
            headers["Cookie"] = f"sessionid={session.cookies['sessionid']}; csrftoken={token}"
            headers["X-CSRFToken"] = token if self.rng.random() < 0.85 else self.pick(["", "x", "a" * 64])
        if self.rng.random() < 0.5:
            self.htmx(headers)
        for name, values in {
            "Host": ["evil.example", "", "[::1", f"127.0.0.1:{self.port}:1", "a" * 300, "localhost"],
            "X-Forwarded-For": ["1.2.3.4", "unknown", "1.2.3.4, ::1", "a" * 300, ",,,"],
            "X-Forwarded-Proto": ["https", "gopher"],
            "X-Request-ID": ["abcdefgh12345678", "a" * 100, "../.."],
            "Origin": ["http://evil.example", "null"],
            "Cookie": ["sessionid=\x7f; csrftoken=%%", "a" * 5000, "csrftoken=" + "b" * 64],
            "Accept-Language": ["xx-XX;q=abc", "*"],
            "User-Agent": ["x" * 2000, "é"],
        }.items():
            if self.rng.random() < 0.04:
                headers[name] = self.pick(values)
        body = self.body(headers) if method in ("POST", "PUT", "PATCH") or self.rng.random() < 0.05 else b""
        headers["Content-Length"] = str(len(body))
        head = f"{method} {self.path()} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return head.encode("latin-1", errors="replace") + b"\r\n" + body


def sign_in_all(panel: PanelProcess, hostile: Hostile) -> None:
    for persona in ("ada", "desk1", "vera"):
        session = hostile.sessions.get(persona)
        if session is None or session.get(panel.url + "/audit/", timeout=30, allow_redirects=False).status_code != 200:
            hostile.sessions[persona] = panel.session(persona)


@pytest.mark.parametrize("mode", MODES)
def test_hostile_requests_from_outside_get_no_500_and_each_refusal_is_one_log_line(
    world, sim, canary_key, canary_pem, mode
):
    panel = world.panels[mode]
    groups = [sim.create_group(n, 10) for n in (1, 1, 2, 3)] + ["og_1"]
    hostile = Hostile(random.Random(f"{FUZZ_SEED}-{mode}"), panel, groups, world.credential_pk, canary_pem)
    start = panel.log_size()
    answers: list[tuple[bytes, object]] = []
    batch = 50
    for first in range(0, FUZZ_REQUESTS, batch):
        sign_in_all(panel, hostile)  # the fuzz may sign a session out: it posts to logout too
        personas = [
            hostile.pick(["anonymous", "ada", "desk1", "vera"]) for _ in range(min(batch, FUZZ_REQUESTS - first))
        ]
        raw = [hostile.request(persona) for persona in personas]
        with ThreadPoolExecutor(4) as pool:
            answers += zip(raw, pool.map(lambda request: send(panel.port, request), raw), strict=True)

    statuses = Counter(answer.status for _, answer in answers)
    failed = [(request[:300], answer.head[:200]) for request, answer in answers if answer.status in (0, 500)]
    assert failed == [], f"{len(failed)} of {len(answers)} requests failed: {failed[:5]}"
    assert not [status for status in statuses if status >= 500 and status not in (502, 503, 504)]
    refused = [(request, answer) for request, answer in answers if 400 <= answer.status < 500]
    assert len(refused) > len(answers) / 4 and statuses[200] > 0 and statuses[302] > 0  # the mix reached the views
    empty = [request[:200] for request, answer in refused if not answer.body and not request.startswith(b"HEAD ")]
    assert empty == [], f"refusals without a message: {empty[:5]}"

    log = panel.log(start)
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if line.strip()]
    odd = [line[:200] for line in lines if not (LOG_LINE.match(line) or SERVER_LINE.match(line))]
    assert odd == [], f"log lines that are not one record each: {odd[:5]}"  # a traceback or a multi-line message
    records = [LOG_LINE.match(line) for line in lines if LOG_LINE.match(line)]
    warnings = [r for r in records if r["level"] in ("WARNING", "ERROR", "CRITICAL")]
    assert not [r.string for r in warnings if r["level"] != "WARNING" and not r["logger"].startswith("django.security")]
    assert len(warnings) <= len(refused) + statuses[502] + statuses[503] + statuses[504]

    texts = {
        f"answer to {request[:150]!r}": (answer.head + answer.body).decode(errors="replace")
        for request, answer in answers
    }
    assert_no_key_material(canary_key, {**texts, "log": log})
